"""Benchmark runner for trio.

Channels are trio memory channels (``open_memory_channel(0)`` is Go's
unbuffered channel; closing the send side, or its last clone, is Go's
close). Tasks run in a nursery, which is also the join. Offloading is
``trio.to_thread.run_sync`` (its default limiter: 40 threads).
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import time
from typing import Any

import _common as c
import trio

Metrics = dict[str, float]


# W1 ---------------------------------------------------------------------------


async def _pong(ping: Any, pong: Any) -> None:
    async for v in ping:
        await pong.send(v + 1)


async def _w1(n: int) -> Metrics:
    ping_s, ping_r = trio.open_memory_channel[int](0)
    pong_s, pong_r = trio.open_memory_channel[int](0)
    v = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pong, ping_r, pong_s)
        t0 = time.perf_counter()
        for _ in range(n):
            await ping_s.send(v)
            v = await pong_r.receive()
        dt = time.perf_counter() - t0
        await ping_s.aclose()
    c.check(v == n, f"token {v} after {n} round trips")
    return {"us_per_rt": dt / n * 1e6}


def w1(args: argparse.Namespace) -> Metrics:
    return trio.run(_w1, args.size)


# W2 ---------------------------------------------------------------------------


async def _send_index(ch: Any, i: int) -> None:
    await ch.send(i)


async def _w2(n: int) -> Metrics:
    send, recv = trio.open_memory_channel[int](n)
    total = 0
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        for i in range(n):
            nursery.start_soon(_send_index, send, i)
        for _ in range(n):
            total += await recv.receive()
        dt = time.perf_counter() - t0
    c.check(total == n * (n - 1) // 2, f"sum of indices {total}")
    return {"us_per_g": dt / n * 1e6}


def w2(args: argparse.Namespace) -> Metrics:
    return trio.run(_w2, args.size)


# W3 ---------------------------------------------------------------------------


async def _generate(ch: Any) -> None:
    i = 2
    while True:
        await ch.send(i)
        i += 1


async def _filter(src: Any, dst: Any, prime: int) -> None:
    async for i in src:
        if i % prime:
            await dst.send(i)


async def _w3(n: int) -> Metrics:
    total = 0
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        send, recv = trio.open_memory_channel[int](0)
        nursery.start_soon(_generate, send)
        for _ in range(n):
            prime = await recv.receive()
            total += prime
            send1, recv1 = trio.open_memory_channel[int](0)
            nursery.start_soon(_filter, recv, send1, prime)
            recv = recv1
        dt = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    c.check(total == c.sieve_sum(n), f"sum of the first {n} primes {total}")
    return {"s": dt}


def w3(args: argparse.Namespace) -> Metrics:
    return trio.run(_w3, args.size)


# W4 ---------------------------------------------------------------------------

W4_WORKERS = 8
W4_CAP = 100


async def _produce(jobs: Any, n: int) -> None:
    async with jobs:
        for i in range(n):
            await jobs.send(i)


async def _worker(jobs: Any, results: Any) -> None:
    async with results:
        async for i in jobs:
            await results.send(i * i)


async def _w4(n: int) -> Metrics:
    total = 0
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        jobs_s, jobs_r = trio.open_memory_channel[int](W4_CAP)
        res_s, res_r = trio.open_memory_channel[int](W4_CAP)
        nursery.start_soon(_produce, jobs_s, n)
        async with res_s:
            for _ in range(W4_WORKERS):
                nursery.start_soon(_worker, jobs_r, res_s.clone())
        for _ in range(n):
            total += await res_r.receive()
        dt = time.perf_counter() - t0
    c.check(total == sum(i * i for i in range(n)), f"sum of squares {total}")
    return {"us_per_job": dt / n * 1e6}


def w4(args: argparse.Namespace) -> Metrics:
    return trio.run(_w4, args.size)


# W5 ---------------------------------------------------------------------------


class _Counter:
    """A WaitGroup: ``done()`` n times sets the event."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.event = trio.Event()

    def done(self) -> None:
        self.n -= 1
        if self.n == 0:
            self.event.set()


async def _parked(closed: trio.Event, started: _Counter, done: _Counter) -> None:
    started.done()
    await closed.wait()
    done.done()


async def _w5(n: int) -> Metrics:
    closed = trio.Event()
    started = _Counter(n)
    done = _Counter(n)
    async with trio.open_nursery() as nursery:
        gc.collect()
        base = c.rss_bytes()
        for _ in range(n):
            nursery.start_soon(_parked, closed, started, done)
        await started.event.wait()
        await trio.lowlevel.checkpoint()
        used = c.rss_bytes() - base
        cpu0, t0 = time.process_time(), time.perf_counter()
        await trio.sleep(c.IDLE_S)
        idle = c.idle_pct(cpu0, t0)
        t0 = time.perf_counter()
        closed.set()
        await done.event.wait()
        dt = time.perf_counter() - t0
    c.check(done.n == 0, f"{n - done.n} of {n} woken")
    return {"kib_per_g": used / n / 1024, "wake_ms": dt * 1e3, "idle_cpu_pct": idle}


def w5(args: argparse.Namespace) -> Metrics:
    return trio.run(_w5, args.size)


# W6 ---------------------------------------------------------------------------


async def _sleeper(d: float, wg: _Counter) -> None:
    await trio.sleep(d)
    wg.done()


async def _w6(delays: list[float]) -> Metrics:
    wg = _Counter(len(delays))
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        for d in delays:
            nursery.start_soon(_sleeper, d, wg)
        await wg.event.wait()
        dt = time.perf_counter() - t0
    c.check(wg.n == 0 and dt >= max(delays), f"all done after {dt:.3f} s")
    return {"s": dt}


def w6(args: argparse.Namespace) -> Metrics:
    return trio.run(_w6, c.sleep_delays(args.size, args.seed))


# W7 ---------------------------------------------------------------------------


async def _blocker(out: list[int]) -> None:
    await trio.to_thread.run_sync(time.sleep, 0.01)
    out.append(1)


async def _w7(n: int) -> Metrics:
    out: list[int] = []
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(_blocker, out)
    dt = time.perf_counter() - t0
    c.check(len(out) == n and dt >= 0.01, f"{len(out)} calls done in {dt:.3f} s")
    return {"s": dt}


def w7(args: argparse.Namespace) -> Metrics:
    return trio.run(_w7, args.size)


# W8 ---------------------------------------------------------------------------


async def _echo(stream: trio.SocketStream) -> None:
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            await stream.send_all(data)
    except (trio.BrokenResourceError, OSError):
        pass
    finally:
        await stream.aclose()


async def _w8(seconds: int) -> Metrics:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, _echo, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        result: Metrics = await trio.to_thread.run_sync(c.echo_client, port, float(seconds))
        nursery.cancel_scope.cancel()
    return result


def w8(args: argparse.Namespace) -> Metrics:
    return trio.run(_w8, args.size)


if __name__ == "__main__":
    sys.exit(
        c.main(
            "trio",
            {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W7": w7, "W8": w8},
        )
    )
