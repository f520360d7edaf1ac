"""Networking for goroutines: TCP, UDP and Unix sockets (Go's ``net`` package).

A goroutine that waits on a socket parks; no OS thread waits for it (the
runtime's poller, epoll, wakes it). ::

    ln = await gr.net.listen("tcp", "127.0.0.1:0")   # ln.addr: ("127.0.0.1", port)
    conn = await ln.accept()                          # in a server goroutine
    conn = await gr.net.dial("tcp", "127.0.0.1:8080", timeout=5.0)
    data = await conn.read(65536)                     # b"" at end of stream
    await conn.write(data)                            # writes all of it
    conn.set_deadline(gr.monotonic() + 10)            # later reads/writes: TimeoutError
    conn.close()

- ``listen(network, address)`` / ``dial(network, address, timeout=None)``:
  networks "tcp", "tcp4", "tcp6", "unix"; a ``Listener`` and ``Conn``.
- ``listen_packet(network, address)``: "udp" (and "udp4"/"udp6",
  "unixgram"), a ``PacketConn`` with ``read_from`` and ``write_to``.
- ``wrap(sock)``: a ``socket.socket`` you made, as a Conn or Listener.
- ``gr.net.tls``: TLS over a Conn (``tls.dial``, ``tls.listen``,
  ``tls.client``, ``tls.server``).

Errors: ``TimeoutError`` past a deadline; ``ErrClosed`` for an operation
on a closed socket (a waiting one is woken with it by ``close``); the
``OSError``s of the socket calls otherwise, naming the operation and the
address. Two goroutines may read and write one Conn at once; two writes
never interleave their bytes. A socket belongs to the run that made it.
"""

# Design notes.
#
# ``gr.net.listen``/``dial``/``listen_packet``/``wrap`` give ``Listener``,
# ``Conn`` and ``PacketConn`` objects whose blocking operations park the
# calling goroutine, never its OS thread. Every socket is non-blocking and
# registered once with the runtime's poller (``_runtime._netpoll``); an
# operation is the non-blocking call, and only on EAGAIN a park in
# ``pd.wait`` and another try (the poller is edge-triggered and a readiness
# may be spurious, so waking is only ever a hint to try again).
#
# The file descriptor (``_FD``, Go's ``internal/poll.FD``) owns three things:
#
# - A read lock and a write lock (Go's ``fdMutex``). An edge-triggered
#   poller wakes at most one waiter per direction, so two goroutines must
#   never wait for the same direction of one socket; each direction is
#   serialized by a goroutine lock (FIFO, it parks; a waiter shows as
#   "sync.Mutex.Lock"). ``accept`` and ``read_from`` use the read side,
#   ``write_to`` the write side. This also makes a ``write`` atomic with
#   respect to other ``write`` calls on the same Conn: its bytes are never
#   interleaved with theirs. The locks are a held flag and a wait queue per
#   direction under ``_FD.lock``, not ``gr.Mutex``es, so that the common,
#   uncontended case takes the direction and a reference in one acquire of
#   one lock (and gives both back in one).
# - A reference count of the operations in flight. ``close`` marks the FD
#   closing and evicts it from the poller (which wakes both waiters with
#   ``ErrClosed``), but the socket itself is closed by whoever drops the last
#   reference. Rejected: closing the socket at once, as a plain socket
#   wrapper would. Another thread may be between "read the fd number" and
#   "call recv" on it; the number can be reused by a socket opened meanwhile,
#   and the stray recv would steal that socket's data. Go's ``fd.decref`` is
#   the same design.
# - The ``PollDesc``, which holds the deadlines. An operation checks the
#   deadline of its direction before it starts (Go's ``prepareRead``), so a
#   read after its deadline fails at once even if data is waiting; a waiter
#   is woken with TimeoutError by the deadline's timer.
#
# Also rejected: blocking sockets inside ``gr.syscall`` (a thread per waiting
# connection: the poller's point is that a waiting goroutine costs no thread).
# Name resolution is the exception: ``getaddrinfo`` has no non-blocking form,
# so non-literal host names go through ``gr.syscall``. Literal addresses are
# parsed without it.
#
# Lock order: the ranked table in ``goroutines._runtime``; ``_FD.lock`` (rank 6,
# FD) is a leaf (nothing is called while it is held).
# The direction locks are goroutine locks, taken with a reference and
# released with it; ``pd.lock`` and the poller's locks are taken
# inside ``PollDesc`` only.
#
# Guards: ``_FD.refs``, ``_FD.closing`` and the direction locks' flags and
# queues: ``_FD.lock`` (``closing`` is also read racily after taking a
# direction: a stale False only sends the operation on to ``pd.wait``, which
# sees the eviction under ``pd.lock``).
# Deadlines are read racily from the ``PollDesc`` by the pre-check (a float,
# stale OK: ``pd.wait`` checks again under ``pd.lock``). ``_FD.rdrained``:
# the read direction's holder. Everything else in
# ``Conn``, ``Listener`` and ``PacketConn`` is immutable after construction.

from __future__ import annotations

