"""A tenant's event stream: decided line by line, in order, asking about volumes and networks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dockgate.tenancy import OWNER_LABEL, Tenant
from dockgate.tenancy.event_scope import EventScope, ObjectKey

A = Tenant(name="team-a")


def line(kind: str, action: str, ident: str, owner: str | None = None, at: int = 1000) -> bytes:
    attrs = {OWNER_LABEL: owner} if owner else {}
    return json.dumps({"Type": kind, "Action": action, "time": at,
                       "Actor": {"ID": ident, "Attributes": attrs}}).encode() + b"\n"


class Harness:
    def __init__(self, limit: int = 1 << 20) -> None:
        self.out = b""
        self.asked: list[tuple[ObjectKey, Callable[[int | None], None]]] = []
        self.scope = EventScope(A, lambda key, done: self.asked.append((key, done)),
                                self.emit, limit)

    def emit(self, data: bytes) -> None:
        self.out += data

    def answer(self, owned: bool, since: int = 0) -> ObjectKey:
        key, done = self.asked.pop(0)
        done(since if owned else None)
        return key

    def shown(self) -> list[tuple[Any, ...]]:
        events = [json.loads(x) for x in self.out.splitlines()]
        return [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in events]


def test_nothing_flows_before_the_tenants_objects_are_known() -> None:
    """No event is passed to the client until the tenant's existing objects are known; then the held
    events flow."""
    h = Harness()
    assert h.scope.feed(line("container", "start", "c1", "team-a"))
    assert h.out == b""
    h.scope.started(())
    assert h.shown() == [("container", "start", "c1")]


def test_a_volume_event_waits_for_the_daemons_answer_and_so_does_what_follows() -> None:
    """A label-less volume event waits for the daemon's answer about its owner, events after it wait
    too (order is kept), and one answered as someone else's is dropped while the rest go on."""
    h = Harness()
    h.scope.started(())
    h.scope.feed(line("container", "create", "c1", "team-a") + line("volume", "create", "v1")
                 + line("container", "start", "c1", "team-a") + line("volume", "create", "v2")
                 + line("container", "die", "c1", "team-a"))
    assert h.shown() == [("container", "create", "c1")]
    assert h.answer(True) == ("volume", "v1")
    assert h.shown() == [("container", "create", "c1"), ("volume", "create", "v1"),
                         ("container", "start", "c1")]
    assert h.answer(False) == ("volume", "v2")  # someone else's: hidden, the rest goes on
    assert h.shown()[-1] == ("container", "die", "c1") and len(h.shown()) == 4
    assert h.asked == []


def test_what_was_owned_at_the_start_needs_no_question() -> None:
    """Events about volumes and networks the tenant owned at the start are shown without asking the
    daemon."""
    h = Harness()
    h.scope.started([(("volume", "old"), 0), (("network", "n1"), 0)])
    h.scope.feed(line("volume", "mount", "old") + line("network", "destroy", "n1")
                 + line("volume", "destroy", "old"))
    assert h.asked == []
    assert h.shown() == [("volume", "mount", "old"), ("network", "destroy", "n1"),
                         ("volume", "destroy", "old")]


def test_create_asks_again_and_destroy_forgets() -> None:
    """A name may be reused: after a destroy, and at every create, the daemon is asked."""
    h = Harness()
    h.scope.started([(("volume", "v"), 0)])
    h.scope.feed(line("volume", "destroy", "v") + line("volume", "create", "v")
                 + line("volume", "mount", "v"))
    assert h.shown() == [("volume", "destroy", "v")]
    assert h.answer(False) == ("volume", "v")  # recreated by another tenant
    assert h.shown() == [("volume", "destroy", "v")]
    assert h.asked == []  # known now (not the tenant's): the mount is hidden without asking
    h.scope.feed(line("volume", "create", "v"))
    assert h.answer(True) == ("volume", "v")
    assert h.shown()[-1] == ("volume", "create", "v")


