"""TLS over any connection (Go's ``crypto/tls``).

A ``tls.Conn`` runs the TLS protocol over a ``gr.net.Conn`` (or anything
with ``async read(n)``, ``async write(data)`` and ``close()``): the
goroutine that waits for the peer parks on the poller, no thread waits. ::

    from goroutines.net import tls

    conn = await tls.dial("tcp", "example.com:443", timeout=10)   # handshake done
    await conn.write(b"GET / HTTP/1.0\\r\\nHost: example.com\\r\\n\\r\\n")
    data = await conn.read()                  # b"" at the end of the stream
    await conn.close()                        # close_notify, then the socket

    ln = await tls.listen("tcp", "127.0.0.1:8443", server_context)
    conn = await ln.accept()                  # handshake on first read/write

- ``client(conn, context=None, server_hostname=None)`` /
  ``server(conn, context)``: a ``tls.Conn`` over a connection you have
  (Go's ``tls.Client``/``tls.Server``). The handshake runs on the first
  ``read`` or ``write``, or when you call ``await conn.handshake()``.
- ``dial`` (its ``timeout`` covers the handshake too) and ``listen`` /
  ``Listener.accept`` (it does not handshake: a slow client cannot hold
  up ``accept``).
- Everything TLS is configured on the ``ssl.SSLContext``: certificates,
  verification, ALPN (``set_alpn_protocols``), SNI (``server_hostname``,
  ``sni_callback``), versions. ``context=None`` on the client side is
  ``ssl.create_default_context()``, and ``dial``'s ``server_hostname``
  defaults to the host of the address, as Go's ``tls.Dial`` does.
- The connection's deadlines (``set_deadline``...) apply to the
  handshake too.

Errors: the TLS errors are ``ssl.SSLError`` and its subclasses
(``ssl.SSLCertVerificationError`` for a wrong host name or an untrusted
certificate), with the peer's address in the message; the connection's
own errors (``TimeoutError``, ``ErrClosed``, ``ConnectionResetError``)
pass through. A connection that ends without the peer's close_notify reads
as the end of the stream (``suppress_ragged_eofs=True``, as Python's
``ssl`` sockets do) or, with ``suppress_ragged_eofs=False``, raises
``ssl.SSLEOFError``.
"""

# Design notes.
#
# The protocol runs in an ``ssl.SSLObject`` over two ``ssl.MemoryBIO``s
# (asyncio's sslproto and trio's SSLStream do the same): bytes read from the
# connection are fed to ``incoming``; what OpenSSL writes to ``outgoing`` is
# sent on the connection. Rejected: ``SSLContext.wrap_socket`` on the
# non-blocking socket. Its want-read/want-write dance would have to be
# threaded through net's FD, and it works only over a real socket, not over
# any Conn (a Unix socket wrapper, a test double, a pipe).
#
# Two goroutines may use one Conn at once, one reading and one writing (as
# in Go). Three goroutine locks keep the records in order:
#
# - ``_hmu`` (Go's ``handshakeMutex``): one handshake. Until it is done,
#   every read and write waits for it, so the handshake has the connection
#   to itself.
# - ``_rmu`` (Go's ``in``): one reader at a time, so the bytes fed to
#   ``incoming`` are the connection's bytes in order.
# - ``_wmu`` (Go's ``out``): one writer at a time, so what is taken from
#   ``outgoing`` goes out in the order OpenSSL wrote it. A read can make
#   output too (a TLS 1.3 KeyUpdate answer): the reader sends it under
#   ``_wmu`` like a write.
#
# And one plain lock, ``_lock``: OpenSSL's ``SSL`` object is not
# thread-safe, and CPython drops the GIL inside ``SSL_read``/``SSL_write``,
# so the reader's and the writer's Ms must not be inside it at once. It is
# a leaf (held only around calls on the SSLObject and the BIOs, never across
# a park), hence plain, outside the rank table.
#
# Guards: the SSLObject and both BIOs: ``_lock``. ``_handshaken``,
# ``_handshake_err``: written under ``_hmu``; read racily first (True, or an
# error, is final). ``_notified`` (close_notify sent): ``_wmu``. ``_closed``
# and ``_broken`` (a fatal TLS error or a ragged EOF was seen): ``_lock``.

