"""Playbooks for the exchange's state machine (``proxy.lifecycle``): sequences of
events and the states they lead through, read off the one transition table.

Each playbook is a path an exchange really takes in ``proxy.protocol`` (which
event the protocol fires where is named in its docstring); the awkward ones
(refusals that drain, a drain cut short, a client or daemon gone mid-way,
hijacks, 100-continue, pipelining, HTTP/1.0) are here as well as the common
ones.  Structural tests check what the table must guarantee whatever is added
to it later: every state is reachable, none is a dead end, and nothing but
closing leaves ``CLOSED``.  ``tests/unit/test_protocol.py`` plays the same paths
through the real protocol.
"""

from __future__ import annotations

import pytest

from dockgate.proxy.lifecycle import (
    NEXT,
    TRANSITIONS,
    UNANSWERED,
    WAITING,
    Event,
    IllegalTransition,
    State,
    advance,
)

S = State
E = Event


def play(*events: Event, start: State = S.IDLE) -> list[State]:
    """The states ``events`` lead through from ``start``, one per event."""
    states, state = [], start
    for event in events:
        state = advance(state, event)
        states.append(state)
    return states


# -- playbooks ----------------------------------------------------------------


def test_a_bodyless_get_on_a_keep_alive_connection() -> None:
    """GET: decided, connected, sent whole (its end is read after forwarding),
    answered, finished: the connection is idle for the next head."""
    assert play(E.HEAD, E.ALLOW, E.FORWARD_ALL, E.BODY_END, E.RESPONSE, E.FINISH) == [
        S.DECIDING, S.CONNECTING, S.AWAITING, S.AWAITING, S.RESPONDING, S.IDLE]


def test_pipelined_requests_take_turns() -> None:
    """A pipelined second request begins only after the first finished: the
    reader holds it, and a head is only taken in IDLE."""
    first = play(E.HEAD, E.ALLOW, E.FORWARD_ALL, E.BODY_END, E.RESPONSE)
    with pytest.raises(IllegalTransition):
        advance(first[-1], E.HEAD)
    assert play(E.FINISH, E.HEAD, E.ALLOW, start=first[-1]) == [S.IDLE, S.DECIDING, S.CONNECTING]


def test_a_json_body_is_read_whole_before_the_decision() -> None:
    """POST with a JSON body: buffered, decided on the whole body, sent whole."""
    assert play(E.HEAD, E.BUFFER, E.BODY_END, E.ALLOW, E.FORWARD_ALL, E.RESPONSE, E.FINISH) == [
        S.DECIDING, S.BUFFERING, S.DECIDING, S.CONNECTING, S.AWAITING, S.RESPONDING, S.IDLE]


def test_100_continue_leaves_the_exchange_unanswered() -> None:
    """``100 Continue`` is sent on entering BUFFERING (or SENDING); the exchange
    still has no answer then, so it can still be refused with a status."""
    assert S.BUFFERING in UNANSWERED and S.SENDING in UNANSWERED
    assert play(E.HEAD, E.BUFFER, E.REFUSE, E.FINISH) == [S.DECIDING, S.BUFFERING, S.DRAINING, S.IDLE]
    assert play(E.HEAD, E.ALLOW, E.FORWARD_STREAM, E.BODY_END, E.RESPONSE, E.FINISH) == [
        S.DECIDING, S.CONNECTING, S.SENDING, S.AWAITING, S.RESPONDING, S.IDLE]


def test_a_refused_upload_is_drained_then_the_next_request_follows() -> None:
    """Refused at once: the refusal goes out, the body is read and dropped; its
    end finishes the exchange (``_client_end`` in DRAINING fires FINISH)."""
    assert play(E.HEAD, E.REFUSE, E.FINISH, E.HEAD) == [S.DECIDING, S.DRAINING, S.IDLE, S.DECIDING]


def test_a_drain_that_runs_out_closes_the_connection() -> None:
    """A refused upload that never ends (or is too long) is cut: from DRAINING
    only closing is left once the bound passed, and nothing follows it."""
    states = play(E.HEAD, E.REFUSE, E.CLOSE)
    assert states == [S.DECIDING, S.DRAINING, S.CLOSED]
    for event in Event:
        if event is not E.CLOSE:
            with pytest.raises(IllegalTransition):
                advance(S.CLOSED, event)


def test_a_client_gone_mid_body_closes_from_wherever_it_was() -> None:
    """EOF mid-body (the reader's error) or a lost connection closes the
    connection from any state: uploading, buffering, holding a context."""
    for path in ((E.HEAD, E.ALLOW, E.FORWARD_STREAM), (E.HEAD, E.BUFFER), (E.HEAD, E.HOLD)):
        assert play(*path, E.CLOSE)[-1] is S.CLOSED


def test_a_daemon_gone_before_its_answer_is_a_refusal_after_it_an_abort() -> None:
    """Before the daemon's head the exchange can still be answered (502, 504):
    REFUSE; after it the answer is under way: only CLOSE (abort) is left."""
    assert play(E.HEAD, E.ALLOW, E.FORWARD_ALL, E.REFUSE)[-1] is S.DRAINING
    assert play(E.HEAD, E.ALLOW, E.FORWARD_STREAM, E.REFUSE)[-1] is S.DRAINING
    responding = play(E.HEAD, E.ALLOW, E.FORWARD_ALL, E.RESPONSE)[-1]
    with pytest.raises(IllegalTransition):
        advance(responding, E.REFUSE)
    assert advance(responding, E.CLOSE) is S.CLOSED


