"""Would an eBPF sockmap relay beat the splice relay on attach?  (A probe, not a product.)

    python benchmarks/_sockmap_probe.py [--mb 1024] [--rounds 3] [--write 32768]
        [--relay-buf BYTES] [--ways direct,splice,sockmap] [--only-semantics]

Issue 19 asks attach at 0.95x direct; the splice relay reaches about 0.8x
(benchmarks/README.md, "Why the relay floor is below 0.95x on attach").  The
idea tested here: let the kernel move a hijacked session's bytes by itself,
with an SK_SKB stream-verdict program attached to a ``BPF_MAP_TYPE_SOCKMAP``
that redirects every skb arriving on one socket to the egress of the other,
so no process is woken per read.

The pipeline is ``writer -> [socketpair A] -> relay -> [socketpair B] ->
reader`` (AF_UNIX stream, as dockerd's socket and a local client), moving
``--mb`` MiB in ``--write``-byte writes (dockerd copies attach output
in 32 KiB writes), three ways in every round, in rotating order:

- ``direct``: writer -> reader over one socketpair (no relay);
- ``splice``: a relay thread per direction moving socket -> pipe -> socket
  with blocking ``splice(2)`` and a 1 MiB pipe (``_relay.py``'s loop, the
  cheapest form of dockgate's ``fastio.kernelsplice``);
- ``sockmap``: the relay's two sockets in two one-slot SOCKMAPs, each with a
  verdict program that counts the skb's bytes into an array map and
  redirects it to the other map's socket (egress).  The relay process only
  waits for EOF, then for a barrier (below) before it passes the EOF on.

For each: MiB/s, and CPU per MiB of the three processes (rusage of the
children) and of the whole machine (``/proc/stat``, which includes the
kernel workers that carry the sockmap's redirects, and anything else that
runs: note the load average).  A session that has not ended within
``max(60, MB / 10)`` seconds is reported as stalled.  ``--only-semantics`` checks
what the product would need instead: EOF reaching the relay in user space
while its socket is in a sockmap, the fate of bytes queued before the socket
entered the map, whether everything redirected has been sent when the relay
sees EOF (it has not: the destination's sockmap backlog may still hold it),
and a barrier for that: a marker redirected to the destination socket's
*ingress* through the same in-order backlog, readable there only once every
skb queued before it has been sent.  Findings: benchmarks/README.md, "Why the
relay floor is below 0.95x on attach".

The BPF programs are assembled here by hand (no clang, libbpf or bcc); each
instruction is spelled out where it is built.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import select
import socket
import struct
import sys
import threading
import time

MB = 1 << 20  # MiB: this probe counts in binary megabytes

# --- the bpf(2) system call ------------------------------------------------

_SYS_BPF = 321  # x86_64
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM = 0, 1, 2, 3
BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_SOCKMAP = 2, 15
BPF_PROG_TYPE_SK_SKB = 14
BPF_SK_SKB_STREAM_VERDICT = 5
BPF_FUNC_map_lookup_elem, BPF_FUNC_sk_redirect_map = 1, 52


def bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, 128)
    r = _libc.syscall(_SYS_BPF, cmd, buf, 128)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({cmd}): {os.strerror(e)}")
    return int(r)


def map_create(kind: int, key: int, value: int, entries: int) -> int:
    return bpf(BPF_MAP_CREATE, struct.pack("<IIIII", kind, key, value, entries, 0))


def _ptr(b: ctypes.Array[ctypes.c_char]) -> int:
    return ctypes.addressof(b)


def map_update(fd: int, key: bytes, value: bytes) -> None:
    k, v = ctypes.create_string_buffer(key), ctypes.create_string_buffer(value)
    bpf(BPF_MAP_UPDATE_ELEM, struct.pack("<IIQQQ", fd, 0, _ptr(k), _ptr(v), 0))


def map_lookup(fd: int, key: bytes, size: int) -> bytes:
    k, v = ctypes.create_string_buffer(key), ctypes.create_string_buffer(size)
    bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("<IIQQQ", fd, 0, _ptr(k), _ptr(v), 0))
    return v.raw[:size]


def map_delete(fd: int, key: bytes) -> None:
    k = ctypes.create_string_buffer(key)
    bpf(BPF_MAP_DELETE_ELEM, struct.pack("<IIQ", fd, 0, _ptr(k)))


# --- instruction encoding (struct bpf_insn: u8 code, u4 dst|u4 src, s16 off, s32 imm)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov64_reg(dst: int, src: int) -> bytes:  # BPF_ALU64 | BPF_MOV | BPF_X
    return insn(0xBF, dst, src)


def mov64_imm(dst: int, imm: int) -> bytes:  # BPF_ALU64 | BPF_MOV | BPF_K
    return insn(0xB7, dst, 0, 0, imm)


def add64_imm(dst: int, imm: int) -> bytes:  # BPF_ALU64 | BPF_ADD | BPF_K
    return insn(0x07, dst, 0, 0, imm)


def st_mem_w(dst: int, off: int, imm: int) -> bytes:  # BPF_ST | BPF_MEM | BPF_W
    return insn(0x62, dst, 0, off, imm)


def ldx_mem_w(dst: int, src: int, off: int) -> bytes:  # BPF_LDX | BPF_MEM | BPF_W
    return insn(0x61, dst, src, off)


def atomic_add64(dst: int, src: int, off: int) -> bytes:  # BPF_STX | BPF_ATOMIC | BPF_DW, BPF_ADD
    return insn(0xDB, dst, src, off, 0x00)


def ld_map_fd(dst: int, fd: int) -> bytes:  # BPF_LD | BPF_IMM | BPF_DW, src = BPF_PSEUDO_MAP_FD
    return insn(0x18, dst, 1, 0, fd) + insn(0, 0, 0, 0, 0)


def jeq_imm(dst: int, imm: int, off: int) -> bytes:  # BPF_JMP | BPF_JEQ | BPF_K
    return insn(0x15, dst, 0, off, imm)


def call(helper: int) -> bytes:  # BPF_JMP | BPF_CALL
    return insn(0x85, 0, 0, 0, helper)


def exit_() -> bytes:  # BPF_JMP | BPF_EXIT
    return insn(0x95)


BPF_F_INGRESS = 1


def verdict_program(counts_fd: int, slot: int, target_fd: int, flags: int = 0) -> bytes:
    """Count the skb's bytes into ``counts[slot]``, redirect it to ``target[0]``.

    ``flags`` 0 sends it out of the target socket (egress); ``BPF_F_INGRESS``
    queues it for reading on the target socket.
    """
    return b"".join([
        mov64_reg(6, 1),                 # r6 = skb (r1 is clobbered by calls)
        st_mem_w(10, -4, slot),          # *(u32 *)(fp - 4) = slot
        mov64_reg(2, 10),                # r2 = fp
        add64_imm(2, -4),                # r2 = fp - 4 (&key)
        ld_map_fd(1, counts_fd),         # r1 = &counts (two instruction slots)
        call(BPF_FUNC_map_lookup_elem),  # r0 = &counts[slot] or NULL
        jeq_imm(0, 0, 2),                # if r0 == NULL skip the count
        ldx_mem_w(1, 6, 0),              # r1 = skb->len (__sk_buff.len, offset 0)
        atomic_add64(0, 1, 0),           # lock *(u64 *)r0 += r1
        mov64_reg(1, 6),                 # r1 = skb
        ld_map_fd(2, target_fd),         # r2 = &target (two instruction slots)
        mov64_imm(3, 0),                 # r3 = key 0
        mov64_imm(4, flags),             # r4 = flags: 0 egress, 1 ingress of the target
        call(BPF_FUNC_sk_redirect_map),  # r0 = SK_PASS (redirected) or SK_DROP
        exit_(),                         # return r0
    ])


def prog_load(code: bytes) -> int:
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack(
        "<IIQQIIQII16sII", BPF_PROG_TYPE_SK_SKB, len(code) // 8, _ptr(insns), _ptr(lic),
        1, len(log), _ptr(log), 0, 0, b"dg_sockmap", 0, 0,
    )
    try:
        return bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        raise OSError(e.errno, f"{e}; verifier: {log.value.decode(errors='replace')}") from None


def prog_attach(map_fd: int, prog_fd: int, kind: int) -> None:
    bpf(BPF_PROG_ATTACH, struct.pack("<IIII", map_fd, prog_fd, kind, 0))


class SockmapPair:
    """Two sockets redirected into each other in the kernel, with byte counts."""

    def __init__(self, a: socket.socket, b: socket.socket) -> None:
        self.counts = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 4)
        self.map_a = map_create(BPF_MAP_TYPE_SOCKMAP, 4, 4, 1)
        self.map_b = map_create(BPF_MAP_TYPE_SOCKMAP, 4, 4, 1)
        self.prog_a = prog_load(verdict_program(self.counts, 0, self.map_b))  # a -> b
        self.prog_b = prog_load(verdict_program(self.counts, 1, self.map_a))  # b -> a
        prog_attach(self.map_a, self.prog_a, BPF_SK_SKB_STREAM_VERDICT)
        prog_attach(self.map_b, self.prog_b, BPF_SK_SKB_STREAM_VERDICT)
        # The target first, so that nothing is redirected to an empty slot.
        map_update(self.map_b, struct.pack("<I", 0), struct.pack("<I", b.fileno()))
        map_update(self.map_a, struct.pack("<I", 0), struct.pack("<I", a.fileno()))
        # The barrier: a private socketpair whose far end's skbs are
        # redirected to b's *ingress*.  The sockmap backlog of b handles its
        # queue in order, so when the marker can be read from b, every skb
        # redirected to b's egress before it has been sent.
        self.mark_tx, self.mark_rx = socket.socketpair()
        self.map_m = map_create(BPF_MAP_TYPE_SOCKMAP, 4, 4, 1)
        self.prog_m = prog_load(verdict_program(self.counts, 2, self.map_b, BPF_F_INGRESS))
        prog_attach(self.map_m, self.prog_m, BPF_SK_SKB_STREAM_VERDICT)
        map_update(self.map_m, struct.pack("<I", 0), struct.pack("<I", self.mark_rx.fileno()))

    def barrier(self, b: socket.socket, timeout: float = 5.0) -> bool:
        """Wait until everything redirected to b's egress so far has been sent."""
        self.mark_tx.send(b"!")
        if not select.select([b], [], [], timeout)[0]:
            return False
        return b.recv(16, socket.MSG_DONTWAIT) == b"!"

    def count(self, slot: int) -> int:
        return int(struct.unpack("<Q", map_lookup(self.counts, struct.pack("<I", slot), 8))[0])

    def remove(self) -> None:
        for fd in (self.map_a, self.map_b, self.map_m):
            with contextlib.suppress(OSError):
                map_delete(fd, struct.pack("<I", 0))

    def close(self) -> None:
        self.remove()
        for fd in (self.prog_a, self.prog_b, self.prog_m, self.map_a, self.map_b, self.map_m,
                   self.counts):
            os.close(fd)
        self.mark_tx.close()
        self.mark_rx.close()


