"""The life of one exchange on a client connection: one state machine, one table.

A client connection carries one request/response exchange at a time (the
request reader pauses after each request until its answer is complete, see
``proxy.protocol``), so the connection's state *is* its exchange's state:
``IDLE`` between exchanges, ``CLOSED`` at the end, and in between where the
current exchange stands.  The protocol asks this state instead of testing a
set of booleans, and every move is one ``(State, Event)`` pair looked up in
``TRANSITIONS``: the only place that says which moves exist.  A pair missing
from the table is a bug in the caller, and raises ``IllegalTransition``; the
protocol answers it with a 500 (nothing sent yet) or by aborting the
connection, so a connection never waits in a state nothing can leave.

The shape follows h11's ``_state.py`` (states and event types as constants, one
table, an exception for the rest), with one machine instead of h11's two
(client and server): dockgate reads a request and answers it one at a time,
and the one place where both directions are live at once (the daemon answers
while the client's body still streams up) is a state of its own,
``RESPONDING_EARLY``.  Two facts are left out of the states because they are
the request reader's and cross every state: whether the client's request was
read to its end (``RequestReader.done``) and whether the client half-closed
(``RequestReader.closed``).

Not taken: mitmproxy's "events in, commands out" shape, where the machine
also returns the actions to perform.  The decisions an exchange needs
(admission, policy, tenancy) are already pure functions in the core; what is
left in ``proxy.protocol`` is the I/O they drive, and a command object per
action would be a per-request allocation on the hottest path (see
``benchmarks/bench_exchange.py``).  The protocol performs the actions itself,
and ``ProxyServerProtocol._teardown`` is the one place an exchange's
resources are released.

States and events are ``IntEnum`` members, so they index tuples as ints do:
the protocol steps through ``advance``, which reads ``NEXT``, the same table
laid out as nested tuples: two indexings per event.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class State(IntEnum):
    """Where a client connection's current exchange stands."""

    IDLE = 0
    """No exchange: waiting for the next request head (idle_timeout, then head_timeout)."""
    DECIDING = 1
    """A head was admitted; the decision is being made, maybe after asking the
    daemon (tenancy, default users, joins, a create's verification). The
    client's bytes stay unread meanwhile."""
    BUFFERING = 2
    """A JSON body is read whole, to be admitted before anything is decided."""
    HOLDING = 3
    """A classic build's context is read and held until its Dockerfile is known."""
    CONNECTING = 4
    """Allowed: waiting for the decision's audit record and a daemon connection.
    The client's bytes stay unread meanwhile."""
    SENDING = 5
    """Forwarded: the client's body streams to the daemon as it arrives."""
    AWAITING = 6
    """The whole request is with the daemon; the wait for its answer is bounded
    (response_timeout)."""
    RESPONDING = 7
    """The daemon's answer is passed on (or held to be rewritten)."""
    RESPONDING_EARLY = 8
    """The daemon answered before the client's body was all sent: both stream."""
    VERIFYING = 9
    """A create's answer is held while the new container's image is checked
    (``proxy.binding``); it can still be refused."""
    DRAINING = 10
    """Refused and answered: the rest of the request is read and dropped
    (bounded), so an uploading client reads the refusal."""
    SPLICED = 11
    """Hijacked: bytes pass both ways unparsed (``proxy.splice``); the
    connection carries no further request."""
    CLOSED = 12
    """The connection is closing or closed: nothing more is handled."""


class Event(IntEnum):
    """What moves an exchange on."""

    HEAD = 0
    """A request head was read: the exchange begins."""
    BUFFER = 1
    """Its JSON body is to be read whole before deciding."""
    HOLD = 2
    """Its build context is to be held until the Dockerfile is read."""
    DOCKERFILE = 3
    """The held context's Dockerfile is known: decide with it."""
    BODY_END = 4
    """The client's request ended."""
    ALLOW = 5
    """The decision allows it: record, then connect."""
    FORWARD_ALL = 6
    """The head and the whole body went to the daemon."""
    FORWARD_STREAM = 7
    """The head went to the daemon; the body follows as it arrives."""
    RESPONSE = 8
    """The daemon's final response head arrived."""
    VERIFY = 9
    """A create's answer is held while its container's image is checked."""
    VERIFIED = 10
    """The check passed: the held answer goes out."""
    SPLICE = 11
    """A 101, or a hijack route's unframed 200: the connection becomes a splice."""
    REFUSE = 12
    """dockgate answers with an error itself; nothing more goes upstream."""
    FINISH = 13
    """The answer is complete (and the request read or drained): next head."""
    CLOSE = 14
    """The connection closes (allowed from every state)."""


