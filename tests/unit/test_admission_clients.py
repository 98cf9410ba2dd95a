"""Requests that real clients send must all be admitted (a refusal is a bug).

The targets, queries and bodies follow what the clients' source builds: the
docker CLI 28 and 20.10 (moby client package), compose 2.40 and buildx 0.29
(same client package), and docker-py 7 (``docker/api/*.py``).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from dockgate.admission.admit import ApiContext, admit_body, admit_head

CTX = ApiContext(daemon_version="1.51")
JSON = [(b"content-type", b"application/json"), (b"host", b"api.moby.localhost")]
UPGRADE = [(b"connection", b"Upgrade"), (b"upgrade", b"tcp"), (b"host", b"x")]


def q(value: object) -> str:
    return quote(json.dumps(value, separators=(",", ":")), safe="")


COMPOSE_FILTERS = q({"label": {"com.docker.compose.project=demo": True,
                               "com.docker.compose.oneoff=False": True}})

HEADS = [
    ("HEAD", "/_ping"),
    ("GET", "/_ping"),
    ("GET", "/version"),
    ("GET", "/v1.51/version"),
    ("GET", "/v1.41/info"),
    ("GET", "/v1.51/containers/json?all=1&filters=" + COMPOSE_FILTERS),
    ("GET", "/v1.41/containers/json?all=1&filters=" + q({"label": ["a=b"]})),
    ("GET", "/v1.44/containers/json?all=0&size=0&trunc_cmd=0&limit=-1"),  # docker-py
    ("POST", "/v1.51/containers/create?name=web"),
    ("POST", "/v1.51/containers/create?name=web&platform=linux%2Famd64"),
    ("POST", "/v1.51/containers/abc123/start"),
    ("POST", "/v1.51/containers/abc123/wait?condition=next-exit"),
    ("POST", "/v1.51/containers/abc123/resize?h=24&w=80"),
    ("POST", "/v1.51/containers/abc123/stop?t=10"),
    ("POST", "/v1.51/containers/abc123/stop?signal=SIGTERM&t=10"),
    ("POST", "/v1.51/containers/abc123/kill?signal=KILL"),
    ("POST", "/v1.51/containers/abc123/restart?t=5"),
    ("DELETE", "/v1.51/containers/abc123?force=1&v=1"),
    ("DELETE", "/v1.44/containers/abc123?v=False&link=False&force=True"),  # docker-py
    ("GET", "/v1.51/containers/abc123/json"),
    ("GET", "/v1.51/containers/abc123/json?size=1"),
    ("GET", "/v1.51/containers/abc123/logs?follow=1&stderr=1&stdout=1&tail=all"),
    ("GET", "/v1.51/containers/abc123/logs?since=1700000000.000000000&stdout=1&timestamps=1"),
    ("GET", "/v1.51/containers/abc123/stats?stream=0&one-shot=1"),
    ("GET", "/v1.51/containers/abc123/top?ps_args=-ef"),
    ("POST", "/v1.51/containers/abc123/exec"),
    ("POST", "/v1.51/exec/e1/start"),
    ("POST", "/v1.51/exec/e1/resize?h=40&w=120"),
    ("GET", "/v1.51/exec/e1/json"),
    ("HEAD", "/v1.51/containers/abc123/archive?path=%2Ftmp%2Fx"),
    ("GET", "/v1.51/containers/abc123/archive?path=%2Ftmp%2Fx"),
    ("PUT", "/v1.51/containers/abc123/archive?copyUIDGID=true&noOverwriteDirNonDir=true"
            "&path=%2Ftmp"),
    ("POST", "/v1.51/containers/abc123/attach?stderr=1&stdin=1&stdout=1&stream=1"),
    ("POST", "/v1.51/containers/abc123/attach?detachKeys=ctrl-p%2Cctrl-q&stdin=1&stream=1"),
    ("GET", "/v1.51/containers/abc123/attach/ws?stream=1&stdout=1"),
    ("POST", "/v1.51/containers/prune?filters=" + q({"until": {"24h": True}})),
    ("POST", "/v1.51/images/create?fromImage=docker.io%2Flibrary%2Falpine&tag=3.20"),
    ("POST", "/v1.51/images/create?fromImage=alpine&platform=linux%2Farm64&tag=latest"),
    ("POST", "/v1.51/images/create?fromSrc=-&repo=imported&tag=v1&changes=CMD+%5B%22sh%22%5D"
             "&changes=ENV+A%3D1"),
    ("POST", "/v1.51/images/load?quiet=1"),
    ("POST", "/v1.41/images/load?quiet=0"),
    ("GET", "/v1.51/images/get?names=alpine&names=busybox%3Alatest"),
    ("GET", "/v1.51/images/alpine/get"),
    ("GET", "/v1.51/images/json?all=1&shared-size=1&manifests=1&filters=" +
     q({"dangling": {"true": True}})),
    ("GET", "/v1.44/images/json?only_ids=0&all=0"),  # docker-py
    ("GET", "/v1.51/images/docker.io/library/alpine:3.20/json"),
    ("GET", "/v1.51/images/alpine@sha256:" + "a" * 64 + "/json"),
    ("GET", "/v1.51/images/alpine/history"),
    ("GET", "/v1.51/images/alpine/json?platform=" + q({"os": "linux", "architecture": "arm64",
                                                      "variant": "v8"})),
    ("GET", "/v1.51/images/get?names=alpine&platform=" + q({"os": "linux",
                                                            "architecture": "amd64"})),
    ("POST", "/v1.51/images/registry.example:5000/team/app/push?tag=v1"),
    ("POST", "/v1.51/images/alpine/tag?repo=example%2Falpine&tag=mine"),
    ("POST", "/v1.44/images/alpine/tag?tag=mine&repo=example&force=0"),  # docker-py
    ("GET", "/v1.24/images/json?only_ids=0&all=0&filter=alpine"),  # docker-py, old API
    ("DELETE", "/v1.51/images/example/alpine:mine?force=0&noprune=0"),
    ("GET", "/v1.51/images/search?limit=25&term=alpine"),
    ("POST", "/v1.51/images/prune?filters=" + q({"dangling": {"false": True}})),
    ("GET", "/v1.51/distribution/docker.io/library/alpine:latest/json"),
    ("GET", "/v1.51/events?filters=" + q({"type": {"container": True}}) +
     "&since=1700000000.000000000&until=1700003600.000000000"),
    ("GET", "/v1.44/events?since=1700000000&until=1700003600"),  # docker-py ints
    ("GET", "/v1.51/system/df?type=container&type=image"),
    ("POST", "/v1.51/build?buildargs=%7B%7D&cachefrom=%5B%5D&cgroupparent=&cpuperiod=0"
             "&cpuquota=0&cpusetcpus=&cpusetmems=&cpushares=0&dockerfile=Dockerfile"
             "&labels=%7B%22a%22%3A%22b%22%7D&memory=0&memswap=0&networkmode=default&rm=1"
             "&shmsize=0&extrahosts=db%3A10.0.0.5"
             "&t=app%3Alatest&t=app%3Av1&target=&ulimits=null&version=1"),
    ("POST", "/v1.51/build?t=app&buildargs=" + q({"HTTP_PROXY": None, "V": "1"}) +
     "&ulimits=" + q([{"Name": "nofile", "Hard": 2048, "Soft": 1024}]) + "&cachefrom=" +
     q(["app:cache"]) + "&labels=" + q({"a": "b"})),
    ("POST", "/v1.41/build?buildid=0123abc&dockerfile=Dockerfile&remote=client-session"
             "&session=s3ss10n&t=app&version=2&rm=1&outputs=" +
     q([{"Type": "moby", "Attrs": {}}])),
    ("POST", "/v1.51/build/prune?all=1&filters=%7B%7D&reserved-space=0"),
    ("POST", "/v1.41/build/prune?keep-storage=0&all=0"),
    ("POST", "/v1.51/build/cancel?id=0123abc"),
    ("POST", "/session"),
    ("POST", "/v1.51/session"),
    ("POST", "/v1.51/grpc"),
    ("POST", "/v1.51/commit?author=me&changes=CMD+sh&comment=c&container=abc&pause=1"
             "&repo=app&tag=v2"),
    ("POST", "/v1.51/auth"),
    ("GET", "/v1.51/networks"),
    ("GET", "/v1.51/networks/?filters=" + COMPOSE_FILTERS),
    ("POST", "/v1.51/networks/create"),
    ("GET", "/v1.51/networks/demo_default"),
    ("POST", "/v1.51/networks/demo_default/connect"),
    ("DELETE", "/v1.51/networks/demo_default"),
    ("GET", "/v1.51/volumes?filters=" + COMPOSE_FILTERS),
    ("POST", "/v1.51/volumes/create"),
    ("GET", "/v1.51/volumes/demo_data"),
    ("DELETE", "/v1.51/volumes/demo_data?force=0"),
    ("POST", "/v1.51/volumes/prune?filters=" + q({"all": {"true": True}})),
    ("GET", "/v1.51/plugins"),
    ("POST", "/v1.51/plugins/pull?remote=vieux%2Fsshfs%3Alatest&name=sshfs"),
    ("GET", "/v1.51/plugins/vieux/sshfs:latest/json"),
    ("GET", "/v1.51/swarm"),
    ("GET", "/v1.51/services?filters=" + q({"label": ["a"]})),
    ("GET", "/v1.51/nodes"),
    ("GET", "/v1.51/tasks"),
    ("GET", "/v1.51/secrets"),
    ("GET", "/v1.51/configs"),
]


@pytest.mark.parametrize(("method", "target"), HEADS)
def test_real_client_heads_are_admitted(method: str, target: str) -> None:
    """Request heads recorded from real clients are admitted, and the forwarded target admits to
    itself (a fixed point)."""
    headers = UPGRADE if "attach" in target or "session" in target or "grpc" in target \
        else JSON
    req = admit_head(method, target.encode(), headers, CTX)
    assert req.method == method
    # The forwarded target is a fixed point of admission.
    again = admit_head(method, req.target.encode(), headers, CTX)
    assert again.target == req.target
    assert again.endpoint == req.endpoint


CLI28_CREATE = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": True,
    "AttachStderr": True, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": ["echo", "hi"], "Image": "alpine", "Volumes": {}, "WorkingDir": "",
    "Entrypoint": None, "OnBuild": None, "Labels": {"com.docker.compose.project": "demo"},
    "HostConfig": {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "default", "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": None, "ReadonlyPaths": None, "Mounts": [
            {"Type": "volume", "Source": "data", "Target": "/data", "VolumeOptions": {}}],
        "Init": True, "Annotations": {"a": "b"},
    },
    "NetworkingConfig": {"EndpointsConfig": {"demo_default": {
        "IPAMConfig": None, "Links": None, "Aliases": ["web"], "MacAddress": "",
        "DriverOpts": None, "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "",
        "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "DNSNames": None}}},
    "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGTERM", "StopTimeout": 10,
    "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Timeout": 0,
                    "StartPeriod": 0, "StartInterval": 0, "Retries": 3},
}

CLI2010_CREATE = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": True, "AttachStdout": True,
    "AttachStderr": True, "Tty": True, "OpenStdin": True, "StdinOnce": True, "Env": [],
    "Cmd": ["sh"], "Image": "alpine", "Volumes": {}, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": {},
    "HostConfig": {
        "Binds": ["/tmp:/tmp"], "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                                                                        "MaximumRetryCount": 0},
        "AutoRemove": True, "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 0, "ConsoleSize": [0, 0], "Isolation": "", "CpuShares": 0, "Memory": 0,
        "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None,
        "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
        "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None, "Ulimits": None,
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": None, "ReadonlyPaths": None,
    },
    "NetworkingConfig": {"EndpointsConfig": {}},
}

DOCKERPY_CREATE = {
    "Image": "alpine", "Cmd": "echo hello", "Tty": False, "OpenStdin": False,
    "StdinOnce": False, "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
    "Env": ["A=1"], "Labels": {"x": "y"}, "NetworkDisabled": False,
    "HostConfig": {"NetworkMode": "default", "Privileged": False, "Binds": ["/a:/b:ro"],
                   "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}},
}

BODIES = [
    ("1.51", "POST", "/containers/create?name=web", CLI28_CREATE),
    ("1.41", "POST", "/containers/create", CLI2010_CREATE),
    ("1.44", "POST", "/containers/create", DOCKERPY_CREATE),
    ("1.51", "POST", "/containers/abc/exec", {
        "User": "", "Privileged": False, "Tty": True, "ConsoleSize": [24, 80],
        "AttachStdin": True, "AttachStderr": True, "AttachStdout": True, "Detach": False,
        "DetachKeys": "", "Env": None, "WorkingDir": "", "Cmd": ["sh"]}),
    ("1.41", "POST", "/containers/abc/exec", {
        "User": "", "Privileged": False, "Tty": True, "AttachStdin": True,
        "AttachStderr": True, "AttachStdout": True, "Detach": False, "DetachKeys": "",
        "Env": None, "WorkingDir": "", "Cmd": ["sh"]}),
    ("1.44", "POST", "/containers/abc/exec", {  # docker-py exec_create
        "Container": "abc", "User": "", "Privileged": False, "Tty": False,
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Cmd": ["ls"],
        "Env": None}),
    ("1.51", "POST", "/exec/e1/start", {"Detach": False, "Tty": True, "ConsoleSize": [24, 80]}),
    ("1.41", "POST", "/exec/e1/start", {"Detach": False, "Tty": False}),
    ("1.51", "POST", "/auth", {"username": "u", "password": "p",
                               "serveraddress": "https://index.docker.io/v1/"}),
    ("1.51", "POST", "/networks/create", {
        "Name": "demo_default", "Driver": "bridge", "Scope": "", "EnableIPv4": True,
        "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": []},
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigOnly": False,
        "ConfigFrom": None, "Options": {}, "Labels": {"com.docker.compose.network": "default"}}),
    ("1.41", "POST", "/networks/create", {
        "Name": "n", "CheckDuplicate": True, "Driver": "bridge", "Scope": "",
        "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": {}, "Config": []},
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigOnly": False,
        "ConfigFrom": None, "Options": {}, "Labels": {}}),
    ("1.51", "POST", "/networks/demo_default/connect", {
        "Container": "abc", "EndpointConfig": {"Aliases": ["web"], "DNSNames": ["web"]}}),
    ("1.51", "POST", "/volumes/create", {"Driver": "local", "DriverOpts": {},
                                         "Labels": {"a": "b"}, "Name": "demo_data"}),
    ("1.51", "POST", "/commit?container=abc", {"Cmd": ["sh"], "Labels": {"a": "b"}}),
    ("1.51", "POST", "/containers/abc/update", {"Memory": 1 << 30, "MemorySwap": -1,
                                                "RestartPolicy": {"Name": "always"}}),
]


@pytest.mark.parametrize(("version", "method", "target", "body"), BODIES)
def test_real_client_bodies_are_admitted(
    version: str, method: str, target: str, body: object
) -> None:
    """Bodies recorded from real clients at each API version are admitted, and their canonical bytes
    admit to themselves."""
    head = admit_head(method, f"/v{version}{target}".encode(), JSON, CTX)
    req = admit_body(head, json.dumps(body).encode(), CTX)
    assert req.body_bytes is not None
    # Canonical bytes are a fixed point.
    again = admit_body(head, req.body_bytes, CTX)
    assert again.body_bytes == req.body_bytes


@pytest.mark.parametrize("target", ["/v1.51/containers/abc/start", "/v1.51/exec/e/start",
                                    "/v1.51/volumes/create", "/v1.51/commit?container=a"])
def test_empty_body_without_content_type_is_no_body(target: str) -> None:
    """An empty body without Content-Type, as clients send on start, exec start, volume create and
    commit, counts as no body."""
    head = admit_head("POST", target.encode(), [], CTX)
    req = admit_body(head, b"", CTX)
    assert req.body is None
    assert req.body_bytes is None
