"""gr.bufio: Reader and Writer over real TCP connections on 127.0.0.1
(issue "Streams, TLS and processes on the poller", part 1)."""

from __future__ import annotations

import pytest

import goroutines as gr
from goroutines.bufio import IncompleteRead, LineTooLong, Reader, Writer


async def pair() -> tuple[gr.net.Conn, gr.net.Conn]:
    ln = await gr.net.listen("tcp", "127.0.0.1:0")
    c = await gr.net.dial("tcp", f"127.0.0.1:{ln.addr[1]}")
    s = await ln.accept()
    ln.close()
    assert isinstance(c, gr.net.Conn) and isinstance(s, gr.net.Conn)
    return c, s


async def feed(conn: gr.net.Conn, chunks: list[bytes], close: bool = True) -> None:
    """Write ``chunks`` one by one (each a separate segment), then close."""
    for ch in chunks:
        await conn.write(ch)
        await gr.gosched()
    if close:
        conn.close()


@pytest.mark.goroutines
async def test_lines_split_across_writes() -> None:
    c, s = await pair()
    gr.go(feed, s, [b"hel", b"lo\nwor", b"ld\r\n\nlast without newline"])
    r = Reader(c, size=4)  # a tiny buffer: every line spans reads
    assert await r.read_line() == b"hello"
    assert await r.read_line(keep_newline=True) == b"world\r\n"
    assert await r.read_line() == b""  # an empty line
    assert await r.read_line() == b"last without newline"
    assert await r.read_line() == b""  # the end
    c.close()


@pytest.mark.goroutines
async def test_async_iteration_over_lines() -> None:
    c, s = await pair()
    gr.go(feed, s, [b"a\nb\r\n", b"c", b"\nd"])
    assert [line async for line in Reader(c)] == [b"a", b"b", b"c", b"d"]
    c.close()


@pytest.mark.goroutines
async def test_read_exactly_and_its_partial() -> None:
    c, s = await pair()
    gr.go(feed, s, [b"\x00\x05", b"hel", b"lo", b"xy"])
    r = Reader(c)
    n = int.from_bytes(await r.read_exactly(2), "big")
    assert await r.read_exactly(n) == b"hello"
    with pytest.raises(IncompleteRead) as info:
        await r.read_exactly(5)
    assert info.value.partial == b"xy" and info.value.expected == 5
    assert isinstance(info.value, EOFError)
    c.close()