import errno
import ipaddress
import math
import os
import socket
import struct
import threading
import types
from collections import deque
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Final, Self, TypeAlias, TypeVar, final

from .._runtime import _clock, poll_open
from .._runtime._goroutine import G, WaitReason, gopark
from .._runtime._lockrank import LockRank, new_lock
from .._runtime._netpoll import ErrClosed, PollDesc
from .._runtime._scheduler import current_g
from .._syscall import syscall
from .._time import as_float

__all__ = [
    "Addr",
    "Conn",
    "ErrClosed",
    "Listener",
    "PacketConn",
    "dial",
    "join_host_port",
    "listen",
    "listen_packet",
    "split_host_port",
    "wrap",
]

#: A socket address: ``(host, port)`` for TCP and UDP, the path for Unix
#: sockets (``"@name"`` for Linux's abstract namespace, ``""`` if unnamed).
Addr: TypeAlias = tuple[str, int] | str


_CLOSED: Final = "use of closed network connection"
_TIMEOUT: Final = "i/o timeout"
#: The kernel clamps the backlog to ``net.core.somaxconn`` (what Go's
#: ``maxListenerBacklog`` reads), so asking for the most gets exactly that.
_BACKLOG: Final = 65535
#: How much ``read`` and ``read_from`` take when no size is given.
_READ_SIZE: Final = 65536
#: ``read`` of more than ``_SMALL_READ`` and at most ``_SCRATCH`` bytes reads
#: into its thread's scratch buffer and copies out what came (see ``_Scratch``).
_SMALL_READ: Final = 512
_SCRATCH: Final = 65536


class _Scratch(threading.local):
    """A ``_SCRATCH``-byte buffer per OS thread, for ``read``.

    Why not ``sock.recv(n)``: it allocates ``n`` bytes, receives ``k`` and
    shrinks the object to ``k`` with ``realloc``, and glibc gives the tail
    back as a free chunk a little smaller than the next ``recv(n)`` needs.
    With goroutines reading on several Ms, each M's malloc arena fills
    with such tails: the soak's echo server grew RSS by ~6 MiB a minute
    that way, with every Python object accounted for. ``recv_into`` a
    buffer that is never freed, then one allocation of exactly ``k`` bytes,
    costs a copy of ``k`` bytes and leaves nothing behind. Per thread, as
    no await separates the receive from the copy: a goroutine cannot move
    to another M, nor another goroutine run on this one, in between.
    """

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_SCRATCH))


_scratch = _Scratch()


def _recv(sock: socket.socket, n: int) -> bytes:
    """``sock.recv(n)``, through the scratch buffer (see ``_Scratch``)."""
    if _SMALL_READ < n <= _SCRATCH:
        view = _scratch.view
        return bytes(view[: sock.recv_into(view, n)])
    return sock.recv(n)


def _recvfrom(sock: socket.socket, n: int) -> tuple[bytes, Any]:
    """``sock.recvfrom(n)``, through the scratch buffer as ``_recv``."""
    if _SMALL_READ < n <= _SCRATCH:
        view = _scratch.view
        k, a = sock.recvfrom_into(view, n)
        return bytes(view[:k]), a
    return sock.recvfrom(n)


_AF_UNSPEC: Final = socket.AF_UNSPEC
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6
_AF_UNIX: Final = socket.AF_UNIX
_STREAM: Final = socket.SOCK_STREAM
_DGRAM: Final = socket.SOCK_DGRAM

#: Network name -> (address family, socket type). AF_UNSPEC: either IP version.
_NETWORKS: Final[dict[str, tuple[int, int]]] = {
    "tcp": (_AF_UNSPEC, _STREAM),
    "tcp4": (_AF_INET, _STREAM),
    "tcp6": (_AF_INET6, _STREAM),
    "unix": (_AF_UNIX, _STREAM),
    "udp": (_AF_UNSPEC, _DGRAM),
    "udp4": (_AF_INET, _DGRAM),
    "udp6": (_AF_INET6, _DGRAM),
    "unixgram": (_AF_UNIX, _DGRAM),
}

_T = TypeVar("_T")

_CONNECTING: Final = frozenset({errno.EINPROGRESS, errno.EALREADY, errno.EINTR})
_CONNECTED: Final = frozenset({0, errno.EISCONN})


# -- the file descriptor --------------------------------------------------------


