"""gr.net.tls: TLS over the poller (issue "Streams, TLS and processes on the
poller", part 2), tested against peers nobody here wrote: Python's blocking
``ssl`` sockets (in threads) and Debian's ``openssl s_server``/``s_client``,
with certificates trustme makes. Every test checks that no fd is left open
(and the plugin, that no goroutine is left)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme  # a dev extra

import goroutines as gr
from goroutines import bufio
from goroutines.net import tls

OPENSSL = shutil.which("openssl")


@pytest.fixture
def openssl() -> str:
    """The openssl program: a real peer, so its absence fails (``make test``
    installs it: ``make sysdeps``)."""
    if OPENSSL is None:
        pytest.fail("openssl is not installed: apt-get install openssl (or make sysdeps)")
    return OPENSSL


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="module")
def pem_files(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The CA, and the server's certificate chain and key, as files for openssl."""
    d = tmp_path_factory.mktemp("pem")
    cert = ca.issue_cert("localhost", "127.0.0.1")
    files = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(files["cert"]), append=i > 0)
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(autouse=True)
def no_fd_left() -> Iterator[None]:
    fds = len(os.listdir("/proc/self/fd"))
    yield
    assert len(os.listdir("/proc/self/fd")) == fds, "an fd was left open"


def _thread_server(
    ctx: ssl.SSLContext, serve: Callable[[ssl.SSLSocket], None]
) -> tuple[int, threading.Thread, list[BaseException]]:
    """A blocking ``ssl`` server in a thread, for one connection."""
    ls = socket.create_server(("127.0.0.1", 0))
    port = ls.getsockname()[1]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ls.settimeout(10)
            raw, _ = ls.accept()
            raw.settimeout(10)
            with ctx.wrap_socket(raw, server_side=True) as s:
                serve(s)
        except BaseException as e:
            errors.append(e)
        finally:
            ls.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return port, t, errors


async def _echo_server(ln: tls.Listener, conns: int) -> None:
    """Serve ``conns`` connections: echo each until the peer's close_notify."""
    wg = gr.WaitGroup()

    async def serve(c: tls.Conn) -> None:
        try:
            async with c:
                while data := await c.read():
                    await c.write(data)
        finally:
            wg.done()

    for _ in range(conns):
        c = await ln.accept()
        wg.add(1)
        gr.go(serve, c)
    await wg.wait()


# -- against Python's blocking ssl --------------------------------------------------


