"""A frame-level HTTP/2 mediator for BuildKit's upgraded connections (pure, sans-IO).

``POST /grpc`` and ``POST /session`` switch to h2c; from then on the connection
carries gRPC.  On ``/grpc`` the CLI is the HTTP/2 client (it calls BuildKit's
Control and LLBBridge services); on ``/session`` the roles are reversed and
the daemon calls the services the CLI exposes (FileSync, Secrets, Auth...).
``H2Relay`` sits between the two and is told which side opens streams.

Why frames are relayed, not re-encoded
--------------------------------------
An HTTP/2 stack such as h2's ``H2Connection`` terminates the connection: it
decodes every header block and encodes it again with its own HPACK encoder,
chooses its own frame sizes, padding and flow-control updates, and answers
SETTINGS and PING itself.  What reaches the peer would be equivalent, not the
same bytes, and every difference is a place where dockgate and the daemon
could read the connection differently.  ``H2Relay`` instead cuts the byte
stream into frames with hyperframe (the h2 project's frame codec) and sends
each frame on exactly as it came (the raw bytes, never a re-serialisation):
SETTINGS, PING, WINDOW_UPDATE, PRIORITY and unknown frame types pass
untouched, so the two endpoints negotiate with each other as if directly.

HPACK state is per direction and per connection: each endpoint's decoder
follows the other's encoder through every header block, in order.  The relay
keeps one hpack ``Decoder`` per direction and decodes every header block (it
needs ``:path`` and metadata anyway), so its view stays in step with the
receiving peer's.  Header blocks are therefore never dropped, held or
reordered: a block on a stream dockgate refused still goes on (a peer
decodes blocks on closed streams for exactly this reason, and ignores the
rest).  What dockgate itself sends (the gRPC answer of a refused stream) is
encoded with literal-without-indexing representations and literal names, so
it changes no peer's dynamic table and needs none of it.

What is mediated
----------------
For each stream the initiator opens, ``Hooks.opened`` sees the decoded
request headers and says whether the stream is relayed blind, refused, or
mediated: then the gRPC messages one or both sides send are reassembled
(``grpcwire``) and shown to ``Hooks.message``, which may ask to *hold* that
direction.  Held DATA frames (from the one that completes the held message on;
the receiver cannot use a message's first bytes without its last, and reading
them is what lets the sender go on past the flow-control window) wait in order
until ``release`` sends them on unchanged, or ``refuse`` ends the stream: the
initiator gets a trailers-only answer (``grpc-status`` 7, PERMISSION_DENIED,
with dockgate's message, END_STREAM), the responder a RST_STREAM(CANCEL),
and the held DATA is dropped, with
connection flow-control credit given back to its sender (the receiver will
never acknowledge bytes it never saw).  DATA arriving later on a refused
stream is dropped and credited the same way.  Before a mediated side's end of
the stream (END_STREAM on DATA, or trailers) goes on, ``Hooks.ending`` may
refuse the stream instead: for a transfer the receiver only uses once it is
complete, that end is what dockgate withholds.

Rewriting a message
--------------------
A plan may hold a side's messages *whole* (``Plan.whole``): none of that side's
DATA goes on before ``release``, which may then put a different message in
place of the one held (dockgate adds the tenant's owner label to a solve).
The new message goes out in DATA frames no larger than the receiver's
SETTINGS_MAX_FRAME_SIZE, END_STREAM on the last when the held ones had it.
The receiver now gets more (or fewer) bytes than the sender sent, and its
WINDOW_UPDATEs return credit for what it got: the relay tracks the receiver's
connection and stream windows from the bytes it sends and the receiver's
SETTINGS and WINDOW_UPDATEs, gives the sender the difference itself when the
message shrank, and when it grew takes the difference out of the receiver's
next WINDOW_UPDATEs to the sender (connection and stream alike; an update
reduced to nothing is not sent).  Until that surplus is paid back the sender
may believe it has more window than the receiver gave: a DATA frame that
would overrun the receiver's tracked connection window then waits, with
everything the sender sent after it, until the receiver's next update.  A
whole message too large for the receiver's stream window (the sender would
stall waiting for credit dockgate withholds) refuses the stream.

Fail closed: a frame hyperframe rejects, a header block hpack cannot decode,
CONTINUATION out of place or PUSH_PROMISE end the connection
(``RelayError``); a gRPC message that cannot be read on a mediated stream
refuses the stream with a message that says so (the build ends with it).
Nothing on a mediated stream passes unread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import hpack
from hpack.hpack import encode_integer
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from dockgate.buildkit.grpcwire import MessageReader, Unreadable, frame_message

Side = Literal["client", "daemon"]
"""The proxy's two connections: the caller's (the CLI) and the daemon's."""

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEAD = 9
_CANCEL = 0x8
_PERMISSION_DENIED = 7
_END_STREAM = 0x1
_END_HEADERS = 0x4
_DEFAULT_WINDOW = 65535
_DEFAULT_FRAME = 16384
_MAX_BLOCK = 1 << 20
"""Largest header block (all its frames) the relay collects before decoding."""


