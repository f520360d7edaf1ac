"""examples/http_server.py (benchmark W10's server) against real HTTP/1.1 clients.

The server's ``serve`` runs in-process under ``gr.run`` on a free port; the
clients are blocking (``http.client``, raw sockets) in ``gr.syscall``. Every
connection's goroutine must end once its client has gone: after the
listener is closed no goroutine is left.
"""

from __future__ import annotations

import http.client
import importlib.util
import socket
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import goroutines as gr
from helpers import grun

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "http_server.py"
BODY = b"Hello, world!\n"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_server_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


server = _load_example()


def _keep_alive(port: int) -> tuple[list[tuple[int, str, str | None, bytes]], Any]:
    """Two GETs on one connection, left open: their answers and the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    answers, socks = [], []
    for path in ("/", "/second"):
        conn.request("GET", path)
        r = conn.getresponse()
        answers.append((r.status, r.reason, r.getheader("content-length"), r.read()))
        socks.append(conn.sock)
    assert socks[0] is not None and socks[0] is socks[1], "not kept alive: a new connection"
    return answers, conn


def _raw(port: int, data: bytes, then: str = "read") -> bytes:
    """Send ``data`` on a new connection, then read until the server closes
    it; ``then="half-close"``: shut down our side first; ``"reset"``: close
    at once with an RST instead, reading nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if data:
            s.sendall(data)
        if then == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        if then == "half-close":
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
GET_CLOSE = b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def _scenario() -> None:
    ln = await gr.net.listen("tcp", "127.0.0.1:0")
    port = ln.addr[1]
    gr.go(server.serve, ln)
    base = gr.num_goroutine()  # main and serve

    answers, conn = await gr.syscall(_keep_alive, port)
    assert answers == [(200, "OK", str(len(BODY)), BODY)] * 2
    assert gr.num_goroutine() == base + 1  # the open connection's goroutine
    await gr.syscall(conn.close)

    # A malformed request: 400, then the server closes the connection.
    out = await gr.syscall(_raw, port, b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out
    assert out.endswith(b"\r\n\r\nbad request\n"), out
    # Pipelined requests are answered in order; "Connection: close" closes after.
    out = await gr.syscall(_raw, port, GET + GET + GET_CLOSE)
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 3 and out.endswith(BODY), out
    # Pipelined, then a malformed one: the answers owed (buffered) go first.
    out = await gr.syscall(_raw, port, GET + GET + b"GARBAGE\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2, out
    assert out.index(b"400 Bad Request") > out.rindex(b"200 OK"), out
    # HTTP/1.0 (no keep-alive): answered, then closed.
    out = await gr.syscall(_raw, port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(BODY), out
    # A request cut short by the end of the stream is malformed too.
    out = await gr.syscall(_raw, port, b"GET / HTTP/1.1\r\nHo", "half-close")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out
    # Clients that go away: silently, or with a reset (mid-request, or mid-answer).
    assert await gr.syscall(_raw, port, b"", "half-close") == b""
    await gr.syscall(_raw, port, b"", "reset")
    await gr.syscall(_raw, port, b"GET / HTTP/1.1\r\nHo", "reset")
    await gr.syscall(_raw, port, GET * 100, "reset")

    ln.close()
    await gr.testing.check_leaks()  # every connection's goroutine has ended


def test_http_server(procs: int) -> None:
    grun(_scenario, procs=procs)


def test_http_server_command_line() -> None:
    # As the README runs it: prints its address, answers, stops on a signal.
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0", "--procs", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line + proc.stderr.read()
        port = int(line.rsplit(":", 1)[1].rstrip("/\n"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, BODY)
        conn.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