@final
class _FD:
    """A non-blocking socket, its PollDesc, a reference count of the
    operations in flight and a lock per direction (Go's ``poll.FD``).
    See the module docstring."""

    __slots__ = (
        "closing",
        "lock",
        "pd",
        "rdrained",
        "refs",
        "rheld",
        "rq",
        "sock",
        "tcp",
        "wheld",
        "wq",
    )

    def __init__(self, sock: socket.socket) -> None:
        """Adopt ``sock``: make it non-blocking and register it with the poller.
        On error the caller still owns ``sock``."""
        sock.setblocking(False)
        self.pd: PollDesc = poll_open(sock.fileno())
        self.sock = sock
        self.lock = new_lock(LockRank.FD, self)
        self.refs = 0  # guarded by lock
        self.closing = False  # guarded by lock; racy reads, see the module docstring
        # The direction locks (Go's fdMutex): held flags and FIFO wait queues,
        # guarded by ``lock``, so that taking a direction and a reference is
        # one acquire of ``lock`` when nobody else is reading (writing).
        self.rheld = False
        self.wheld = False
        self.rq: deque[G] = deque()
        self.wq: deque[G] = deque()
        #: The last read was short: the receive queue was empty after it
        #: (see ``Conn.read``). Guarded by the read direction.
        self.rdrained = False
        self.tcp = sock.type == _STREAM and sock.family in (_AF_INET, _AF_INET6)

    def incref(self) -> None:
        """Take a reference for an operation; ErrClosed once closing."""
        with self.lock:
            if self.closing:
                raise ErrClosed(_CLOSED)
            self.refs += 1

    def decref(self) -> None:
        """Drop a reference; the last one dropped after ``close`` closes the socket."""
        with self.lock:
            self.refs -= 1
            last = self.closing and self.refs == 0
        if last:
            self.sock.close()

    @types.coroutine
    def lock_dir(self, write: bool) -> Generator[Any, None, None]:
        """Take a reference and the direction (Go's ``readLock``/``writeLock``),
        queueing (parked, FIFO) behind the goroutine that holds it.

        ``Conn.read``/``write`` inline the uncontended case: one acquire of
        ``lock`` for both the reference and the direction."""
        lk = self.lock
        lk.acquire()
        if self.closing:
            lk.release()
            raise ErrClosed(_CLOSED)
        self.refs += 1
        if not (self.wheld if write else self.rheld):
            if write:
                self.wheld = True
            else:
                self.rheld = True
            lk.release()
            return
        try:
            g = current_g()
        except BaseException:
            self.refs -= 1
            lk.release()
            raise
        q = self.wq if write else self.rq
        q.append(g)
        try:
            yield from gopark(lk.release, WaitReason.SYNC_MUTEX_LOCK, g)
        except BaseException:
            # Only run() closing the goroutines left at exit throws in here.
            # If unlock_dir handed us the direction already, pass it on.
            with lk:
                try:
                    q.remove(g)
                    handed = False
                except ValueError:
                    handed = True
            if handed:
                self.unlock_dir(write)
            else:
                self.decref()
            raise
        # unlock_dir handed us the direction (it stayed held) and our reference.
        if self.closing:
            self.unlock_dir(write)
            raise ErrClosed(_CLOSED)

    def unlock_dir(self, write: bool) -> None:
        """Release the direction (handing it to the first waiter) and the reference."""
        lk = self.lock
        lk.acquire()
        self.refs -= 1
        q = self.wq if write else self.rq
        g = q.popleft() if q else None
        if g is None:
            if write:
                self.wheld = False
            else:
                self.rheld = False
        last = self.closing and self.refs == 0
        lk.release()
        if g is not None:
            g.wake()
        if last:
            self.sock.close()

    async def io(self, write: bool, op: Callable[..., _T], *args: Any) -> _T:
        """``op(*args)`` under the direction's Mutex, after the deadline check,
        waiting for readiness and trying again on EAGAIN (Go's ``fd.Read`` loop)."""
        await self.lock_dir(write)
        try:
            pd = self.pd
            _prepare(pd.wd if write else pd.rd)
            while True:
                try:
                    return op(*args)
                except (BlockingIOError, InterruptedError):
                    pass
                await pd.wait(write)
        finally:
            self.unlock_dir(write)

    def close(self) -> bool:
        """Evict from the poller (waking waiters with ErrClosed), then close the
        socket once no operation holds a reference. False if already closed."""
        with self.lock:
            if self.closing:
                return False
            self.closing = True
            self.refs += 1  # ours: the socket outlives the eviction
        self.pd.evict()
        self.decref()
        return True

    def set_deadline(self, deadline: Any, which: str, what: str = "") -> None:
        what = (
            what
            or {"rw": "set_deadline", "r": "set_read_deadline", "w": "set_write_deadline"}[which]
        )
        d = _check_deadline(deadline, what)
        self.incref()
        try:
            self.pd.set_deadline(d, d, which=which)
        finally:
            self.decref()


def _prepare(deadline: float) -> None:
    """Fail an operation whose direction's deadline (0.0: none) has passed."""
    if deadline and deadline <= _clock.now():
        raise TimeoutError(_TIMEOUT)


def _check_deadline(d: Any, what: str = "set_deadline") -> float | None:
    if d is None:
        return None
    if isinstance(d, bool) or not isinstance(d, (int, float)):
        raise TypeError(
            f"{what}: deadline must be a gr.monotonic() value or None, got {type(d).__name__}"
        )
    f = as_float(d, what, "deadline")
    if f == math.inf:
        return None
    return f


def _empty(n: int) -> bytes:
    """``read(0)``'s operation: no bytes, without touching the socket."""
    return b""


def _accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    """``sock.accept()``, skipping connections aborted before we took them."""
    while True:
        try:
            return sock.accept()
        except ConnectionAbortedError:
            continue  # the client gave up before we took it: next one (Go)


def _check_size(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what}: n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{what}: n must be >= 0, got {n}")
    return n


