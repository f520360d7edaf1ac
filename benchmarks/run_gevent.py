"""Benchmark runner for gevent (greenlets; nothing is monkey-patched).

Channels are ``gevent.queue.Channel`` (unbuffered, Go's rendezvous) and
``gevent.queue.Queue`` (buffered); closing is one ``None`` per worker (W4)
or a ``gevent.event.Event`` (W5). Offloading is the hub's threadpool (its
default size). The W8 server is ``gevent.server.StreamServer``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import _common as c
import gevent
import gevent.event
import gevent.queue
import gevent.server

Metrics = dict[str, float]


# W1 ---------------------------------------------------------------------------


def _pong(ping: Any, pong: Any) -> None:
    while True:
        v = ping.get()
        if v is None:
            return
        pong.put(v + 1)


def w1(args: argparse.Namespace) -> Metrics:
    n = args.size
    ping = gevent.queue.Channel()
    pong = gevent.queue.Channel()
    g = gevent.spawn(_pong, ping, pong)
    v = 0
    t0 = time.perf_counter()
    for _ in range(n):
        ping.put(v)
        v = pong.get()
    dt = time.perf_counter() - t0
    ping.put(None)
    g.join()
    c.check(v == n, f"token {v} after {n} round trips")
    return {"us_per_rt": dt / n * 1e6}


# W2 ---------------------------------------------------------------------------


def w2(args: argparse.Namespace) -> Metrics:
    n = args.size
    q = gevent.queue.Queue()
    t0 = time.perf_counter()
    for i in range(n):
        gevent.spawn(q.put, i)
    total = 0
    for _ in range(n):
        total += q.get()
    dt = time.perf_counter() - t0
    c.check(total == n * (n - 1) // 2, f"sum of indices {total}")
    return {"us_per_g": dt / n * 1e6}


# W3 ---------------------------------------------------------------------------


def _generate(ch: Any) -> None:
    i = 2
    while True:
        ch.put(i)
        i += 1


def _filter(src: Any, dst: Any, prime: int) -> None:
    while True:
        i = src.get()
        if i % prime:
            dst.put(i)


def w3(args: argparse.Namespace) -> Metrics:
    n = args.size
    t0 = time.perf_counter()
    ch = gevent.queue.Channel()
    greenlets = [gevent.spawn(_generate, ch)]
    total = 0
    for _ in range(n):
        prime = ch.get()
        total += prime
        ch1 = gevent.queue.Channel()
        greenlets.append(gevent.spawn(_filter, ch, ch1, prime))
        ch = ch1
    dt = time.perf_counter() - t0
    gevent.killall(greenlets)
    c.check(total == c.sieve_sum(n), f"sum of the first {n} primes {total}")
    return {"s": dt}


# W4 ---------------------------------------------------------------------------

W4_WORKERS = 8
W4_CAP = 100


def _produce(jobs: Any, n: int) -> None:
    for i in range(n):
        jobs.put(i)
    for _ in range(W4_WORKERS):
        jobs.put(None)


def _worker(jobs: Any, results: Any) -> None:
    while True:
        i = jobs.get()
        if i is None:
            return
        results.put(i * i)


def w4(args: argparse.Namespace) -> Metrics:
    n = args.size
    jobs = gevent.queue.Queue(W4_CAP)
    results = gevent.queue.Queue(W4_CAP)
    t0 = time.perf_counter()
    greenlets = [gevent.spawn(_produce, jobs, n)]
    greenlets += [gevent.spawn(_worker, jobs, results) for _ in range(W4_WORKERS)]
    total = 0
    for _ in range(n):
        total += results.get()
    dt = time.perf_counter() - t0
    gevent.joinall(greenlets)
    c.check(total == sum(i * i for i in range(n)), f"sum of squares {total}")
    return {"us_per_job": dt / n * 1e6}


# W5 ---------------------------------------------------------------------------


class _Counter:
    """A WaitGroup: ``done()`` n times sets the event."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.event = gevent.event.Event()

    def done(self) -> None:
        self.n -= 1
        if self.n == 0:
            self.event.set()


def _parked(closed: Any, started: _Counter, done: _Counter) -> None:
    started.done()
    closed.wait()
    done.done()


def w5(args: argparse.Namespace) -> Metrics:
    n = args.size
    closed = gevent.event.Event()
    started = _Counter(n)
    done = _Counter(n)
    gc.collect()
    base = c.rss_bytes()
    greenlets = [gevent.spawn(_parked, closed, started, done) for _ in range(n)]
    started.event.wait()
    gevent.sleep(0)
    used = c.rss_bytes() - base
    cpu0, t0 = time.process_time(), time.perf_counter()
    gevent.sleep(c.IDLE_S)
    idle = c.idle_pct(cpu0, t0)
    t0 = time.perf_counter()
    closed.set()
    done.event.wait()
    dt = time.perf_counter() - t0
    c.check(done.n == 0 and len(greenlets) == n, f"{n - done.n} of {n} woken")
    return {"kib_per_g": used / n / 1024, "wake_ms": dt * 1e3, "idle_cpu_pct": idle}


# W6 ---------------------------------------------------------------------------


def _sleeper(d: float, wg: _Counter) -> None:
    gevent.sleep(d)
    wg.done()


def w6(args: argparse.Namespace) -> Metrics:
    delays = c.sleep_delays(args.size, args.seed)
    wg = _Counter(len(delays))
    t0 = time.perf_counter()
    for d in delays:
        gevent.spawn(_sleeper, d, wg)
    wg.event.wait()
    dt = time.perf_counter() - t0
    c.check(wg.n == 0 and dt >= max(delays), f"all done after {dt:.3f} s")
    return {"s": dt}


# W7 ---------------------------------------------------------------------------


def w7(args: argparse.Namespace) -> Metrics:
    n = args.size
    pool = gevent.get_hub().threadpool
    t0 = time.perf_counter()
    greenlets = [gevent.spawn(pool.apply, time.sleep, (0.01,)) for _ in range(n)]
    gevent.joinall(greenlets, raise_error=True)
    dt = time.perf_counter() - t0
    c.check(all(g.successful() for g in greenlets) and dt >= 0.01, f"done in {dt:.3f} s")
    return {"s": dt}


# W8 ---------------------------------------------------------------------------


def _echo(sock: Any, _addr: Any) -> None:
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


def w8(args: argparse.Namespace) -> Metrics:
    server = gevent.server.StreamServer(("127.0.0.1", 0), _echo)
    server.start()
    pool = gevent.get_hub().threadpool
    result: Metrics = pool.apply(c.echo_client, (server.server_port, float(args.size)))
    server.stop(timeout=1)
    return result


if __name__ == "__main__":
    sys.exit(
        c.main(
            "gevent",
            {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W7": w7, "W8": w8},
        )
    )
