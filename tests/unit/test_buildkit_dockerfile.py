"""The Dockerfile as BuildKit's frontend reads it: the syntax directive, BuildKit's RUN flags.

``syntax_directive`` follows BuildKit's ``DetectSyntax`` exactly; ``parse``
reads it that way and also as its own directive loop does, so a spelling the
two readers split differently can only add a frontend to judge.
"""

from __future__ import annotations

import pytest

from dockgate.buildctx.dockerfile import parse, syntax_directive


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (b"# syntax=docker/dockerfile:1\nFROM x\n", ("docker/dockerfile:1", "docker/dockerfile:1")),
        (b"#syntax = a/b:1 --flag\n", ("a/b:1", "a/b:1 --flag")),
        (b"# SYNTAX=a/b\n", ("a/b", "a/b")),
        (b"# escape=`\n# check=skip=all\n# syntax=a/b\n", ("a/b", "a/b")),
        (b"\xef\xbb\xbf#!/usr/bin/env x\n# syntax=a/b\n", ("a/b", "a/b")),
        (b"// syntax=a/b\nFROM x\n", ("a/b", "a/b")),
        (b'{"syntax": "a/b", "x": 1}', ("a/b", "a/b")),
        (b"# syntax=a/b\r\nFROM x\r\n", ("a/b", "a/b")),
        # Not directives for BuildKit:
        (b" # syntax=a/b\n", None),
        (b"# foo=bar\n# syntax=a/b\n", None),
        (b"FROM x\n# syntax=a/b\n", None),
        (b"\n# syntax=a/b\n", None),
        (b'{"syntax": 1}', None),
    ],
)
def test_syntax_directive_as_buildkit_detects_it(text: bytes, found: tuple[str, str] | None) -> None:
    """BOM and shebang skipped, `#` then `//` comments, then JSON; the first blank ends the image."""
    assert syntax_directive(text) == found


def test_parse_reads_every_syntax_spelling_either_reader_sees() -> None:
    """A directive after an unknown one is not BuildKit's, but dockgate still judges it."""
    facts = parse(b"# foo=bar\n# syntax=a/b\nFROM x\n")
    assert [ref for _, ref in facts.frontends] == ["a/b"]
    facts = parse(b"#!/bin/sh\n# syntax=c/d\nFROM x\n")
    assert [ref for _, ref in facts.frontends] == ["c/d"]


def test_run_flags() -> None:
    """RUN --network, --security, --device and --mount from= are facts; odd values are problems."""
    facts = parse(
        b"FROM x\n"
        b"RUN --network=host --security=insecure --device=v.com/gpu=0 true\n"
        b"RUN --network=none --mount=type=cache,from=img:1,target=/c true\n"
        b'RUN --network="host" true\n'
    )
    assert facts.networks == [("line 2 RUN --network", "host"), ("line 3 RUN --network", "none"),
                              ("line 4 RUN --network", '"host"')]
    assert facts.security == [("line 2 RUN --security", "insecure")]
    assert facts.devices == [("line 2 RUN --device", "v.com/gpu=0")]
    assert ("line 3 RUN --mount from", "img:1") in facts.images
    assert facts.problems == [("line 4", 'RUN --network="host" is not a value dockgate knows')]


def test_cache_mounts() -> None:
    """``RUN --mount=type=cache`` is a cache fact by its id, else its target, in any case
    and field order, also under ONBUILD; a type dockgate cannot read (a variable) counts
    as a cache; other mount types do not."""
    facts = parse(
        b"FROM x\n"
        b"RUN --mount=type=cache,id=go,target=/c true\n"
        b"RUN --mount=target=/d,TYPE=Cache --mount=type=bind,target=/e true\n"
        b"RUN --mount=type=$T,dst=/f --mount=type=secret,id=s true\n"
        b"ONBUILD RUN --mount=type=cache,target=/g true\n"
        b"RUN --mount=type=tmpfs,target=/h true\n"
    )
    assert facts.caches == [("line 2 RUN --mount type=cache", "go"),
                            ("line 3 RUN --mount type=cache", "/d"),
                            ("line 4 RUN --mount type=cache", "/f"),
                            ("line 5 (ONBUILD) RUN --mount type=cache", "/g")]