class RelayError(Exception):
    """The connection cannot go on: both sides must be dropped."""


def other(side: Side) -> Side:
    return "daemon" if side == "client" else "client"


@dataclass(frozen=True)
class Plan:
    """A mediated stream: whose gRPC messages ``Hooks.message`` sees."""

    inspect: frozenset[Side]
    whole: frozenset[Side] = frozenset()
    """Sides whose DATA is held from the first byte until ``release`` (which may then
    replace the held message); each must also be in ``inspect``."""


class Hooks(Protocol):
    """What the I/O layer decides; called while frames are taken apart."""

    def opened(self, stream: int, headers: list[tuple[str, str]]) -> Plan | str | None:
        """A new stream: None relays it blind, a Plan mediates it, a str refuses it
        with that message."""

    def message(self, stream: int, side: Side, payload: bytes) -> bool:
        """One whole gRPC message from ``side``; True holds that direction (from this
        message on) until ``release`` or ``refuse``, which are called after
        ``receive`` returns, never from here."""

    def unreadable(self, stream: int, side: Side, error: Unreadable) -> str:
        """The refusal message for a stream whose messages cannot be read."""

    def ending(self, stream: int, side: Side) -> str | None:
        """``side`` ends its half of a mediated stream it sends messages on: None lets
        the end go on, a str refuses the stream with that message first."""

    def closed(self, stream: int) -> None:
        """The stream is over (both ends, a reset or a refusal)."""


@dataclass
class _Direction:
    reader: MessageReader = field(default_factory=MessageReader)
    held: list[bytes] = field(default_factory=list)
    held_flow: int = 0
    held_data: bytearray = field(default_factory=bytearray)
    held_end: bool = False
    holding: bool = False
    whole: bool = False


@dataclass
class _Stream:
    plan: Plan | None
    dirs: dict[Side, _Direction]
    ended: set[Side] = field(default_factory=set)
    answered: bool = False
    dead: bool = False


def _literal(name: bytes, value: bytes) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return (b"\x00" + bytes(encode_integer(len(name), 7)) + name
            + bytes(encode_integer(len(value), 7)) + value)


def grpc_message(text: str) -> bytes:
    """``grpc-message`` percent-encoding (gRPC over HTTP/2): UTF-8, with '%' and bytes
    outside printable ASCII as %XX."""
    out = bytearray()
    for b in text.encode("utf-8"):
        out += b"%%%02X" % b if b < 0x20 or b > 0x7E or b == 0x25 else bytes((b,))
    return bytes(out)


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame as it goes on the wire (RFC 9113 4.1)."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def denial_frames(stream: int, message: str, *, answered: bool) -> bytes:
    """A gRPC error answer: trailers-only (or trailers, once response headers went out)
    with END_STREAM, PERMISSION_DENIED and ``message``."""
    block = b""
    if not answered:
        block += _literal(b":status", b"200") + _literal(b"content-type", b"application/grpc")
    block += _literal(b"grpc-status", b"%d" % _PERMISSION_DENIED)
    block += _literal(b"grpc-message", grpc_message(message))
    return frame(0x1, _END_HEADERS | _END_STREAM, stream, block)


