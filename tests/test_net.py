"""Tests for goroutines.net: real sockets on 127.0.0.1, ::1 and Unix sockets only.

Every scenario runs through ``run_clean``, which checks that it leaves
nothing behind: no goroutine but main when main returns, no fd open that
was not open before ``gr.run``, and no extra thread afterwards. Events are
ordered with channels and ``wait_parked`` (a goroutine shows as "IO wait"
only once it is suspended in the poller), never with sleeps; the only
waits on the clock are the deadlines under test.
"""

from __future__ import annotations

import builtins
import os
import random
import re
import socket
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import goroutines as gr
from goroutines import net
from goroutines._runtime import _netpoll, _scheduler
from goroutines._runtime._goroutine import GStatus

T = TypeVar("T")
LOCAL = "127.0.0.1:0"


def _fds() -> dict[str, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory listing's own fd, gone already
            pass
    return out


def run_clean(main: Callable[[], Awaitable[T]], procs: int) -> T:
    """``gr.run(main)``, then check that no goroutine, fd or thread is left."""
    fds = _fds()
    threads = threading.active_count()

    async def wrapper() -> T:
        result = await main()
        deadline = time.monotonic() + 5.0
        # Goroutines that signalled "done" may still be on their way out.
        while gr.num_goroutine() > 1 and time.monotonic() < deadline:
            await gr.sleep(0.001)
        assert gr.num_goroutine() == 1, gr.stack_dump()
        return result

    result = gr.run(wrapper, procs=procs)
    left = {k: v for k, v in _fds().items() if fds.get(k) != v}
    assert left == {}, f"fds left open: {left}"
    assert threading.active_count() <= threads, threading.enumerate()
    return result


async def wait_parked(reason: str, n: int) -> None:
    """Yield until exactly ``n`` goroutines are parked with ``reason``."""
    deadline = time.monotonic() + 5.0
    while True:
        got = gr.stack_dump().count(f"[{reason}")
        if got == n:
            return
        assert time.monotonic() < deadline, f"{got} of {n} goroutines parked on {reason}"
        await gr.gosched()


async def pair(ln: net.Listener | None = None) -> tuple[net.Conn, net.Conn]:
    """A connected (client, server) pair over TCP on 127.0.0.1."""
    own = ln is None
    if ln is None:
        ln = await net.listen("tcp", LOCAL)
    try:
        c = await net.dial("tcp", net.join_host_port(*_hp(ln.addr)))
        s = await ln.accept()
    finally:
        if own:
            ln.close()
    return c, s


def _hp(addr: net.Addr) -> tuple[str, int]:
    assert isinstance(addr, tuple)
    return addr


async def read_all(c: net.Conn) -> bytes:
    buf = bytearray()
    while data := await c.read():
        buf += data
    return bytes(buf)


async def echo(c: net.Conn) -> None:
    async with c:
        while data := await c.read():
            await c.write(data)


async def serve(ln: net.Listener, handler: Callable[[net.Conn], Awaitable[None]]) -> None:
    """Accept until the listener is closed, a goroutine per connection."""
    while True:
        try:
            c = await ln.accept()
        except net.ErrClosed:
            return
        gr.go(handler, c)


# -- echo -------------------------------------------------------------------------


def test_echo_200_concurrent_clients(procs: int) -> None:
    n_clients = 200
    rng = random.Random(1234)
    payloads = [rng.randbytes(rng.randrange(1000, 8000)) for _ in range(n_clients)]

    async def main() -> list[bytes]:
        ln = await net.listen("tcp", LOCAL)
        gr.go(serve, ln, echo)
        addr = net.join_host_port(*_hp(ln.addr))
        results: list[bytes] = [b""] * n_clients
        wg = gr.WaitGroup()

        async def writer(c: net.Conn, data: bytes, seed: int) -> None:
            chunks = random.Random(seed)
            i = 0
            while i < len(data):
                n = chunks.randrange(1, 3000)
                await c.write(data[i : i + n])
                i += n
            c.close_write()

        async def client(i: int) -> None:
            async with await net.dial("tcp", addr) as c:
                gr.go(writer, c, payloads[i], i)
                results[i] = await read_all(c)
            wg.done()

        for i in range(n_clients):
            wg.add()
            gr.go(client, i)
        await wg.wait()
        ln.close()
        return results

    results = run_clean(main, procs)
    for i, (got, want) in enumerate(zip(results, payloads, strict=True)):
        assert got == want, f"client {i}: {len(got)} bytes back of {len(want)}"


def test_concurrent_writes_are_not_interleaved(procs: int) -> None:
    n_writers, n_msgs, size = 8, 5, 100_000

    async def main() -> bytes:
        c, s = await pair()
        wg = gr.WaitGroup()

        async def writer(k: int) -> None:
            for _ in range(n_msgs):
                await c.write(bytes([k]) * size)
            wg.done()

        async def closer() -> None:
            await wg.wait()
            c.close()

        for k in range(n_writers):
            wg.add()
            gr.go(writer, k)
        gr.go(closer)
        async with s:
            return await read_all(s)

    data = run_clean(main, procs)
    assert len(data) == n_writers * n_msgs * size
    blocks = [data[i : i + size] for i in range(0, len(data), size)]
    for b in blocks:
        assert b == b[:1] * size, "a write was interleaved with another"
    assert sorted(b[0] for b in blocks) == sorted(list(range(n_writers)) * n_msgs)


def test_concurrent_accepts(procs: int) -> None:
    n_acceptors, n_dials = 8, 50

    async def main() -> list[int]:
        ln = await net.listen("tcp", LOCAL)
        addr = net.join_host_port(*_hp(ln.addr))
        counts = [0] * n_acceptors
        accepted: gr.Chan[None] = gr.Chan()
        closed = gr.WaitGroup()

        async def acceptor(k: int) -> None:
            while True:
                try:
                    c = await ln.accept()
                except net.ErrClosed:
                    closed.done()
                    return
                counts[k] += 1
                c.close()
                await accepted.send(None)

        for k in range(n_acceptors):
            closed.add()
            gr.go(acceptor, k)
        conns = [await net.dial("tcp", addr) for _ in range(n_dials)]
        for _ in range(n_dials):
            await accepted.recv()
        for c in conns:
            c.close()
        ln.close()
        await closed.wait()
        return counts

    assert sum(run_clean(main, procs)) == n_dials


def test_a_short_read_allocates_what_came_not_what_was_asked() -> None:
    """``read(65536)`` of 100 bytes must not allocate 64 KiB and shrink it:
    glibc keeps each shrunk tail as a free chunk too small for the next
    such read, and a server reading on several Ms grew its RSS by MiBs a
    minute that way (the soak, with every Python object accounted for).
    tracemalloc's peak shows the transient allocation. procs=1 and no
    syscall, so that one M runs every read and its scratch buffer is made
    once, in the warm-up."""

    async def main() -> None:
        c, s = await pair()
        async with c, s:
            for warm in (True, False):
                if not warm:
                    tracemalloc.reset_peak()
                    base = tracemalloc.get_traced_memory()[0]
                for _ in range(20):
                    await c.write(b"x" * 100)
                    assert await s.read(65536) == b"x" * 100
                if not warm:
                    grew = tracemalloc.get_traced_memory()[1] - base
                    assert grew < 16384, f"20 reads of 100 bytes peaked {grew} bytes above"
        async with (
            await net.listen_packet("udp", LOCAL) as a,
            await net.listen_packet("udp", LOCAL) as b,
        ):
            for warm in (True, False):
                if not warm:
                    tracemalloc.reset_peak()
                    base = tracemalloc.get_traced_memory()[0]
                for _ in range(20):
                    await b.write_to(b"y" * 100, a.local_addr)
                    assert (await a.read_from())[0] == b"y" * 100
                if not warm:
                    grew = tracemalloc.get_traced_memory()[1] - base
                    assert grew < 16384, f"20 datagrams of 100 bytes peaked {grew} bytes above"

    tracemalloc.start()
    try:
        run_clean(main, 1)
    finally:
        tracemalloc.stop()


def test_waiting_for_a_socket_runs_no_import(monkeypatch: pytest.MonkeyPatch, procs: int) -> None:
    """A read that parks in the poller, and the write that wakes it, execute
    no ``import`` statement: ``PollDesc.wait`` used to import from
    ``_scheduler`` at every call (a cycle), ~10 000 CPU instructions, a
    fifth of an echo server's round trip. Every executed import statement
    goes through ``builtins.__import__`` once it is replaced."""
    imports: list[str] = []
    real = builtins.__import__

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        imports.append(name)
        return real(name, *args, **kwargs)

    async def main() -> None:
        c, s = await pair()
        async with c, s:
            got: gr.Chan[bytes] = gr.Chan()

            async def reader() -> None:
                for _ in range(20):
                    await got.send(await s.read(100))

            gr.go(reader)
            await wait_parked("IO wait", 1)
            monkeypatch.setattr(builtins, "__import__", counting)
            for i in range(20):  # the reader parks in the poller before each write
                await c.write(b"%d" % i)
                assert await got.recv() == b"%d" % i
            builtins.__import__ = real  # (monkeypatch.setattr itself imports)

    run_clean(main, procs)
    assert imports == []


# -- half-close, reset --------------------------------------------------------------


def test_half_close(procs: int) -> None:
    async def main() -> None:
        c, s = await pair()
        await c.write(b"request")
        c.close_write()
        assert await read_all(s) == b"request"  # the server sees end of stream ...
        await s.write(b"reply")  # ... and can still answer
        s.close()
        assert await read_all(c) == b"reply"
        with pytest.raises(BrokenPipeError):
            await c.write(b"more")
        c.close()

    run_clean(main, procs)


def test_reset_wakes_blocked_reader(procs: int) -> None:
    async def main() -> None:
        c, s = await pair()
        got: gr.Chan[BaseException | None] = gr.Chan(1)

        async def reader() -> None:
            try:
                await s.read()
            except OSError as e:
                await got.send(e)
            else:
                await got.send(None)

        gr.go(reader)
        await wait_parked("IO wait", 1)
        c.set_linger(0)
        c.close()  # sends RST
        err = await got.recv()
        assert isinstance(err, ConnectionResetError), err
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await s.write(b"x")
        s.close()

    run_clean(main, procs)


def test_reset_before_read(procs: int) -> None:
    async def main() -> None:
        c, s = await pair()
        await s.write(b"unread")  # unread data at close also makes Linux reset
        c.set_linger(0)
        c.close()
        with pytest.raises(ConnectionResetError):
            while await s.read():
                pass
        s.close()

    run_clean(main, procs)


# -- deadlines -----------------------------------------------------------------------


def test_write_blocks_then_deadline(procs: int) -> None:
    """A client that never reads: the server's write fills the socket buffers,
    parks, and the write deadline wakes it with TimeoutError. Other goroutines
    keep running meanwhile, even on one P."""

    payload = b"x" * (16 << 20)  # allocated outside the timed part: it can take 0.1 s

    async def main() -> None:
        c, s = await pair()
        ticks = 0

        async def ticker(stop: gr.Chan[None]) -> None:
            nonlocal ticks
            while (await gr.select(stop.recv, gr.after(0.01).recv))[0] == 1:
                ticks += 1

        stop: gr.Chan[None] = gr.Chan()
        gr.go(ticker, stop)
        start = time.monotonic()
        s.set_write_deadline(start + 0.3)
        with pytest.raises(TimeoutError, match="i/o timeout"):
            await s.write(payload)
        elapsed = time.monotonic() - start
        await stop.send(None)
        assert 0.3 <= elapsed < 3.0
        assert ticks >= 3, "the blocked write stalled the other goroutines"
        # The connection still works once the deadline is lifted.
        s.set_write_deadline(None)
        drained: gr.Chan[bytes] = gr.Chan(1)

        async def drain() -> None:
            await drained.send(await read_all(c))

        gr.go(drain)
        await s.write(b"<end>")
        s.close()
        assert (await drained.recv()).endswith(b"x<end>")
        c.close()

    run_clean(main, procs)


def test_read_deadline(procs: int) -> None:
    async def main() -> None:
        c, s = await pair()
        start = time.monotonic()
        c.set_read_deadline(start + 0.1)
        with pytest.raises(TimeoutError, match="i/o timeout"):
            await c.read()
        assert 0.1 <= time.monotonic() - start < 3.0
        # Past the deadline, a read fails at once even with data waiting (Go).
        await s.write(b"data")
        with pytest.raises(TimeoutError):
            await c.read()
        c.set_read_deadline(None)
        assert await c.read() == b"data"
        # A future deadline does not disturb a read that succeeds in time.
        c.set_deadline(time.monotonic() + 60)
        await s.write(b"more")
        assert await c.read() == b"more"
        # The write deadline is separate from the read one.
        c.set_write_deadline(time.monotonic() - 1)
        c.set_read_deadline(None)
        with pytest.raises(TimeoutError):
            await c.write(b"late")
        await s.write(b"still readable")
        assert await c.read() == b"still readable"
        c.close()
        s.close()

    run_clean(main, procs)


def test_deadline_moved_into_the_past_wakes_reader(procs: int) -> None:
    async def main() -> None:
        c, s = await pair()
        got: gr.Chan[BaseException | None] = gr.Chan(1)

        async def reader() -> None:
            try:
                await c.read()
            except TimeoutError as e:
                await got.send(e)
            else:
                await got.send(None)

        c.set_read_deadline(time.monotonic() + 3600)
        gr.go(reader)
        await wait_parked("IO wait", 1)
        c.set_read_deadline(time.monotonic() - 1)
        assert isinstance(await got.recv(), TimeoutError)
        c.close()
        s.close()

    run_clean(main, procs)


def test_many_goroutines_waiting_on_sockets_is_not_a_deadlock(procs: int) -> None:
    """Main waits on a WaitGroup while 100 goroutines wait on sockets nobody
    writes to: not a deadlock (Go does not report one either); the read
    deadlines end it."""
    n_pairs = 50

    async def main() -> list[type[BaseException] | None]:
        ln = await net.listen("tcp", LOCAL)
        pairs = [await pair(ln) for _ in range(n_pairs)]
        ln.close()
        wg = gr.WaitGroup()
        outcomes: list[type[BaseException] | None] = []  # list.append is atomic
        deadline = time.monotonic() + 0.2

        async def reader(c: net.Conn) -> None:
            c.set_read_deadline(deadline)
            try:
                await c.read()
                outcomes.append(None)
            except OSError as e:
                outcomes.append(type(e))
            finally:
                wg.done()

        for c, s in pairs:
            wg.add(2)
            gr.go(reader, c)
            gr.go(reader, s)
        await wg.wait()
        for c, s in pairs:
            c.close()
            s.close()
        return outcomes

    assert run_clean(main, procs) == [TimeoutError] * (2 * n_pairs)


def test_listener_deadline(procs: int) -> None:
    async def main() -> None:
        ln = await net.listen("tcp", LOCAL)
        ln.set_deadline(time.monotonic() + 0.05)
        with pytest.raises(TimeoutError):
            await ln.accept()
        ln.close()

    run_clean(main, procs)


# -- close ----------------------------------------------------------------------------


def test_accept_after_close(procs: int) -> None:
    async def main() -> None:
        ln = await net.listen("tcp", LOCAL)
        ln.close()
        ln.close()  # idempotent
        with pytest.raises(net.ErrClosed, match="use of closed network connection"):
            await ln.accept()
        with pytest.raises(net.ErrClosed):
            ln.set_deadline(None)
        assert "closed" in repr(ln)

    run_clean(main, procs)


def test_close_wakes_blocked_accepts(procs: int) -> None:
    n = 5

    async def main() -> None:
        ln = await net.listen("tcp", LOCAL)
        errs: gr.Chan[BaseException | None] = gr.Chan(n)

        async def acceptor() -> None:
            try:
                c = await ln.accept()
                c.close()
            except net.ErrClosed as e:
                await errs.send(e)
            else:
                await errs.send(None)

        for _ in range(n):
            gr.go(acceptor)
        await wait_parked("IO wait", 1)  # one in the poller ...
        await wait_parked("sync.Mutex.Lock", n - 1)  # ... the others queued behind it
        ln.close()
        for _ in range(n):
            assert isinstance(await errs.recv(), net.ErrClosed)

    run_clean(main, procs)


def test_close_wakes_blocked_read_and_write(procs: int) -> None:
    payload = b"y" * (16 << 20)  # more than the socket buffers take

    async def main() -> None:
        c, s = await pair()
        errs: gr.Chan[BaseException | None] = gr.Chan(2)

        async def op(aw: Callable[[], Awaitable[Any]]) -> None:
            try:
                await aw()
            except net.ErrClosed as e:
                await errs.send(e)
            else:
                await errs.send(None)

        gr.go(op, s.read)
        gr.go(op, lambda: s.write(payload))
        await wait_parked("IO wait", 2)
        s.close()
        for _ in range(2):
            assert isinstance(await errs.recv(), net.ErrClosed)
        s.close()  # idempotent
        with pytest.raises(net.ErrClosed):
            await s.read()
        with pytest.raises(net.ErrClosed):
            await s.write(b"z")
        with pytest.raises(net.ErrClosed):
            s.set_deadline(None)
        with pytest.raises(net.ErrClosed):
            s.close_write()
        c.close()

    run_clean(main, procs)


@pytest.mark.stress
def test_close_races_with_io(procs: int) -> None:
    """close() while other goroutines read and write the same Conn: every
    operation ends, with data, end of stream or a connection error, and the
    socket is closed exactly once, after the last operation let go of it
    (the leak check sees every fd released)."""
    n_pairs = 30
    ends = (net.ErrClosed, BrokenPipeError, ConnectionResetError)

    async def main() -> None:
        ln = await net.listen("tcp", LOCAL)
        wg = gr.WaitGroup()
        rng = random.Random(7)

        async def reader(c: net.Conn) -> None:
            try:
                while await c.read():
                    pass
            except ends:
                pass
            finally:
                wg.done()

        async def writer(c: net.Conn) -> None:
            try:
                while True:
                    await c.write(b"w" * 10_000)
            except ends:
                pass
            finally:
                wg.done()

        async def closer(c: net.Conn, spins: int) -> None:
            for _ in range(spins):
                await gr.gosched()
            c.close()
            wg.done()

        for _ in range(n_pairs):
            for conn in await pair(ln):
                wg.add(4)
                gr.go(reader, conn)
                gr.go(writer, conn)
                gr.go(writer, conn)
                gr.go(closer, conn, rng.randrange(20))
        await wg.wait()
        ln.close()

    run_clean(main, procs)


def test_async_with_closes(procs: int) -> None:
    async def main() -> None:
        async with await net.listen("tcp", LOCAL) as ln:
            addr = net.join_host_port(*_hp(ln.addr))
            async with await net.dial("tcp", addr) as c:
                s = await ln.accept()
        with pytest.raises(net.ErrClosed):
            await c.read()
        with pytest.raises(net.ErrClosed):
            await ln.accept()
        assert await s.read() == b""
        s.close()

    run_clean(main, procs)


def test_errclosed_is_the_pollers() -> None:
    assert net.ErrClosed is _netpoll.ErrClosed
    assert issubclass(net.ErrClosed, OSError)


# -- dial --------------------------------------------------------------------------------


def test_dial_refused(procs: int) -> None:
    async def main() -> None:
        ln = await net.listen("tcp", LOCAL)
        addr = net.join_host_port(*_hp(ln.addr))
        ln.close()
        with pytest.raises(ConnectionRefusedError, match=f"dial tcp {addr}"):
            await net.dial("tcp", addr)
        with pytest.raises(ConnectionRefusedError):
            await net.dial("tcp", addr, timeout=5)

    run_clean(main, procs)


def test_dial_timeout_already_expired(procs: int) -> None:
    async def main() -> None:
        async with await net.listen("tcp", LOCAL) as ln:
            addr = net.join_host_port(*_hp(ln.addr))
            for t in (0, -1):
                with pytest.raises(TimeoutError, match="i/o timeout"):
                    await net.dial("tcp", addr, timeout=t)

    run_clean(main, procs)


def test_dial_timeout(procs: int) -> None:
    """A listener that never accepts, with backlog 0: once its accept queue is
    full Linux drops further SYNs, so the next connect hangs until the dial
    timeout. Skipped if the kernel lets every connect through."""

    async def main() -> bool:
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(0)
        addr = net.join_host_port(*blocker.getsockname())
        conns: list[net.Conn] = []
        timed_out = False
        try:
            for _ in range(8):
                start = time.monotonic()
                try:
                    conns.append(await net.dial("tcp", addr, timeout=0.2))
                except TimeoutError as e:
                    elapsed = time.monotonic() - start
                    assert 0.2 <= elapsed < 3.0, elapsed
                    assert f"dial tcp {addr}: i/o timeout" in str(e)
                    timed_out = True
                    break
        finally:
            for c in conns:
                c.close()
            blocker.close()
        return timed_out

    if not run_clean(main, procs):
        pytest.skip("the kernel never dropped a SYN to a full accept queue")


def test_dial_resolves_names_in_syscall(procs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host name is resolved by getaddrinfo inside gr.syscall (the G is in
    SYSCALL state meanwhile); "localhost" may give ::1 first, which is
    refused, and then 127.0.0.1 is tried."""
    states: list[GStatus] = []
    real = socket.getaddrinfo

    def spy(*args: Any, **kwargs: Any) -> Any:
        states.append(_scheduler.current_g().status)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)

    async def main() -> None:
        async with await net.listen("tcp", LOCAL) as ln:
            port = _hp(ln.addr)[1]
            async with await net.dial("tcp", f"localhost:{port}") as c, await ln.accept() as s:
                await c.write(b"hi")
                assert await s.read() == b"hi"
            # Literal addresses are not resolved at all.
            async with await net.dial("tcp", f"127.0.0.1:{port}") as c, await ln.accept():
                pass

    run_clean(main, procs)
    assert states == [GStatus.SYSCALL]


def test_dial_empty_host_is_this_machine(procs: int) -> None:
    async def main() -> None:
        async with (
            await net.listen("tcp4", LOCAL) as ln,
            await net.dial("tcp", f":{_hp(ln.addr)[1]}") as c,
        ):
            assert _hp(c.remote_addr)[0] == "127.0.0.1"
            (await ln.accept()).close()

    run_clean(main, procs)


def test_addresses(procs: int) -> None:
    async def main() -> None:
        ln = await net.listen("tcp", LOCAL)
        host, port = _hp(ln.addr)
        assert host == "127.0.0.1" and port > 0
        c, s = await pair(ln)
        assert c.remote_addr == ln.addr
        assert c.local_addr == s.remote_addr
        assert s.local_addr == ln.addr
        assert c.network == s.network == ln.network == "tcp"
        assert repr(c) == f"<Conn tcp {c.local_addr!r}->{c.remote_addr!r}>"
        for x in (c, s, ln):
            x.close()

    run_clean(main, procs)


def test_read_returns_what_is_available(procs: int) -> None:
    async def main() -> None:
        c, s = await pair()
        await s.write(b"0123456789")
        got = b""
        while len(got) < 10:
            part = await c.read(4)
            assert 1 <= len(part) <= 4
            got += part
        assert got == b"0123456789"
        assert await c.read(0) == b""
        await c.write(bytearray(b"ab"))
        await c.write(memoryview(b"cd"))
        await c.write(b"")
        got = b""
        while len(got) < 4:
            got += await s.read()
        assert got == b"abcd"
        c.close()
        s.close()

    run_clean(main, procs)


# -- other networks ---------------------------------------------------------------------


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6(procs: int) -> None:
    async def main() -> None:
        async with await net.listen("tcp6", "[::1]:0") as ln:
            host, port = _hp(ln.addr)
            assert host == "::1"
            gr.go(serve, ln, echo)
            async with await net.dial("tcp", f"[::1]:{port}") as c:
                assert c.remote_addr == ("::1", port)
                await c.write(b"over v6")
                assert await c.read() == b"over v6"
            with pytest.raises(ValueError, match="no suitable address"):
                await net.dial("tcp4", f"[::1]:{port}")

    run_clean(main, procs)


def test_unix(procs: int, tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")

    async def main() -> None:
        ln = await net.listen("unix", path)
        assert ln.addr == path
        assert os.path.exists(path)
        gr.go(serve, ln, echo)
        async with await net.dial("unix", path) as c:
            assert c.remote_addr == path
            assert c.local_addr == ""
            data = os.urandom(200_000)
            gr.go(c.write, data)
            got = b""
            while len(got) < len(data):
                got += await c.read()
            assert got == data
        ln.close()
        assert not os.path.exists(path), "the listener did not remove its socket file"
        with pytest.raises(FileNotFoundError):
            await net.dial("unix", path)

    run_clean(main, procs)


def test_unix_abstract(procs: int) -> None:
    name = f"@goroutines-test-{os.getpid()}-{procs}"

    async def main() -> None:
        async with await net.listen("unix", name) as ln:
            assert ln.addr == name
            async with await net.dial("unix", name) as c, await ln.accept() as s:
                await c.write(b"abstract")
                assert await s.read() == b"abstract"

    run_clean(main, procs)


def test_udp_round_trip(procs: int) -> None:
    async def main() -> None:
        async with (
            await net.listen_packet("udp", LOCAL) as a,
            await net.listen_packet("udp4", LOCAL) as b,
        ):
            got: gr.Chan[tuple[bytes, net.Addr]] = gr.Chan()

            async def receiver() -> None:
                await got.send(await a.read_from())

            gr.go(receiver)
            await wait_parked("IO wait", 1)
            await b.write_to(b"ping", a.local_addr)
            data, sender = await got.recv()
            assert (data, sender) == (b"ping", b.local_addr)
            host, port = _hp(sender)
            await a.write_to(b"pong", f"{host}:{port}")  # "host:port" works too
            assert await b.read_from() == (b"pong", a.local_addr)
            # A connected datagram Conn: each write is one datagram.
            async with await net.dial("udp", net.join_host_port(*_hp(a.local_addr))) as c:
                await c.write(b"one")
                await c.write(b"two")
                assert await a.read_from() == (b"one", c.local_addr)
                assert await a.read_from() == (b"two", c.local_addr)
                await a.write_to(b"three", c.local_addr)
                assert await c.read() == b"three"
            b.set_read_deadline(time.monotonic() + 0.05)
            with pytest.raises(TimeoutError):
                await b.read_from()
        with pytest.raises(net.ErrClosed):
            await a.read_from()

    run_clean(main, procs)


def test_unixgram(procs: int, tmp_path: Path) -> None:
    pa, pb = str(tmp_path / "a.sock"), str(tmp_path / "b.sock")

    async def main() -> None:
        async with (
            await net.listen_packet("unixgram", pa) as a,
            await net.listen_packet("unixgram", pb) as b,
        ):
            assert a.local_addr == pa
            await b.write_to(b"hello", pa)
            assert await a.read_from() == (b"hello", pb)
        assert not os.path.exists(pa) and not os.path.exists(pb)

    run_clean(main, procs)


def test_close_wakes_blocked_read_from(procs: int) -> None:
    async def main() -> None:
        pc = await net.listen_packet("udp", LOCAL)
        errs: gr.Chan[BaseException | None] = gr.Chan(1)

        async def reader() -> None:
            try:
                await pc.read_from()
            except net.ErrClosed as e:
                await errs.send(e)
            else:
                await errs.send(None)

        gr.go(reader)
        await wait_parked("IO wait", 1)
        pc.close()
        assert isinstance(await errs.recv(), net.ErrClosed)

    run_clean(main, procs)


# -- wrap ---------------------------------------------------------------------------------


def test_wrap(procs: int) -> None:
    async def main() -> None:
        x, y = socket.socketpair()
        a, b = net.wrap(x), net.wrap(y)
        assert isinstance(a, net.Conn) and isinstance(b, net.Conn)
        assert a.network == "unix"
        assert not x.getblocking()
        gr.go(echo, b)
        await a.write(b"wrapped")
        assert await a.read() == b"wrapped"
        a.close()
        assert x.fileno() == -1, "closing the Conn closes the socket it adopted"

        raw = socket.socket()
        raw.bind(("127.0.0.1", 0))
        raw.listen()
        ln = net.wrap(raw)
        assert isinstance(ln, net.Listener)
        assert ln.addr == raw.getsockname()
        c, s = await pair(ln)
        c.close()
        s.close()

        pc = net.wrap(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        assert isinstance(pc, net.PacketConn) and pc.network == "udp"
        pc.close()

        loose = socket.socket()
        with pytest.raises(ValueError, match="neither connected nor listening"):
            net.wrap(loose)
        loose.close()
        with pytest.raises(ValueError, match="closed"):
            net.wrap(loose)
        with pytest.raises(TypeError, match="socket"):
            net.wrap(3)  # type: ignore[arg-type]

    run_clean(main, procs)


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: net.listen("tcpx", LOCAL), ValueError, "unknown network 'tcpx'"),
        (lambda: net.dial("sctp", LOCAL), ValueError, "unknown network 'sctp'"),
        (lambda: net.listen("udp", LOCAL), ValueError, "listen_packet"),
        (lambda: net.listen_packet("tcp", LOCAL), ValueError, "use listen"),
        (lambda: net.listen("tcp", "127.0.0.1"), ValueError, "missing port in address"),
        (lambda: net.dial("tcp", "1:2:3"), ValueError, "too many colons"),
        (lambda: net.dial("tcp", "[::1:80"), ValueError, "missing ']'"),
        (lambda: net.dial("tcp", "127.0.0.1:99999"), ValueError, "invalid port '99999'"),
        (lambda: net.dial("tcp", "127.0.0.1:no-such-svc"), ValueError, "unknown port"),
        (lambda: net.dial("tcp6", "127.0.0.1:80"), ValueError, "no suitable address"),
        (lambda: net.listen(6, LOCAL), TypeError, "network must be a str"),
        (lambda: net.dial("tcp", 80), TypeError, "address must be a str"),
        (lambda: net.dial("tcp", LOCAL, timeout="1"), TypeError, "timeout"),
        (lambda: net.dial("tcp", LOCAL, timeout=float("nan")), ValueError, "NaN"),
    ],
)
def test_bad_arguments(call: Callable[[], Awaitable[Any]], exc: type, match: str) -> None:
    async def main() -> None:
        with pytest.raises(exc, match=re.escape(match)):
            await call()

    run_clean(main, 1)


def test_bad_arguments_on_objects() -> None:
    async def main() -> None:
        c, s = await pair()
        with pytest.raises(ValueError, match="n must be >= 0"):
            await c.read(-1)
        with pytest.raises(TypeError, match="n must be an int"):
            await c.read("10")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="deadline"):
            c.set_deadline("soon")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="NaN"):
            c.set_read_deadline(float("nan"))
        with pytest.raises(ValueError, match="set_linger"):
            c.set_linger(5)
        with pytest.raises(TypeError, match=re.escape("want (host, port)")):
            async with await net.listen_packet("udp", LOCAL) as pc:
                await pc.write_to(b"x", 5)  # type: ignore[arg-type]
        c.close()
        s.close()

    run_clean(main, 1)


def test_outside_the_runtime() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(RuntimeError, match=re.escape("gr.run()")),
    ):
        net.wrap(sock)


@pytest.mark.parametrize(
    ("hostport", "want"),
    [
        ("127.0.0.1:80", ("127.0.0.1", "80")),
        ("[::1]:80", ("::1", "80")),
        ("[fe80::1%eth0]:0", ("fe80::1%eth0", "0")),
        ("localhost:http", ("localhost", "http")),
        (":8080", ("", "8080")),
        ("host:", ("host", "")),
    ],
)
def test_split_host_port(hostport: str, want: tuple[str, str]) -> None:
    assert net.split_host_port(hostport) == want
    host, port = want
    assert net.split_host_port(net.join_host_port(host, port)) == want


@pytest.mark.parametrize(
    ("hostport", "why"),
    [
        ("127.0.0.1", "missing port"),
        ("::1", "too many colons"),
        ("[::1]", "missing port"),
        ("[::1]x:80", "missing port"),
        ("[::1]:80:90", "too many colons"),
        ("a]:80", "unexpected ']'"),
        ("a[:80", "unexpected '['"),
    ],
)
def test_split_host_port_bad(hostport: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        net.split_host_port(hostport)


# -- a poller bug found by the leak checks ---------------------------------------------------


def _in_epoll_wait(t: threading.Thread) -> bool:
    try:
        with open(f"/proc/self/task/{t.native_id}/wchan") as f:
            wchan = f.read()
    except OSError:
        wchan = "0"
    if wchan in ("", "0"):  # hidden by the kernel: give the thread time instead
        time.sleep(0.05)
        return True
    return "epoll" in wchan


def test_netpoll_wakeup_not_swallowed_by_nonblocking_poll() -> None:
    """``Netpoll.wakeup`` must break the M blocked in ``poll`` even if another
    M polls without blocking meanwhile (find_runnable's ``poll(0)``, sysmon).

    Fails on the current ``_netpoll.py``: ``poll(0)`` also drains the wake-up
    pipe, so the blocked poller sleeps on (for ever if no timer is armed).
    Go's ``netpoll`` reads the break fd only when ``delay != 0``. Seen in
    this file as an fd leak: at shutdown the woken-but-still-blocked M
    cannot be joined, so ``stopms`` skips ``netpoll.close()``.
    """
    from goroutines._runtime._timers import Timers

    for _ in range(10):  # a race: several tries make it fail reliably
        np = _netpoll.Netpoll(Timers(lambda: None), lambda: None)
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            np.open(a.fileno())
            np.poll(0)  # the registration's first edge
            t = threading.Thread(target=np.poll, args=(None,), daemon=True)
            t.start()
            deadline = time.monotonic() + 2.0
            while not _in_epoll_wait(t):
                assert time.monotonic() < deadline
                time.sleep(0.001)
            np.wakeup()
            np.poll(0)
            t.join(1.0)
            stuck = t.is_alive()
            if stuck:  # free the thread before failing
                np.wakesig = False
                np.wakeup()
                t.join(1.0)
            assert not stuck, "wakeup() was swallowed by a non-blocking poll"
        finally:
            np.close()
            a.close()
            b.close()
