"""The pure pieces behind the operator's view: access lines, principal naming, listener
checks made before binding, bounded denials listing every failed rule, docker-socket-proxy
variables that do nothing, and the terminal filter of `audit play` across frame edges."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace

import pytest
from support.auditlog import PEER, canonical, event

from dockgate.audit.schema import principal_of
from dockgate.audit.session import TerminalFilter
from dockgate.model import Decision
from dockgate.policy import load_policy
from dockgate.policy.denial import DENIAL_CHARS, DENIAL_LINES
from dockgate.service import compat
from dockgate.service.listeners import DelegatedListenerSpec, parse_listener, plain_tcp_loopback
from dockgate.service.oplog import AccessLog, millis

DENY = Decision("deny", "baseline", "no-privileged", "denied by policy baseline rule x")


def access_line(log_format: str = "text", **changes: object) -> str:
    out = io.StringIO()
    access = AccessLog(out, log_format)  # type: ignore[arg-type]
    request = canonical("POST", "/v1.41/containers/create?name=pw0rd")
    access(event(request, stage="RequestDecided", decision=DENY))
    assert out.getvalue() == "", "only the last stage of an exchange is logged"
    access(event(request, stage="ResponseComplete", decision=DENY, status=403,
                 duration=0.0123, **changes))
    return out.getvalue()


def test_access_line_text_and_json() -> None:
    """One line per exchange: method, path without its query, caller, tenant, decision,
    rule, status and duration; the JSON form carries the same as fields."""
    line = access_line(tenant="team-a")
    assert line.endswith("\n") and line.count("\n") == 1
    assert ("[dockgate.access#info] POST /v1.41/containers/create caller=uid:1000 "
            "tenant=team-a decision=deny rule=no-privileged status=403 duration=12.3ms") in line
    assert "pw0rd" not in line
    record = json.loads(access_line("json"))
    assert record["caller"] == "uid:1000" and record["rule"] == "no-privileged"
    assert record["path"] == "/v1.41/containers/create" and record["status"] == 403


def test_access_line_is_stamped_with_the_exchanges_end() -> None:
    """The text line's time stamp is the local time of the event it logs (the end of the
    exchange), not of the moment the line is formatted."""
    line = access_line()
    assert line.startswith(time.strftime("%Y-%m-%dT%H:%M:%S%z ", time.localtime(1767225600.25)))


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0.0"), (0.0123, "12.3"), (0.00125, "1.3"), (0.00124, "1.2"), (0.000049, "0.0"),
    (0.00005, "0.1"), (1.23456, "1234.6"), (0.999951, "1000.0"), (86399.999999, "86400000.0"),
    (86400.0, "86400000.0"), (-0.002, "-2.0"), (float("inf"), "inf"), (float("nan"), "nan"),
])
def test_access_duration_in_milliseconds(seconds: float, text: str) -> None:
    """The access line's duration is milliseconds to one decimal with halves of a tenth
    rounded up; outside a day, negative or not finite it is the float's own format."""
    assert millis(seconds) == text


def test_principal_is_the_user_name_on_unix_and_the_cn_on_tls() -> None:
    """`bob` over a unix socket and `CN=bob` over TLS are the same principal; a uid
    without a name stays `uid:N`; plain TCP has none."""
    assert principal_of(replace(PEER, user="bob")) == "bob"
    assert principal_of(replace(PEER, transport="tls", uid=None, principal="bob")) == "bob"
    assert principal_of(PEER) == "uid:1000"
    assert principal_of(replace(PEER, transport="tcp", uid=None, gid=None)) is None


@pytest.mark.parametrize(("text", "why"), [
    ("tcp:99999", "port must be between 1 and 65535"),
    ("tcp:abc", "is not a number"),
    ("tcp:0", "port must be between"),
    ("tcp6:2375:backlog=x", "is not a number"),
    ("tcp:2375:interfase=lo", "unknown option"),
    ("tcp:", "exactly one port"),
])
def test_tcp_listeners_are_checked_before_binding(text: str, why: str) -> None:
    """What Twisted would only fail on at bind time is a usage error at parse time."""
    with pytest.raises(ValueError, match=why):
        parse_listener(text)


@pytest.mark.parametrize(("text", "loopback"), [
    ("tcp:2375", True), ("tcp6:2375", True), ("tcp:2375:interface=127.0.0.2", True),
    ("tcp:2375:interface=0.0.0.0", False), ("tcp6:2375:interface=\\:\\:", False),
    ("tcp:2375:interface=10.0.0.1", False), ("systemd:domain=UNIX:name=d", None),
])
def test_plain_tcp_loopback(text: str, loopback: bool | None) -> None:
    """Which plain listeners are open to the network (those need --insecure-listen)."""
    spec = parse_listener(text)
    assert isinstance(spec, DelegatedListenerSpec)
    assert plain_tcp_loopback(spec) is loopback


