"""Unit tests for dockgate.buildkit.h2relay and grpcwire: two real HTTP/2 endpoints
(h2's ``H2Connection``) talk through the relay in memory."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import DataFrame, Frame

from dockgate.buildkit.grpcwire import MessageReader, Unreadable, frame_message
from dockgate.buildkit.h2relay import H2Relay, Plan, RelayError, Side, grpc_message


class Hooks:
    """Records what the relay shows; mediates paths under /judged/, refuses /no/."""

    def __init__(self, hold: bool = True) -> None:
        self.hold = hold
        self.messages: list[tuple[int, Side, bytes]] = []
        self.ended: list[int] = []

    def opened(self, stream: int, headers: list[tuple[str, str]]) -> Plan | str | None:
        path = dict(headers)[":path"]
        if path.startswith("/no/"):
            return "dockgate: denied by policy test rule r: no"
        if path.startswith("/judged/"):
            return Plan(frozenset({"client"}))
        if path.startswith("/whole/"):
            return Plan(frozenset({"client"}), whole=frozenset({"client"}))
        return None

    def message(self, stream: int, side: Side, payload: bytes) -> bool:
        self.messages.append((stream, side, payload))
        return self.hold

    def unreadable(self, stream: int, side: Side, error: Unreadable) -> str:
        return f"dockgate: unreadable: {error}"

    def closed(self, stream: int) -> None:
        self.ended.append(stream)

    def ending(self, stream: int, side: Side) -> str | None:
        return None


class Pair:
    """A gRPC-ish client (the CLI) and server (the daemon) joined by an H2Relay.

    Every byte is checked on the way: what the relay passes on is compared with
    what it was given, frame for frame, where nothing was mediated.
    """

    def __init__(self, hooks: Hooks) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.relay = H2Relay("client", hooks)
        self.events: dict[str, list[Any]] = {"client": [], "server": []}
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.pump()

    def pump(self) -> tuple[bytes, bytes]:
        """Move bytes until both sides are quiet; (bytes the server got, bytes the client got)."""
        got_server = got_client = b""
        for _ in range(20):
            up = self.client.data_to_send()
            down = self.server.data_to_send()
            if up:
                self.relay.receive("client", up)
            if down:
                self.relay.receive("daemon", down)
            to_server = self.relay.take("daemon")
            to_client = self.relay.take("client")
            if to_server:
                got_server += to_server
                self.events["server"] += self.server.receive_data(to_server)
            if to_client:
                got_client += to_client
                self.events["client"] += self.client.receive_data(to_client)
            if not (up or down or to_server or to_client):
                break
        return got_server, got_client

    def call(self, path: str, body: bytes) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                       (":path", path), (":authority", "d"),
                                       ("content-type", "application/grpc"), ("te", "trailers")])
        wire = frame_message(body)
        for i in range(0, len(wire), 16000):
            self.client.send_data(sid, wire[i:i + 16000], end_stream=i + 16000 >= len(wire))
        return sid

    def of(self, side: str, kind: type) -> list[Any]:
        return [e for e in self.events[side] if isinstance(e, kind)]


def test_blind_streams_pass_byte_for_byte() -> None:
    """A stream the hooks leave alone reaches the other side as exactly the bytes sent,
    both ways, SETTINGS and WINDOW_UPDATE included."""
    hooks = Hooks()
    pair = Pair(hooks)
    sid = pair.call("/svc/Status", b"x" * 60000)
    sent = pair.client.data_to_send()
    pair.relay.receive("client", sent)
    assert pair.relay.take("daemon") == sent
    pair.events["server"] += pair.server.receive_data(sent)
    pair.pump()
    pair.server.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    pair.server.send_data(sid, frame_message(b"answer"))
    pair.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    down = pair.server.data_to_send()
    pair.relay.receive("daemon", down)
    assert pair.relay.take("client") == down
    assert not hooks.messages


def test_held_message_is_released_unchanged() -> None:
    """A mediated request's last DATA frame (the one completing the message) is held
    until release, then everything passes as it came."""
    hooks = Hooks()
    pair = Pair(hooks)
    sid = pair.call("/judged/Solve", b"solve-request" * 3000)
    pair.pump()
    assert hooks.messages == [(sid, "client", b"solve-request" * 3000)]
    early = b"".join(e.data for e in pair.of("server", h2.events.DataReceived))
    assert len(early) == 32000  # the frames before the last: the message is not whole
    assert pair.of("server", h2.events.RequestReceived)  # headers always go on
    pair.relay.release(sid)
    released = pair.relay.take("daemon")
    pair.events["server"] += pair.server.receive_data(released)
    data = b"".join(e.data for e in pair.of("server", h2.events.DataReceived))
    assert data == frame_message(b"solve-request" * 3000)


def test_refused_stream_answers_permission_denied_and_credits_window() -> None:
    """A refusal: the client gets trailers-only grpc-status 7 with dockgate's message,
    the daemon a RST_STREAM(CANCEL) (it never had the whole message), and the dropped
    bytes come back to the client as connection window; the next call still decodes (HPACK stayed in step)."""
    hooks = Hooks()
    pair = Pair(hooks)
    body = b"q" * 30000
    sid = pair.call("/judged/Solve", body)
    pair.pump()
    before = pair.client.outbound_flow_control_window
    pair.relay.refuse(sid, "dockgate: denied by policy p rule r: 100% no")
    pair.pump()
    ended = pair.of("client", h2.events.ResponseReceived)
    assert ended and dict((k.decode(), v.decode()) for k, v in ended[0].headers)[
        "grpc-status"] == "7"
    message = dict((k.decode(), v.decode()) for k, v in ended[0].headers)["grpc-message"]
    assert message == "dockgate: denied by policy p rule r: 100%25 no"
    assert [e.error_code for e in pair.of("server", h2.events.StreamReset)] == [8]
    # The frame completing the message was held and dropped: its bytes come back.
    assert pair.client.outbound_flow_control_window == before + len(frame_message(body)) - 16000
    hooks.hold = False
    sid2 = pair.call("/judged/Solve", b"again")
    pair.pump()
    assert dict(pair.of("server", h2.events.RequestReceived)[-1].headers)[":path"] == \
        "/judged/Solve"
    assert b"".join(e.data for e in pair.of("server", h2.events.DataReceived)
                    if e.stream_id == sid2) == frame_message(b"again")


def test_refused_at_open() -> None:
    """A call the hooks refuse by path never gets its message to the daemon."""
    hooks = Hooks()
    pair = Pair(hooks)
    pair.call("/no/Session", b"tunnel")
    pair.pump()
    assert not pair.of("server", h2.events.DataReceived)
    answer = pair.of("client", h2.events.ResponseReceived)[0]
    assert (b"grpc-status", b"7") in answer.headers


def test_unreadable_message_refuses_the_stream() -> None:
    """A compressed message on a mediated stream ends the call (fail closed)."""
    hooks = Hooks()
    pair = Pair(hooks)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                   (":path", "/judged/Solve"), (":authority", "d")])
    pair.client.send_data(sid, b"\x01\x00\x00\x00\x02zz", end_stream=True)
    pair.pump()
    assert not pair.of("server", h2.events.DataReceived)
    answer = pair.of("client", h2.events.ResponseReceived)[0]
    assert any(k == b"grpc-message" and b"unreadable" in v for k, v in answer.headers)


def test_bad_preface_and_push_promise_end_the_connection() -> None:
    """Bytes that are not HTTP/2 end the connection rather than pass."""
    relay = H2Relay("client", Hooks())
    with pytest.raises(RelayError):
        relay.receive("client", b"GET / HTTP/1.1\r\n\r\n" + b"x" * 10)
    relay = H2Relay("client", Hooks())
    relay.receive("client", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    push = b"\x00\x00\x04\x05\x04\x00\x00\x00\x01\x00\x00\x00\x02"
    with pytest.raises(RelayError):
        relay.receive("daemon", push)


def test_message_reader() -> None:
    """gRPC messages are cut out whatever the DATA boundaries; bad ones are refused."""
    reader = MessageReader(limit=100)
    wire = frame_message(b"one") + frame_message(b"") + frame_message(b"three")
    got = [m for i in range(len(wire)) for m in reader.feed(wire[i:i + 1])]
    assert got == [b"one", b"", b"three"] and not reader.partial
    with pytest.raises(Unreadable):
        MessageReader(limit=10).feed(frame_message(b"x" * 11))
    reader = MessageReader()
    reader.feed(frame_message(b"abc")[:4])
    with pytest.raises(Unreadable):
        reader.end()
    assert grpc_message("é%\n") == b"%C3%A9%25%0A"


# -- rewriting a held message ------------------------------------------------------


def _data_frames(wire: bytes) -> list[DataFrame]:
    """The DATA frames in ``wire`` (bytes the relay sent one side), parsed with hyperframe."""
    out: list[DataFrame] = []
    pos = 0
    while pos < len(wire):
        f, length = Frame.parse_frame_header(memoryview(wire[pos:pos + 9]))
        f.parse_body(memoryview(wire[pos + 9:pos + 9 + length]))
        if isinstance(f, DataFrame):
            out.append(f)
        pos += 9 + length
    return out


def _acknowledge(pair: Pair) -> None:
    """The daemon reads everything it got: h2 sends the WINDOW_UPDATEs it owes."""
    for e in pair.of("server", h2.events.DataReceived):
        pair.server.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
    pair.events["server"].clear()
    pair.pump()


def _rewritten(body: bytes, extra: int) -> tuple[Pair, int, bytes, bytes]:
    """A whole-held call of ``body`` released as ``body`` grown by ``extra`` bytes (shrunk,
    when negative): (pair, stream, what the daemon got on the wire, the new body)."""
    pair = Pair(Hooks())
    sid = pair.call("/whole/Solve", body)
    pair.pump()
    assert not pair.of("server", h2.events.DataReceived)  # held from the first byte
    new = body + b"+" * extra if extra >= 0 else body[:extra]
    pair.relay.release(sid, ("client", body, new))
    wire = pair.relay.take("daemon")
    pair.events["server"] += pair.server.receive_data(wire)
    pair.pump()
    return pair, sid, wire, new


def test_split_message_is_replaced_in_frames_the_daemon_accepts() -> None:
    """A message the client split over three DATA frames is held whole and goes on as the
    new message, in DATA frames no larger than the daemon's SETTINGS_MAX_FRAME_SIZE,
    END_STREAM on the last as the client's had it; the daemon's h2 reads it whole."""
    body = b"s" * 40000
    pair, sid, wire, new = _rewritten(body, 3000)
    frames = _data_frames(wire)
    assert len(frames) == 3 and all(len(f.data) <= 16384 for f in frames)
    assert ["END_STREAM" in f.flags for f in frames] == [False, False, True]
    got = b"".join(e.data for e in pair.of("server", h2.events.DataReceived))
    assert got == frame_message(new)
    assert [e.stream_id for e in pair.of("server", h2.events.StreamEnded)] == [sid]


def test_grown_message_surplus_is_held_back_from_window_updates() -> None:
    """The daemon returns credit for the bytes it got (the client's plus the surplus);
    the client gets credit for exactly what it sent: its view of the connection window
    never exceeds the daemon's."""
    body = b"g" * 40000
    pair, _, _, _ = _rewritten(body, 3000)
    _acknowledge(pair)
    assert pair.client.outbound_flow_control_window == pair.server.inbound_flow_control_window
    assert not pair.relay.surplus.get(("daemon", 0))


def test_shrunk_message_difference_is_credited_by_dockgate() -> None:
    """A message that went on shorter: the daemon never acknowledges the bytes it did not
    get, so dockgate gives the client that difference itself."""
    body = b"k" * 40000
    pair, _, _, _ = _rewritten(body, -3000)
    _acknowledge(pair)
    assert pair.client.outbound_flow_control_window == pair.server.inbound_flow_control_window


def test_client_data_waits_for_the_window_the_surplus_took() -> None:
    """After a grown rewrite the client believes it has more window than the daemon
    gave: a DATA frame that would overrun the daemon's window waits until the daemon's
    next WINDOW_UPDATE (h2 on the daemon's side would end the connection on an
    overrun), then goes on unchanged."""
    body = b"w" * 60000
    pair, _, _, _ = _rewritten(body, 2000)
    room = pair.client.outbound_flow_control_window
    assert room > pair.relay.window["daemon"]  # the surplus: what the client may overrun
    sid = pair.call("/svc/Status", b"z" * (room - 5))
    pair.pump()
    assert not [e for e in pair.of("server", h2.events.DataReceived) if e.stream_id == sid]
    _acknowledge(pair)
    got = b"".join(e.data for e in pair.events["server"]
                   if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
    assert got == frame_message(b"z" * (room - 5))
    _acknowledge(pair)
    assert pair.client.outbound_flow_control_window == pair.server.inbound_flow_control_window


def test_compressed_whole_message_is_refused() -> None:
    """A compressed gRPC message on a stream held whole is one dockgate cannot decode,
    so cannot rewrite: the call is refused and nothing reaches the daemon."""
    hooks = Hooks()
    pair = Pair(hooks)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                   (":path", "/whole/Solve"), (":authority", "d"),
                                   ("grpc-encoding", "gzip")])
    pair.client.send_data(sid, b"\x01\x00\x00\x00\x02zz", end_stream=True)
    pair.pump()
    assert not pair.of("server", h2.events.DataReceived) and not hooks.messages
    answer = pair.of("client", h2.events.ResponseReceived)[0]
    assert any(k == b"grpc-message" and b"compressed" in v for k, v in answer.headers)


def test_rewrite_of_a_message_not_held_is_refused() -> None:
    """``release`` replacing a message other than the one held (a caller's mistake)
    refuses the stream instead of sending either."""
    pair = Pair(Hooks())
    sid = pair.call("/whole/Solve", b"real")
    pair.pump()
    pair.relay.release(sid, ("client", b"other", b"new"))
    pair.pump()
    assert not pair.of("server", h2.events.DataReceived)
    assert pair.of("server", h2.events.StreamReset)


def test_whole_message_larger_than_the_window_is_refused() -> None:
    """A message held whole that the client cannot finish without credit dockgate
    withholds is refused with a message that says so (never a hang)."""
    pair = Pair(Hooks())
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                   (":path", "/whole/Solve"), (":authority", "d")])
    wire = b"\x00" + (100000).to_bytes(4, "big") + b"x" * (65535 - 5)  # the whole window
    for i in range(0, len(wire), 16000):
        pair.client.send_data(sid, wire[i:i + 16000])
    pair.pump()
    assert not pair.of("server", h2.events.DataReceived)
    answer = pair.of("client", h2.events.ResponseReceived)[0]
    assert any(k == b"grpc-message" and b"flow-control" in v for k, v in answer.headers)