def _network_name(sock: socket.socket) -> str:
    fam, typ = sock.family, sock.type
    if typ not in (_STREAM, _DGRAM):
        raise ValueError(f"unsupported socket type {typ!r}: want SOCK_STREAM or SOCK_DGRAM")
    if fam == _AF_UNIX:
        return "unix" if typ == _STREAM else "unixgram"
    if fam in (_AF_INET, _AF_INET6):
        return "tcp" if typ == _STREAM else "udp"
    raise ValueError(f"unsupported address family {fam!r}: want AF_INET, AF_INET6 or AF_UNIX")


def _addr(family: int, a: Any) -> Addr:
    """A socket module address as an ``Addr``."""
    if family == _AF_UNIX:
        if not a:
            return ""
        if isinstance(a, bytes):
            a = os.fsdecode(a)
        return "@" + a[1:] if a.startswith("\0") else str(a)
    host: str = a[0]
    if host.startswith("::ffff:") and "." in host:  # an IPv4 peer of a dual-stack socket
        host = host[7:]
    return (host, int(a[1]))


# -- what Conn, Listener and PacketConn share -----------------------------------


class _Socket:
    """What Conn, Listener and PacketConn share: the FD, the network name, the
    local address, closing and ``async with``."""

    __slots__ = ("_fd", "_laddr", "_network", "_unlink")

    def __init__(self, fd: _FD, network: str, laddr: Addr, unlink: str | None) -> None:
        self._fd = fd
        self._network = network
        self._laddr = laddr
        self._unlink = unlink  # the socket file that close removes

    def __repr__(self) -> str:
        state = " closed" if self._fd.closing else ""
        return f"<{type(self).__name__} {self._network} {self._where()}{state}>"

    def _where(self) -> str:
        return repr(self._laddr)

    @property
    def network(self) -> str:
        """``"tcp"``, ``"udp"``, ``"unix"`` or ``"unixgram"``."""
        return self._network

    def close(self) -> None:
        """Close it; goroutines blocked on it get ErrClosed, and the socket file
        of a Unix Listener or PacketConn bound by ``listen``/``listen_packet``
        is removed. Idempotent."""
        if self._fd.close() and self._unlink:
            try:
                os.unlink(self._unlink)
            except OSError:
                pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- Conn -----------------------------------------------------------------------