def test_a_denial_lists_every_failed_rule_within_bounds() -> None:
    """Each failed rule is a line of the denial; many findings are cut to a bounded
    message that says how many more there are."""
    from dockgate.model import Peer  # noqa: PLC0415
    from dockgate.policy.cases import request_from  # noqa: PLC0415

    policy = load_policy("policies/restricted.yaml")
    peer = Peer("l", "unix", "a", uid=1000, gid=1000)
    reason = policy.decide(request_from({"endpoint": "container.create",
                                         "body": {"Image": "busybox"}}), peer).reason
    lines = reason.splitlines()
    assert lines[0].startswith("denied by policy restricted rule capabilities:")
    assert len(lines) >= 4 and all(x.startswith("also rule ") for x in lines[1:])
    body = {"Image": "busybox", "HostConfig": {
        "Privileged": True, "CapAdd": [f"CAP_{i}" for i in range(40)],
        "Binds": [f"/etc/{'x' * 300}{i}:/m{i}" for i in range(30)],
        "Devices": [{"PathOnHost": f"/dev/sd{i}", "PathInContainer": "/d"} for i in range(9)]}}
    reason = policy.decide(request_from({"endpoint": "container.create", "body": body}),
                           peer).reason
    lines = reason.splitlines()
    assert len(lines) <= DENIAL_LINES + 1 and len(reason) <= DENIAL_CHARS + 400
    assert lines[-1].startswith("and ") and "dockgate policy explain" in lines[-1]


def test_compat_env_names_misspelt_variables_and_takes_grpc() -> None:
    """A variable close to a known one is reported with the one it probably meant, a
    non-boolean value is reported, unrelated variables are not; GRPC=1 opens /grpc."""
    warnings = compat.unknown_variables({"CONTAINER": "1", "ALLOW_RESTART": "1",
                                         "POST": "maybe", "PATH": "/bin", "HOME": "/root"})
    assert any("CONTAINER is not" in w and "CONTAINERS" in w for w in warnings)
    assert any("ALLOW_RESTART" in w and "ALLOW_RESTARTS" in w for w in warnings)
    assert any("POST='maybe'" in w for w in warnings) and len(warnings) == 3
    assert "build.grpc" in compat.allowed_endpoints({"GRPC": "1", "POST": "1"})
    assert "build.grpc" not in compat.allowed_endpoints({"GRPC": "1"})
    assert "build.grpc" not in compat.allowed_endpoints({"POST": "1", "BUILD": "1"})


def test_terminal_filter_handles_sequences_split_across_frames() -> None:
    """An OSC string or a query split over several frames is still dropped whole, a
    colour sequence split the same way still passes, and so does split UTF-8."""
    safe = TerminalFilter()
    chunks = [b"a\x1b]52;c;", b"ZXZpbA", b"==\x07b\x1b[3", b"1mc\x1b[", b"6nd\xe2\x82", b"\xac"]
    assert b"".join(safe.feed(c) for c in chunks) == "a" "b\x1b[31mcd\u20ac".encode()
    assert safe.dropped == 2
    assert TerminalFilter().feed(b"\xc2\x9b6n\x07\x00ok\t\r\n\x08") == b"6nok\t\r\n\x08"


def test_serve_help_names_every_listener_form() -> None:
    """`dockgate serve --help` shows each listener type, tls: included, and the switches
    an operator meets at startup."""
    from support.cli import dockgate  # noqa: PLC0415

    result = dockgate("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for form in ("unix:/path", "tcp:PORT", "tls:PORT:cert=FILE:key=FILE:ca=FILE",
                 "systemd:domain=UNIX:name=NAME", "--insecure-listen", "--access-log"):
        assert form in text, form


def test_config_needs_insecure_listen_for_open_tcp(tmp_path: object) -> None:
    """A config file with a plain TCP listener off loopback is refused (file:line, the
    fix named) unless it says ``insecure_listen: true``; then serve takes the flag."""
    from pathlib import Path  # noqa: PLC0415

    from dockgate.policy.source import PolicyError  # noqa: PLC0415
    from dockgate.service.config import load_config  # noqa: PLC0415

    path = Path(str(tmp_path)) / "c.yaml"
    path.write_text("listeners:\n  - {tcp: 2375, interface: 0.0.0.0}\n")
    with pytest.raises(PolicyError, match=r"c.yaml:2: listeners\[0\]: plain TCP .* "
                                          "insecure_listen: true"):
        load_config(str(path))
    path.write_text("listeners:\n  - {tcp: 2375, interface: 0.0.0.0}\ninsecure_listen: true\n"
                    "access_log: false\n")
    config = load_config(str(path))
    assert config.options["insecure-listen"] == 1 and config.options["access-log"] == "off"
