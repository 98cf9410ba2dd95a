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
  ``https://``; anything with ``://``, an SSH ``user@host:path`` or BuildKit's
  scheme-less ``github.com/`` git form is counted, fail closed);
* **frontends**: the ``# syntax=`` image, found as BuildKit's
  ``DetectSyntax`` finds it (after a byte-order mark and a ``#!`` line, with
  ``#`` or ``//`` comments, or a JSON document's ``syntax`` member) and as the
  directive loop below reads it: BuildKit hands the build to that image;
* **BuildKit's RUN flags**: ``--network=`` (``networks``), ``--security=``
  (``security``) and ``--device=`` (``devices``); a value dockgate does not
  know is a problem; cache mounts (``--mount=type=cache``: ``caches``);
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
_GO_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$")
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
    frontends: list[tuple[str, str]] = field(default_factory=list)
    """``# syntax=`` images (also among ``images``): BuildKit runs them as the frontend."""
    networks: list[tuple[str, str]] = field(default_factory=list)
    """``RUN --network=`` values (BuildKit): ``default``, ``none`` or ``host``."""
    security: list[tuple[str, str]] = field(default_factory=list)
    """``RUN --security=`` values (BuildKit): ``sandbox`` or ``insecure``."""
    devices: list[tuple[str, str]] = field(default_factory=list)
    """``RUN --device=`` values (BuildKit): CDI devices."""
    caches: list[tuple[str, str]] = field(default_factory=list)
    """``RUN --mount=type=cache`` (BuildKit): the cache id (else the target), a directory
    the daemon shares by id with every build; a ``type`` dockgate cannot read counts."""


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


_SCP_GIT = re.compile(r"[a-zA-Z0-9_-]+@[a-zA-Z0-9.-]+:")
"""``user@host:path``: a git remote over SSH for BuildKit's ``ADD`` (moby/buildkit
``util/sshutil``: any user, not only ``git@``)."""
_SEPARATOR = re.compile(r"[\t\v\f\r ]+")
"""What separates an instruction from its arguments, and flags from each other, in
BuildKit's parser (``reWhitespace``): a tab is as good as a space."""


_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"
"""Go's ``unicode.IsSpace``, which BuildKit strips before it tells a comment or a blank
line (Python's ``str.strip`` also strips ``\\x1c``-``\\x1f``, which Go does not)."""


def _blank_or_comment(line: str) -> bool:
    """Whether BuildKit's parser skips ``line`` (also inside a continuation)."""
    rest = line.lstrip(_GO_SPACE)
    return not rest or rest.startswith("#")


def _split_word(text: str) -> tuple[str, str]:
    """The first word of ``text`` (leading whitespace stripped) and the rest."""
    parts = _SEPARATOR.split(text.strip(), maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _split_flags(rest: str) -> tuple[list[str], str]:
    """Leading ``--flag[=value]`` words, and what follows them."""
    flags: list[str] = []
    rest = rest.strip()
    while rest.startswith("--"):
        word, rest = _split_word(rest)
        flags.append(word)
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


def _frontend(st: _State, where: str, ref: str) -> None:
    """A ``# syntax=`` image: an image the daemon pulls, and runs as the build's frontend."""
    if any(ref == seen for _, seen in st.facts.frontends):
        return
    st.facts.frontends.append((where, ref))
    _image(st, where, ref, base=False)


def syntax_directive(data: bytes) -> tuple[str, str] | None:
    """``(image, cmdline)`` of the syntax directive as BuildKit's ``DetectSyntax`` reads it.

    A leading byte-order mark and a ``#!`` first line are skipped; the
    directives are the leading lines that start (no blank before) with the
    comment marker ``#`` followed by ``name=value`` for a known name; if none
    names ``syntax``, the same with ``//``; then a JSON object's ``syntax``
    string.  The image is the value up to its first blank.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    first, nl, rest = data.partition(b"\n")
    if first.startswith(b"#!"):
        data = rest if nl else b""
    text = data.decode("utf-8", "surrogateescape")
    for marker in ("#", "//"):
        seen: set[str] = set()
        for physical in text.split("\n"):  # Go's bufio.ScanLines: \n, one \r dropped
            line = physical.removesuffix("\r")
            if not line.startswith(marker):
                break
            m = _GO_DIRECTIVE.match(line[len(marker):].lstrip())
            if not m or m.group(1).lower() not in ("syntax", "check", "escape"):
                break
            key = m.group(1).lower()
            if key in seen:
                break
            seen.add(key)
            if key == "syntax":
                return m.group(2).split(" ", 1)[0], m.group(2)
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    value = doc.get("syntax") if isinstance(doc, dict) else None
    return (value, value) if isinstance(value, str) else None


def _instruction(st: _State, line: str, where: str, *, nested: bool = False) -> None:
    keyword, rest = _split_word(line)
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
            # --platform only picks a variant of the named image; any other flag
            # with a variable could mean something dockgate does not read.
            name = flag[2:].partition("=")[0].lower()
            if "$" in flag and name != "platform":
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
                elif "://" in low or low.startswith("github.com/") or _SCP_GIT.match(src):
                    st.facts.urls.append((where + " ADD", src))
    elif keyword == "run":
        for flag in flags:
            _run_flag(st, where, flag)


_RUN_VALUES = {
    "network": ("networks", ("default", "none", "host")),
    "security": ("security", ("sandbox", "insecure")),
}


def _run_flag(st: _State, where: str, flag: str) -> None:
    """One ``RUN --flag=value``: mounts from images, and BuildKit's network, security, devices."""
    name, _, value = flag[2:].partition("=")
    name = name.lower()
    if name == "mount":
        if any(c in value for c in "\"'"):
            why = f"RUN --mount {value!r} has quotes dockgate does not read"
            st.facts.problems.append((where, why))
            return
        fields = [(k.strip().lower(), v.strip()) for k, _, v in
                  (part.partition("=") for part in value.split(","))]
        for key, val in fields:
            if key == "from" and val:
                _image(st, where + " RUN --mount from", val, base=False)
        # BuildKit lowercases the type, expands variables in it (newer frontends), and
        # takes the last one given: any type that is or may be ``cache`` counts.
        kinds = [val.lower() for key, val in fields if key == "type"]
        if any(k == "cache" or "$" in k for k in kinds):
            names = dict(fields)
            st.facts.caches.append((where + " RUN --mount type=cache",
                                    names.get("id") or names.get("target") or
                                    names.get("dst") or names.get("destination") or ""))
    elif name in _RUN_VALUES:
        kind, known = _RUN_VALUES[name]
        if value.lower() not in known:
            st.facts.problems.append((where, f"RUN --{name}={value} is not a value dockgate knows"))
        getattr(st.facts, kind).append((where + f" RUN --{name}", value.lower()))
    elif name == "device":
        st.facts.devices.append((where + " RUN --device", value))


def _read_instructions(st: _State, lines: list[str], i: int, escape: str, *,
                       heredocs: bool) -> None:
    """The instructions from line ``i`` on (continuations with ``escape``, heredoc
    bodies skipped if ``heredocs``), then every physical line that reads as an
    instruction."""
    cont = re.compile(re.escape(escape) + r"[ \t]*$")
    logical: list[tuple[int, str]] = []
    while i < len(lines):
        start = i
        line = lines[i]
        i += 1
        if _blank_or_comment(line):
            continue
        text_ = line
        while cont.search(text_) and i < len(lines):
            text_ = cont.sub("", text_)
            while i < len(lines) and _blank_or_comment(lines[i]):
                i += 1  # blank and comment lines inside a continuation are skipped
            if i < len(lines):
                text_ += lines[i]
                i += 1
        text_ = cont.sub("", text_)
        logical.append((start + 1, text_))
        keyword = _split_word(text_)[0].lower()
        if heredocs and keyword in ("run", "copy", "add"):
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
        keyword = _split_word(line)[0].lower()
        if keyword in _KEYWORDS and keyword != "arg":
            _instruction(probe, cont.sub("", line), f"line {number}")


def parse(text: str | bytes, buildargs: Mapping[str, str | None] | None = None) -> DockerfileFacts:
    """The facts of a Dockerfile; ``buildargs`` are the build's ``buildargs`` query."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    text = text.removeprefix("\ufeff")
    # Lines end at \n; every \r before it goes (Go's bufio lines, BuildKit's trimNewline).
    lines = [line.rstrip("\r") for line in text.split("\n")]
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
            _frontend(st, f"line {i + 1} # syntax", value.split(" ", 1)[0])
        i += 1
    found = syntax_directive(raw)
    if found is not None:
        _frontend(st, "# syntax", found[0])
    _read_instructions(st, lines, i, escape, heredocs=True)
    # The readings a daemon could make that this one does not: without heredocs
    # (engine 20.10's builtin frontend and classic builder have none, and
    # BuildKit's shell lexer finds fewer than the pattern here, so a heredoc
    # read here could hide instructions continued over several lines); and,
    # where readers disagree on which escape directive counts (an unknown
    # directive ends BuildKit's directives, engine 20.10's parser knows only
    # escape), with the other escape character.
    readings = [(escape, False)]
    other = "`" if escape == "\\" else "\\"
    if any(line.rstrip(" \t").endswith(other) for line in lines[i:]):
        readings += [(other, True), (other, False)]
    for esc, heredocs in readings:
        alt = _State(DockerfileFacts(), {}, st.buildargs)
        _read_instructions(alt, lines, i, esc, heredocs=heredocs)
        for name in DockerfileFacts.__dataclass_fields__:
            mine = getattr(st.facts, name)
            mine.extend(x for x in getattr(alt.facts, name) if x not in mine)
    return st.facts


def triggers(image: str, onbuild: list[str], facts: DockerfileFacts) -> None:
    """Add what a base image's ``ONBUILD`` triggers fetch or name to ``facts``.

    The daemon runs them as instructions of the build that starts ``FROM``
    that image; a trigger may not itself be ``ONBUILD``.  Each trigger is
    parsed by the daemon as a Dockerfile of its own (moby ``processOnBuild``,
    BuildKit's ``initOnBuildTriggers``: ``parser.Parse`` of its text), which
    must hold one instruction; a trigger's text, which a commit's ``OnBuild``
    sets verbatim, may put it over several lines (``COPY \\`` and ``--from=X``
    on the next, or after a comment or an escape directive), so a trigger that
    holds a line break is read as a whole Dockerfile, every reading ``parse``
    makes, not as one line.
    """
    st = _State(facts, {}, {}, seen_from=True)
    for i, line in enumerate(onbuild):
        where = f"image {image} ONBUILD[{i}]"
        if "\n" not in line:
            _instruction(st, line, where, nested=True)
            continue
        read = parse(line)
        for name in DockerfileFacts.__dataclass_fields__:
            mine = getattr(facts, name)
            mine.extend((f"{where} {w}", v) for w, v in getattr(read, name))