@pytest.mark.goroutines
async def test_read_until_peek_and_read() -> None:
    c, s = await pair()
    gr.go(feed, s, [b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r\nBODY", b"rest"])
    r = Reader(c)
    assert await r.peek(3) == b"GET"
    head = await r.read_until(b"\r\n\r\n")
    assert head == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert await r.read(2) == b"BO"  # from what is held, without another read
    assert await r.read() == b"DYrest"  # n < 0: to the end
    assert await r.read(10) == b""
    with pytest.raises(IncompleteRead) as info:
        await r.read_until(b"\n")
    assert info.value.partial == b""
    c.close()


@pytest.mark.goroutines
async def test_line_too_long_keeps_every_byte() -> None:
    c, s = await pair()
    gr.go(feed, s, [b"x" * 70 + b"\nshort\n"])
    r = Reader(c, size=16, limit=40)
    with pytest.raises(LineTooLong) as info:
        await r.read_line()
    assert info.value.partial == b"x" * 40
    rest = await r.read_line()
    assert info.value.partial + rest == b"x" * 70  # nothing lost
    assert await r.read_line() == b"short"
    c.close()


@pytest.mark.goroutines
async def test_a_reader_never_loses_bytes_before_the_conns_next_read() -> None:
    c, s = await pair()
    await s.write(b"line one\nand more")
    r = Reader(c)
    assert await r.read_line() == b"line one"
    assert r.buffered() == len(b"and more")  # held by the reader, not lost
    gr.go(feed, s, [b" bytes"])
    assert await r.read() == b"and more bytes"
    c.close()


@pytest.mark.goroutines
async def test_the_conns_deadline_applies() -> None:
    c, s = await pair()
    c.set_deadline(gr.monotonic() + 0.05)
    r = Reader(c)
    with pytest.raises(TimeoutError):
        await r.read_line()  # nobody writes
    c.close()
    s.close()


@pytest.mark.goroutines
async def test_writer_buffers_flushes_and_passes_large_writes_through() -> None:
    c, s = await pair()
    sent: list[int] = []

    class Counting:
        async def write(self, data: bytes) -> None:
            sent.append(len(data))
            await c.write(data)

    w = Writer(Counting(), size=8)
    await w.write(b"abc")
    await w.write(b"de")
    assert sent == [] and w.buffered() == 5
    await w.write(b"fgh")  # fills it: the buffer goes
    assert sent == [5] and w.buffered() == 3
    await w.write(b"0123456789")  # larger than the buffer: what is held, then it
    assert sent == [5, 3, 10]
    async with w:
        await w.write(b"tail")
    assert sent == [5, 3, 10, 4]
    c.close()
    assert await Reader(s).read() == b"abcdefgh0123456789tail"
    s.close()


@pytest.mark.goroutines
async def test_a_failed_flush_keeps_the_bytes() -> None:
    c, s = await pair()
    w = Writer(c, size=64)
    await w.write(b"kept")
    c.close()
    with pytest.raises(gr.net.ErrClosed):
        await w.flush()
    assert w.buffered() == 4
    s.close()


@pytest.mark.goroutines
async def test_echo_server_with_reader_and_writer() -> None:
    ln = await gr.net.listen("tcp", "127.0.0.1:0")

    async def serve(conn: gr.net.Conn) -> None:
        async with Writer(conn) as w:
            async for line in Reader(conn):
                await w.write(line.upper() + b"\n")
                await w.flush()
        conn.close()

    async def accept() -> None:
        conn = await ln.accept()
        assert isinstance(conn, gr.net.Conn)
        gr.go(serve, conn)

    gr.go(accept)
    c = await gr.net.dial("tcp", f"127.0.0.1:{ln.addr[1]}")
    assert isinstance(c, gr.net.Conn)
    r, w = Reader(c), Writer(c)
    for word in (b"alpha", b"beta", b"gamma"):
        await w.write(word + b"\n")
        await w.flush()
        assert await r.read_line() == word.upper()
    c.close()
    ln.close()


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="needs an object with an async read"):
        Reader(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an object with an async write"):
        Writer(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size must be >= 1"):
        Reader(_Nothing(), size=0)
    with pytest.raises(TypeError, match="limit must be an int"):
        Reader(_Nothing(), limit=1.5)  # type: ignore[arg-type]


class _Nothing:
    async def read(self, n: int) -> bytes:
        return b""

    async def write(self, data: bytes) -> None:
        pass


class _Chunks:
    """An in-memory stream that returns the given chunks, one per read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self, n: int) -> bytes:
        if not self.chunks:
            return b""
        head = self.chunks[0]
        out, rest = head[:n], head[n:]
        if rest:
            self.chunks[0] = rest
        else:
            self.chunks.pop(0)
        return out


@pytest.mark.goroutines
async def test_random_chunkings_lose_nothing() -> None:
    import random

    rng = random.Random(1205)
    for _ in range(300):
        data = bytes(rng.choice(b"ab\r\n") for _ in range(rng.randint(0, 200)))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data), rng.randint(0, 12))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if b > a]
        r = Reader(_Chunks(chunks), size=rng.randint(1, 32))
        got = b""
        op = rng.randrange(4)
        while True:
            if op == 0:
                piece = await r.read_line(keep_newline=True)
            elif op == 1:
                piece = await r.read(rng.randint(1, 20))
            elif op == 2:
                try:
                    piece = await r.read_until(b"\r\n")
                except IncompleteRead as e:
                    piece = e.partial
            else:
                try:
                    piece = await r.read_exactly(rng.randint(1, 9))
                except IncompleteRead as e:
                    piece = e.partial
            if not piece:
                break
            got += piece
            op = rng.randrange(4)
        assert got == data
