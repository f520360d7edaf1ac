"""Benchmark runner for asyncio, and for asyncio on uvloop (``--runtime uvloop``).

Channels are ``asyncio.Queue``: ``maxsize=1`` stands for Go's unbuffered
channel (the closest asyncio has: the sender does not wait for the
receiver, which on a ping-pong or a sieve changes nothing), ``maxsize=0``
(unbounded) for W2's channel buffered for every sender, ``maxsize=100``
for W4's. Closing a channel is an ``asyncio.Event`` (W5) or one ``None``
per worker (W4). Offloading is ``asyncio.to_thread`` (the default executor).
W8 is a streams echo server; W10 is examples/http_server.py's h11 server on
streams (``http_asyncio.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Coroutine
from typing import Any

import _common as c

Metrics = dict[str, float]
RUNTIME = "asyncio"


def _run(coro: Coroutine[Any, Any, Metrics]) -> Metrics:
    if RUNTIME == "uvloop":
        import uvloop

        result: Metrics = uvloop.run(coro)
        return result
    return asyncio.run(coro)


# W1 ---------------------------------------------------------------------------


async def _pong(ping: asyncio.Queue[int | None], pong: asyncio.Queue[int]) -> None:
    while True:
        v = await ping.get()
        if v is None:
            return
        await pong.put(v + 1)


async def _w1(n: int) -> Metrics:
    ping: asyncio.Queue[int | None] = asyncio.Queue(1)
    pong: asyncio.Queue[int] = asyncio.Queue(1)
    task = asyncio.create_task(_pong(ping, pong))
    v = 0
    t0 = time.perf_counter()
    for _ in range(n):
        await ping.put(v)
        v = await pong.get()
    dt = time.perf_counter() - t0
    await ping.put(None)
    await task
    c.check(v == n, f"token {v} after {n} round trips")
    return {"us_per_rt": dt / n * 1e6}


def w1(args: argparse.Namespace) -> Metrics:
    return _run(_w1(args.size))


# W2 ---------------------------------------------------------------------------


async def _send_index(q: asyncio.Queue[int], i: int) -> None:
    await q.put(i)


async def _w2(n: int) -> Metrics:
    q: asyncio.Queue[int] = asyncio.Queue()
    tasks = set()  # the loop keeps only weak references to tasks
    t0 = time.perf_counter()
    for i in range(n):
        tasks.add(asyncio.create_task(_send_index(q, i)))
    total = 0
    for _ in range(n):
        total += await q.get()
    dt = time.perf_counter() - t0
    c.check(total == n * (n - 1) // 2, f"sum of indices {total}")
    return {"us_per_g": dt / n * 1e6}


def w2(args: argparse.Namespace) -> Metrics:
    return _run(_w2(args.size))


# W3 ---------------------------------------------------------------------------


async def _generate(q: asyncio.Queue[int]) -> None:
    i = 2
    while True:
        await q.put(i)
        i += 1


async def _filter(src: asyncio.Queue[int], dst: asyncio.Queue[int], prime: int) -> None:
    while True:
        i = await src.get()
        if i % prime:
            await dst.put(i)


async def _w3(n: int) -> Metrics:
    t0 = time.perf_counter()
    q: asyncio.Queue[int] = asyncio.Queue(1)
    tasks = [asyncio.create_task(_generate(q))]
    total = 0
    for _ in range(n):
        prime = await q.get()
        total += prime
        q1: asyncio.Queue[int] = asyncio.Queue(1)
        tasks.append(asyncio.create_task(_filter(q, q1, prime)))
        q = q1
    dt = time.perf_counter() - t0
    c.check(total == c.sieve_sum(n), f"sum of the first {n} primes {total}")
    return {"s": dt}


def w3(args: argparse.Namespace) -> Metrics:
    return _run(_w3(args.size))


# W4 ---------------------------------------------------------------------------

W4_WORKERS = 8
W4_CAP = 100


async def _produce(jobs: asyncio.Queue[int | None], n: int) -> None:
    for i in range(n):
        await jobs.put(i)
    for _ in range(W4_WORKERS):
        await jobs.put(None)  # close


async def _worker(jobs: asyncio.Queue[int | None], results: asyncio.Queue[int]) -> None:
    while True:
        i = await jobs.get()
        if i is None:
            return
        await results.put(i * i)


async def _w4(n: int) -> Metrics:
    jobs: asyncio.Queue[int | None] = asyncio.Queue(W4_CAP)
    results: asyncio.Queue[int] = asyncio.Queue(W4_CAP)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(_produce(jobs, n))]
    tasks += [asyncio.create_task(_worker(jobs, results)) for _ in range(W4_WORKERS)]
    total = 0
    for _ in range(n):
        total += await results.get()
    dt = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    c.check(total == sum(i * i for i in range(n)), f"sum of squares {total}")
    return {"us_per_job": dt / n * 1e6}


def w4(args: argparse.Namespace) -> Metrics:
    return _run(_w4(args.size))


# W5 ---------------------------------------------------------------------------


class _Counter:
    """A WaitGroup: ``done()`` n times sets the event."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.event = asyncio.Event()

    def done(self) -> None:
        self.n -= 1
        if self.n == 0:
            self.event.set()