def test_a_reused_name_shows_only_events_since_the_current_volume_was_created() -> None:
    """Replayed events (``since``) of an earlier volume of the same name, someone
    else's, are not shown to the tenant that owns the name now."""
    h = Harness()
    h.scope.started([(("volume", "v"), 500)])
    h.scope.feed(line("volume", "mount", "v", at=400) + line("volume", "destroy", "v", at=450))
    assert h.out == b"" and h.asked == []
    h.scope.feed(line("volume", "create", "v", at=500) + line("volume", "mount", "v", at=501))
    assert h.answer(True, since=500) == ("volume", "v")
    assert h.shown() == [("volume", "create", "v"), ("volume", "mount", "v")]
    h.scope.feed(line("volume", "create", "w", at=10))
    h.answer(True, since=20)  # created after the event: an earlier incarnation
    assert len(h.shown()) == 2
    h.scope.feed(b'{"Type": "volume", "Action": "mount", "Actor": {"ID": "v"}}\n')
    assert len(h.shown()) == 2  # no time: cannot be placed, not shown


def test_the_kind_is_part_of_the_key() -> None:
    """Owning a volume does not make a network of the same name the tenant's: the network is asked
    about and hidden."""
    h = Harness()
    h.scope.started([(("volume", "abc"), 0)])
    h.scope.feed(line("network", "create", "abc"))
    assert h.answer(False) == ("network", "abc")
    assert h.out == b""


def test_labelled_events_other_tenants_and_admin_only_kinds() -> None:
    """Events of other tenants, daemon-level events and lines that are not JSON objects are dropped;
    the tenant's labelled events are shown."""
    h = Harness()
    h.scope.started(())
    h.scope.feed(line("container", "start", "c2", "team-b") + line("daemon", "reload", "d",
                                                                       "team-a")
                 + b"not json\n" + b"[1]\n" + line("image", "tag", "i1", "team-a"))
    assert h.shown() == [("image", "tag", "i1")]


def test_lines_split_across_reads() -> None:
    """Event lines split across reads are reassembled before being judged."""
    h = Harness()
    h.scope.started(())
    data = line("container", "start", "c1", "team-a") + line("container", "stop", "c1", "team-a")
    for i in range(0, len(data), 7):
        h.scope.feed(data[i:i + 7])
    assert h.shown() == [("container", "start", "c1"), ("container", "stop", "c1")]


def test_finish_waits_for_the_last_answer() -> None:
    """At the end of the stream, finishing waits for the outstanding owner answer so the last event
    is not lost."""
    h = Harness()
    ended: list[bool] = []
    h.scope.started(())
    h.scope.feed(line("network", "create", "n1"))
    h.scope.finish(lambda: ended.append(True))
    assert ended == []
    h.answer(True)
    assert ended == [True] and h.shown() == [("network", "create", "n1")]


def test_finish_before_the_start_waits_for_it() -> None:
    """Finishing before the tenant's objects are known waits for them, then passes the held events
    and ends."""
    h = Harness()
    ended: list[bool] = []
    h.scope.feed(line("container", "start", "c1", "team-a"))
    h.scope.finish(lambda: ended.append(True))
    assert ended == []
    h.scope.started(())
    assert ended == [True] and len(h.shown()) == 1


def test_a_backlog_over_the_limit_is_refused() -> None:
    """A backlog of held events, or a single line, over the limit is refused instead of buffered
    without bound."""
    h = Harness(limit=400)
    h.scope.started(())
    assert h.scope.feed(line("volume", "create", "v1"))
    assert not h.scope.feed(line("container", "start", "c1", "team-a") * 5)
    assert not Harness(limit=100).scope.feed(b"x" * 200)  # one endless line


def test_stop_silences_late_answers() -> None:
    """After stop, late answers write nothing and finishing never completes."""
    h = Harness()
    ended: list[bool] = []
    h.scope.started(())
    h.scope.feed(line("volume", "create", "v1") + line("container", "start", "c1", "team-a"))
    h.scope.finish(lambda: ended.append(True))
    h.scope.stop()
    h.answer(True)
    assert h.out == b"" and ended == []
