"""Policy typos fail at load with file:line: endpoint globs that match no
endpoint, unknown capabilities, relative or non-normalised host paths,
unknown log drivers and ulimits, unknown field paths in the closed world."""

from __future__ import annotations

import pytest

from dockgate.policy import PolicyError
from dockgate.policy.rules import compile_policy
from dockgate.policy.source import parse_yaml


def problems(rules: str) -> str:
    text = "name: t\nrules:\n" + rules
    with pytest.raises(PolicyError) as e:
        compile_policy(parse_yaml(text, "p.yaml"))
    return str(e.value)


@pytest.mark.parametrize(("rule", "expect"), [
    ('  - id: a\n    endpoints: {deny: ["exec.crate"]}\n',
     "p.yaml:4: rules[0].endpoints.deny[0]: 'exec.crate' matches no endpoint id"),
    ('  - id: a\n    endpoints:\n      allow: [container.*, "volume.craete"]\n',
     "p.yaml:5: rules[0].endpoints.allow[1]: 'volume.craete' matches no endpoint id"),
    ('  - id: a\n    applies_to: [containers.*]\n    privileged: {allow: false}\n',
     "p.yaml:4: rules[0].applies_to[0]: 'containers.*' matches no endpoint id"),
    ("  - id: a\n    capabilities: {add: [NET_ADMN]}\n",
     "p.yaml:4: rules[0].capabilities.add[0]: 'NET_ADMN' is not a Linux capability"),
    ("  - id: a\n    host_paths: {allow: [srv/data]}\n",
     "p.yaml:4: rules[0].host_paths.allow[0]: 'srv/data' is not an absolute path"),
    ("  - id: a\n    host_paths: {allow: [/srv/../etc]}\n",
     "'/srv/../etc' is not a normalised path (write '/etc')"),
    ("  - id: a\n    devices: {allow: [/dev//fuse]}\n", "is not a normalised path"),
    ("  - id: a\n    log_drivers: {allow: [json_file]}\n", "unknown log driver 'json_file'"),
    ("  - id: a\n    ulimits: {allow: [nofiles]}\n", "unknown ulimit 'nofiles'"),
    ("  - id: a\n    fields: {allow: [HostConfig.Anotations]}\n",
     "'HostConfig.Anotations' is not a classified field path"),
])
def test_typos_are_errors(rule: str, expect: str) -> None:
    """Each typo is refused with the file, the line and what is wrong."""
    assert expect in problems(rule)


def test_correct_spellings_load() -> None:
    """The same options spelt right load (so the errors above are about the typos)."""
    text = ("name: t\nrules:\n"
            "  - id: a\n    endpoints: {deny: [exec.create, 'plugin.*']}\n"
            "  - id: b\n    capabilities: {add: [NET_ADMIN, cap_chown, ALL]}\n"
            "  - id: c\n    host_paths: {allow: [/srv/data, '/home/*/x']}\n"
            "  - id: d\n    fields: {allow: [HostConfig.Annotations, '?remote']}\n")
    assert len(compile_policy(parse_yaml(text, "p.yaml")).rules) == 5
