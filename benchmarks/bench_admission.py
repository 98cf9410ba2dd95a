"""Benchmark: canonicalise + validate a typical ~3 KB container-create body.

Target: under 0.3 ms per body on a developer machine.  Run with
``python benchmarks/bench_admission.py``; prints the per-call median and the
best of several rounds, and exits 1 if the median misses the target.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dockgate.admission.admit import ApiContext, admit_body, admit_head

TARGET_MS = 0.3

BODY = {
    "Hostname": "", "Domainname": "", "User": "app", "AttachStdin": False,
    "AttachStdout": True, "AttachStderr": True, "Tty": False, "OpenStdin": False,
    "StdinOnce": False,
    "Env": [f"VAR_{i}=value-{i}" for i in range(12)],
    "Cmd": ["python", "-m", "http.server", "8080"], "Image": "registry.example/app:1.2.3",
    "Volumes": {"/data": {}}, "WorkingDir": "/srv", "Entrypoint": None, "OnBuild": None,
    "Labels": {f"com.example.label{i}": f"value {i}" for i in range(10)},
    "ExposedPorts": {"8080/tcp": {}}, "StopSignal": "SIGTERM", "StopTimeout": 10,
    "Healthcheck": {"Test": ["CMD", "curl", "-f", "http://localhost:8080/"],
                    "Interval": 30000000000, "Timeout": 5000000000, "Retries": 3},
    "HostConfig": {
        "Binds": ["/srv/data:/data:rw"], "ContainerIDFile": "",
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
        "NetworkMode": "app_default",
        "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
        "CapAdd": ["NET_BIND_SERVICE"], "CapDrop": ["ALL"], "CgroupnsMode": "private",
        "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": ["db:10.0.0.5"],
        "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"], "UTSMode": "",
        "UsernsMode": "", "ShmSize": 67108864, "Isolation": "", "CpuShares": 512,
        "Memory": 536870912, "NanoCpus": 1000000000, "CgroupParent": "", "BlkioWeight": 0,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
        "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
        "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None,
        "MemoryReservation": 0, "MemorySwap": 1073741824, "MemorySwappiness": None,
        "OomKillDisable": None, "PidsLimit": 256,
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "Mounts": [{"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 1 << 26}}],
        "MaskedPaths": None, "ReadonlyPaths": None, "Init": True,
    },
    "NetworkingConfig": {"EndpointsConfig": {"app_default": {
        "IPAMConfig": None, "Links": None, "Aliases": ["web", "app"], "MacAddress": "",
        "DriverOpts": None, "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "",
        "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "DNSNames": ["web"]}}},
}


def main() -> int:
    ctx = ApiContext("1.51")
    raw = json.dumps(BODY).encode()
    head = admit_head("POST", b"/v1.51/containers/create?name=web",
                      [(b"content-type", b"application/json")], ctx)
    admit_body(head, raw, ctx)  # compile the schema once, as the first request would
    n, rounds = 2000, 7
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            admit_body(head, raw, ctx)
        per_call.append((time.perf_counter() - t0) / n * 1000)
    median = statistics.median(per_call)
    t0 = time.perf_counter()
    for _ in range(n):
        admit_head("GET", b"/v1.51/containers/json?all=1&filters=%7B%22label%22%3A%7B%22a"
                   b"%3Db%22%3Atrue%7D%7D", [(b"host", b"docker")], ctx)
    head_ms = (time.perf_counter() - t0) / n * 1000
    print(f"admit_head (route + query with filters): {head_ms:.3f} ms")
    print(f"container.create body {len(raw)} bytes: median {median:.3f} ms, "
          f"best {min(per_call):.3f} ms per canonicalise+validate (target {TARGET_MS} ms)")
    return 0 if median < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