def window_update(stream: int, increment: int) -> bytes:
    return frame(0x8, 0, stream, struct.pack(">I", increment))


def rst_stream(stream: int, code: int = _CANCEL) -> bytes:
    return frame(0x3, 0, stream, struct.pack(">I", code))


class H2Relay:
    """Relays one h2c connection frame by frame (see the module docstring).

    ``receive`` takes bytes one side sent; ``take`` gives the bytes to write to
    a side.  ``initiator`` is the side whose streams are requests (the HTTP/2
    client): it sends the connection preface.
    """

    def __init__(self, initiator: Side, hooks: Hooks) -> None:
        self.initiator: Side = initiator
        self._hooks = hooks
        self._out: dict[Side, list[bytes]] = {"client": [], "daemon": []}
        self._buf: dict[Side, bytearray] = {"client": bytearray(), "daemon": bytearray()}
        self._preface = {initiator: True, other(initiator): False}
        self._decoders: dict[Side, hpack.Decoder] = {}
        for side in ("client", "daemon"):
            decoder = hpack.Decoder(max_header_list_size=1 << 24)
            decoder.max_allowed_table_size = 1 << 24
            self._decoders[side] = decoder
        self._block: dict[Side, list[Frame | bytes]] = {"client": [], "daemon": []}
        self._streams: dict[int, _Stream] = {}
        self._last = 0
        """The highest stream id the initiator opened (ids only grow, RFC 9113 5.1.1)."""
        self.window: dict[Side, int] = {"client": _DEFAULT_WINDOW, "daemon": _DEFAULT_WINDOW}
        """Connection flow-control window of each side as a receiver: what may still be
        sent to it."""
        self.surplus: dict[tuple[Side, int], int] = {}
        """Credit ``side`` will return (for stream id, 0 the connection) for bytes dockgate
        sent it beyond what their sender sent: withheld from its WINDOW_UPDATEs."""
        self._initial: dict[Side, int] = {"client": _DEFAULT_WINDOW, "daemon": _DEFAULT_WINDOW}
        self._max_frame: dict[Side, int] = {"client": _DEFAULT_FRAME, "daemon": _DEFAULT_FRAME}
        self._stream_credit: dict[tuple[Side, int], int] = {}
        self._stalled: set[Side] = set()

    # -- output -------------------------------------------------------------

    def take(self, side: Side) -> bytes:
        """What to write to ``side`` now."""
        out = self._out[side]
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def _send(self, side: Side, data: bytes) -> None:
        self._out[side].append(data)

    # -- input --------------------------------------------------------------

    def receive(self, side: Side, data: bytes) -> None:
        """Bytes from ``side``; RelayError ends the connection."""
        buf = self._buf[side]
        buf += data
        if self._preface[side]:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise RelayError("the connection does not start with HTTP/2's preface")
                return
            if buf[:len(PREFACE)] != PREFACE:
                raise RelayError("the connection does not start with HTTP/2's preface")
            self._send(other(side), PREFACE)
            del buf[:len(PREFACE)]
            self._preface[side] = False
        view = memoryview(buf)
        pos = run = 0
        try:
            while len(buf) - pos >= _HEAD:
                try:
                    parsed, length = Frame.parse_frame_header(view[pos:pos + _HEAD])
                except HyperframeError as e:
                    raise RelayError(f"unreadable HTTP/2 frame header: {e}") from None
                end = pos + _HEAD + length
                if end > len(buf):
                    break
                if isinstance(parsed, DataFrame) and self._overruns(other(side), length):
                    self._stalled.add(side)  # resumed by the receiver's next WINDOW_UPDATE
                    break
                if isinstance(parsed, DataFrame) and parsed.stream_id not in self._streams \
                        and not self._block[side]:
                    self.window[other(side)] -= length
                    pos = end  # DATA of a stream relayed blind: passes in the run, unparsed
                    continue
                if run < pos:
                    self._send(other(side), bytes(view[run:pos]))
                raw = bytes(view[pos:end])
                try:
                    parsed.parse_body(memoryview(raw)[_HEAD:])
                except HyperframeError as e:
                    raise RelayError(f"unreadable HTTP/2 {type(parsed).__name__}: {e}") from None
                self._frame(side, parsed, raw)
                pos = run = end
            if run < pos:
                self._send(other(side), bytes(view[run:pos]))
        finally:
            view.release()
            del buf[:pos]
        stalled = other(side)
        if stalled in self._stalled:
            self._stalled.discard(stalled)  # what ``side`` sent may have opened its window
            self.receive(stalled, b"")

    def _overruns(self, receiver: Side, length: int) -> bool:
        """Whether ``length`` more DATA bytes would overrun ``receiver``'s connection window
        while dockgate owes it a surplus (otherwise the sender's own accounting holds)."""
        return self.surplus.get((receiver, 0), 0) > 0 and length > self.window[receiver]

    def _frame(self, side: Side, f: Frame, raw: bytes) -> None:
        block = self._block[side]
        if block:
            if not isinstance(f, ContinuationFrame) or f.stream_id != block[0].stream_id:  # type: ignore[union-attr]
                raise RelayError("a header block interrupted by another frame")
            self._collect(side, f, raw)
            return
        if isinstance(f, HeadersFrame):
            self._collect(side, f, raw)
        elif isinstance(f, ContinuationFrame):
            raise RelayError("CONTINUATION without a header block")
        elif isinstance(f, PushPromiseFrame):
            raise RelayError("PUSH_PROMISE on a BuildKit connection")
        elif isinstance(f, DataFrame):
            self._data(side, f, raw)
        elif isinstance(f, RstStreamFrame):
            self._reset(side, f.stream_id, raw)
        elif isinstance(f, WindowUpdateFrame):
            self._window_update(side, f, raw)
        else:
            if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
                self._settings(side, f)
            self._send(other(side), raw)

    # -- flow control -----------------------------------------------------------

    def _settings(self, side: Side, f: SettingsFrame) -> None:
        """``side``'s SETTINGS bound what is sent to it (applied as its peer acks them;
        dockgate sends only what the peer's own accounting would)."""
        window = f.settings.get(SettingsFrame.INITIAL_WINDOW_SIZE)
        if window is not None:
            self._initial[side] = window
        size = f.settings.get(SettingsFrame.MAX_FRAME_SIZE)
        if size is not None:
            self._max_frame[side] = size

    def _window_update(self, side: Side, f: WindowUpdateFrame, raw: bytes) -> None:
        """``side`` gives credit: tracked, then relayed less what dockgate owes back."""
        sid, increment = f.stream_id, f.window_increment
        if sid == 0:
            self.window[side] += increment
        elif sid in self._streams:
            key = (side, sid)
            self._stream_credit[key] = self._stream_credit.get(key, 0) + increment
        owed = self.surplus.get((side, sid), 0)
        if owed:
            kept = min(owed, increment)
            increment -= kept
            if owed > kept:
                self.surplus[(side, sid)] = owed - kept
            else:
                del self.surplus[(side, sid)]
            raw = window_update(sid, increment) if increment else b""
        if raw:
            self._send(other(side), raw)

    # -- header blocks --------------------------------------------------------

    def _collect(self, side: Side, f: Frame, raw: bytes) -> None:
        block = self._block[side]
        if not block:
            block.append(f)
        block.append(raw)
        if sum(len(r) for r in block[1:] if isinstance(r, bytes)) > _MAX_BLOCK:
            raise RelayError("a header block larger than dockgate reads")
        if "END_HEADERS" not in f.flags:
            return
        first = block[0]
        assert isinstance(first, HeadersFrame)
        raws = [r for r in block[1:] if isinstance(r, bytes)]
        fragments = [first.data] + [_fragment(r) for r in raws[1:]]
        block.clear()
        try:
            headers = [(_text(n), _text(v)) for n, v in
                       self._decoders[side].decode(b"".join(fragments), raw=True)]
        except (hpack.HPACKError, UnicodeDecodeError) as e:
            raise RelayError(f"undecodable header block: {e}") from None
        self._headers(side, first.stream_id, headers, b"".join(raws), "END_STREAM" in first.flags)

    def _headers(self, side: Side, sid: int, headers: list[tuple[str, str]], raw: bytes,
                 end: bool) -> None:
        st = self._streams.get(sid)
        if st is None and side == self.initiator and sid % 2 == 1 and sid > self._last:
            self._last = sid
            self._send(other(side), raw)
            self._open(sid, headers)
            st = self._streams.get(sid)
            if st is not None and end:
                self._ended(sid, st, side)
            return
        if st is None or st.dead:
            self._send(other(side), raw)  # the peer's decoder must see every block
            return
        direction = st.dirs.get(side)
        if direction is not None and (direction.holding or direction.held):
            # Trailers cannot overtake held DATA, nor wait behind it (blocks stay in order).
            self.refuse(sid, "dockgate: the stream ended while dockgate held its messages")
            self._send(other(side), raw)
            return
        why = self._hooks.ending(sid, side) if direction is not None and end else None
        if why is not None:
            self.refuse(sid, why)
            self._send(other(side), raw)
            return
        if side != self.initiator:
            st.answered = True
        self._send(other(side), raw)
        if end:
            self._ended(sid, st, side)

    def _open(self, sid: int, headers: list[tuple[str, str]]) -> None:
        plan = self._hooks.opened(sid, headers)
        if isinstance(plan, str):
            self._streams[sid] = _Stream(None, {})
            self.refuse(sid, plan)
            return
        dirs = {side: _Direction(holding=side in plan.whole, whole=side in plan.whole)
                for side in plan.inspect} if plan is not None else {}
        if plan is not None:
            self._streams[sid] = _Stream(plan, dirs)

    # -- DATA -----------------------------------------------------------------

    def _data(self, side: Side, f: DataFrame, raw: bytes) -> None:
        sid = f.stream_id
        st = self._streams.get(sid)
        if st is None:
            self._send(other(side), raw)
            return
        if st.dead:
            self._credit(side, f.flow_controlled_length)
            return
        direction = st.dirs.get(side)
        end = "END_STREAM" in f.flags
        if direction is None:
            self.window[other(side)] -= f.flow_controlled_length
            self._send(other(side), raw)
        else:
            direction.held.append(raw)
            direction.held_flow += f.flow_controlled_length
            if direction.whole:
                direction.held_data += f.data
                direction.held_end = end
            try:
                for payload in direction.reader.feed(bytes(f.data)):
                    if self._hooks.message(sid, side, payload):
                        direction.holding = True
                if end:
                    direction.reader.end()
            except Unreadable as e:
                self.refuse(sid, self._hooks.unreadable(sid, side, e))
                return
            why = self._hooks.ending(sid, side) if end else None
            if why is None and direction.whole and direction.reader.partial and \
                    direction.held_flow >= min(self._initial[other(side)],
                                               self.window[other(side)]):
                why = ("dockgate: a BuildKit request larger than the daemon's flow-control "
                       "window, which dockgate cannot hold whole to rewrite it; the build is "
                       "refused")
            if why is not None:
                self.refuse(sid, why)
                return
            self._drain(side, direction)
        if end:
            self._ended(sid, st, side)

    def _drain(self, side: Side, direction: _Direction) -> None:
        """Send on what a direction queued, unless a message in it is held.

        Frames before the one that completes a message go on: the receiver's
        gRPC cannot act on a message it has not got whole, and its reading them
        is what opens the flow-control window for the rest (a message larger than
        the window would otherwise never complete).  The frame that completes a
        message the hooks hold stays, with everything after it, until ``release``.
        """
        if direction.holding or not direction.held:
            return
        self.window[other(side)] -= direction.held_flow
        self._send(other(side), b"".join(direction.held))
        self._clear(direction)

    @staticmethod
    def _clear(direction: _Direction) -> None:
        direction.held.clear()
        direction.held_flow = 0
        direction.held_data.clear()
        direction.held_end = False

    def _credit(self, side: Side, n: int) -> None:
        """Give back connection window for ``n`` flow-controlled bytes ``side`` sent
        and dockgate dropped."""
        if n > 0:
            self._send(side, window_update(0, n))

    # -- ends -------------------------------------------------------------

    def _reset(self, side: Side, sid: int, raw: bytes) -> None:
        st = self._streams.pop(sid, None)
        if st is not None and st.dead:
            self._streams[sid] = st  # dockgate already ended it on both sides
            return
        self._send(other(side), raw)
        if st is not None:
            self._drop_held(st)
            self._closed(sid)

    def _ended(self, sid: int, st: _Stream, side: Side) -> None:
        st.ended.add(side)
        if len(st.ended) == 2:
            self._streams.pop(sid, None)
            self._closed(sid)

    def _closed(self, sid: int) -> None:
        for side in ("client", "daemon"):
            self._stream_credit.pop((side, sid), None)
            self.surplus.pop((side, sid), None)
        self._hooks.closed(sid)

    def _drop_held(self, st: _Stream) -> None:
        for side, direction in st.dirs.items():
            self._credit(side, direction.held_flow)
            self._clear(direction)
            direction.holding = False

    # -- decisions ----------------------------------------------------------

    def streams(self) -> Iterable[int]:
        """The streams the relay still tracks (mediated, not yet over)."""
        return [sid for sid, st in self._streams.items() if not st.dead]

    def release(self, sid: int, replace: tuple[Side, bytes, bytes] | None = None) -> None:
        """Send on what ``sid`` held; its messages are judged again from here.

        ``replace`` is ``(side, held, new)``: that side holds its messages whole and
        what it holds is exactly the one gRPC message ``held`` (payload); ``new`` goes
        on in its place (see "Rewriting a message").  Anything else refuses the stream.
        """
        st = self._streams.get(sid)
        if st is None or st.dead:
            return
        if replace is not None:
            side, held, new = replace
            direction = st.dirs.get(side)
            if direction is None or not direction.whole or \
                    bytes(direction.held_data) != frame_message(held):
                self.refuse(sid, "dockgate: the request dockgate rewrites is not the one it "
                                 "held; the build is refused")
                return
            why = self._replace(sid, side, direction, frame_message(new))
            if why is not None:
                self.refuse(sid, why)
                return
        for side, direction in st.dirs.items():
            direction.holding = False
            self._drain(side, direction)

    def _replace(self, sid: int, side: Side, direction: _Direction, wire: bytes) -> str | None:
        """Send ``wire`` in place of what ``direction`` held (None), or why it cannot."""
        receiver = other(side)
        stream_window = self._initial[receiver] + self._stream_credit.get((receiver, sid), 0)
        if len(wire) > min(stream_window, self.window[receiver]):
            return ("dockgate: the daemon's flow-control window has no room for the rewritten "
                    "request; the build is refused")
        size = self._max_frame[receiver]
        chunks = [wire[i:i + size] for i in range(0, len(wire), size)] or [b""]
        last = len(chunks) - 1
        for n, chunk in enumerate(chunks):
            flags = _END_STREAM if n == last and direction.held_end else 0
            self._send(receiver, frame(0x0, flags, sid, chunk))
        self.window[receiver] -= len(wire)
        diff = len(wire) - direction.held_flow
        if diff < 0:
            self._credit(side, -diff)
            if side not in self._streams[sid].ended:
                self._send(side, window_update(sid, -diff))
        elif diff > 0:
            for key in ((receiver, 0), (receiver, sid)):
                self.surplus[key] = self.surplus.get(key, 0) + diff
        self._clear(direction)
        return None

    def refuse(self, sid: int, message: str) -> None:
        """End ``sid``: PERMISSION_DENIED with ``message`` to the initiator, CANCEL to the
        responder, held DATA dropped and credited."""
        st = self._streams.get(sid)
        if st is None or st.dead:
            return
        st.dead = True
        self._drop_held(st)
        responder = other(self.initiator)
        if responder not in st.ended:
            self._send(self.initiator, denial_frames(sid, message, answered=st.answered))
        if self.initiator not in st.ended or responder not in st.ended:
            self._send(responder, rst_stream(sid))
        self._closed(sid)


def _fragment(raw: bytes) -> bytes:
    """A CONTINUATION frame's header block fragment (it has no padding)."""
    return raw[_HEAD:]


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
