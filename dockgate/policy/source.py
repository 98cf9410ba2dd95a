"""Reading policy files: YAML with line numbers, then the JSON schema.

An operator who gets a policy wrong must be told where, so every problem is
reported as ``file:line: field: what``.  PyYAML's constructors forget where a
value came from, so this module walks the composed node tree itself and keeps
a side table from each value's JSON path to its line.  It also refuses
duplicate mapping keys, which PyYAML would silently resolve to the last one:
a policy that says ``allow: false`` and later ``allow: true`` is a mistake, not
a choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import yaml

Path = tuple[str | int, ...]


class PolicyError(Exception):
    """An invalid policy file (or test file); ``problems`` lists every finding.

    The message is the problems joined by newlines, each ``file:line: field: why``.
    """

    def __init__(self, problems: Iterable[str]):
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


def dotted(path: Path) -> str:
    """``("rules", 3, "privileged")`` → ``rules[3].privileged`` (how users name fields)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


@dataclass
class Document:
    """A parsed YAML document plus where each of its values came from."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)

    def problem(self, path: Path, why: str) -> str:
        """Format one problem as ``file:line: field: why``."""
        return f"{self.file}:{self.line(path)}: {dotted(path)}: {why}"


def _walk(
    loader: yaml.SafeLoader, node: yaml.Node, path: Path, doc: Document, problems: list[str]
) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                problems.append(
                    f"{doc.file}:{key_node.start_mark.line + 1}: {dotted((*path, key))}: "
                    "duplicate key"
                )
            out[key] = _walk(loader, value_node, (*path, key), doc, problems)
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, file: str) -> Document:
    """Parse one YAML document, recording lines; raise PolicyError on bad YAML."""
    doc = Document(file, None)
    problems: list[str] = []
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _walk(loader, node, (), doc, problems)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError([f"{file}:{line}: (yaml): {e.problem or e}"]) from None
    except yaml.YAMLError as e:
        raise PolicyError([f"{file}:1: (yaml): {e}"]) from None
    finally:
        loader.dispose()
    if problems:
        raise PolicyError(problems)
    return doc


def read_yaml(path: str) -> Document:
    """Read and parse ``path``; an unreadable file is a PolicyError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError([f"{path}:1: (file): cannot read: {e}"]) from None
    return parse_yaml(text, path)


def schema_problems(doc: Document, schema: dict[str, Any]) -> list[str]:
    """Every schema violation in ``doc``, located, in file order."""
    validator = jsonschema.Draft202012Validator(schema)
    found: list[tuple[int, str]] = []
    for err in validator.iter_errors(doc.data):
        leaf = _deepest(err)
        path: Path = tuple(leaf.absolute_path)
        found.append((doc.line(path), doc.problem(path, _say(leaf))))
    found.sort(key=lambda t: t[0])
    return [text for _, text in found]


def _deepest(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For ``oneOf``/``anyOf`` failures, the sub-error that got furthest is the useful one."""
    best = err
    for sub in err.context or ():
        cand = _deepest(sub)
        if len(cand.absolute_path) > len(best.absolute_path):
            best = cand
    return best


def _say(err: jsonschema.ValidationError) -> str:
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = sorted(set(err.instance) - set(schema.get("properties", {})))
        return f"unknown field(s) {', '.join(extra)}"
    if err.validator == "enum" and isinstance(err.validator_value, list):
        return f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"
    return str(err.message)