@final
class Conn(_Socket):
    """A connection (Go's ``net.Conn``): TCP or Unix stream, or a connected datagram socket.

    Made by ``dial``, ``Listener.accept`` and ``wrap``. Any number of
    goroutines may call its methods at once: reads queue behind each other,
    so do writes, and a read and a write run in parallel. ``close`` wakes
    every goroutine blocked on it with ``ErrClosed``; ``async with conn:``
    closes it. A Conn belongs to the ``gr.run()`` it was made in.
    """

    __slots__ = ("_dgram", "_raddr")

    def __init__(self, fd: _FD, network: str, laddr: Addr, raddr: Addr) -> None:
        super().__init__(fd, network, laddr, None)
        self._raddr = raddr
        self._dgram = fd.sock.type == _DGRAM

    def _where(self) -> str:
        return f"{self._laddr!r}->{self._raddr!r}"

    @property
    def local_addr(self) -> Addr:
        return self._laddr

    @property
    def remote_addr(self) -> Addr:
        return self._raddr

    async def read(self, n: int = _READ_SIZE) -> bytes:
        """Read up to ``n`` bytes: whatever is available, at least one byte,
        waiting if there is none; ``b""`` at end of stream (and for ``n == 0``).

        Raises TimeoutError past the read deadline, ErrClosed once closed,
        and the socket's errors (ConnectionResetError, ...).
        """
        fd = self._fd
        if n.__class__ is not int or n <= 0:
            _check_size(n, "read")
            if n == 0:
                # Still checks for closing and the deadline, as a read does.
                return await fd.io(False, _empty, 0)
        # fd.io's loop, inlined: this is the hot path of every server.
        lk = fd.lock
        lk.acquire()
        if fd.rheld or fd.closing:
            lk.release()
            await fd.lock_dir(False)
        else:  # uncontended: the direction and a reference in one acquire
            fd.rheld = True
            fd.refs += 1
            lk.release()
        try:
            pd = fd.pd
            dl = pd.rd
            if dl and dl <= _clock.now():
                raise TimeoutError(_TIMEOUT)
            sock = fd.sock
            if fd.rdrained:
                # The last read was short, so the receive queue was empty
                # after it, and any data that came since has made an edge
                # (set ``rready``, or will wake us): skip the recv that
                # would fail with EAGAIN (tokio's "a partial read shows the
                # buffer drained"). Not so for an end of stream that came
                # with the data: ``drained`` has ``wait`` check for it.
                # TCP only: a Unix stream socket may return short with more
                # queued (from a writer with other credentials).
                fd.rdrained = False
                await pd.wait(False, True)
            while True:
                try:
                    data = _recv(sock, n)
                    break
                except (BlockingIOError, InterruptedError):
                    pass
                await pd.wait(False)
            if len(data) < n and data and fd.tcp:
                fd.rdrained = True
            return data
        finally:
            fd.unlock_dir(False)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` (a datagram socket sends it as one datagram).

        Raises TimeoutError past the write deadline (some of the data may
        have been sent), ErrClosed once closed, and the socket's errors
        (BrokenPipeError, ConnectionResetError, ...).
        """
        fd = self._fd
        lk = fd.lock
        lk.acquire()
        if fd.wheld or fd.closing:
            lk.release()
            await fd.lock_dir(True)
        else:  # uncontended: see read
            fd.wheld = True
            fd.refs += 1
            lk.release()
        try:
            pd = fd.pd
            dl = pd.wd
            if dl and dl <= _clock.now():
                raise TimeoutError(_TIMEOUT)
            send = fd.sock.send
            sent = 0
            wait = False
            cls = data.__class__
            if cls is bytes or cls is bytearray:
                # The common case: all of it goes at once, no memoryview.
                try:
                    sent = send(data)
                    if sent >= len(data) or self._dgram:
                        return
                except (BlockingIOError, InterruptedError):
                    wait = True
            with memoryview(data) as mv, mv.cast("B") as view:
                total = len(view)
                while True:
                    if wait:
                        await pd.wait(True)
                    try:
                        sent += send(view[sent:])
                        if sent >= total or self._dgram:
                            return
                        wait = False  # a short write (the buffer is full, most likely): again
                    except (BlockingIOError, InterruptedError):
                        wait = True
        finally:
            fd.unlock_dir(True)

    def close_read(self) -> None:
        """Shut down the reading side (Go's ``CloseRead``)."""
        self._shutdown(socket.SHUT_RD)

    def close_write(self) -> None:
        """Shut down the writing side (Go's ``CloseWrite``): the peer reads end
        of stream, and can still write to us."""
        self._shutdown(socket.SHUT_WR)

    def _shutdown(self, how: int) -> None:
        fd = self._fd
        fd.incref()
        try:
            fd.sock.shutdown(how)
        finally:
            fd.decref()

    def set_deadline(self, deadline: float | None) -> None:
        """Set the read and write deadlines (``gr.monotonic()`` values; None: none).

        An operation past its deadline raises TimeoutError, whether it was
        waiting when the deadline passed or started after it. A new
        deadline applies to operations already waiting.
        """
        self._fd.set_deadline(deadline, "rw")

    def set_read_deadline(self, deadline: float | None) -> None:
        """Set the deadline of ``read`` only; see ``set_deadline``."""
        self._fd.set_deadline(deadline, "r")

    def set_write_deadline(self, deadline: float | None) -> None:
        """Set the deadline of ``write`` only; see ``set_deadline``."""
        self._fd.set_deadline(deadline, "w")

    def set_linger(self, sec: int | None) -> None:
        """``0``: close discards unsent data and resets the connection (the
        peer gets ConnectionResetError); ``None``: the default (close sends
        what is buffered in the background). A positive linger is refused:
        close would block its OS thread until the data is sent."""
        if sec is not None and (isinstance(sec, bool) or not isinstance(sec, int)):
            raise TypeError(f"set_linger: sec must be an int or None, got {type(sec).__name__}")
        if sec is not None and sec != 0:
            raise ValueError(
                f"set_linger: only 0 or None are supported, got {sec} "
                "(a positive linger makes close block its thread)"
            )
        fd = self._fd
        fd.incref()
        try:
            opt = (1, 0) if sec == 0 else (0, 0)
            fd.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", *opt))
        finally:
            fd.decref()


def _new_conn(sock: socket.socket, network: str, peer: Any = None) -> Conn:
    """Adopt a connected socket as a Conn; closes ``sock`` on error."""
    try:
        fam = sock.family
        if fam != _AF_UNIX and sock.type == _STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go does
        laddr = _addr(fam, sock.getsockname())
        raddr = _addr(fam, sock.getpeername() if peer is None else peer)
        fd = _FD(sock)
    except BaseException:
        sock.close()
        raise
    return Conn(fd, network, laddr, raddr)


# -- Listener -------------------------------------------------------------------


@final
class Listener(_Socket):
    """A listening stream socket (Go's ``net.Listener``), made by ``listen`` or ``wrap``.

    Any number of goroutines may call ``accept`` at once. ``close`` wakes
    them with ``ErrClosed`` (and removes the socket file of a Unix listener
    that ``listen`` created); ``async with ln:`` closes it.
    """

    __slots__ = ()

    def __init__(self, fd: _FD, network: str, unlink: str | None) -> None:
        super().__init__(fd, network, _addr(fd.sock.family, fd.sock.getsockname()), unlink)

    @property
    def addr(self) -> Addr:
        """The address it listens on: ``(host, port)``, or the path of a Unix socket."""
        return self._laddr

    async def accept(self) -> Conn:
        """Wait for the next connection and return it.

        Raises ErrClosed once the listener is closed, TimeoutError past its
        deadline, and the socket's errors (such as running out of fds).
        """
        fd = self._fd
        sock, peer = await fd.io(False, _accept, fd.sock)
        return _new_conn(sock, self._network, peer)

    def set_deadline(self, deadline: float | None) -> None:
        """Set the deadline of ``accept`` (a ``gr.monotonic()`` value; None: none)."""
        self._fd.set_deadline(deadline, "r", "set_deadline")


# -- PacketConn -----------------------------------------------------------------


@final
class PacketConn(_Socket):
    """A datagram socket (Go's ``net.PacketConn``), made by ``listen_packet`` or ``wrap``.

    ``read_from`` and ``write_to`` may be called by any number of goroutines
    at once (each direction queues). ``close`` wakes them with ErrClosed.
    """

    __slots__ = ()

    def __init__(self, fd: _FD, network: str, unlink: str | None) -> None:
        super().__init__(fd, network, _addr(fd.sock.family, fd.sock.getsockname()), unlink)

    @property
    def local_addr(self) -> Addr:
        return self._laddr

    async def read_from(self, n: int = _READ_SIZE) -> tuple[bytes, Addr]:
        """Wait for a datagram; return (its first ``n`` bytes, the sender's address)."""
        _check_size(n, "read_from")
        fd = self._fd
        data, a = await fd.io(False, _recvfrom, fd.sock, n)
        return data, _addr(fd.sock.family, a)

    async def write_to(self, data: bytes | bytearray | memoryview, addr: Addr) -> None:
        """Send ``data`` as one datagram to ``addr``: ``(host, port)`` or
        ``"host:port"`` for UDP (a non-literal host is resolved), a path for
        ``unixgram``."""
        fd = self._fd
        sockaddr = await self._sockaddr(addr)
        await fd.io(True, fd.sock.sendto, data, sockaddr)

    async def _sockaddr(self, addr: Any) -> Any:
        fam = self._fd.sock.family
        if fam == _AF_UNIX:
            if not isinstance(addr, str):
                raise TypeError(f"write_to: a unixgram address is a str path, got {addr!r}")
            return _unix_path(addr)
        if isinstance(addr, tuple) and len(addr) == 2:
            host, port = addr
            if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
                raise TypeError(f"write_to: want (host: str, port: int), got {addr!r}")
            hostport = join_host_port(host, str(port))
        elif isinstance(addr, str):
            hostport = addr
        else:
            raise TypeError(f"write_to: want (host, port) or 'host:port', got {addr!r}")
        want = _AF_UNSPEC if fam == _AF_INET6 else _AF_INET
        addrs = await _resolve("write to", self._network, want, _DGRAM, hostport, passive=False)
        if fam == _AF_INET6:
            # An IPv6 socket (a dual-stack one, unless "udp6") reaches IPv4
            # peers through v4-mapped addresses, as Go maps them.
            af, a = addrs[0]
            return a if af == _AF_INET6 else ("::ffff:" + a[0], a[1], 0, 0)
        return addrs[0][1]

    def set_deadline(self, deadline: float | None) -> None:
        """Set the read and write deadlines; see ``Conn.set_deadline``."""
        self._fd.set_deadline(deadline, "rw")

    def set_read_deadline(self, deadline: float | None) -> None:
        self._fd.set_deadline(deadline, "r")

    def set_write_deadline(self, deadline: float | None) -> None:
        self._fd.set_deadline(deadline, "w")


# -- addresses ------------------------------------------------------------------


def split_host_port(hostport: str) -> tuple[str, str]:
    """Split ``"host:port"``, ``"[host]:port"`` or ``"[v6%zone]:port"`` into
    (host, port) (Go's ``net.SplitHostPort``). ValueError if malformed."""
    if not isinstance(hostport, str):
        raise TypeError(f"address must be a str, got {type(hostport).__name__}")

    def bad(why: str) -> ValueError:
        return ValueError(f"address {hostport!r}: {why}")

    i = hostport.rfind(":")
    if i < 0:
        raise bad("missing port in address")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise bad("missing ']' in address")
        if end + 1 == len(hostport):
            raise bad("missing port in address")
        if end + 1 != i:
            raise bad(
                "too many colons in address"
                if hostport[end + 1] == ":"
                else "missing port in address"
            )
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            raise bad("too many colons in address")
        j = k = 0
    if "[" in hostport[j:]:
        raise bad("unexpected '[' in address")
    if "]" in hostport[k:]:
        raise bad("unexpected ']' in address")
    return host, hostport[i + 1 :]


def join_host_port(host: str, port: str | int) -> str:
    """``"host:port"``, bracketing an IPv6 host (Go's ``net.JoinHostPort``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_network(op: str, network: Any, socktype: int | None) -> tuple[int, int]:
    if not isinstance(network, str):
        raise TypeError(f"{op}: network must be a str, got {type(network).__name__}")
    try:
        fam, typ = _NETWORKS[network]
    except KeyError:
        raise ValueError(
            f"{op}: unknown network {network!r} (want one of {', '.join(_NETWORKS)})"
        ) from None
    if socktype is not None and typ != socktype:
        other = "listen_packet" if socktype == _STREAM else "listen"
        raise ValueError(f"{op}: network {network!r} is not supported here: use {other}")
    return fam, typ


def _unix_path(address: str) -> str:
    """A Unix socket address as the socket module takes it ("@x": abstract)."""
    return "\0" + address[1:] if address.startswith("@") else address


async def _port(port: str, socktype: int, address: str) -> int:
    if port == "":
        return 0
    if port.isascii() and port.isdigit():
        p = int(port)
        if p > 65535:
            raise ValueError(f"address {address!r}: invalid port {port!r}")
        return p
    proto = "tcp" if socktype == _STREAM else "udp"
    try:
        return await syscall(socket.getservbyname, port, proto)
    except OSError:
        raise ValueError(f"address {address!r}: unknown port {port!r}") from None


async def _resolve(
    op: str, network: str, family: int, socktype: int, address: str, *, passive: bool
) -> list[tuple[int, Any]]:
    """The socket addresses (family, sockaddr) of ``address``, in the order to try."""
    host, port_s = split_host_port(address)
    port = await _port(port_s, socktype, address)
    if host == "":
        # Listening: every interface (both IP versions for "tcp", as Go does);
        # dialing: this machine.
        v4 = "0.0.0.0" if passive else "127.0.0.1"
        v6 = "::" if passive else "::1"
        if family == _AF_INET:
            return [(_AF_INET, (v4, port))]
        if family == _AF_INET6:
            return [(_AF_INET6, (v6, port))]
        if passive:
            return [(_AF_INET6, (v6, port)), (_AF_INET, (v4, port))]
        return [(_AF_INET, (v4, port)), (_AF_INET6, (v6, port))]
    bare, _, zone = host.partition("%")
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        ip = None
    if ip is not None:
        fam = _AF_INET6 if ip.version == 6 else _AF_INET
        if family not in (_AF_UNSPEC, fam):
            raise ValueError(f"{op} {network} {address}: no suitable address found")
        if zone:  # a scope id: the numeric getaddrinfo does not block
            info = socket.getaddrinfo(host, port, fam, socktype, 0, socket.AI_NUMERICHOST)
            return [(fam, info[0][4])]
        return [(fam, (bare, port))]
    infos = await syscall(socket.getaddrinfo, host, port, family, socktype)
    out: list[tuple[int, Any]] = []
    for fam, _, _, _, sockaddr in infos:
        if fam in (_AF_INET, _AF_INET6) and (fam, sockaddr) not in out:
            out.append((fam, sockaddr))
    if not out:
        raise ValueError(f"{op} {network} {address}: no suitable address found")
    if passive:  # listen on the first IPv4 address if there is one (Go's "first(isIPv4)")
        out.sort(key=lambda a: a[0] != _AF_INET)
    return out


def _op_error(e: OSError, op: str, network: str, address: str) -> OSError:
    """``e`` with Go's "op network address: error" message, of the same class."""
    if e.errno is None:
        if isinstance(e, TimeoutError):
            return TimeoutError(errno.ETIMEDOUT, f"{op} {network} {address}: {_TIMEOUT}")
        return e
    return OSError(e.errno, f"{op} {network} {address}: {e.strerror}")


# -- dial -----------------------------------------------------------------------


async def dial(network: str, address: str, timeout: float | None = None) -> Conn:
    """Connect to ``address`` (``"host:port"``, ``"[v6]:port"``, a path for Unix sockets).

    ``network`` is ``"tcp"``, ``"tcp4"``, ``"tcp6"``, ``"unix"``, ``"udp"``,
    ``"udp4"``, ``"udp6"`` or ``"unixgram"``. A host name is resolved (in
    ``gr.syscall``) and its addresses are tried in turn. ``timeout`` bounds
    the whole dial (None: no limit, ``<= 0``: already expired) and raises
    TimeoutError; a refused connection raises ConnectionRefusedError.
    """
    fam, typ = _check_network("dial", network, None)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"dial: timeout must be a number or None, got {type(timeout).__name__}")
        if math.isnan(timeout):
            raise ValueError("dial: timeout is NaN")
    if not isinstance(address, str):
        raise TypeError(f"dial: address must be a str, got {type(address).__name__}")
    deadline = None if timeout is None or timeout == math.inf else _clock.now() + timeout
    if fam == _AF_UNIX:
        addrs: list[tuple[int, Any]] = [(_AF_UNIX, _unix_path(address))]
    else:
        addrs = await _resolve("dial", network, fam, typ, address, passive=False)
    first: OSError | None = None
    for i, (af, sockaddr) in enumerate(addrs):
        try:
            part = _partial_deadline(deadline, len(addrs) - i)
            return await _dial_one(af, typ, sockaddr, part, network)
        except OSError as e:
            if first is None:
                first = _op_error(e, "dial", network, address)
            if deadline is not None and deadline <= _clock.now():
                break
    assert first is not None
    raise first


def _partial_deadline(deadline: float | None, left: int) -> float | None:
    """The share of the time left for the next of ``left`` addresses (Go's
    ``partialDeadline``): an equal share, but at least 2 s if there is that much."""
    if deadline is None:
        return None
    now = _clock.now()
    remaining = deadline - now
    if remaining <= 0:
        raise TimeoutError(_TIMEOUT)
    share = remaining / left
    if share < 2.0:
        share = min(remaining, 2.0)
    return now + share


async def _dial_one(
    family: int, socktype: int, sockaddr: Any, deadline: float | None, network: str
) -> Conn:
    sock = socket.socket(family, socktype)
    try:
        fd = _FD(sock)
    except BaseException:
        sock.close()
        raise
    try:
        pd = fd.pd
        if deadline is not None:
            pd.set_deadline(None, deadline, which="w")
        err = sock.connect_ex(sockaddr)
        if err in _CONNECTING:
            # The connection completes in the background: writable means done,
            # and SO_ERROR says how. Writable before that is spurious (an
            # unconnected socket polls writable): check that a peer exists.
            while True:
                await pd.wait(True)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err in _CONNECTING:
                    continue
                if err in _CONNECTED:
                    try:
                        sock.getpeername()
                    except OSError:
                        continue
                break
        if err not in _CONNECTED:
            raise OSError(err, os.strerror(err))
        if deadline is not None:
            pd.set_deadline(None, None, which="w")
        if family != _AF_UNIX and socktype == _STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go does
        laddr = _addr(family, sock.getsockname())
        raddr = _addr(family, sock.getpeername())
    except BaseException:
        fd.close()
        raise
    return Conn(fd, network, laddr, raddr)


# -- listen ---------------------------------------------------------------------


async def listen(network: str, address: str) -> Listener:
    """Listen on ``address`` for stream connections (``"tcp"``, ``"tcp4"``,
    ``"tcp6"`` or ``"unix"``).

    Port 0 (or none: ``"127.0.0.1:"``) picks a free port; ``ln.addr`` says
    which. An empty host listens on every interface. A Unix listener
    removes its socket file when closed.
    """
    fam, _ = _check_network("listen", network, _STREAM)
    fd, unlink = await _bind(network, fam, _STREAM, address, "listen")
    return Listener(fd, network, unlink)


async def listen_packet(network: str, address: str) -> PacketConn:
    """Open a datagram socket bound to ``address`` (``"udp"``, ``"udp4"``,
    ``"udp6"`` or ``"unixgram"``)."""
    fam, _ = _check_network("listen_packet", network, _DGRAM)
    fd, unlink = await _bind(network, fam, _DGRAM, address, "listen")
    return PacketConn(fd, network, unlink)


async def _bind(
    network: str, family: int, socktype: int, address: str, op: str
) -> tuple[_FD, str | None]:
    """A bound (and, for a stream, listening) socket registered with the
    poller, and the path to unlink on close."""
    if not isinstance(address, str):
        raise TypeError(f"{op}: address must be a str, got {type(address).__name__}")
    unlink: str | None = None
    if family == _AF_UNIX:
        path = _unix_path(address)
        addrs: list[tuple[int, Any]] = [(_AF_UNIX, path)]
        if path and not path.startswith("\0"):
            unlink = path
    else:
        addrs = await _resolve(op, network, family, socktype, address, passive=True)
    first: OSError | None = None
    for af, sockaddr in addrs:
        try:
            sock = socket.socket(af, socktype)
        except OSError as e:  # e.g. no IPv6 on this machine: try the next address
            first = first or _op_error(e, op, network, address)
            continue
        try:
            if af != _AF_UNIX and socktype == _STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if af == _AF_INET6:
                # "tcp6" is IPv6 only; "tcp" on "::" takes IPv4 too (Go's dual stack).
                v6only = 1 if network.endswith("6") else 0
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            sock.bind(sockaddr)
            if socktype == _STREAM:
                sock.listen(_BACKLOG)
            fd = _FD(sock)
        except OSError as e:
            sock.close()
            first = first or _op_error(e, op, network, address)
            continue
        except BaseException:
            sock.close()
            raise
        return fd, unlink
    assert first is not None
    raise first


# -- wrap -----------------------------------------------------------------------


def wrap(sock: socket.socket) -> Conn | Listener | PacketConn:
    """Adopt an existing socket (Go's ``FileConn``/``FileListener``/``FilePacketConn``).

    A listening stream socket becomes a Listener, a connected stream socket
    a Conn, a datagram socket a PacketConn. The socket is made non-blocking
    and now belongs to the result: closing the result closes it.
    """
    if not isinstance(sock, socket.socket):
        raise TypeError(f"wrap() needs a socket.socket, got {type(sock).__name__}")
    if sock.fileno() < 0:
        raise ValueError("wrap(): the socket is closed")
    network = _network_name(sock)
    if sock.type == _DGRAM:
        return PacketConn(_FD(sock), network, None)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return Listener(_FD(sock), network, None)
    try:
        laddr = _addr(sock.family, sock.getsockname())
        raddr = _addr(sock.family, sock.getpeername())
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            raise
        raise ValueError("wrap(): the stream socket is neither connected nor listening") from None
    return Conn(_FD(sock), network, laddr, raddr)


# Last: ``tls`` is built on the names above (``import goroutines`` has
# already paid for ``ssl``: asyncio, for the bridge, imports it).
from . import tls as tls  # noqa: E402
