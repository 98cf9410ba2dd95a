"""The lists and maps the policy reads entry by entry are capped while the body is
admitted (``maxItems``/``maxProperties`` in dockgate's schemas, set by
``tools/gen_schemas.py``): a decision runs on the event loop, and uncapped a 1 MB
body of 20,000 binds cost it 0.2 s.  One entry over the cap is a 413 naming the
field; the cap itself passes; lists the policy does not read entry by entry
(``Env``, ``Cmd``) stay bounded only by the body's size and member count."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.errors import BodyTooLarge

CTX = ApiContext()
CAP = 512
VERSIONS = ("1.24", "1.41", "1.47", "1.51")


def admit(version: str, target: str, body: Any) -> Any:
    head = admit_head("POST", f"/v{version}{target}".encode(),
                      [(b"content-type", b"application/json")], CTX)
    return admit_body(head, json.dumps(body).encode(), CTX)


def create(host: dict[str, Any]) -> dict[str, Any]:
    return {"Image": "busybox", "HostConfig": host}


CASES: list[tuple[str, str, Any, str]] = [
    ("/containers/create", "HostConfig.Binds", lambda n: create(
        {"Binds": [f"/srv/{i}:/m/{i}:ro" for i in range(n)]}), "1.24"),
    ("/containers/create", "HostConfig.Mounts", lambda n: create(
        {"Mounts": [{"Type": "volume", "Source": f"v{i}", "Target": f"/m/{i}"}
                    for i in range(n)]}), "1.24"),
    ("/containers/create", "HostConfig.CapAdd", lambda n: create({"CapAdd": ["CHOWN"] * n}),
     "1.24"),
    ("/containers/create", "HostConfig.SecurityOpt", lambda n: create(
        {"SecurityOpt": ["no-new-privileges"] * n}), "1.24"),
    ("/containers/create", "HostConfig.VolumesFrom", lambda n: create(
        {"VolumesFrom": [f"c{i}" for i in range(n)]}), "1.24"),
    ("/containers/create", "HostConfig.Links", lambda n: create(
        {"Links": [f"c{i}:a{i}" for i in range(n)]}), "1.24"),
    ("/containers/create", "HostConfig.Devices", lambda n: create(
        {"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": f"/dev/n{i}"}
                     for i in range(n)]}), "1.24"),
    ("/containers/create", "HostConfig.Tmpfs", lambda n: create(
        {"Tmpfs": {f"/t{i}": "" for i in range(n)}}), "1.24"),
    ("/containers/create", "HostConfig.Sysctls", lambda n: create(
        {"Sysctls": {f"net.ipv4.x{i}": "1" for i in range(n)}}), "1.24"),
    ("/containers/create", "HostConfig.Mounts[0].TmpfsOptions.Options", lambda n: create(
        {"Mounts": [{"Type": "tmpfs", "Target": "/t",
                     "TmpfsOptions": {"Options": [["noexec"]] * n}}]}), "1.47"),
    # Read entry by entry by the policy (facts: port bindings, network modes) and, for
    # each endpoint and each of its links, an inspection of the daemon (joins).
    ("/containers/create", "HostConfig.PortBindings", lambda n: create(
        {"PortBindings": {f"{i}/tcp": [{"HostPort": ""}] for i in range(n)}}), "1.24"),
    ("/containers/create", "HostConfig.PortBindings.80/tcp", lambda n: create(
        {"PortBindings": {"80/tcp": [{"HostPort": ""}] * n}}), "1.24"),
    ("/containers/create", "NetworkingConfig.EndpointsConfig", lambda n: {
        "Image": "b", "NetworkingConfig": {"EndpointsConfig": {f"n{i}": {} for i in range(n)}}},
     "1.24"),
    ("/containers/create", "NetworkingConfig.EndpointsConfig.n.Links", lambda n: {
        "Image": "b", "NetworkingConfig": {"EndpointsConfig": {"n": {
            "Links": [f"c{i}:a{i}" for i in range(n)]}}}}, "1.24"),
    ("/containers/abc/update", "Devices", lambda n: {
        "Devices": [{"PathOnHost": "/dev/null"}] * n}, "1.24"),
    ("/services/create", "TaskTemplate.ContainerSpec.CapabilityAdd", lambda n: {
        "TaskTemplate": {"ContainerSpec": {"Image": "b", "CapabilityAdd": ["CHOWN"] * n}}},
     "1.41"),
    ("/services/create", "TaskTemplate.ContainerSpec.Mounts", lambda n: {
        "TaskTemplate": {"ContainerSpec": {"Image": "b", "Mounts": [
            {"Type": "volume", "Source": f"v{i}", "Target": f"/m/{i}"} for i in range(n)]}}},
     "1.24"),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("target", "field", "body", "since"), CASES,
                         ids=[c[1] for c in CASES])
def test_a_list_the_policy_reads_is_capped(version: str, target: str, field: str,
                                           body: Any, since: str) -> None:
    """The cap passes and one entry more is a 413 naming the field, at every API version
    that has the field."""
    if tuple(map(int, version.split("."))) < tuple(map(int, since.split("."))):
        pytest.skip(f"{field} is not in API {version}")
    assert admit(version, target, body(CAP)).body is not None
    with pytest.raises(BodyTooLarge, match=f"^{re.escape(field)} has more than {CAP} entries"):
        admit(version, target, body(CAP + 1))


def test_lists_the_policy_does_not_read_entry_by_entry_are_not_capped() -> None:
    """Env and Cmd of thousands of entries are admitted (only the body cap and the
    member count bound them)."""
    request = admit("1.47", "/containers/create",
                    {"Image": "b", "Env": [f"A{i}=x" for i in range(5000)], "Cmd": ["x"] * 5000})
    assert len(request.body["Env"]) == 5000 and len(request.body["Cmd"]) == 5000
