"""W8's load client: the same process drives every runtime's echo server.

``--conns`` connections to 127.0.0.1:PORT; each sends a ``--size``-byte
message, waits for all of it to come back, checks it, and sends the next,
for ``--seconds`` seconds. It prints one JSON line: the round trips, the
elapsed time, the bad echoes and this process's CPU use (in cores), which
shows whether the client, rather than the server, is the bottleneck.

``--sync``: print a line ``start`` (flushed) when the measured window
begins, all connections made; the JSON line, printed as soon as it ends,
marks its end. The runner (the server) reads both and takes its own CPU
time at each (``getrusage``: every thread, to the microsecond), so the
server's CPU per round trip covers the same window as the round trips,
neither the connecting nor any start-up.

``--cpu N``: pin this process (and so every thread it starts) to CPU N
before anything else, as ``taskset -c N`` would; the runner has pinned the
server to another CPU, so neither takes turns with the other on one core.

Two drivers, the same protocol:

- ``--mode uvloop`` (the default when uvloop is installed): one thread,
  uvloop ``Protocol`` callbacks, no streams and no tasks; its CPU cost per
  round trip is a fraction of any server's under test.
- ``--mode threads``: one thread per connection, blocking sockets; it needs
  nothing installed, but 64 threads handing the GIL around cost more CPU
  per round trip than the servers they measure on 2 cores.

A message carries the connection's number and its sequence number, so an
echo of the wrong bytes, a stale one or another connection's is caught.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import socket
import struct
import sys
import threading
import time
from typing import Any

_HEAD = struct.Struct("!II")


def _message(conn: int, seq: int, size: int) -> bytes:
    return _HEAD.pack(conn, seq) + b"x" * (size - _HEAD.size)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _window_starts(sync: bool) -> None:
    """Tell the runner (``--sync``) that the measured window begins now."""
    if sync:
        sys.stdout.write("start\n")
        sys.stdout.flush()


# -- threads + blocking sockets ------------------------------------------------


def run_threads(port: int, conns: int, size: int, seconds: float, sync: bool) -> dict[str, Any]:
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    counts = [0] * conns
    errors = [0] * conns
    start = threading.Barrier(conns + 1)
    deadline = 0.0

    def loop(i: int, s: socket.socket) -> None:
        start.wait()
        seq = 0
        mono = time.monotonic
        try:
            while mono() < deadline:
                msg = _message(i, seq, size)
                s.sendall(msg)
                got = b""
                while len(got) < size:
                    chunk = s.recv(size - len(got))
                    if not chunk:
                        raise ConnectionError("server closed the connection")
                    got += chunk
                if got != msg:
                    errors[i] += 1
                    return
                seq += 1
        except OSError:
            errors[i] += 1
        finally:
            counts[i] = seq
            s.close()

    threads = [threading.Thread(target=loop, args=(i, s)) for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    _window_starts(sync)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return _result(counts, errors, elapsed, _cpu() - cpu0)


# -- uvloop (or asyncio) protocols ------------------------------------------------


class _EchoCheck(asyncio.Protocol):
    """One connection: send, wait for the whole echo, check it, send the next."""

    def __init__(self, i: int, size: int, done: asyncio.Future[None]) -> None:
        self.i = i
        self.size = size
        self.pad = b"x" * (size - _HEAD.size)
        self.done = done
        self.seq = 0
        self.errors = 0
        self.stopping = False  # set when the time is up: finish the round trip, then stop
        self.buf = b""
        self.msg = b""
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def go(self) -> None:
        self.msg = _HEAD.pack(self.i, self.seq) + self.pad
        self.transport.write(self.msg)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        if len(data) < self.size:
            self.buf = data
            return
        self.buf = b""
        if data != self.msg:
            self.errors += 1
            self._finish()
            return
        self.seq += 1
        if self.stopping:
            self._finish()
            return
        self.go()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.errors += 1
            self.done.set_result(None)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        self.transport.close()


async def _run_async(
    port: int, conns: int, size: int, seconds: float, sync: bool
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    protos: list[_EchoCheck] = []
    for i in range(conns):
        done: asyncio.Future[None] = loop.create_future()
        _, p = await loop.create_connection(
            lambda i=i, done=done: _EchoCheck(i, size, done), "127.0.0.1", port
        )
        protos.append(p)

    def stop() -> None:
        for p in protos:
            p.stopping = True

    _window_starts(sync)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    loop.call_later(seconds, stop)  # no clock read per round trip
    for p in protos:
        p.go()
    await asyncio.gather(*(p.done for p in protos))
    elapsed = time.perf_counter() - t0
    counts, errors = [p.seq for p in protos], [p.errors for p in protos]
    return _result(counts, errors, elapsed, _cpu() - cpu0)


def run_uvloop(port: int, conns: int, size: int, seconds: float, sync: bool) -> dict[str, Any]:
    import uvloop

    result: dict[str, Any] = uvloop.run(_run_async(port, conns, size, seconds, sync))
    return result


def _result(counts: list[int], errors: list[int], elapsed: float, cpu: float) -> dict[str, Any]:
    return {
        "round_trips": sum(counts),
        "elapsed": elapsed,
        "errors": sum(errors),
        "idle_conns": sum(1 for n in counts if n == 0),
        "cpu": cpu / elapsed,
        "cpu_s": cpu,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--mode", choices=["uvloop", "threads"], help="default: uvloop if installed")
    ap.add_argument("--sync", action="store_true", help="print 'start' as the window begins")
    ap.add_argument("--cpu", type=int, help="pin this process to this CPU (as taskset -c)")
    args = ap.parse_args()
    if args.size < _HEAD.size:
        ap.error(f"--size must be at least {_HEAD.size}")
    if args.cpu is not None:
        # Before uvloop's import and any thread: everything after inherits it.
        os.sched_setaffinity(0, {args.cpu})
    mode = args.mode
    if mode is None:
        mode = "uvloop" if importlib.util.find_spec("uvloop") is not None else "threads"
    run = run_uvloop if mode == "uvloop" else run_threads
    out = run(args.port, args.conns, args.size, args.seconds, args.sync)
    out["mode"] = mode
    out["pid"] = os.getpid()
    out["cpus"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
