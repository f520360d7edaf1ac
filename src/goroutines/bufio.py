"""Buffered reading and writing over anything with ``read``/``write`` (Go's ``bufio``).

``Reader`` wraps an object with ``async read(n) -> bytes`` (``b""`` at the
end of the stream): a ``gr.net.Conn``, or anything shaped like it. ::

    r = gr.bufio.Reader(conn)
    line = await r.read_line()            # b"" at the end of the stream
    header = await r.read_exactly(4)      # IncompleteRead if the stream ends first
    body = await r.read_until(b"\\r\\n\\r\\n")
    async for line in r: ...              # each line, without its newline

``Writer`` wraps an object with ``async write(data)``; ``async with
gr.bufio.Writer(conn) as w:`` flushes on the way out. ::

    async with gr.bufio.Writer(conn) as w:
        await w.write(b"hello\\n")        # buffered
        await w.flush()                   # sent

Nothing is lost: what a Reader holds is returned before it reads again, and
an error carries the bytes it consumed (``IncompleteRead.partial``,
``LineTooLong.partial``). The underlying object's errors (a deadline's
``TimeoutError``, ``ErrClosed``) pass through. A Reader or a Writer is
for one goroutine at a time, as Go's are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol, final

__all__ = ["IncompleteRead", "LineTooLong", "Reader", "Writer"]

#: The default buffer size, and the default longest line (``Reader.limit``).
DEFAULT_SIZE = 65536


class _Readable(Protocol):
    async def read(self, n: int, /) -> bytes: ...


class _Writable(Protocol):
    async def write(self, data: bytes, /) -> Any: ...


class IncompleteRead(EOFError):
    """The stream ended before the bytes asked for came; ``partial`` holds
    the ones that did (asyncio's ``IncompleteReadError``)."""

    def __init__(self, partial: bytes, expected: int | bytes) -> None:
        what = f"{expected} bytes" if isinstance(expected, int) else f"{expected!r}"
        super().__init__(f"the stream ended after {len(partial)} bytes, before {what}")
        self.partial = partial
        self.expected = expected


class LineTooLong(ValueError):
    """A line (or ``read_until``'s data) is longer than the limit (Go's
    ``ErrBufferFull``); ``partial`` holds the first ``limit`` bytes of it,
    consumed: the rest is still to be read."""

    def __init__(self, partial: bytes, limit: int) -> None:
        super().__init__(f"no separator in the first {limit} bytes")
        self.partial = partial
        self.limit = limit


def _check_size(size: Any, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{what} must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"{what} must be >= 1, got {size}")
    return size


@final
class Reader:
    """Buffered reads over ``rd`` (anything with ``async read(n)``)."""

    __slots__ = ("_buf", "_eof", "_pos", "_rd", "limit", "size")

    def __init__(
        self, rd: _Readable, size: int = DEFAULT_SIZE, *, limit: int | None = None
    ) -> None:
        if not callable(getattr(rd, "read", None)):
            raise TypeError(
                f"Reader needs an object with an async read(n), got {type(rd).__name__}"
            )
        self._rd = rd
        #: How much one read of ``rd`` asks for.
        self.size = _check_size(size, "Reader: size")
        #: The longest line (or ``read_until`` result) accepted.
        self.limit = DEFAULT_SIZE if limit is None else _check_size(limit, "Reader: limit")
        self._buf = bytearray()
        self._pos = 0  # bytes before it are consumed
        self._eof = False

    def buffered(self) -> int:
        """How many bytes are held, ready to be read without waiting."""
        return len(self._buf) - self._pos

    async def _fill(self) -> bool:
        """Read once more from ``rd`` into the buffer; False at the end."""
        if self._eof:
            return False
        if self._pos and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]  # drop what was consumed, now and then
            self._pos = 0
        data = await self._rd.read(self.size)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += len(out)
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        return out

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes: what is held, else one read of ``rd``;
        ``b""`` at the end. ``n < 0``: everything up to the end."""
        if n < 0:
            while await self._fill():
                pass
            return self._take(self.buffered())
        if n == 0:
            return b""
        if not self.buffered():
            if n >= self.size and not self._eof:
                return await self._rd.read(n)  # large: straight through
            await self._fill()
        return self._take(min(n, self.buffered()))

    async def read_exactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``IncompleteRead`` (an EOFError, with the
        bytes that came) if the stream ends first."""
        if n < 0:
            raise ValueError(f"read_exactly: n must be >= 0, got {n}")
        while self.buffered() < n:
            if not await self._fill():
                raise IncompleteRead(self._take(self.buffered()), n)
        return self._take(n)

    async def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the stream), without
        consuming them. ValueError past the buffer size (Go's ErrBufferFull)."""
        if n > self.size:
            raise ValueError(f"peek: {n} bytes is more than the buffer holds ({self.size})")
        while self.buffered() < n and await self._fill():
            pass
        return bytes(self._buf[self._pos : self._pos + n])

    async def read_until(self, sep: bytes) -> bytes:
        """The bytes up to and including ``sep``. ``IncompleteRead`` (with
        what came) if the stream ends first; ``LineTooLong`` if ``sep`` is
        not within ``limit`` bytes."""
        if not sep:
            raise ValueError("read_until: the separator is empty")
        searched = 0  # bytes after _pos known not to start sep (_fill may move _pos)
        while True:
            i = self._buf.find(sep, self._pos + searched)
            if i >= 0:
                end = i + len(sep)
                if end - self._pos > self.limit + len(sep):
                    raise LineTooLong(self._take(self.limit), self.limit)
                return self._take(end - self._pos)
            if self.buffered() > self.limit:
                raise LineTooLong(self._take(self.limit), self.limit)
            searched = max(0, self.buffered() - len(sep) + 1)
            if not await self._fill():
                raise IncompleteRead(self._take(self.buffered()), sep)

    async def read_line(self, keep_newline: bool = False) -> bytes:
        """The next line, without its ``\\n`` (nor a ``\\r`` before it)
        unless ``keep_newline``; the last line may lack a newline; ``b""``
        at the end of the stream. ``LineTooLong`` past ``limit`` bytes."""
        try:
            line = await self.read_until(b"\n")
        except IncompleteRead as e:
            return e.partial
        if keep_newline:
            return line
        return line[:-2] if line.endswith(b"\r\n") else line[:-1]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[bytes]:
        while True:
            try:
                line = await self.read_until(b"\n")
            except IncompleteRead as e:
                if e.partial:
                    yield e.partial
                return
            yield line[:-2] if line.endswith(b"\r\n") else line[:-1]


@final
class Writer:
    """Buffered writes to ``wr`` (anything with ``async write(data)``)."""

    __slots__ = ("_buf", "_wr", "size")

    def __init__(self, wr: _Writable, size: int = DEFAULT_SIZE) -> None:
        if not callable(getattr(wr, "write", None)):
            raise TypeError(
                f"Writer needs an object with an async write(data), got {type(wr).__name__}"
            )
        self._wr = wr
        self.size = _check_size(size, "Writer: size")
        self._buf = bytearray()

    def buffered(self) -> int:
        """How many bytes wait for ``flush``."""
        return len(self._buf)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data``; the buffer is sent when full. Data at least as
        large as the buffer goes straight through (after what is held)."""
        if len(self._buf) + len(data) < self.size:
            self._buf += data
            return
        await self.flush()
        if len(data) >= self.size:
            await self._wr.write(bytes(data))
        else:
            self._buf += data

    async def flush(self) -> None:
        """Send what is buffered."""
        if self._buf:
            await self._wr.write(bytes(self._buf))
            self._buf.clear()  # only once sent: a failed write keeps them

    async def __aenter__(self) -> Writer:
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush()