def test_add_git_forms() -> None:
    """ADD of git refs in every form BuildKit fetches, URLs too; COPY sources are not fetched."""
    facts = parse(
        b"FROM x\nADD git@github.com:a/b.git /a\nADD github.com/a/b.git /b\n"
        b"ADD --keep-git-dir=true https://github.com/a/b.git#v1 /c\nCOPY github.com/a /d\n"
        b"ADD me@127.0.0.1:repo.git /e\n"
    )
    assert [u for _, u in facts.urls] == [
        "git@github.com:a/b.git", "github.com/a/b.git", "https://github.com/a/b.git#v1",
        "me@127.0.0.1:repo.git"]


@pytest.mark.parametrize("sep", ["\t", "\v", "\f", " \t "])
def test_any_whitespace_buildkit_splits_on_separates_words(sep: str) -> None:
    """BuildKit's parser splits an instruction from its arguments, and flags from each
    other, on ``[\\t\\v\\f\\r ]+``: a tab-separated ``FROM``, ``COPY --from``, ``RUN
    --mount``, ``RUN --network`` and ``ADD <url>`` are read as space-separated ones are."""
    text = (f"FROM{sep}b-img\nCOPY{sep}--from=c-img{sep}/a /a\n"
            f"RUN{sep}--mount=type=bind,from=d-img,target=/m{sep}--network=host{sep}true\n"
            f"ADD{sep}http://10.1.1.1/x{sep}/x\n")
    facts = parse(text)
    assert [ref for _, ref in facts.images] == ["b-img", "c-img", "d-img"]
    assert [u for _, u in facts.urls] == ["http://10.1.1.1/x"]
    assert [v for _, v in facts.networks] == ["host"]


@pytest.mark.parametrize("directives", ["# foo=bar\n# escape=`\n", "# syntax=a/b\n# escape=`\n",
                                        "# escape=`\n"])
def test_lines_are_read_with_either_escape_character(directives: str) -> None:
    """Which ``# escape=`` counts differs between readers (BuildKit stops at an unknown
    directive; engine 20.10's parser knows only escape): a Dockerfile with a line
    ending in the other escape character is read with both, so an ``ADD \\`` continued
    onto a URL is seen whichever the daemon uses."""
    facts = parse(directives + "FROM x\nADD \\\nhttp://10.1.1.1/x /x\n")
    assert [u for _, u in facts.urls] == ["http://10.1.1.1/x"]
    assert parse(directives + "FROM x\nRUN true `\n").problems == []


@pytest.mark.parametrize("heredoc", ['RUN echo "<<EOF"\n', "RUN <<EOF\ntrue\nEOF\r\r\n",
                                     "RUN cat <<EOF\n"])
def test_lines_are_also_read_without_heredocs(heredoc: str) -> None:
    """What dockgate takes for a heredoc may be none for the daemon (a quoted ``<<EOF``,
    a terminator BuildKit trims differently, engine 20.10 without heredocs): the lines
    are also read as instructions, so an ``ADD \\`` continued onto a URL after it is seen."""
    facts = parse("FROM x\n" + heredoc + "ADD \\\nhttp://10.1.1.1/x /x\n")
    assert [u for _, u in facts.urls] == ["http://10.1.1.1/x"]


@pytest.mark.parametrize("text", ["FROM x\nADD \\\r\r\nhttp://10.1.1.1/x /x\n",
                                  "FROM x\nADD a \\\n\x1c# http://10.1.1.1/x /x/\n"])
def test_line_ends_and_comments_as_go_reads_them(text: str) -> None:
    """Every ``\\r`` before a ``\\n`` goes (BuildKit's trimNewline), and only Go's
    whitespace comes before a comment's ``#`` (not ``\\x1c``-``\\x1f``): an ``ADD \\``
    continued over either is read onto the URL."""
    assert [u for _, u in parse(text).urls] == ["http://10.1.1.1/x"]
