"""Loading policy files: the contract the serve command relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy import PolicyError, PolicyHolder, load_policy
from dockgate.policy.decision import Policy, decide

ROOT = Path(__file__).resolve().parents[2]
PEER = Peer("main", "unix", "@")


def _create(body: object) -> CanonicalRequest:
    ep = Operation("container.create", "POST", "/containers/create", "json")
    return CanonicalRequest("POST", ep, "/containers/create", body=body)


def test_privileged_profile_allows_everything() -> None:
    """The bundled privileged profile allows even a privileged container with the host root bound,
    naming itself as the policy."""
    policy: Policy = load_policy(str(ROOT / "policies" / "privileged.yaml"))
    d = decide(policy, _create({"HostConfig": {"Privileged": True, "Binds": ["/:/host"]}}), PEER)
    assert d.verdict == "allow"
    assert d.policy == "privileged"


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_error_names_file_line_and_field(tmp_path: Path) -> None:
    """A policy value of the wrong type is reported as file:line: field path."""
    path = _write(tmp_path, "name: x\nrules:\n  - id: a\n    privileged: {allow: 1}\n")
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    assert str(e.value).startswith(f"{path}:4: rules[0].privileged.allow:")


def test_unknown_field_is_an_error(tmp_path: Path) -> None:
    """A misspelled control option is an error naming the unknown field and its line, not silently
    ignored."""
    path = _write(tmp_path, "name: x\nrules:\n  - id: a\n    privileged: {alow: false}\n")
    with pytest.raises(PolicyError, match=r":4: rules\[0\]\.privileged: unknown field\(s\) alow"):
        load_policy(path)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    """All problems of a policy file are reported at once (several controls in a rule, duplicate
    ids, a bad mode), not only the first."""
    text = (
        "name: x\nrules:\n  - id: a\n    privileged: {}\n    volumes_from: {}\n"
        "  - id: a\n    privileged: {}\n  - id: b\n    mode: block\n    privileged: {}\n"
    )
    with pytest.raises(PolicyError) as e:
        load_policy(_write(tmp_path, text))
    assert len(e.value.problems) >= 2


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    """A YAML mapping with a key given twice is refused with its line, instead of last-wins."""
    text = "name: x\nrules:\n  - id: a\n    privileged: {allow: false, allow: true}\n"
    with pytest.raises(PolicyError, match=r":4: .*duplicate key"):
        load_policy(_write(tmp_path, text))


def test_semantic_errors_are_located(tmp_path: Path) -> None:
    """Errors found after schema checks (a rule without a control, an inverted port range) are
    located by line too."""
    text = "name: x\nrules:\n  - id: a\n  - id: b\n    ports: {host_ports: ['9-1']}\n"
    with pytest.raises(PolicyError) as e:
        load_policy(_write(tmp_path, text))
    joined = str(e.value)
    assert ":3: rules[0]: a rule needs exactly one control" in joined
    assert ":5: rules[1].ports:" in joined


def test_bad_yaml_is_located(tmp_path: Path) -> None:
    """YAML that does not parse is reported with the file and line."""
    with pytest.raises(PolicyError, match=r"p\.yaml:\d+: \(yaml\)"):
        load_policy(_write(tmp_path, "name: x\nrules:\n  - [\n"))


def test_missing_file(tmp_path: Path) -> None:
    """A policy path that does not exist is a PolicyError saying it cannot be read."""
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(str(tmp_path / "nope.yaml"))


def test_holder_reload_keeps_old_policy_on_error(tmp_path: Path) -> None:
    """Reloading picks up a changed policy file, and a reload that fails keeps the policy in force.
    """
    path = _write(tmp_path, "name: one\nrules: []\n")
    holder = PolicyHolder(path)
    assert holder.current.name == "one"
    _write(tmp_path, "name: two\nrules: []\n")
    holder.reload()
    assert holder.current.name == "two"
    _write(tmp_path, "name: three\nrules: [\n")
    with pytest.raises(PolicyError):
        holder.reload()
    assert holder.current.name == "two"


def test_example_policy_shows_every_control() -> None:
    """policies/example.yaml shows every control with every option the schema defines."""
    from dockgate.policy.schema import CONTROLS  # noqa: PLC0415

    policy = load_policy(str(ROOT / "policies" / "example.yaml"))
    assert {r.control for r in policy.rules} == set(CONTROLS)
    assert "plain-plugin-names" not in {r.id for r in policy.rules}
    for name, schema in CONTROLS.items():
        shown = next(r for r in policy.rules if r.control == name)
        text = (ROOT / "policies" / "example.yaml").read_text()
        for option in schema["properties"]:
            assert f"{option}:" in text, (shown.id, option)


def test_builders_cover_every_control() -> None:
    """Every control in the schema has a builder, and no builder lacks a schema."""
    from dockgate.policy.rules import BUILDERS  # noqa: PLC0415
    from dockgate.policy.schema import CONTROLS  # noqa: PLC0415

    assert set(BUILDERS) == set(CONTROLS)
