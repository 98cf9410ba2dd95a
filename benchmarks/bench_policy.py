"""How long one policy decision costs: a typical container create under baseline.

Every request waits for its decision, so the budget is tight: under 0.2 ms
per decision on the hot path.  Run ``python benchmarks/bench_policy.py``; it
prints the per-decision cost for each shipped profile and exits non-zero if
baseline is over budget.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dockgate.model import CanonicalRequest, Operation, Peer  # noqa: E402
from dockgate.policy import load_policy  # noqa: E402

BUDGET_MS = 0.2

TYPICAL_CREATE = {
    "Hostname": "", "User": "", "AttachStdout": True, "AttachStderr": True, "Tty": False,
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "MODE=prod"],
    "Cmd": ["nginx", "-g", "daemon off;"], "Image": "nginx:1.27",
    "Labels": {"com.example.app": "web"},
    "ExposedPorts": {"80/tcp": {}},
    "HostConfig": {
        "Binds": None, "NetworkMode": "bridge", "RestartPolicy": {"Name": "unless-stopped"},
        "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        "Mounts": [{"Type": "volume", "Source": "web-data", "Target": "/usr/share/nginx/html"}],
        "CapAdd": ["NET_BIND_SERVICE"], "CapDrop": None, "SecurityOpt": None,
        "Memory": 268435456, "NanoCpus": 500000000, "PidsLimit": 200,
        "LogConfig": {"Type": "json-file", "Config": {}},
    },
    "NetworkingConfig": {"EndpointsConfig": {"bridge": {}}},
}


def per_decision_ms(policy_name: str, n: int = 20000) -> float:
    """Best-of-5 mean cost of one decision, in milliseconds."""
    policy = load_policy(str(ROOT / "policies" / f"{policy_name}.yaml"))
    ep = Operation("container.create", "POST", "/containers/create", "json")
    req = CanonicalRequest("POST", ep, "/containers/create", "1.47", {}, (("name", "web"),),
                           body=TYPICAL_CREATE)
    peer = Peer("main", "unix", "@", uid=1000, gid=1000)
    decide = policy.decide
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            decide(req, peer)
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e3


def main() -> int:
    """Print the figures; non-zero exit when baseline exceeds the budget."""
    figures = {name: per_decision_ms(name) for name in ("privileged", "baseline", "restricted")}
    for name, ms in figures.items():
        print(f"{name:>10}: {ms:.4f} ms per container.create decision")
    ok = figures["baseline"] < BUDGET_MS
    print(f"baseline budget {BUDGET_MS} ms: {'ok' if ok else 'EXCEEDED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