from __future__ import annotations

import ssl
import threading
from types import TracebackType
from typing import Any, Final, Protocol, Self, final

from .._runtime import _clock
from .._sync import Mutex
from . import Addr, ErrClosed, join_host_port, split_host_port
from . import Conn as NetConn
from . import Listener as NetListener
from . import dial as net_dial
from . import listen as net_listen

__all__ = ["Conn", "Listener", "client", "dial", "listen", "server"]

#: How much is read from the connection at once.
_READ_SIZE: Final = 65536
#: How much plaintext is encrypted before it is sent: a 16 MiB write is
#: sent 256 KiB at a time, not built whole in ``outgoing`` first.
_WRITE_CHUNK: Final = 262144
#: How long ``close`` waits to send close_notify (Go's 5 s).
_CLOSE_NOTIFY_WAIT: Final = 5.0


class _Transport(Protocol):
    """What a ``tls.Conn`` runs over: a ``gr.net.Conn``, or anything like it."""

    async def read(self, n: int, /) -> bytes: ...

    async def write(self, data: bytes, /) -> Any: ...

    def close(self) -> None: ...


def _peer_of(conn: Any) -> str:
    addr = getattr(conn, "remote_addr", None)
    if isinstance(addr, tuple) and len(addr) >= 2:
        return join_host_port(str(addr[0]), addr[1])
    if addr:
        return str(addr)
    return repr(conn)


def _with_peer(e: ssl.SSLError, what: str, peer: str) -> ssl.SSLError:
    """``e``, of the same class, with ``what`` and the peer in its message."""
    msg = e.strerror if isinstance(e.strerror, str) and e.strerror else str(e)
    new = type(e)(e.errno, f"tls: {what} {peer}: {msg}")
    for attr in ("reason", "library", "verify_code", "verify_message"):
        if hasattr(e, attr):
            setattr(new, attr, getattr(e, attr))
    return new


