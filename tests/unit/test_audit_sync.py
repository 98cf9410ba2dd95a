"""The audit log's periodic fsync runs off the event loop, and its failure still fails closed."""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.python.threadpool import ThreadPool

from dockgate.audit.sink import JsonLinesAudit
from dockgate.audit.writer import ChainedLog
from dockgate.service import tap

Job = tuple[Callable[[], None], Callable[[BaseException | None], None]]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every fsync as (descriptor, thread name); the real fsync still runs."""
    calls: list[tuple[int, str]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append((fd, threading.current_thread().name))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def _log(path: Path, jobs: list[Job], clock: _Clock) -> ChainedLog:
    return ChainedLog(str(path), fsync="interval", fsync_interval=1.0, clock=clock,
                      sync_in_background=lambda job, done: jobs.append((job, done)))


def test_interval_fsync_is_handed_to_the_runner(
    tmp_path: Path, fsyncs: list[tuple[int, str]]
) -> None:
    """With interval fsync, a due fsync is handed to the background runner (one at a time, never
    inline) on its own descriptor, which it closes; a tick syncs what was written since."""
    jobs: list[Job] = []
    clock = _Clock()
    log = _log(tmp_path / "a.jsonl", jobs, clock)
    log.append({"n": 1})
    assert jobs == [] and fsyncs == []  # not due yet
    clock.now += 1.5
    log.append({"n": 2})
    log.append({"n": 3})
    assert len(jobs) == 1 and fsyncs == []  # one at a time, none inline
    clock.now += 1.5
    log.append({"n": 4})
    assert len(jobs) == 1  # the first is still running
    job, done = jobs.pop()
    job()
    done(None)
    [(fd, _)] = fsyncs
    assert fd != log._fd  # its own descriptor: the log may rotate meanwhile
    with pytest.raises(OSError):
        os.fstat(fd)  # and the job closed it
    clock.now += 1.5
    log.tick()
    assert len(jobs) == 1  # written since: synced again at the next tick
    log.close()
    assert [json.loads(x)["n"] for x in (tmp_path / "a.jsonl").read_text().splitlines()] == [
        1, 2, 3, 4]


def test_a_failed_background_fsync_refuses_the_next_record(tmp_path: Path) -> None:
    """A background fsync that failed makes the next append raise (fail closed) once; the chain then
    continues from the last line written."""
    jobs: list[Job] = []
    clock = _Clock()
    path = tmp_path / "a.jsonl"
    log = _log(path, jobs, clock)
    log.append({"n": 1})
    clock.now += 1.5
    log.append({"n": 2})
    _, done = jobs.pop()
    done(OSError(5, "Input/output error"))
    with pytest.raises(OSError, match="fsync failed"):
        log.append({"n": 3})
    log.append({"n": 4})  # reported once; the chain goes on from the last line written
    log.close()
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["n"] for r in records] == [1, 2, 4]
    assert [r["seq"] for r in records] == [1, 2, 3]


def test_without_a_runner_the_fsync_stays_inline(
    tmp_path: Path, fsyncs: list[tuple[int, str]]
) -> None:
    """Without a background runner, interval fsync runs inline on the log's own descriptor."""
    clock = _Clock()
    log = ChainedLog(str(tmp_path / "a.jsonl"), fsync="interval", fsync_interval=1.0,
                     clock=clock)
    log.append({"n": 1})
    clock.now += 1.5
    log.append({"n": 2})
    assert [fd for fd, _ in fsyncs] == [log._fd]
    log.close()


class _Timer:
    def active(self) -> bool:
        return False


class _ThreadedReactor:
    """What ``deferToThreadPool`` needs of a reactor: a pool, and a way back."""

    def __init__(self) -> None:
        self.pool = ThreadPool(1, 1, name="audit-test")
        self.pool.start()
        self.back: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = (
            queue.Queue())

    def getThreadPool(self) -> ThreadPool:
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.back.put((f, args, kwargs))

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        return _Timer()

    def run_back(self) -> None:
        f, args, kwargs = self.back.get(timeout=10)
        f(*args, **kwargs)


def test_the_service_fsyncs_in_the_reactors_thread_pool(
    tmp_path: Path, fsyncs: list[tuple[int, str]]
) -> None:
    """The audit upkeep service runs fsyncs in the reactor's thread pool, reports their result back
    on the reactor's side, and closes the log when stopped."""
    reactor = _ThreadedReactor()
    try:
        audit = JsonLinesAudit(str(tmp_path / "a.jsonl"), fsync="interval", fsync_interval=0.0)
        upkeep = tap.AuditUpkeep(audit, reactor)
        upkeep.startService()
        audit.write({"n": 1})
        reactor.run_back()
        [(_, thread)] = fsyncs
        assert thread != threading.current_thread().name
        assert not audit.log._syncing  # done ran on our side
        done: list[BaseException | None] = []
        upkeep._in_thread(lambda: (_ for _ in ()).throw(OSError(28, "full")), done.append)
        reactor.run_back()
        assert isinstance(done[0], OSError) and done[0].errno == 28
        upkeep.stopService()
        assert audit.log._fd < 0
    finally:
        reactor.pool.stop()
