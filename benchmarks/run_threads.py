"""Benchmark runner for plain OS threads (``threading`` + ``queue``).

A goroutine is a thread; a channel is ``queue.Queue`` (``maxsize=1`` for
unbuffered); closing is one ``None`` per worker. A blocking call is just
called (W7: a thread each). W2 starts at most ``W2_MAX_THREADS`` threads
(its figure is per thread, so it stays comparable); W5 and W6 need 100 000
threads alive at once, which is not what threads are for: N/A. W9 hashes
on a pool of ``--procs`` threads.
"""

from __future__ import annotations

import argparse
import hashlib
import queue
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _common as c

Metrics = dict[str, float]

W2_MAX_THREADS = 10_000


# W1 ---------------------------------------------------------------------------


def _pong(ping: queue.Queue[int | None], pong: queue.Queue[int]) -> None:
    while True:
        v = ping.get()
        if v is None:
            return
        pong.put(v + 1)


def w1(args: argparse.Namespace) -> Metrics:
    n = args.size
    ping: queue.Queue[int | None] = queue.Queue(1)
    pong: queue.Queue[int] = queue.Queue(1)
    t = threading.Thread(target=_pong, args=(ping, pong))
    t.start()
    v = 0
    t0 = time.perf_counter()
    for _ in range(n):
        ping.put(v)
        v = pong.get()
    dt = time.perf_counter() - t0
    ping.put(None)
    t.join()
    c.check(v == n, f"token {v} after {n} round trips")
    return {"us_per_rt": dt / n * 1e6}


# W2 ---------------------------------------------------------------------------


def w2(args: argparse.Namespace) -> Metrics:
    n = min(args.size, W2_MAX_THREADS)
    q: queue.Queue[int] = queue.Queue()
    t0 = time.perf_counter()
    for i in range(n):
        threading.Thread(target=q.put, args=(i,)).start()
    total = 0
    for _ in range(n):
        total += q.get()
    dt = time.perf_counter() - t0
    c.check(total == n * (n - 1) // 2, f"sum of indices {total}")
    return {"us_per_g": dt / n * 1e6, "size": n}


# W3 ---------------------------------------------------------------------------


def _generate(q: queue.Queue[int]) -> None:
    i = 2
    while True:
        q.put(i)
        i += 1


def _filter(src: queue.Queue[int], dst: queue.Queue[int], prime: int) -> None:
    while True:
        i = src.get()
        if i % prime:
            dst.put(i)


def w3(args: argparse.Namespace) -> Metrics:
    n = args.size
    t0 = time.perf_counter()
    q: queue.Queue[int] = queue.Queue(1)
    # Threads cannot be killed: these are daemons, left blocked when the process exits.
    threading.Thread(target=_generate, args=(q,), daemon=True).start()
    total = 0
    for _ in range(n):
        prime = q.get()
        total += prime
        q1: queue.Queue[int] = queue.Queue(1)
        threading.Thread(target=_filter, args=(q, q1, prime), daemon=True).start()
        q = q1
    dt = time.perf_counter() - t0
    c.check(total == c.sieve_sum(n), f"sum of the first {n} primes {total}")
    return {"s": dt}


# W4 ---------------------------------------------------------------------------

W4_WORKERS = 8
W4_CAP = 100


def _produce(jobs: queue.Queue[int | None], n: int) -> None:
    for i in range(n):
        jobs.put(i)
    for _ in range(W4_WORKERS):
        jobs.put(None)


def _worker(jobs: queue.Queue[int | None], results: queue.Queue[int]) -> None:
    while True:
        i = jobs.get()
        if i is None:
            return
        results.put(i * i)


def w4(args: argparse.Namespace) -> Metrics:
    n = args.size
    jobs: queue.Queue[int | None] = queue.Queue(W4_CAP)
    results: queue.Queue[int] = queue.Queue(W4_CAP)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=_produce, args=(jobs, n))]
    threads += [threading.Thread(target=_worker, args=(jobs, results)) for _ in range(W4_WORKERS)]
    for t in threads:
        t.start()
    total = 0
    for _ in range(n):
        total += results.get()
    dt = time.perf_counter() - t0
    for t in threads:
        t.join()
    c.check(total == sum(i * i for i in range(n)), f"sum of squares {total}")
    return {"us_per_job": dt / n * 1e6}


# W5, W6 -------------------------------------------------------------------------


def w5(args: argparse.Namespace) -> Metrics:
    raise c.NA(f"{args.size} parked OS threads: not what threads are for")


def w6(args: argparse.Namespace) -> Metrics:
    raise c.NA(f"{args.size} sleeping OS threads: not what threads are for")


# W7 ---------------------------------------------------------------------------


def w7(args: argparse.Namespace) -> Metrics:
    n = args.size
    t0 = time.perf_counter()
    threads = [threading.Thread(target=time.sleep, args=(0.01,)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    c.check(dt >= 0.01, f"{n} calls done in {dt:.3f} s")
    return {"s": dt}


# W8 ---------------------------------------------------------------------------


def _echo(sock: socket.socket) -> None:
    c.set_nodelay(sock)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            sock.sendall(data)
    except OSError:
        pass
    finally:
        sock.close()


def _serve(ln: socket.socket) -> None:
    while True:
        try:
            sock, _ = ln.accept()
        except OSError:
            return  # closed
        threading.Thread(target=_echo, args=(sock,), daemon=True).start()


def w8(args: argparse.Namespace) -> Metrics:
    ln = socket.create_server(("127.0.0.1", 0), backlog=128)
    threading.Thread(target=_serve, args=(ln,), daemon=True).start()
    result = c.echo_client(ln.getsockname()[1], float(args.size))
    ln.close()
    return result


# W9 ---------------------------------------------------------------------------


def _sha256(buf: bytes) -> str:
    return hashlib.sha256(buf).hexdigest()


def w9(args: argparse.Namespace) -> Metrics:
    buf, want, serial = c.hash_buffer(args.size)
    with ThreadPoolExecutor(max_workers=args.procs or None) as pool:
        t0 = time.perf_counter()
        got: list[Any] = list(pool.map(_sha256, [buf] * c.W9_HASHERS))
        dt = time.perf_counter() - t0
    c.check(all(h == want for h in got), "a sha256 digest differs")
    return {"s": dt, "serial_s": serial}


if __name__ == "__main__":
    sys.exit(
        c.main(
            "threads",
            {
                "W1": w1,
                "W2": w2,
                "W3": w3,
                "W4": w4,
                "W5": w5,
                "W6": w6,
                "W7": w7,
                "W8": w8,
                "W9": w9,
            },
        )
    )
