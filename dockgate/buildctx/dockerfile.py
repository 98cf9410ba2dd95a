"""What a classic-builder Dockerfile makes dockerd fetch or read, read as the daemon would.

dockerd's classic builder parses the Dockerfile with BuildKit's parser
(``frontend/dockerfile/parser``): parser directives at the top (``# escape=``,
``# syntax=``), line continuations with the escape character (trailing blanks
allowed, comment and blank lines inside a continuation skipped), heredocs
after ``RUN``/``COPY``/``ADD``, JSON or shell form, ``--flag=value`` words
first, and ARG/ENV substitution.  The facts dockgate needs:

* **images**: ``FROM`` bases (with the meta ARGs declared before the first
  ``FROM``, overridden by the request's ``buildargs``), ``COPY --from``,
  ``RUN --mount=...,from=``, the ``# syntax=`` frontend, and the same inside
  ``ONBUILD``; ``scratch`` and earlier stage names (or indexes) are not images;
* **urls**: ``ADD`` sources dockerd would download itself (``http://``,
  ``https://``; anything with ``://`` or ``git@`` is counted, fail closed);
* **problems**: a value dockgate cannot determine (a variable it cannot
  resolve, a quoted or escaped reference): the caller refuses the build.

Two readers can split lines differently (continuations, heredoc ends, the
escape character), so besides the logical instructions every physical line
that starts with an instruction keyword is read as an instruction too.  That
can only add findings: a line the daemon treats as heredoc content and
dockgate as an instruction is refused, never the other way round.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*([\"']?)([A-Za-z0-9_./-]+)\2")
_KEYWORDS = ("from", "add", "copy", "run", "onbuild", "arg")
_VAR = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^${}\\\"']*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass
class DockerfileFacts:
    """Findings, each with the line (1-based) it came from."""

    images: list[tuple[str, str]] = field(default_factory=list)
    bases: list[tuple[str, str]] = field(default_factory=list)
    """The ``FROM`` images among ``images``: their ``ONBUILD`` triggers run in this build."""
    urls: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


class _Undetermined(ValueError):
    pass


def _expand(value: str, args: Mapping[str, str | None]) -> str:
    """``$X``, ``${X}``, ``${X:-w}``, ``${X-w}``, ``${X:+w}``, ``${X+w}`` with plain words.

    Raises:
        _Undetermined: quotes, escapes, other operators, nested expansions, or
            a variable whose value is not known (None).
    """
    if any(c in value for c in "\"'\\`"):
        raise _Undetermined(f"{value!r} has quotes or escapes")

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        op, word = m.group(2), m.group(3) or ""
        present = name in args
        val = args.get(name)
        if present and val is None:
            raise _Undetermined(f"the value of {name} is not known")
        if op is None:
            return val or ""
        empty = not val
        if op == ":-":
            return word if empty else val or ""
        if op == "-":
            return word if not present else val or ""
        if op == ":+":
            return "" if empty else word
        return word if present else ""

    out = _VAR.sub(one, value)
    if "$" in out:
        raise _Undetermined(f"{value!r} uses a substitution dockgate does not read")
    return out


def _split_flags(rest: str) -> tuple[list[str], str]:
    """Leading ``--flag[=value]`` words, and what follows them."""
    flags: list[str] = []
    rest = rest.strip()
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        flags.append(word)
        rest = rest.lstrip()
    return flags, rest


def _words(rest: str) -> list[str]:
    """Arguments in JSON form when they parse as a JSON array of strings, else shell words."""
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(w, str) for w in parsed):
            return parsed
    return rest.split()


@dataclass
class _State:
    facts: DockerfileFacts
    meta: dict[str, str | None]
    buildargs: Mapping[str, str | None]
    stages: set[str] = field(default_factory=set)
    count: int = 0
    seen_from: bool = False


def _image(st: _State, where: str, raw: str, *, base: bool) -> None:
    try:
        ref = _expand(raw, st.meta) if "$" in raw or any(c in raw for c in "\"'\\`") else raw
    except _Undetermined as e:
        st.facts.problems.append((where, f"image {raw!r} cannot be determined: {e}"))
        return
    low = ref.lower()
    if not ref:
        st.facts.problems.append((where, f"image {raw!r} is empty"))
    elif (low == "scratch" and base) or low in st.stages or (not base and low.isdigit()):
        return
    else:
        st.facts.images.append((where, ref))
        if base:
            st.facts.bases.append((where, ref))


def _instruction(st: _State, line: str, where: str, *, nested: bool = False) -> None:
    keyword, _, rest = line.strip().partition(" ")
    keyword = keyword.lower()
    rest = rest.strip()
    if keyword == "onbuild" and not nested:
        _instruction(st, rest, where + " (ONBUILD)", nested=True)
        return
    flags, rest = _split_flags(rest)
    if keyword == "arg" and not st.seen_from:
        for word in rest.split():
            name, eq, value = word.partition("=")
            if name in st.buildargs:
                st.meta[name] = st.buildargs[name]
            elif eq:
                try:
                    st.meta[name] = _expand(value, st.meta)
                except _Undetermined:
                    st.meta[name] = None
            else:
                st.meta.pop(name, None)
    elif keyword == "from":
        st.seen_from = True
        words = rest.split()
        if not words:
            st.facts.problems.append((where, "FROM names no image"))
            return
        _image(st, where + " FROM", words[0], base=True)
        for flag in flags:
            if "$" in flag:
                st.facts.problems.append((where, f"FROM flag {flag!r} cannot be determined"))
        if len(words) >= 3 and words[1].lower() == "as":
            st.stages.add(words[2].lower())
        st.stages.add(str(st.count))
        st.count += 1
    elif keyword in ("copy", "add"):
        for flag in flags:
            name, _, value = flag[2:].partition("=")
            if name.lower() == "from":
                _image(st, f"{where} {keyword.upper()} --from", value, base=False)
        if keyword == "add":
            for src in _words(rest)[:-1]:
                low = src.lower()
                if "$" in src:
                    st.facts.urls.append((where + " ADD", f"{src} (cannot be determined)"))
                elif "://" in low or low.startswith("git@"):
                    st.facts.urls.append((where + " ADD", src))
    elif keyword == "run":
        for flag in flags:
            name, _, value = flag[2:].partition("=")
            if name.lower() != "mount":
                continue
            for part in value.split(","):
                key, _, val = part.partition("=")
                if key.strip().lower() == "from" and val:
                    _image(st, where + " RUN --mount from", val.strip(), base=False)


def parse(text: str | bytes, buildargs: Mapping[str, str | None] | None = None) -> DockerfileFacts:
    """The facts of a Dockerfile; ``buildargs`` are the build's ``buildargs`` query."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    text = text.removeprefix("\ufeff")
    lines = text.replace("\r\n", "\n").split("\n")
    st = _State(DockerfileFacts(), {}, dict(buildargs or {}))
    escape = "\\"
    i = 0
    # Parser directives, while lines look like them.
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].lstrip())
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        if key == "escape":
            if value not in ("\\", "`"):
                st.facts.problems.append((f"line {i + 1}", f"escape {value!r} is invalid"))
            escape = value
        elif key == "syntax":
            _image(st, f"line {i + 1} # syntax", value, base=False)
        i += 1
    cont = re.compile(re.escape(escape) + r"[ \t]*$")
    logical: list[tuple[int, str]] = []
    while i < len(lines):
        start = i
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text_ = line
        while cont.search(text_) and i < len(lines):
            text_ = cont.sub("", text_)
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1  # blank and comment lines inside a continuation are skipped
            if i < len(lines):
                text_ += lines[i]
                i += 1
        text_ = cont.sub("", text_)
        logical.append((start + 1, text_))
        keyword = text_.strip().partition(" ")[0].lower()
        if keyword in ("run", "copy", "add"):
            for m in _HEREDOC.finditer(text_):
                strip_tabs, word = m.group(1) == "-", m.group(3)
                while i < len(lines):
                    body = lines[i].lstrip("\t") if strip_tabs else lines[i]
                    i += 1
                    if body == word:
                        break
    for number, text_ in logical:
        _instruction(st, text_, f"line {number}")
    # The superset pass: every physical line that reads as an instruction.
    logical_lines = {n for n, _ in logical}
    probe = _State(st.facts, dict(st.meta), st.buildargs, set(st.stages), st.count, True)
    for number, line in enumerate(lines, 1):
        if number in logical_lines:
            continue
        keyword = line.strip().partition(" ")[0].lower()
        if keyword in _KEYWORDS and keyword != "arg":
            _instruction(probe, cont.sub("", line), f"line {number}")
    return st.facts


def triggers(image: str, onbuild: list[str], facts: DockerfileFacts) -> None:
    """Add what a base image's ``ONBUILD`` triggers fetch or name to ``facts``.

    The daemon runs them as instructions of the build that starts ``FROM``
    that image; a trigger may not itself be ``ONBUILD``.
    """
    st = _State(facts, {}, {}, seen_from=True)
    for i, line in enumerate(onbuild):
        _instruction(st, line, f"image {image} ONBUILD[{i}]", nested=True)
