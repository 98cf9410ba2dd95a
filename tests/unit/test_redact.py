"""redact: what a ``redact`` rule leaves of inspect answers and the event stream."""

from __future__ import annotations

import json

from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy import load_policy
from dockgate.policy.redact import EventRedactor, Redaction, rules_for, transform
from dockgate.policy.rules import compile_policy
from dockgate.policy.source import parse_yaml

ALL = Redaction({"env": True, "exec_commands": True})
PEER = Peer("main", "unix", "@", uid=1000, gid=1000)


def test_all_env_values_are_redacted_keeping_names_and_shape() -> None:
    """Config.Env keeps its length, order and names; only values go."""
    rewrite = transform([ALL], "container.inspect")
    assert rewrite is not None
    got = rewrite({"Id": "x", "Config": {"Env": ["PATH=/bin", "DB_PASSWORD=hunter2", "X"],
                                        "Image": "a"}})
    assert got == {"Id": "x", "Config": {"Env": ["PATH=<redacted>", "DB_PASSWORD=<redacted>",
                                                  "X"], "Image": "a"}}


def test_env_by_name_pattern() -> None:
    """``env_names`` redacts matching names only."""
    rewrite = transform([Redaction({"env_names": ["*PASSWORD*"]})], "container.inspect")
    assert rewrite is not None
    got = rewrite({"Config": {"Env": ["PATH=/bin", "DB_PASSWORD=a=b"]}})
    assert got["Config"]["Env"] == ["PATH=/bin", "DB_PASSWORD=<redacted>"]


def test_service_and_task_lists_are_redacted_per_item() -> None:
    """In service lists each item's container Env is redacted, and items without a spec are left
    alone."""
    rewrite = transform([ALL], "service.list")
    assert rewrite is not None
    items = [{"Spec": {"TaskTemplate": {"ContainerSpec": {"Env": ["A=1"]}}}}, {"Spec": None}]
    assert rewrite(items)[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=<redacted>"]


def test_exec_inspect_arguments_are_redacted() -> None:
    """exec inspect answers have their process arguments redacted."""
    rewrite = transform([ALL], "exec.inspect")
    assert rewrite is not None
    got = rewrite({"ProcessConfig": {"entrypoint": "sh", "arguments": ["-c", "pw=1"]}})
    assert got["ProcessConfig"] == {"entrypoint": "sh", "arguments": ["<redacted>"] * 2}


def test_nothing_to_do_is_none() -> None:
    """When no rule redacts anything on an endpoint, transform returns None (the answer passes
    untouched)."""
    assert transform([Redaction({"exec_commands": True})], "container.inspect") is None
    assert transform([ALL], "container.list") is None


def event(action: str) -> bytes:
    return json.dumps({"status": action, "id": "c", "Type": "container", "Action": action,
                       "Actor": {"ID": "c", "Attributes": {"execID": "e"}}}).encode() + b"\n"


def test_exec_events_lose_their_command_line_wherever_the_reads_split() -> None:
    """exec_create/exec_start actions are rewritten line by line; other lines pass
    byte for byte; any split of the stream gives the same bytes."""
    stream = event("start") + event("exec_create: sh -c echo s3cret") + event(
        "exec_start: sh -c echo s3cret") + event("exec_die")
    for step in (1, 7, 64, len(stream)):
        r = EventRedactor([ALL])
        out = b"".join(r.feed(stream[i:i + step]) for i in range(0, len(stream), step))
        out += r.finish()
        assert b"s3cret" not in out
        lines = out.splitlines(keepends=True)
        assert lines[0] == event("start") and lines[3] == event("exec_die")
        for line, action in ((lines[1], "exec_create"), (lines[2], "exec_start")):
            got = json.loads(line)
            assert got["Action"] == got["status"] == f"{action}: <redacted>"
            assert got["Actor"]["Attributes"] == {"execID": "e"}


def test_a_partial_line_is_held_only_until_its_end() -> None:
    """The event redactor holds a partial event line only until its end arrives, then passes it."""
    r = EventRedactor([ALL])
    assert r.feed(event("start")[:10]) == b""
    assert r.feed(event("start")[10:]) == event("start")


def test_readonly_redacts_by_default_and_exemptions_apply() -> None:
    """readonly ships a redact rule; ``exempt`` peers get the answer as it is."""
    ep = Operation("container.inspect", "GET", "/containers/{id}/json")
    req = CanonicalRequest("GET", ep, "/containers/x/json", params={"id": "x"})
    assert rules_for(load_policy("policies/readonly.yaml"), req, PEER)
    assert not rules_for(load_policy("policies/baseline.yaml"), req, PEER)
    text = "name: t\nrules:\n  - id: r\n    exempt: {uids: [1000]}\n    redact: {env: true}\n"
    assert not rules_for(compile_policy(parse_yaml(text, "t.yaml")), req, PEER)
