"""Benchmark runner for goroutines: one cell per process (see _common.py and README.md).

W10 serves with examples/http_server.py itself (imported), so the example is what is measured.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import _common as c

import goroutines as gr

Metrics = dict[str, float]


def _run(args: argparse.Namespace, main: Any, *a: Any) -> Metrics:
    result: Metrics = gr.run(main, *a, procs=args.procs or None)
    return result


# W1 ---------------------------------------------------------------------------


async def _pong(ping: gr.Chan[int], pong: gr.Chan[int]) -> None:
    while True:
        v = await ping.recv()
        if v is None:
            return
        await pong.send(v + 1)


async def _w1(n: int) -> Metrics:
    ping: gr.Chan[int] = gr.Chan()
    pong: gr.Chan[int] = gr.Chan()
    gr.go(_pong, ping, pong)
    v = 0
    t0 = time.perf_counter()
    for _ in range(n):
        await ping.send(v)
        r = await pong.recv()
        assert r is not None
        v = r
    dt = time.perf_counter() - t0
    ping.close()
    c.check(v == n, f"token {v} after {n} round trips")
    return {"us_per_rt": dt / n * 1e6}


def w1(args: argparse.Namespace) -> Metrics:
    return _run(args, _w1, args.size)


# W2 ---------------------------------------------------------------------------


async def _send_index(ch: gr.Chan[int], i: int) -> None:
    await ch.send(i)


async def _w2(n: int) -> Metrics:
    ch: gr.Chan[int] = gr.Chan(n)
    t0 = time.perf_counter()
    for i in range(n):
        gr.go(_send_index, ch, i)
    total = 0
    for _ in range(n):
        v = await ch.recv()
        assert v is not None
        total += v
    dt = time.perf_counter() - t0
    c.check(total == n * (n - 1) // 2, f"sum of indices {total}")
    return {"us_per_g": dt / n * 1e6}


def w2(args: argparse.Namespace) -> Metrics:
    return _run(args, _w2, args.size)


# W3 ---------------------------------------------------------------------------


async def _generate(ch: gr.Chan[int]) -> None:
    i = 2
    while True:
        await ch.send(i)
        i += 1


async def _filter(src: gr.Chan[int], dst: gr.Chan[int], prime: int) -> None:
    while True:
        i = await src.recv()
        assert i is not None
        if i % prime:
            await dst.send(i)


async def _w3(n: int) -> Metrics:
    t0 = time.perf_counter()
    ch: gr.Chan[int] = gr.Chan()
    gr.go(_generate, ch)
    total = 0
    for _ in range(n):
        prime = await ch.recv()
        assert prime is not None
        total += prime
        ch1: gr.Chan[int] = gr.Chan()
        gr.go(_filter, ch, ch1, prime)
        ch = ch1
    dt = time.perf_counter() - t0
    c.check(total == c.sieve_sum(n), f"sum of the first {n} primes {total}")
    return {"s": dt}


def w3(args: argparse.Namespace) -> Metrics:
    return _run(args, _w3, args.size)


# W4 ---------------------------------------------------------------------------

W4_WORKERS = 8
W4_CAP = 100


async def _produce(jobs: gr.Chan[int], n: int) -> None:
    for i in range(n):
        await jobs.send(i)
    jobs.close()


async def _worker(jobs: gr.Chan[int], results: gr.Chan[int]) -> None:
    async for i in jobs:
        await results.send(i * i)


async def _w4(n: int) -> Metrics:
    jobs: gr.Chan[int] = gr.Chan(W4_CAP)
    results: gr.Chan[int] = gr.Chan(W4_CAP)
    t0 = time.perf_counter()
    gr.go(_produce, jobs, n)
    for _ in range(W4_WORKERS):
        gr.go(_worker, jobs, results)
    total = 0
    for _ in range(n):
        v = await results.recv()
        assert v is not None
        total += v
    dt = time.perf_counter() - t0
    c.check(total == sum(i * i for i in range(n)), f"sum of squares {total}")
    return {"us_per_job": dt / n * 1e6}


def w4(args: argparse.Namespace) -> Metrics:
    return _run(args, _w4, args.size)


# W5 ---------------------------------------------------------------------------


async def _parked(ch: gr.Chan[None], started: gr.WaitGroup, done: gr.WaitGroup) -> None:
    started.done()
    await ch.recv()
    done.done()


async def _w5(n: int) -> Metrics:
    ch: gr.Chan[None] = gr.Chan()
    started = gr.WaitGroup()
    done = gr.WaitGroup()
    started.add(n)
    done.add(n)
    gc.collect()
    base = c.rss_bytes()
    for _ in range(n):
        gr.go(_parked, ch, started, done)
    await started.wait()
    await gr.gosched()  # let the last one reach its recv
    used = c.rss_bytes() - base
    c.check(gr.num_goroutine() == n + 1, f"{gr.num_goroutine()} goroutines alive")
    cpu0, t0 = time.process_time(), time.perf_counter()
    await gr.sleep(c.IDLE_S)
    idle = c.idle_pct(cpu0, t0)
    t0 = time.perf_counter()
    ch.close()
    await done.wait()
    dt = time.perf_counter() - t0
    return {"kib_per_g": used / n / 1024, "wake_ms": dt * 1e3, "idle_cpu_pct": idle}


def w5(args: argparse.Namespace) -> Metrics:
    return _run(args, _w5, args.size)


# W6 ---------------------------------------------------------------------------


async def _sleeper(d: float, wg: gr.WaitGroup) -> None:
    await gr.sleep(d)
    wg.done()


async def _w6(delays: list[float]) -> Metrics:
    wg = gr.WaitGroup()
    wg.add(len(delays))
    t0 = time.perf_counter()
    for d in delays:
        gr.go(_sleeper, d, wg)
    await wg.wait()
    dt = time.perf_counter() - t0
    c.check(dt >= max(delays), f"all done after {dt:.3f} s < the longest sleep")
    return {"s": dt}


def w6(args: argparse.Namespace) -> Metrics:
    return _run(args, _w6, c.sleep_delays(args.size, args.seed))


# W7 ---------------------------------------------------------------------------


async def _blocker(wg: gr.WaitGroup, out: list[int]) -> None:
    await gr.syscall(time.sleep, 0.01)
    out.append(1)
    wg.done()


async def _w7(n: int) -> Metrics:
    wg = gr.WaitGroup()
    wg.add(n)
    out: list[int] = []
    t0 = time.perf_counter()
    for _ in range(n):
        gr.go(_blocker, wg, out)
    await wg.wait()
    dt = time.perf_counter() - t0
    c.check(len(out) == n and dt >= 0.01, f"{len(out)} calls done in {dt:.3f} s")
    return {"s": dt}


def w7(args: argparse.Namespace) -> Metrics:
    return _run(args, _w7, args.size)


# W8 ---------------------------------------------------------------------------


async def _echo(conn: Any) -> None:
    read = conn.read
    write = conn.write
    try:
        while True:
            data = await read(65536)
            if not data:
                return
            await write(data)
    except OSError:
        pass  # the client went away mid-write: its count is what matters
    finally:
        conn.close()


async def _serve(ln: Any) -> None:
    while True:
        try:
            conn = await ln.accept()
        except Exception:
            return  # closed
        gr.go(_echo, conn)


async def _w8(seconds: int) -> Metrics:
    import goroutines.net as net

    ln = await net.listen("tcp", "127.0.0.1:0")
    gr.go(_serve, ln)
    port = ln.addr[1]
    result = await gr.syscall(c.echo_client, port, float(seconds))
    ln.close()
    return result


def w8(args: argparse.Namespace) -> Metrics:
    try:
        import goroutines.net  # noqa: F401
    except ImportError as e:
        raise c.NA(f"goroutines.net is not available yet ({e})") from None
    return _run(args, _w8, args.size)


# W9 ---------------------------------------------------------------------------


def _sha256(buf: bytes) -> str:
    return hashlib.sha256(buf).hexdigest()


async def _hasher(buf: bytes, out: gr.Chan[str]) -> None:
    await out.send(await gr.syscall(_sha256, buf))


async def _w9(buf: bytes, want: str, serial: float) -> Metrics:
    out: gr.Chan[str] = gr.Chan(c.W9_HASHERS)
    t0 = time.perf_counter()
    for _ in range(c.W9_HASHERS):
        gr.go(_hasher, buf, out)
    got = [await out.recv() for _ in range(c.W9_HASHERS)]
    dt = time.perf_counter() - t0
    c.check(all(h == want for h in got), "a sha256 digest differs")
    return {"s": dt, "serial_s": serial}


def w9(args: argparse.Namespace) -> Metrics:
    # Outside the runtime: a goroutine must not hog its M for the serial baseline.
    return _run(args, _w9, *c.hash_buffer(args.size))


# W10 --------------------------------------------------------------------------


def _http_server() -> Any:
    """examples/http_server.py, imported: W10 measures the example itself."""
    import importlib.util

    path = c.HERE.parent / "examples" / "http_server.py"
    spec = importlib.util.spec_from_file_location("http_server", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def _w10(server: Any, seconds: int) -> Metrics:
    ln = await gr.net.listen("tcp", "127.0.0.1:0")
    gr.go(server.serve, ln)
    result: Metrics = await gr.syscall(c.http_load, ln.addr[1], float(seconds))
    ln.close()
    return result


def w10(args: argparse.Namespace) -> Metrics:
    c.require_http()
    return _run(args, _w10, _http_server(), args.size)


# W11 --------------------------------------------------------------------------


async def _w11(n: int) -> Metrics:
    off = (await _w1(n))["us_per_rt"]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        gr.trace.start(path, limit=10 * n)
        on = (await _w1(n))["us_per_rt"]
        t0 = time.perf_counter()
        gr.trace.stop()  # writes the JSON: not in the round trips' time
        write_s = time.perf_counter() - t0
        with open(path) as f:
            events = json.load(f)["otherData"]["events"]
    c.check(events >= 4 * n, f"only {events} events for {n} traced round trips")
    return {
        "us_per_rt": on,
        "on_off": on / off,
        "off_us_per_rt": off,
        "events": events,
        "write_s": write_s,
    }


def w11(args: argparse.Namespace) -> Metrics:
    return _run(args, _w11, args.size)


# W12 --------------------------------------------------------------------------


def w12(args: argparse.Namespace) -> Metrics:
    import cgops  # beside this runner

    if shutil.which("valgrind") is None:
        raise c.NA("valgrind not installed (make bench installs it with apt-get)")
    costs = cgops.tracer_costs(args.size // 3, args.size)
    out: Metrics = {k: v for k, v in costs.items() if k.startswith(("off_", "on_"))}
    out.update({f"ins_{k.lower()}": v for k, v in costs["instructions"].items()})
    return out


if __name__ == "__main__":
    sys.exit(
        c.main(
            "goroutines",
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
                "W10": w10,
                "W11": w11,
                "W12": w12,
            },
        )
    )