async def _parked(closed: asyncio.Event, started: _Counter, done: _Counter) -> None:
    started.done()
    await closed.wait()
    done.done()


async def _w5(n: int) -> Metrics:
    closed = asyncio.Event()
    started = _Counter(n)
    done = _Counter(n)
    gc.collect()
    base = c.rss_bytes()
    tasks = [asyncio.create_task(_parked(closed, started, done)) for _ in range(n)]
    await started.event.wait()
    await asyncio.sleep(0)
    used = c.rss_bytes() - base
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(c.IDLE_S)
    idle = c.idle_pct(cpu0, t0)
    t0 = time.perf_counter()
    closed.set()
    await done.event.wait()
    dt = time.perf_counter() - t0
    c.check(done.n == 0 and len(tasks) == n, f"{n - done.n} of {n} woken")
    return {"kib_per_g": used / n / 1024, "wake_ms": dt * 1e3, "idle_cpu_pct": idle}


def w5(args: argparse.Namespace) -> Metrics:
    return _run(_w5(args.size))


# W6 ---------------------------------------------------------------------------


async def _sleeper(d: float, wg: _Counter) -> None:
    await asyncio.sleep(d)
    wg.done()


async def _w6(delays: list[float]) -> Metrics:
    wg = _Counter(len(delays))
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(_sleeper(d, wg)) for d in delays]
    await wg.event.wait()
    dt = time.perf_counter() - t0
    c.check(len(tasks) == len(delays) and dt >= max(delays), f"all done after {dt:.3f} s")
    return {"s": dt}


def w6(args: argparse.Namespace) -> Metrics:
    return _run(_w6(c.sleep_delays(args.size, args.seed)))


# W7 ---------------------------------------------------------------------------


async def _w7(n: int) -> Metrics:
    t0 = time.perf_counter()
    results = await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.01) for _ in range(n)))
    dt = time.perf_counter() - t0
    c.check(len(results) == n and dt >= 0.01, f"{len(results)} calls done in {dt:.3f} s")
    return {"s": dt}


def w7(args: argparse.Namespace) -> Metrics:
    return _run(_w7(args.size))


# W8 ---------------------------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _w8(seconds: int) -> Metrics:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    result = await asyncio.to_thread(c.echo_client, port, float(seconds))
    server.close()
    return result


def w8(args: argparse.Namespace) -> Metrics:
    return _run(_w8(args.size))


# W10 --------------------------------------------------------------------------


async def _w10(seconds: int) -> Metrics:
    import http_asyncio  # the example's server on asyncio streams, in benchmarks/

    server = await http_asyncio.start()
    port = server.sockets[0].getsockname()[1]
    result = await asyncio.to_thread(c.http_load, port, float(seconds))
    server.close()
    return result


def w10(args: argparse.Namespace) -> Metrics:
    c.require_http()
    return _run(_w10(args.size))


if __name__ == "__main__":
    if "--runtime" in sys.argv:
        RUNTIME = sys.argv[sys.argv.index("--runtime") + 1]
    sys.exit(
        c.main(
            RUNTIME,
            {
                "W1": w1,
                "W2": w2,
                "W3": w3,
                "W4": w4,
                "W5": w5,
                "W6": w6,
                "W7": w7,
                "W8": w8,
                "W10": w10,
            },
        )
    )