@final
class Conn:
    """A TLS connection over ``conn`` (Go's ``tls.Conn``); made by
    ``client``, ``server``, ``dial`` and ``Listener.accept``.

    One goroutine may read while another writes; more readers (or
    writers) queue. ``close`` sends close_notify and closes ``conn``;
    ``async with tls_conn:`` does too.
    """

    __slots__ = (
        "_broken",
        "_closed",
        "_conn",
        "_handshake_err",
        "_handshaken",
        "_hmu",
        "_incoming",
        "_lock",
        "_notified",
        "_outgoing",
        "_peer",
        "_rmu",
        "_server_side",
        "_ssl",
        "_suppress_ragged_eofs",
        "_wmu",
    )

    def __init__(
        self,
        conn: _Transport,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        suppress_ragged_eofs: bool = True,
    ) -> None:
        side = "server" if server_side else "client"
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(
                f"tls.{side}: context must be an ssl.SSLContext, got {type(context).__name__}"
            )
        for method in ("read", "write", "close"):
            if not callable(getattr(conn, method, None)):
                raise TypeError(
                    f"tls.{side}: conn must have read, write and close (a gr.net.Conn), "
                    f"got {type(conn).__name__} without {method}"
                )
        if server_hostname is not None and not isinstance(server_hostname, str):
            raise TypeError(
                f"tls.{side}: server_hostname must be a str or None, "
                f"got {type(server_hostname).__name__}"
            )
        if not server_side and server_hostname is None and context.check_hostname:
            # Go's "either ServerName or InsecureSkipVerify must be specified"
            # (a bare SSLObject would fail later, in the handshake).
            raise ValueError(
                "tls.client: check_hostname requires server_hostname (the name the "
                "certificate must match), or a context with check_hostname off"
            )
        self._conn = conn
        self._peer = _peer_of(conn)
        self._server_side = server_side
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        try:
            self._ssl = context.wrap_bio(
                self._incoming,
                self._outgoing,
                server_side=server_side,
                server_hostname=server_hostname,
            )
        except (ValueError, ssl.SSLError) as e:
            # A context that cannot make this side: "check_hostname requires
            # server_hostname", "Cannot create a client socket with a
            # PROTOCOL_TLS_SERVER context" (an SSLError, though nothing was sent).
            msg = e.strerror if isinstance(e, ssl.SSLError) and e.strerror else str(e)
            raise ValueError(f"tls.{side}: {msg}") from None
        self._suppress_ragged_eofs = suppress_ragged_eofs
        self._lock = threading.Lock()
        self._hmu = Mutex()
        self._rmu = Mutex()
        self._wmu = Mutex()
        self._handshaken = False
        self._handshake_err: BaseException | None = None
        self._notified = False
        self._closed = False
        self._broken = False

    def __repr__(self) -> str:
        side = "server" if self._server_side else "client"
        state = "closed" if self._closed else "open" if self._handshaken else "new"
        return f"<tls.Conn {side} {state} {self._conn!r}>"

    # -- what the handshake settled -------------------------------------------

    @property
    def conn(self) -> Any:
        """The connection TLS runs over (Go's ``NetConn``)."""
        return self._conn

    @property
    def local_addr(self) -> Addr:
        return self._conn.local_addr  # type: ignore[attr-defined, no-any-return]

    @property
    def remote_addr(self) -> Addr:
        return self._conn.remote_addr  # type: ignore[attr-defined, no-any-return]

    @property
    def handshake_complete(self) -> bool:
        return self._handshaken

    @property
    def server_hostname(self) -> str | None:
        """The name the client asked for (SNI): the client's
        ``server_hostname``. On the server side, read it in the context's
        ``sni_callback``."""
        return self._ssl.server_hostname

    def peer_certificate(self, binary_form: bool = False) -> Any:
        """The peer's certificate: a dict as ``ssl.SSLSocket.getpeercert``
        gives (empty if it was not verified), its DER bytes with
        ``binary_form=True``, or None if the peer sent none. Raises
        ``ValueError`` before the handshake."""
        with self._lock:
            if not self._handshaken:
                raise ValueError("tls: peer_certificate before the handshake")
            return self._ssl.getpeercert(binary_form)

    @property
    def alpn_protocol(self) -> str | None:
        """The protocol ALPN chose (``set_alpn_protocols`` on both
        contexts), or None."""
        with self._lock:
            return self._ssl.selected_alpn_protocol()

    @property
    def version(self) -> str | None:
        """``"TLSv1.3"``, ``"TLSv1.2"``...; None before the handshake."""
        with self._lock:
            return self._ssl.version()

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        """``(name, protocol, secret bits)``; None before the handshake."""
        with self._lock:
            return self._ssl.cipher()

    # -- deadlines: the connection's ----------------------------------------------

    def set_deadline(self, deadline: float | None) -> None:
        """The connection's ``set_deadline``: it applies to the handshake,
        reads and writes (``gr.monotonic()`` values; None: none)."""
        self._conn.set_deadline(deadline)  # type: ignore[attr-defined]

    def set_read_deadline(self, deadline: float | None) -> None:
        self._conn.set_read_deadline(deadline)  # type: ignore[attr-defined]

    def set_write_deadline(self, deadline: float | None) -> None:
        self._conn.set_write_deadline(deadline)  # type: ignore[attr-defined]

    # -- the handshake ------------------------------------------------------------

    async def handshake(self) -> None:
        """Run the handshake if it has not run: read and write call it, so
        calling it is needed only to see its errors first, or to bound it
        alone by a deadline. A failed handshake's error is raised again by
        every later call, read and write (as in Go)."""
        if self._handshaken:
            return
        await self._hmu.lock()
        try:
            if self._handshake_err is not None:
                raise self._handshake_err
            if self._handshaken:
                return
            try:
                await self._run_handshake()
            except Exception as e:  # not GeneratorExit or Ctrl-C: nothing to replay
                self._handshake_err = e
                raise
            self._handshaken = True
        finally:
            self._hmu.unlock()

    async def _run_handshake(self) -> None:
        conn = self._conn
        while True:
            err: ssl.SSLError | None = None
            with self._lock:
                if self._closed:
                    raise ErrClosed(f"tls: handshake with {self._peer}: the connection is closed")
                try:
                    self._ssl.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                except ssl.SSLError as e:
                    err = e
                out = self._outgoing.read()
            if err is not None:
                # Send the alert OpenSSL wrote (bad certificate, ...), so the
                # peer learns why. If that fails too, the handshake's error
                # is still the one that says what went wrong.
                if out:
                    try:
                        await conn.write(out)
                    except OSError:
                        pass
                raise _with_peer(err, "handshake with", self._peer) from None
            if out:
                await conn.write(out)
            if done:
                return
            data = await conn.read(_READ_SIZE)
            with self._lock:
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()

    # -- reading and writing ------------------------------------------------------

    async def read(self, n: int = _READ_SIZE) -> bytes:
        """Read up to ``n`` bytes of plaintext, at least one, waiting if there
        is none; ``b""`` at the end of the stream (the peer's close_notify,
        or, with ``suppress_ragged_eofs``, the connection's end)."""
        if n.__class__ is not int or n < 0:
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"tls read: n must be an int, got {type(n).__name__}")
            raise ValueError(f"tls read: n must be >= 0, got {n}")
        if not self._handshaken:
            await self.handshake()
        if n == 0:
            return b""
        await self._rmu.lock()
        try:
            while True:
                err: ssl.SSLError | None = None
                data: bytes | None = None
                with self._lock:
                    try:
                        data = self._ssl.read(n)
                    except ssl.SSLWantReadError:
                        pass
                    except ssl.SSLZeroReturnError:
                        data = b""  # close_notify: the clean end
                    except ssl.SSLEOFError as e:
                        self._broken = True
                        if self._suppress_ragged_eofs:
                            data = b""
                        else:
                            err = e
                    except ssl.SSLError as e:
                        self._broken = True
                        err = e
                    answer = self._outgoing.pending
                if answer:
                    await self._flush()
                if err is not None:
                    raise _with_peer(err, "read from", self._peer) from None
                if data is not None:
                    return data
                more = await self._conn.read(_READ_SIZE)
                with self._lock:
                    if more:
                        self._incoming.write(more)
                    else:
                        self._incoming.write_eof()
        finally:
            self._rmu.unlock()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``. After ``close_write`` (or ``close``) it
        raises ``ErrClosed``."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"tls write: data must be bytes-like, got {type(data).__name__}")
        if not self._handshaken:
            await self.handshake()
        await self._wmu.lock()
        try:
            if self._notified:
                raise ErrClosed(f"tls: write to {self._peer} after close_write")
            with memoryview(data) as mv, mv.cast("B") as view:
                total = len(view)
                for start in range(0, total, _WRITE_CHUNK):
                    err: ssl.SSLError | None = None
                    with self._lock:
                        try:
                            self._ssl.write(view[start : start + _WRITE_CHUNK])
                        except ssl.SSLError as e:
                            self._broken = True
                            err = e
                        out = self._outgoing.read()
                    if out:
                        await self._conn.write(out)
                    if err is not None:
                        raise _with_peer(err, "write to", self._peer) from None
        finally:
            self._wmu.unlock()

    async def _flush(self) -> None:
        """Send what a read made OpenSSL write, in order with the writes."""
        await self._wmu.lock()
        try:
            with self._lock:
                out = self._outgoing.read()
            if out:
                await self._conn.write(out)
        finally:
            self._wmu.unlock()

    # -- closing ------------------------------------------------------------------

    async def close_write(self) -> None:
        """Send close_notify (Go's ``CloseWrite``): the peer reads the end
        of the stream; we can still read. Later writes raise ErrClosed.
        Needs the handshake done; does nothing the second time."""
        if not self._handshaken:
            raise ValueError("tls: close_write before the handshake")
        await self._wmu.lock()
        try:
            if self._notified:
                return
            self._notified = True
            with self._lock:
                try:
                    self._ssl.unwrap()
                except ssl.SSLWantReadError:
                    pass  # the peer's close_notify is not awaited (as in Go)
                out = self._outgoing.read()
            if out:
                await self._conn.write(out)
        finally:
            self._wmu.unlock()

    async def close(self) -> None:
        """Send close_notify if the handshake is done, then close the
        connection: goroutines blocked on it get ErrClosed. Idempotent.

        Sending close_notify waits at most 5 s (as in Go: a write deadline,
        which also wakes a writer stuck on a peer that does not read). A
        peer already gone (reset, broken pipe, closed) counts as closed
        cleanly, as in trio; a timeout is raised, after the connection is
        closed all the same."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            # After a fatal error (a ragged EOF is one), OpenSSL refuses to
            # send close_notify, and the peer would not read it.
            if self._handshaken and not self._notified and not self._broken:
                setter = getattr(self._conn, "set_write_deadline", None)
                if setter is not None:
                    setter(_clock.now() + _CLOSE_NOTIFY_WAIT)
                try:
                    await self.close_write()
                except (BrokenPipeError, ConnectionResetError, ErrClosed):
                    pass  # nobody left to notify
        finally:
            self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def client(
    conn: _Transport,
    context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    *,
    suppress_ragged_eofs: bool = True,
) -> Conn:
    """The client side of TLS over ``conn`` (Go's ``tls.Client``).
    ``context=None`` is ``ssl.create_default_context()``: the system's
    CAs, host name checked, so ``server_hostname`` is then needed."""
    if context is None:
        context = ssl.create_default_context()
    return Conn(
        conn,
        context,
        server_side=False,
        server_hostname=server_hostname,
        suppress_ragged_eofs=suppress_ragged_eofs,
    )


def server(conn: _Transport, context: ssl.SSLContext, *, suppress_ragged_eofs: bool = True) -> Conn:
    """The server side of TLS over ``conn`` (Go's ``tls.Server``);
    ``context`` holds the certificate (``load_cert_chain``)."""
    return Conn(conn, context, server_side=True, suppress_ragged_eofs=suppress_ragged_eofs)


async def dial(
    network: str,
    address: str,
    context: ssl.SSLContext | None = None,
    *,
    server_hostname: str | None = None,
    timeout: float | None = None,
) -> Conn:
    """Connect to ``address`` and run the handshake (Go's ``tls.Dial``).

    ``server_hostname`` defaults to the address's host; ``timeout``
    (seconds) bounds the connect and the handshake together. On any error
    the connection is closed.
    """
    if context is not None and not isinstance(context, ssl.SSLContext):
        raise TypeError(
            f"tls.dial: context must be an ssl.SSLContext, got {type(context).__name__}"
        )
    if server_hostname is None and isinstance(address, str):
        host, _ = split_host_port(address)
        server_hostname = host or None
    deadline = None if timeout is None else _clock.now() + timeout
    conn = await net_dial(network, address, timeout=timeout)
    try:
        tc = client(conn, context, server_hostname)
        if deadline is not None:
            conn.set_deadline(deadline)
        await tc.handshake()
        if deadline is not None:
            conn.set_deadline(None)
    except BaseException:
        conn.close()
        raise
    return tc


@final
class Listener:
    """A listener whose ``accept`` gives ``tls.Conn``s (Go's ``tls.NewListener``).

    ``accept`` does not run the handshake: the server's first read or
    write does (or ``await conn.handshake()``), in the goroutine that
    serves the connection.
    """

    __slots__ = ("_context", "_ln")

    def __init__(self, ln: NetListener, context: ssl.SSLContext) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(
                f"tls.Listener: context must be an ssl.SSLContext, got {type(context).__name__}"
            )
        self._ln = ln
        self._context = context

    def __repr__(self) -> str:
        return f"<tls.Listener {self._ln!r}>"

    @property
    def addr(self) -> Addr:
        return self._ln.addr

    @property
    def listener(self) -> NetListener:
        """The plain listener underneath."""
        return self._ln

    async def accept(self) -> Conn:
        """Wait for a connection; the TLS server side over it."""
        conn: NetConn = await self._ln.accept()
        try:
            return server(conn, self._context)
        except BaseException:
            conn.close()
            raise

    def set_deadline(self, deadline: float | None) -> None:
        self._ln.set_deadline(deadline)

    def close(self) -> None:
        """Close the listener (not the connections it gave)."""
        self._ln.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def listen(network: str, address: str, context: ssl.SSLContext) -> Listener:
    """Listen on ``address`` (Go's ``tls.Listen``); ``context`` is the
    server's (a certificate loaded)."""
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(
            f"tls.listen: context must be an ssl.SSLContext, got {type(context).__name__}"
        )
    return Listener(await net_listen(network, address), context)