IDLE: Final = State.IDLE
DECIDING: Final = State.DECIDING
BUFFERING: Final = State.BUFFERING
HOLDING: Final = State.HOLDING
CONNECTING: Final = State.CONNECTING
SENDING: Final = State.SENDING
AWAITING: Final = State.AWAITING
RESPONDING: Final = State.RESPONDING
RESPONDING_EARLY: Final = State.RESPONDING_EARLY
VERIFYING: Final = State.VERIFYING
DRAINING: Final = State.DRAINING
SPLICED: Final = State.SPLICED
CLOSED: Final = State.CLOSED
"""The states as module constants: reading them skips the enum class's lookup."""

HEAD: Final = Event.HEAD
BUFFER: Final = Event.BUFFER
HOLD: Final = Event.HOLD
DOCKERFILE: Final = Event.DOCKERFILE
BODY_END: Final = Event.BODY_END
ALLOW: Final = Event.ALLOW
FORWARD_ALL: Final = Event.FORWARD_ALL
FORWARD_STREAM: Final = Event.FORWARD_STREAM
RESPONSE: Final = Event.RESPONSE
VERIFY: Final = Event.VERIFY
VERIFIED: Final = Event.VERIFIED
SPLICE: Final = Event.SPLICE
REFUSE: Final = Event.REFUSE
FINISH: Final = Event.FINISH
CLOSE: Final = Event.CLOSE
"""The events as module constants, likewise."""

_UNANSWERED = (DECIDING, BUFFERING, HOLDING, CONNECTING, SENDING, AWAITING, VERIFYING)

TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (IDLE, HEAD): DECIDING,
    (DECIDING, BUFFER): BUFFERING,
    (DECIDING, HOLD): HOLDING,
    (DECIDING, ALLOW): CONNECTING,
    (BUFFERING, BODY_END): DECIDING,
    (HOLDING, DOCKERFILE): DECIDING,
    (CONNECTING, FORWARD_ALL): AWAITING,
    (CONNECTING, FORWARD_STREAM): SENDING,
    (SENDING, BODY_END): AWAITING,
    (SENDING, RESPONSE): RESPONDING_EARLY,
    (SENDING, SPLICE): SPLICED,
    (AWAITING, BODY_END): AWAITING,  # a body-less request's end, read after forwarding
    (AWAITING, RESPONSE): RESPONDING,
    (AWAITING, SPLICE): SPLICED,
    (RESPONDING_EARLY, BODY_END): RESPONDING,
    (RESPONDING_EARLY, FINISH): IDLE,  # then closed: the request was not read whole
    (RESPONDING, VERIFY): VERIFYING,
    (RESPONDING, FINISH): IDLE,
    (VERIFYING, VERIFIED): RESPONDING,
    (DRAINING, FINISH): IDLE,
    # Refusing: possible until an answer is under way.
    **{(state, REFUSE): DRAINING for state in _UNANSWERED},
    # Closing: possible from anywhere, any number of times.
    **{(state, CLOSE): CLOSED for state in State},
}
"""Every move an exchange can make: (state, event) to the next state."""

NEXT: Final[tuple[list[State | None], ...]] = tuple(
    [TRANSITIONS.get((state, event)) for event in Event] for state in State
)
"""``TRANSITIONS`` as ``NEXT[state][event]`` (None where the table has no entry).

The compiled protocol holds this very table (its own constant, read without a
lookup), so its rows are lists: a test takes a move out of a row in place to see
what a bug in the table does.  Nothing else writes them."""

WAITING: Final = frozenset({DECIDING, CONNECTING, SPLICED, CLOSED})
"""States in which no HTTP event is taken from the client's bytes: the
exchange waits on dockgate's own work, or the bytes are not HTTP any more."""

HEARD: Final = frozenset({RESPONDING, RESPONDING_EARLY, VERIFYING})
"""States after the daemon's final response head: losing the daemon now is
not answered with a 502, the client's connection is aborted (in VERIFYING too,
the held answer going with it)."""

ANSWERING: Final = frozenset({RESPONDING, RESPONDING_EARLY})
"""States in which the daemon's answer is on its way to the client: an error
can no longer be answered, only the connection aborted."""

UNANSWERED: Final = frozenset({IDLE, *_UNANSWERED})
"""States in which the client was sent no answer yet (at most ``100 Continue``)."""


class IllegalTransition(RuntimeError):
    """A move the table does not allow: a bug in dockgate, never the client's doing."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"exchange in state {state.name} cannot take {event.name}")
        self.state = state
        self.event = event


def advance(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``.

    Raises:
        IllegalTransition: the table has no such move.
    """
    nxt = NEXT[state][event]
    if nxt is None:
        raise IllegalTransition(state, event)
    return nxt