def test_an_answer_before_the_upload_ended_streams_both_ways() -> None:
    """The daemon may answer while the client still uploads: the body's end still
    goes up; finishing before it is allowed (the protocol then closes, since
    the request was not read whole)."""
    assert play(E.HEAD, E.ALLOW, E.FORWARD_STREAM, E.RESPONSE, E.BODY_END, E.FINISH) == [
        S.DECIDING, S.CONNECTING, S.SENDING, S.RESPONDING_EARLY, S.RESPONDING, S.IDLE]
    assert play(E.HEAD, E.ALLOW, E.FORWARD_STREAM, E.RESPONSE, E.FINISH, E.CLOSE)[-2:] == [S.IDLE, S.CLOSED]


def test_a_hijack_becomes_a_splice_and_carries_no_further_request() -> None:
    """A 101 (or a hijack route's unframed 200) makes the connection a splice:
    no head, response or refusal is taken any more, only closing."""
    assert play(E.HEAD, E.ALLOW, E.FORWARD_ALL, E.BODY_END, E.SPLICE)[-1] is S.SPLICED
    assert play(E.HEAD, E.ALLOW, E.FORWARD_STREAM, E.SPLICE)[-1] is S.SPLICED
    for event in (E.HEAD, E.RESPONSE, E.REFUSE, E.FINISH, E.BODY_END):
        with pytest.raises(IllegalTransition):
            advance(S.SPLICED, event)
    assert advance(S.SPLICED, E.CLOSE) is S.CLOSED


def test_http10_finishes_like_http11_then_closes() -> None:
    """HTTP/1.0 takes the same moves; the connection is closed after FINISH
    because the reader and writer say it is not kept alive."""
    assert play(E.HEAD, E.ALLOW, E.FORWARD_ALL, E.BODY_END, E.RESPONSE, E.FINISH, E.CLOSE)[-2:] == [
        S.IDLE, S.CLOSED]


def test_a_build_context_is_held_until_its_dockerfile_is_read() -> None:
    """A classic build whose decision needs its Dockerfile: the context is held,
    then decided on, then forwarded (the held bytes first, the rest streamed)."""
    assert play(E.HEAD, E.HOLD, E.DOCKERFILE, E.ALLOW, E.FORWARD_STREAM, E.BODY_END, E.RESPONSE, E.FINISH) == [
        S.DECIDING, S.HOLDING, S.DECIDING, S.CONNECTING, S.SENDING, S.AWAITING,
        S.RESPONDING, S.IDLE]
    assert play(E.HEAD, E.HOLD, E.REFUSE)[-1] is S.DRAINING  # a context that cannot be read


def test_a_create_answer_is_verified_before_it_goes_out_or_is_refused() -> None:
    """A create's held answer: passed on once its image checks out, else
    refused (the answer was never sent, so a refusal still can be)."""
    answered = play(E.HEAD, E.BUFFER, E.BODY_END, E.ALLOW, E.FORWARD_ALL, E.RESPONSE)[-1]
    assert play(E.VERIFY, E.VERIFIED, E.FINISH, start=answered) == [S.VERIFYING, S.RESPONDING, S.IDLE]
    assert play(E.VERIFY, E.REFUSE, E.FINISH, start=answered) == [S.VERIFYING, S.DRAINING, S.IDLE]


def test_an_unrecorded_or_unconnectable_request_is_refused_while_connecting() -> None:
    """CONNECTING ends in a refusal when the audit log cannot record the
    decision or the daemon cannot be reached."""
    assert play(E.HEAD, E.ALLOW, E.REFUSE, E.FINISH) == [S.DECIDING, S.CONNECTING, S.DRAINING, S.IDLE]


# -- what the table guarantees ------------------------------------------------


def _reachable(start: State) -> set[State]:
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_state_is_reachable_from_idle() -> None:
    """No state in the enum is dead weight: each is reached from IDLE."""
    assert _reachable(S.IDLE) == set(State)


def test_no_state_is_a_dead_end() -> None:
    """From every state the connection can close, and from every state but the
    splice and CLOSED an exchange can still end and the next one begin."""
    for state in State:
        assert S.CLOSED in _reachable(state)
        if state not in (S.SPLICED, S.CLOSED):
            assert S.IDLE in _reachable(state), state


def test_waiting_states_read_nothing_but_can_be_left() -> None:
    """The states in which the client's bytes stay unread take no client event
    (no body, no end, no head), and DECIDING and CONNECTING have a way on."""
    for state in WAITING:
        for event in (E.HEAD, E.BODY_END):
            assert NEXT[state][event] is None
    assert advance(S.DECIDING, E.ALLOW) is S.CONNECTING
    assert advance(S.CONNECTING, E.FORWARD_ALL) is S.AWAITING


def test_the_dense_table_is_the_table() -> None:
    """``NEXT`` (what the protocol steps through) says exactly what ``TRANSITIONS`` says."""
    for state in State:
        for event in Event:
            assert NEXT[state][event] == TRANSITIONS.get((state, event))


def test_an_illegal_move_names_the_state_and_the_event() -> None:
    """A move the table lacks raises, naming both, for the log line of the 500."""
    with pytest.raises(IllegalTransition, match="IDLE cannot take FINISH") as caught:
        advance(S.IDLE, E.FINISH)
    assert caught.value.state is S.IDLE and caught.value.event is E.FINISH