@pytest.mark.goroutines
async def test_client_against_python_ssl_server(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    def serve(s: ssl.SSLSocket) -> None:
        line = s.recv(100)
        s.sendall(line.upper())
        assert s.recv(100) == b""  # our close_notify
        s.unwrap()

    port, t, errors = _thread_server(server_ctx, serve)
    conn = await tls.dial("tcp", f"127.0.0.1:{port}", client_ctx, server_hostname="localhost")
    assert conn.handshake_complete
    assert conn.version in ("TLSv1.2", "TLSv1.3")
    cert = conn.peer_certificate()
    assert ("DNS", "localhost") in cert["subjectAltName"]
    assert isinstance(conn.peer_certificate(binary_form=True), bytes)
    await conn.write(b"hello tls\n")
    assert await conn.read() == b"HELLO TLS\n"
    await conn.close()
    await conn.close()  # idempotent
    await gr.syscall(t.join, 10)
    assert errors == []


@pytest.mark.goroutines
async def test_server_against_python_ssl_client(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    ln = await tls.listen("tcp", "127.0.0.1:0", server_ctx)
    port = ln.addr[1]
    got: list[bytes] = []

    def client() -> None:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            s.sendall(b"ping\n")
            got.append(s.recv(100))
            s.unwrap()

    t = threading.Thread(target=client, daemon=True)
    t.start()
    async with ln:
        conn = await ln.accept()
        assert not conn.handshake_complete  # accept does not handshake
        async with conn:
            r = bufio.Reader(conn)
            assert await r.read_line() == b"ping"
            assert conn.peer_certificate() is None  # the client sent none
            await conn.write(b"pong\n")
            assert await r.read_line() == b""  # the client's close_notify
    await gr.syscall(t.join, 10)
    assert got == [b"pong\n"]


@pytest.mark.goroutines(procs=4, timeout=60)
async def test_16_mib_both_ways_byte_for_byte(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """16 MiB out and back through a Python ssl echo server, one goroutine
    writing while another reads the same tls.Conn."""
    size = 16 << 20
    payload = os.urandom(1 << 20) * 16

    def serve(s: ssl.SSLSocket) -> None:
        left = size
        while left:
            data = s.recv(min(left, 1 << 16))
            assert data
            s.sendall(data)
            left -= len(data)

    port, t, errors = _thread_server(server_ctx, serve)
    conn = await tls.dial("tcp", f"127.0.0.1:{port}", client_ctx, server_hostname="localhost")
    done = gr.Chan[None](1)

    async def writer() -> None:
        await conn.write(payload[: size // 2])
        await conn.write(memoryview(payload)[size // 2 :])
        await done.send(None)

    gr.go(writer)
    h = hashlib.sha256()
    n = 0
    while n < size:
        data = await conn.read()
        assert data, f"the stream ended after {n} bytes"
        h.update(data)
        n += len(data)
    await done.recv()
    assert n == size
    assert h.digest() == hashlib.sha256(payload).digest()
    await conn.close()
    await gr.syscall(t.join, 10)
    assert errors == []


# -- against openssl --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.goroutines(timeout=30)
async def test_client_against_openssl_s_server(
    openssl: str, pem_files: dict[str, str], client_ctx: ssl.SSLContext
) -> None:
    """``openssl s_server -rev`` sends back each line reversed; ALPN on both sides."""
    port = _free_port()
    proc = await gr.syscall(
        subprocess.Popen,
        [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", pem_files["cert"],
         "-key", pem_files["key"], "-rev", "-alpn", "h2,http/1.1", "-naccept", "1", "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ctx = ssl.create_default_context(cafile=pem_files["ca"])
        ctx.set_alpn_protocols(["http/1.1"])
        conn = None
        for _ in range(200):  # until s_server listens
            try:
                conn = await tls.dial("tcp", f"127.0.0.1:{port}", ctx, server_hostname="localhost")
                break
            except ConnectionRefusedError:
                await gr.sleep(0.01)
        assert conn is not None, "openssl s_server did not start"
        assert conn.alpn_protocol == "http/1.1"
        await conn.write(b"goroutines\n")
        r = bufio.Reader(conn)
        assert await r.read_line() == b"senituorog"
        await conn.close()
    finally:
        out, _ = await gr.syscall(proc.communicate, timeout=10)
    assert proc.returncode == 0, out


@pytest.mark.goroutines(timeout=30)
async def test_server_against_openssl_s_client(
    openssl: str, pem_files: dict[str, str], server_ctx: ssl.SSLContext
) -> None:
    """``openssl s_client`` checks our certificate chain and host name,
    sends a line and reads our answer until our close_notify; our server
    sees the name it asked for (SNI)."""
    seen: list[str | None] = []
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pem_files["cert"], pem_files["key"])
    ctx.sni_callback = lambda _s, name, _c: seen.append(name)  # type: ignore[assignment, misc]
    ln = await tls.listen("tcp", "127.0.0.1:0", ctx)
    proc = await gr.syscall(
        subprocess.Popen,
        [openssl, "s_client", "-connect", f"127.0.0.1:{ln.addr[1]}", "-CAfile", pem_files["ca"],
         "-servername", "localhost", "-verify_hostname", "localhost", "-verify_return_error",
         "-quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(b"hello from openssl\n")  # sent once the handshake is done
    proc.stdin.flush()
    try:
        async with ln:
            conn = await ln.accept()
            async with conn:
                line = await bufio.Reader(conn).read_line(keep_newline=True)
                await conn.write(b"got " + line)
        out, err = await gr.syscall(proc.communicate, None, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            await gr.syscall(proc.communicate)
    assert out == b"got hello from openssl\n", err
    assert seen == ["localhost"]


# -- failures -------------------------------------------------------------------


@pytest.mark.goroutines
async def test_wrong_hostname_names_the_peer(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def serve(ln: tls.Listener, errs: gr.Chan[BaseException]) -> None:
        c = await ln.accept()
        try:
            await c.handshake()
        except BaseException as e:
            await errs.send(e)
        finally:
            await c.close()

    ln = await tls.listen("tcp", "127.0.0.1:0", server_ctx)
    errs = gr.Chan[BaseException](1)
    gr.go(serve, ln, errs)
    addr = f"127.0.0.1:{ln.addr[1]}"
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await tls.dial("tcp", addr, client_ctx, server_hostname="wrong.example")
    msg = str(info.value)
    assert f"tls: handshake with {addr}" in msg
    assert "Hostname mismatch" in msg and "wrong.example" in msg
    assert info.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    # The server hears why (the client's alert), with the client's address.
    server_err = await errs.recv()
    assert isinstance(server_err, ssl.SSLError)
    assert "tls: handshake with 127.0.0.1:" in str(server_err)
    ln.close()


@pytest.mark.goroutines
async def test_untrusted_certificate(server_ctx: ssl.SSLContext) -> None:
    async def serve(ln: tls.Listener) -> None:
        c = await ln.accept()
        try:
            await c.handshake()
        except ssl.SSLError:
            pass  # the client's alert: tested above
        finally:
            await c.close()

    ln = await tls.listen("tcp", "127.0.0.1:0", server_ctx)
    gr.go(serve, ln)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed") as info:
        # The default context: the system's CAs, which never signed trustme's.
        await tls.dial("tcp", f"127.0.0.1:{ln.addr[1]}", server_hostname="localhost")
    assert f"127.0.0.1:{ln.addr[1]}" in str(info.value)
    ln.close()


@pytest.mark.goroutines(timeout=20)
async def test_deadlines_bound_the_handshake(client_ctx: ssl.SSLContext) -> None:
    """A peer that accepts but never speaks TLS: dial's timeout, and a
    deadline set before an explicit handshake, both end it."""
    ln = await gr.net.listen("tcp", "127.0.0.1:0")
    held: list[gr.net.Conn] = []

    async def mute() -> None:
        for _ in range(2):
            held.append(await ln.accept())

    gr.go(mute)
    addr = f"127.0.0.1:{ln.addr[1]}"
    t0 = gr.monotonic()
    with pytest.raises(TimeoutError):
        await tls.dial("tcp", addr, client_ctx, server_hostname="localhost", timeout=0.2)
    assert 0.15 < gr.monotonic() - t0 < 5

    raw = await gr.net.dial("tcp", addr)
    conn = tls.client(raw, client_ctx, "localhost")
    conn.set_deadline(gr.monotonic() + 0.1)
    with pytest.raises(TimeoutError):
        await conn.handshake()
    with pytest.raises(TimeoutError):  # a failed handshake's error, again
        await conn.read()
    await conn.close()
    for c in held:
        c.close()
    ln.close()


@pytest.mark.goroutines
async def test_peer_closing_during_the_handshake(client_ctx: ssl.SSLContext) -> None:
    ln = await gr.net.listen("tcp", "127.0.0.1:0")

    async def hang_up() -> None:
        c = await ln.accept()
        await c.read()  # the ClientHello: all of it, or the close is a reset
        c.close()

    gr.go(hang_up)
    addr = f"127.0.0.1:{ln.addr[1]}"
    with pytest.raises(ssl.SSLError) as info:
        await tls.dial("tcp", addr, client_ctx, server_hostname="localhost")
    assert isinstance(info.value, ssl.SSLEOFError | ssl.SSLError)
    assert f"tls: handshake with {addr}" in str(info.value)
    ln.close()


@pytest.mark.goroutines
async def test_ragged_eof(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    """A peer that closes its socket without close_notify: the end of the
    stream, or SSLEOFError with ``suppress_ragged_eofs=False``."""
    for suppress in (True, False):
        ln = await gr.net.listen("tcp", "127.0.0.1:0")

        async def rude(ln: gr.net.Listener) -> None:
            raw = await ln.accept()
            c = tls.server(raw, server_ctx)
            await c.write(b"bye")
            raw.close()  # no close_notify

        gr.go(rude, ln)
        raw = await gr.net.dial("tcp", f"127.0.0.1:{ln.addr[1]}")
        conn = tls.client(raw, client_ctx, "localhost", suppress_ragged_eofs=suppress)
        assert await conn.read() == b"bye"
        if suppress:
            assert await conn.read() == b""
        else:
            with pytest.raises(ssl.SSLEOFError, match=r"tls: read from 127\.0\.0\.1:"):
                await conn.read()
        await conn.close()
        ln.close()


@pytest.mark.goroutines
async def test_close_write_then_read(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """close_write: the peer reads the end, we still read its answer; a
    write after it is ErrClosed; close of a conn whose peer is gone is quiet."""
    ln = await tls.listen("tcp", "127.0.0.1:0", server_ctx)

    async def count_then_answer() -> None:
        c = await ln.accept()
        n = 0
        while data := await c.read():
            n += len(data)
        await c.write(str(n).encode())
        await c.close()

    gr.go(count_then_answer)
    conn = await tls.dial("tcp", f"127.0.0.1:{ln.addr[1]}", client_ctx)
    await conn.write(b"x" * 100_000)
    await conn.close_write()
    await conn.close_write()  # once is enough
    with pytest.raises(gr.net.ErrClosed, match="after close_write"):
        await conn.write(b"more")
    assert await conn.read() == b"100000"
    assert await conn.read() == b""
    await conn.close()
    ln.close()


@pytest.mark.goroutines
async def test_bad_input_is_named(server_ctx: ssl.SSLContext) -> None:
    ln = await gr.net.listen("tcp", "127.0.0.1:0")
    raw = await gr.net.dial("tcp", f"127.0.0.1:{ln.addr[1]}")
    with pytest.raises(TypeError, match=r"context must be an ssl\.SSLContext, got str"):
        await tls.listen("tcp", "127.0.0.1:0", "cert.pem")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="conn must have read, write and close"):
        tls.client(ln, server_ctx)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tls\.client: .*PROTOCOL_TLS_SERVER"):
        tls.client(raw, server_ctx)
    with pytest.raises(ValueError, match="check_hostname requires server_hostname"):
        tls.client(raw)
    conn = tls.server(raw, server_ctx)
    with pytest.raises(ValueError, match="n must be >= 0"):
        await conn.read(-1)
    with pytest.raises(TypeError, match="data must be bytes-like, got str"):
        await conn.write("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="before the handshake"):
        conn.peer_certificate()
    await conn.close()
    ln.close()


@pytest.mark.goroutines
async def test_close_wakes_a_blocked_reader(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    ln = await tls.listen("tcp", "127.0.0.1:0", server_ctx)

    async def quiet() -> None:
        c = await ln.accept()
        await c.handshake()
        await c.read()  # until the client's close_notify
        await c.close()

    gr.go(quiet)
    conn = await tls.dial("tcp", f"127.0.0.1:{ln.addr[1]}", client_ctx)
    errs = gr.Chan[BaseException](1)

    async def reader() -> None:
        try:
            await conn.read()
        except BaseException as e:
            await errs.send(e)

    gr.go(reader)
    await gr.sleep(0.05)  # parked in read, most likely; if not, it reads after close
    await conn.close()
    assert isinstance(await errs.recv(), gr.net.ErrClosed)
    ln.close()


# -- many at once -----------------------------------------------------------------


@pytest.mark.parametrize("procs", [1, 4])
def test_200_concurrent_connections(
    procs: int, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    from helpers import grun

    n = 200

    async def main() -> None:
        ln = await tls.listen("tcp", "127.0.0.1:0", server_ctx)
        served = gr.Chan[None]()

        async def server() -> None:
            await _echo_server(ln, n)
            await served.send(None)

        gr.go(server)
        results = gr.Chan[bytes](n)

        async def client(i: int) -> None:
            conn = await tls.dial("tcp", f"127.0.0.1:{ln.addr[1]}", client_ctx)
            async with conn:
                msg = f"message {i} ".encode() * 50
                await conn.write(msg)
                got = await bufio.Reader(conn).read_exactly(len(msg))
                assert got == msg
                await results.send(got[:12])

        for i in range(n):
            gr.go(client, i)
        seen = {await results.recv() for _ in range(n)}
        assert len(seen) == n
        await served.recv()
        ln.close()

    grun(main, procs=procs, timeout=60)


def test_gr_net_tls_is_the_module() -> None:
    """``import goroutines`` is enough for ``gr.net.tls``."""
    code = "import goroutines as gr; print(gr.net.tls.dial.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "goroutines.net.tls"
    assert Path(tls.__file__).name == "tls.py"