# --- the pipeline ------------------------------------------------------------


def _writer(sock: socket.socket, total: int, size: int) -> None:
    block = bytes(range(256)) * (size // 256)
    left = total
    while left:
        n = sock.send(block[: min(size, left)])
        left -= n
    sock.shutdown(socket.SHUT_WR)


def _reader(sock: socket.socket, fd_out: int) -> None:
    buf = bytearray(MB)
    got = 0
    while n := sock.recv_into(buf):
        got += n
    os.write(fd_out, struct.pack("<Q", got))


def _splice_relay(src: socket.socket, dst: socket.socket) -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    fcntl.fcntl(w, 1031, MB)  # F_SETPIPE_SZ
    while n := os.splice(src.fileno(), w, MB, flags=1):
        while n:
            n -= os.splice(r, dst.fileno(), n, flags=1)
    dst.shutdown(socket.SHUT_WR)


def _sockmap_relay(a: socket.socket, b: socket.socket, fd_out: int) -> None:
    pair = SockmapPair(a, b)
    poll = select.poll()
    poll.register(a.fileno(), select.POLLIN | select.POLLRDHUP)
    while True:
        poll.poll()
        try:
            data = a.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        if data:
            raise RuntimeError(f"relay read {len(data)} bytes in user space")
        break  # EOF seen in user space
    counted = pair.count(0)
    if not pair.barrier(b):  # everything redirected has been sent
        raise RuntimeError("the barrier did not come through")
    b.shutdown(socket.SHUT_WR)
    os.write(fd_out, struct.pack("<Q", counted))
    pair.close()


def _cpu_total() -> tuple[float, float]:
    """(busy, all) seconds of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, sum(fields) / tick


def _kworkers() -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        if comm.startswith("kworker"):
            rest = s[s.rindex(")") + 2 :].split()
            total += int(rest[11]) + int(rest[12])
    return total / tick


def _fork(fn, *args) -> int:  # type: ignore[no-untyped-def]
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn(*args)
        except BaseException as e:
            print(f"child {fn.__name__}: {e!r}", file=sys.stderr)
            code = 1
        os._exit(code)
    return pid


def _relay_buffers(socks: list[socket.socket], size: int) -> None:
    for s in socks:
        if size:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def run(way: str, total: int, size: int, relay_buf: int) -> dict[str, float]:
    r_out, w_out = os.pipe()
    rel_r, rel_w = os.pipe()
    a0, a1 = socket.socketpair()
    pids = []
    busy0, all0 = _cpu_total()
    kw0 = _kworkers()
    t0 = time.perf_counter()
    if way == "direct":
        pids.append(_fork(_reader, a1, w_out))
        pids.append(_fork(_writer, a0, total, size))
        socks = [a0, a1]
    else:
        b0, b1 = socket.socketpair()
        socks = [a0, a1, b0, b1]
        _relay_buffers([a1, b0], relay_buf)
        pids.append(_fork(_reader, b1, w_out))
        if way == "splice":
            def relay() -> None:
                t = threading.Thread(target=_splice_relay, args=(b0, a1), daemon=True)
                t.start()
                _splice_relay(a1, b0)
            pids.append(_fork(relay))
        else:
            pids.append(_fork(_sockmap_relay, a1, b0, rel_w))
            time.sleep(0.05)  # the maps are in place before the first byte
        pids.append(_fork(_writer, a0, total, size))
    relay_sock = socks[1]  # kept open to look into its queue if the session stalls
    for s in socks:
        if s is not relay_sock:
            s.close()
    deadline = time.monotonic() + max(60.0, total / MB / 10)
    # The reader reports its count when it has seen EOF.
    if not select.select([r_out], [], [], deadline - time.monotonic())[0]:
        inq = struct.unpack("i", fcntl.ioctl(relay_sock, 0x541B, b"0000"))[0]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        raise RuntimeError(f"{way}: stalled, {inq} bytes in the relay socket's queue")
    relay_sock.close()
    user = sys_ = 0.0
    for pid in pids:
        _, status, ru = os.wait4(pid, 0)
        if status:
            raise RuntimeError(f"{way}: a child failed ({status})")
        user += ru.ru_utime
        sys_ += ru.ru_stime
    dt = time.perf_counter() - t0
    busy1, all1 = _cpu_total()
    kw1 = _kworkers()
    got = struct.unpack("<Q", os.read(r_out, 8))[0]
    if got != total:
        raise RuntimeError(f"{way}: reader got {got} of {total}")
    res = {"MiB/s": total / MB / dt, "proc ms/MiB": (user + sys_) * 1000 / (total / MB),
           "machine ms/MiB": (busy1 - busy0) * 1000 / (total / MB),
           "kworker ms/MiB": (kw1 - kw0) * 1000 / (total / MB),
           "machine busy %": 100 * (busy1 - busy0) / (all1 - all0)}
    if way == "sockmap":
        counted = struct.unpack("<Q", os.read(rel_r, 8))[0]
        if counted != total:
            raise RuntimeError(f"sockmap: counted {counted} of {total}")
    for fd in (r_out, w_out, rel_r, rel_w):
        os.close(fd)
    return res


# --- semantics --------------------------------------------------------------


def semantics() -> None:
    # 1. Bytes queued before the socket enters the map, then more after.
    a0, a1 = socket.socketpair()
    b0, b1 = socket.socketpair()
    a0.sendall(b"before-")
    pair = SockmapPair(a1, b0)
    time.sleep(0.05)
    b1.setblocking(False)
    try:
        early = b1.recv(100)
    except BlockingIOError:
        early = b""
    print(f"queued before insertion, nothing after: reader has {early!r}; "
          f"relay socket FIONREAD {struct.unpack('i', fcntl.ioctl(a1, 0x541B, b'0000'))[0]}")
    a0.sendall(b"after")
    time.sleep(0.05)
    try:
        late = b1.recv(100)
    except BlockingIOError:
        late = b""
    print(f"then more bytes: reader has {early + late!r} (counted {pair.count(0)})")
    # 2. EOF seen in user space on a socket in the map, the other way too.
    b1.sendall(b"reply")
    time.sleep(0.05)
    print(f"reverse direction: writer end reads {a0.recv(100)!r} (counted {pair.count(1)})")
    a0.shutdown(socket.SHUT_WR)
    a1.setblocking(False)
    ready = select.select([a1], [], [], 1.0)[0]
    try:
        eof = a1.recv(100)
    except BlockingIOError:
        eof = None
    print(f"after the writer's shutdown: relay socket readable={bool(ready)}, recv -> {eof!r}")
    pair.close()
    for s in (a0, a1, b0, b1):
        s.close()
    # 3. Shut the destination right after EOF: is anything still in the backlog lost?
    for use_barrier in (False, True):
        _shut_after_eof(use_barrier)


def _shut_after_eof(use_barrier: bool) -> None:
    lost = 0
    for _trial in range(20):
        a0, a1 = socket.socketpair()
        b0, b1 = socket.socketpair()
        pair = SockmapPair(a1, b0)
        n = 8 * MB
        got = [0]
        t = threading.Thread(target=_count_reads, args=(b1, got))
        t.start()
        _writer(a0, n, 65536)
        select.select([a1], [], [])
        a1.setblocking(False)
        assert a1.recv(10) == b""
        if use_barrier and not pair.barrier(b0):
            raise RuntimeError("the barrier did not come through")
        b0.shutdown(socket.SHUT_WR)
        t.join()
        if got[0] != n:
            lost += 1
        pair.close()
        for s in (a0, a1, b0, b1):
            s.close()
    how = "after the barrier" if use_barrier else "as soon as EOF is seen"
    print(f"shutting the destination {how}: {lost} of 20 sessions lost bytes")


def _count_reads(sock: socket.socket, got: list[int]) -> None:
    buf = bytearray(MB)
    with contextlib.suppress(OSError):
        while k := sock.recv_into(buf):
            got[0] += k


def _write_quietly(sock: socket.socket, total: int, size: int) -> None:
    with contextlib.suppress(OSError):
        _writer(sock, total, size)


def stalls(write: int, relay_buf: int, trials: int = 5, n: int = 256 * MB) -> None:
    """Sessions that stop moving: bytes left in the relay socket's queue with no wake-up."""
    stalled = []
    for _trial in range(trials):
        a0, a1 = socket.socketpair()
        b0, b1 = socket.socketpair()
        _relay_buffers([a1, b0], relay_buf)
        pair = SockmapPair(a1, b0)
        got = [0]
        threads = [threading.Thread(target=_count_reads, args=(b1, got), daemon=True),
                   threading.Thread(target=_write_quietly, args=(a0, n, write), daemon=True)]
        for t in threads:
            t.start()
        last, since = -1, time.monotonic()
        while got[0] < n and time.monotonic() - since < 3.0:
            if got[0] != last:
                last, since = got[0], time.monotonic()
            time.sleep(0.05)
        if got[0] < n:
            inq = struct.unpack("i", fcntl.ioctl(a1, 0x541B, b"0000"))[0]
            stalled.append(f"{got[0]} of {n} bytes, {inq} in the relay socket's queue")
        pair.close()
        for s in (a0, a1, b0, b1):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in threads:
            t.join(5)
    print(f"{write}-byte writes, relay buffers {relay_buf or 'default'}: {len(stalled)} of "
          f"{trials} sessions stalled" + (": " + "; ".join(stalled) if stalled else ""), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", type=int, default=32768)
    ap.add_argument("--relay-buf", type=int, default=0,
                    help="SO_SNDBUF and SO_RCVBUF of the relay's two sockets (0: the default)")
    ap.add_argument("--ways", default="direct,splice,sockmap")
    ap.add_argument("--only-semantics", action="store_true")
    args = ap.parse_args()
    if args.only_semantics:
        semantics()
        for write in (32768, 131072):
            for buf in (0, 4 * MB):
                stalls(write, buf)
        return 0
    ways = args.ways.split(",")
    results: dict[str, list[dict[str, float]]] = {w: [] for w in ways}
    for rnd in range(args.rounds):
        order = ways[rnd % len(ways):] + ways[: rnd % len(ways)]
        for way in order:
            res = run(way, args.mb * MB, args.write, args.relay_buf)
            results[way].append(res)
            load = os.getloadavg()[0]
            print(f"round {rnd + 1} {way:8s} " + "  ".join(f"{k} {v:7.2f}" for k, v in res.items())
                  + f"  load {load:.2f}", flush=True)
    print()
    for way in ways:
        rs = results[way]
        mbs = [r["MiB/s"] for r in rs]
        base = results.get("direct", rs)
        ratio = [r["MiB/s"] / d["MiB/s"] for r, d in zip(rs, base, strict=True)]
        print(f"{way:8s} MiB/s {min(mbs):7.1f}-{max(mbs):7.1f}  ratio to direct "
              f"{min(ratio):.2f}-{max(ratio):.2f}  proc ms/MiB "
              + "/".join(f"{r['proc ms/MiB']:.2f}" for r in rs)
              + "  machine ms/MiB " + "/".join(f"{r['machine ms/MiB']:.2f}" for r in rs)
              + "  kworker ms/MiB " + "/".join(f"{r['kworker ms/MiB']:.2f}" for r in rs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
