"""Benchmark: `docker buildx build` of a small context, direct and through dockgate.

Issue 16: BuildKit's /grpc and /session are mediated (HTTP/2 relayed, the
solve, the Dockerfile and the build containers judged), and a build through
the ``privileged`` profile should take as long as a direct one within noise.
This starts its own engine 28.5 (as run.py does: private socket, vfs, no
bridge), imports the test image ``dgtest:latest``, and serves dockgate twice
in front of it, with policies/privileged.yaml and policies/baseline.yaml
(audit log on).  Each round builds the same context (a Dockerfile with
``COPY``, ``RUN``, ``RUN --mount=type=cache`` and ``RUN --mount=type=secret``,
and 200 files of 4 KB) with ``--no-cache`` on each side, in ABBA order (the
order reversed every other round), and the figure is the median wall time
per side, with its ratio to direct.

    python benchmarks/bench_build.py [--rounds 6]    # about a minute

A build that fails on any side raises (exit status 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import engines, unixhttp  # noqa: E402

DOCKERFILE = """\
FROM dgtest:latest
COPY files /files
RUN cat /files/* | wc -c > /size
RUN --mount=type=cache,target=/cache cp /size /cache/size
RUN --mount=type=secret,id=tok test -s /run/secrets/tok
"""


def make_context(path: Path) -> Path:
    """The build context: the Dockerfile and 200 files of 4 KB."""
    (path / "files").mkdir(parents=True)
    (path / "Dockerfile").write_text(DOCKERFILE)
    for i in range(200):
        (path / "files" / f"f{i:03}").write_bytes(os.urandom(4096))
    return path


def serve(stack: ExitStack, work: Path, name: str, upstream: str) -> str:
    """``dockgate serve`` with policies/NAME.yaml in front of ``upstream``; its socket."""
    sock = str(work / f"{name}.sock")
    log = open(work / f"{name}.log", "ab")  # noqa: SIM115 (closed by the stack)
    stack.callback(log.close)
    gate = subprocess.Popen(
        [sys.executable, "-m", "dockgate", "serve", "--listen", f"unix:{sock}",
         "--upstream", f"unix:{upstream}", "--policy", str(ROOT / f"policies/{name}.yaml"),
         "--audit-log", str(work / f"{name}-audit.jsonl")],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    stack.callback(engines.terminate, gate, 15)
    unixhttp.wait_ping(sock, time.monotonic() + 30, alive=lambda: gate.poll() is None)
    return sock


@dataclass
class Builder:
    """The CLI, its environment (DOCKER_CONFIG with buildx), the context and the secret."""

    cli: str
    env: dict[str, str]
    ctx: Path
    secret: Path

    def build(self, sock: str, tag: str) -> float:
        """One ``docker buildx build --no-cache`` through ``sock``; its wall time in seconds."""
        t0 = time.perf_counter()
        done = subprocess.run(
            [self.cli, "buildx", "build", "--progress=plain", "--no-cache", "--network=none",
             "--secret", f"id=tok,src={self.secret}", "-t", tag, str(self.ctx)],
            env={**self.env, "DOCKER_HOST": f"unix://{sock}"},
            capture_output=True, text=True, timeout=300, check=False,
        )
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"build through {sock} failed:\n{done.stderr[-2000:]}")
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dgbb", dir="/tmp") as tmp, ExitStack() as stack:
        work = Path(tmp)
        cli = engines.find_cli()
        daemon = engines.start_daemon("28.5", work / "e")
        stack.callback(daemon.stop)
        daemon.wait_ready()
        engines.import_image(cli, daemon, engines.build_rootfs(work / "rootfs.tar"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(engines.make_docker_config(work / "cfg"))
        secret = work / "tok"
        secret.write_text("s3cret\n")
        builder = Builder(cli, env, make_context(work / "ctx"), secret)
        sides = {"direct": daemon.socket}
        for name in ("privileged", "baseline"):
            sides[name] = serve(stack, work, name, daemon.socket)
        for name, sock in sides.items():  # warm-up: the image, buildx's state, page cache
            builder.build(sock, f"bench-{name}:warm")
        times: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else reversed(order):
                times[name].append(builder.build(sides[name], f"bench-{name}:{r}"))
        direct = statistics.median(times["direct"])
        print(f"buildx build, small context (200 x 4 KB, COPY/RUN/cache/secret), "
              f"--no-cache, median of {args.rounds} (engine 28.5)")
        print(f"{'side':<26} {'median s':>9} {'ratio':>7}   all runs (s)")
        for name, runs in times.items():
            median = statistics.median(runs)
            label = name if name == "direct" else f"dockgate {name}"
            print(f"{label:<26} {median:>9.2f} {median / direct:>6.2f}x   "
                  + " ".join(f"{t:.2f}" for t in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
