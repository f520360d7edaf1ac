"""Soak: a mixed goroutines workload for minutes, with RSS, threads and fds watched (``make soak``).

One ``gr.run`` (procs 4 by default) runs, until ``--minutes`` are up:

- pipelines: producer -> stages -> consumer over unbuffered and buffered
  channels, with ``select`` (``gr.after`` timeouts, ``gr.default``), and a
  fan-out/fan-in; every value sent is received once, in order where the
  pipeline is linear;
- timer churn: ``Timer`` stop/reset racing the firing (Go 1.23's contract:
  an exact return value, no stale value after stop/reset), ``Ticker``
  reset/stop (no tick of the old period, none after stop);
- a TCP echo server on 127.0.0.1 (``gr.net``) and clients opening, echoing
  and closing connections continuously with deadlines (and some that wait
  for a read deadline to expire); every byte written comes back;
- ``gr.syscall(time.sleep, ...)`` and a blocking hash (checked);
- jobs under ``with_timeout`` contexts (some cancelled early) that end
  completed, past their deadline or cancelled, each exactly once;
- ``Mutex``, ``RWMutex``, ``Semaphore`` and ``WaitGroup`` use with their
  invariants checked (no lost update, no torn read, the semaphore's limit).

Every ~5 s a row: RSS (VmRSS), threads (``threading.active_count`` and
``/proc/self/task``), open fds, goroutines and progress; the rows also go
to ``.soak/soak-*.csv``. At the end every value is accounted for, every
goroutine has exited (``num_goroutine()`` back to 1), and the run is judged
flat: after a warm-up (the first 20 % of samples, and at least the first
30 s, as the allocator's ramp takes that long however long the run), the
median RSS of the last 20 % of samples is at most max(8 MiB, 10 %) above
the median of the first 20 % after the warm-up, and threads, fds and
goroutines show no upward trend (the same windows, with a small slack).
Exit status 1 on any loss, broken invariant or growth, with the reasons
printed.

    python tools/soak.py --minutes 10 --procs 4
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import math
import os
import random
import secrets
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import goroutines as gr
from goroutines import net

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024

#: Shown in the progress columns of each row (and the CSV).
PROGRESS = ("values", "echo_bytes", "conns", "timers", "syscalls", "jobs")


# -- accounting -----------------------------------------------------------------------


class Tally:
    """Named counters and the list of broken invariants, shared by goroutines
    on several OS threads (a plain lock, held for an increment, never across
    an await)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()
        self.problems: list[str] = []
        self.nproblems = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._c[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)

    def problem(self, what: str) -> None:
        with self._lock:
            self.nproblems += 1
            if len(self.problems) < 50:
                self.problems.append(what)


T = Tally()


# -- pipelines ------------------------------------------------------------------------


async def producer(ctx: gr.Context, out: gr.Chan[int], name: str) -> None:
    """Send 0, 1, 2, ... until ``ctx`` is done, then close ``out``."""
    done = ctx.done()
    i = 0
    while True:
        k, _ = await gr.select(done.recv, (out.send, i))
        if k == 0:
            break
        i += 1
    out.close()
    T.add(f"pipe.{name}.sent", i)


async def stage_after(inp: gr.Chan[int], out: gr.Chan[int], name: str) -> None:
    """Forward, each send raced against a ``gr.after`` timeout (retried)."""
    async for v in inp:
        while True:
            k, _ = await gr.select((out.send, v), gr.after(0.25).recv)
            if k == 0:
                break
            T.add(f"pipe.{name}.send_timeouts")
    out.close()


async def stage_plain(inp: gr.Chan[int], out: gr.Chan[int]) -> None:
    """Forward with plain receive / send."""
    while True:
        v, ok = await inp.recv_ok()
        if not ok:
            break
        assert v is not None
        await out.send(v)
    out.close()


async def consumer(inp: gr.Chan[int], name: str, ordered: bool) -> None:
    """Receive until closed: first a ``default`` poll, then a select with a
    timeout. A linear pipeline delivers in order; a fan-in is checked by
    count and sums."""
    expect = n = total = squares = 0
    while True:
        k, r = await gr.select(inp.recv_ok, gr.default)
        if k == 1:
            T.add("pipe.idle_polls")
            k, r = await gr.select(inp.recv_ok, gr.after(0.05).recv)
            if k == 1:
                T.add("pipe.recv_timeouts")
                continue
        v, ok = r
        if not ok:
            break
        if ordered and v != expect:
            T.problem(f"pipeline {name}: got {v}, expected {expect} (FIFO broken or value lost)")
            expect = v
        expect += 1
        n += 1
        total += v
        squares += v * v
        if n % 4096 == 0:
            T.add("values", 4096)
    T.add("values", n % 4096)
    T.add(f"pipe.{name}.received", n)
    T.add(f"pipe.{name}.sum", total)
    T.add(f"pipe.{name}.sumsq", squares)


async def fan_worker(inp: gr.Chan[int], out: gr.Chan[int], wg: gr.WaitGroup) -> None:
    try:
        async for v in inp:
            await out.send(v)
    finally:
        wg.done()


async def fan_closer(wg: gr.WaitGroup, out: gr.Chan[int]) -> None:
    await wg.wait()
    out.close()


def start_pipelines(ctx: gr.Context, go: Callable[..., None]) -> list[str]:
    names = []
    # Linear: (name, capacities of the channels between the stages).
    for name, caps in (("unbuf", (0, 0, 0)), ("buf16", (16, 16, 16)), ("mixed", (0, 64, 1))):
        a: gr.Chan[int] = gr.Chan(caps[0])
        b: gr.Chan[int] = gr.Chan(caps[1])
        c: gr.Chan[int] = gr.Chan(caps[2])
        go(producer, ctx, a, name)
        go(stage_after, a, b, name)
        go(stage_plain, b, c)
        go(consumer, c, name, True)
        names.append(name)
    # Fan-out to 4 workers, fan-in to one consumer.
    src: gr.Chan[int] = gr.Chan(8)
    sink: gr.Chan[int] = gr.Chan()
    fwg = gr.WaitGroup()
    fwg.add(4)
    go(producer, ctx, src, "fan")
    for _ in range(4):
        go(fan_worker, src, sink, fwg)
    go(fan_closer, fwg, sink)
    go(consumer, sink, "fan", False)
    names.append("fan")
    return names


def check_pipelines(names: list[str], c: dict[str, int]) -> list[str]:
    bad = []
    for name in names:
        sent, got = c.get(f"pipe.{name}.sent", 0), c.get(f"pipe.{name}.received", 0)
        want_sum = sent * (sent - 1) // 2
        want_sq = (sent - 1) * sent * (2 * sent - 1) // 6
        if sent != got:
            bad.append(f"pipeline {name}: sent {sent}, received {got}")
        elif (c.get(f"pipe.{name}.sum", 0), c.get(f"pipe.{name}.sumsq", 0)) != (want_sum, want_sq):
            bad.append(f"pipeline {name}: the values received are not 0..{sent - 1} once each")
    return bad


# -- timers ---------------------------------------------------------------------------


async def timer_churn(ctx: gr.Context, rng: random.Random) -> None:
    """Timers waited for, stopped or reset while they race their firing."""
    while ctx.err() is None:
        d = rng.uniform(0.0005, 0.01)
        t = gr.Timer(d)
        T.add("timers")
        op = rng.random()
        if op < 0.3:
            await t.c.recv()
            T.add("timer.fired")
        elif op < 0.65:
            await gr.sleep(rng.uniform(0.0, 0.012))
            if t.stop():
                T.add("timer.stopped")
            else:
                T.problem("Timer.stop() returned False for a timer whose value was never received")
            k, _ = await gr.select(t.c.recv, gr.default)
            if k == 0:
                T.problem("Timer: a value came after stop() returned")
        else:
            await gr.sleep(rng.uniform(0.0, 0.012))
            d2 = rng.uniform(0.0005, 0.01)
            before = time.monotonic()
            if not t.reset(d2):
                T.problem("Timer.reset() returned False for a timer whose value was never received")
            k, v = await gr.select(t.c.recv, gr.after(d2 + 10.0).recv)
            if k == 1:
                T.problem(f"Timer: reset({d2:.4f}) never fired (10 s late)")
            elif v < before + d2:
                T.problem(f"Timer: a stale value after reset ({before + d2 - v:.4f}s early)")
            else:
                T.add("timer.reset_fired")
            k, _ = await gr.select(t.c.recv, gr.default)
            if k == 0:
                T.problem("Timer: a second value after a reset")


async def ticker_churn(ctx: gr.Context, rng: random.Random) -> None:
    """Tickers reset to a new period and stopped; ticks checked against both."""
    while ctx.err() is None:
        p1, p2 = rng.uniform(0.001, 0.004), rng.uniform(0.001, 0.006)
        k = gr.Ticker(p1)
        try:
            for _ in range(rng.randint(1, 5)):
                await k.c.recv()
                T.add("ticks")
            before = time.monotonic()
            k.reset(p2)
            for _ in range(rng.randint(1, 3)):
                v = await k.c.recv()
                T.add("ticks")
                if v is None or v < before + p2:
                    T.problem(f"Ticker: a tick of the old period after reset (sent at {v})")
        finally:
            k.stop()
        i, _ = await gr.select(k.c.recv, gr.after(2 * p2).recv)
        if i == 0:
            T.problem("Ticker: a tick after stop() returned")
        T.add("timers")


# -- TCP echo -------------------------------------------------------------------------


async def echo_server(ln: net.Listener, wg: gr.WaitGroup) -> None:
    """Accept until the listener is closed; one handler per connection."""
    while True:
        try:
            c = await ln.accept()
        except net.ErrClosed:
            return
        T.add("echo.accepted")
        wg.add()
        gr.go(echo_handler, c, wg)


async def echo_handler(c: net.Conn, wg: gr.WaitGroup) -> None:
    try:
        c.set_deadline(time.monotonic() + 30.0)
        while data := await c.read(65536):
            await c.write(data)
            T.add("echo.server_bytes", len(data))
    except TimeoutError:
        T.problem("echo server: a connection hit its 30 s deadline (a client stuck?)")
    except (ConnectionResetError, BrokenPipeError) as e:
        T.problem(f"echo server: {type(e).__name__} on a connection")
    finally:
        c.close()
        T.add("echo.server_closed")
        wg.done()


async def read_all(c: net.Conn, out: gr.Chan[bytes]) -> None:
    parts = []
    try:
        while data := await c.read(65536):
            parts.append(data)
    finally:
        await out.send(b"".join(parts))


async def echo_client(ctx: gr.Context, addr: str, rng: random.Random) -> None:
    """Dial, write a random payload in random pieces while a second
    goroutine reads the echo, half-close, compare, close; again."""
    while ctx.err() is None:
        c = await net.dial("tcp", addr, timeout=10.0)
        T.add("echo.dialed")
        T.add("conns")
        try:
            c.set_deadline(time.monotonic() + 20.0)
            payload = rng.randbytes(rng.randint(1, 96 * 1024))
            got: gr.Chan[bytes] = gr.Chan(1)
            gr.go(read_all, c, got)
            i = 0
            while i < len(payload):
                n = rng.randint(1, 16384)
                await c.write(payload[i : i + n])
                i += n
            T.add("echo.written", len(payload))
            c.close_write()
            back = await got.recv()
            assert back is not None
            T.add("echo.read", len(back))
            T.add("echo_bytes", len(back))
            if back != payload:
                T.problem(f"echo: {len(payload)} bytes written, {len(back)} came back different")
        except TimeoutError:
            T.problem("echo client: deadline exceeded during a conversation")
        finally:
            c.close()
            T.add("echo.client_closed")


async def deadline_client(ctx: gr.Context, addr: str, rng: random.Random) -> None:
    """Connections that read nothing until their read deadline passes."""
    while ctx.err() is None:
        c = await net.dial("tcp", addr, timeout=10.0)
        T.add("echo.dialed")
        T.add("conns")
        try:
            d = rng.uniform(0.001, 0.03)
            start = time.monotonic()
            c.set_read_deadline(start + d)
            try:
                data = await c.read(16)
                T.problem(f"echo: a read with nothing sent returned {data!r} before its deadline")
            except TimeoutError:
                if time.monotonic() < start + d:
                    T.problem("echo: TimeoutError before the read deadline")
                T.add("echo.deadline_timeouts")
        finally:
            c.close()
            T.add("echo.client_closed")
        await gr.sleep(rng.uniform(0.0, 0.01))


# -- syscalls -------------------------------------------------------------------------

HASH_DATA = random.Random(1).randbytes(1 << 20)
HASH_WANT = hashlib.sha256(HASH_DATA).digest()


def blocking_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()  # releases the GIL for large inputs


async def sleeper(ctx: gr.Context, rng: random.Random) -> None:
    while ctx.err() is None:
        T.add("sys.started")
        await gr.syscall(time.sleep, rng.uniform(0.0005, 0.005))
        T.add("sys.finished")
        T.add("syscalls")


async def hasher(ctx: gr.Context) -> None:
    while ctx.err() is None:
        T.add("sys.started")
        h = await gr.syscall(blocking_hash, HASH_DATA)
        T.add("sys.finished")
        T.add("syscalls")
        if h != HASH_WANT:
            T.problem("gr.syscall: the hash came back wrong")


# -- contexts -------------------------------------------------------------------------


async def job(
    ctx: gr.Context,
    cancel: gr.CancelFunc,
    steps: int,
    step: float,
    cancel_at: int,
    sem: gr.Semaphore,
    wg: gr.WaitGroup,
) -> None:
    try:
        for s in range(steps):
            if s == cancel_at:
                cancel()
            k, _ = await gr.select(ctx.done().recv, gr.after(step).recv)
            if k == 0:
                err = ctx.err()
                if err is gr.DeadlineExceeded:
                    T.add("job.deadline")
                elif err is gr.Canceled:
                    T.add("job.canceled")
                else:
                    T.problem(f"context: done() closed but err() is {err!r}")
                return
        T.add("job.completed")
    finally:
        cancel()
        sem.release()
        wg.done()
        T.add("job.finished")
        T.add("jobs")


async def job_spawner(ctx: gr.Context, rng: random.Random) -> None:
    """Start jobs (at most 32 at a time) under timeouts; some cancel
    themselves early; the soak's own end cancels the rest (parent)."""
    sem = gr.Semaphore(32)
    wg = gr.WaitGroup()
    key = object()
    while ctx.err() is None:
        await sem.acquire()
        parent = gr.with_value(ctx, key, rng.random())
        jctx, cancel = gr.with_timeout(parent, rng.uniform(0.001, 0.03))
        if jctx.value(key) is None:
            T.problem("context: with_value's value not seen through with_timeout")
        steps = rng.randint(1, 6)
        cancel_at = rng.randint(0, 8)  # >= steps: never cancelled by the job
        wg.add()
        T.add("job.started")
        gr.go(job, jctx, cancel, steps, rng.uniform(0.001, 0.01), cancel_at, sem, wg)
    await wg.wait()


# -- sync -----------------------------------------------------------------------------


async def mutex_worker(ctx: gr.Context, mu: gr.Mutex, box: list[int], rng: random.Random) -> None:
    n = 0
    while ctx.err() is None:
        async with mu:
            v = box[0]
            if rng.random() < 0.1:
                await gr.gosched()  # hold the lock across a switch
            box[0] = v + 1
        n += 1
        if n % 64 == 0:
            await gr.sleep(0.0005)
    T.add("mutex.increments", n)


async def rw_writer(ctx: gr.Context, rw: gr.RWMutex, pair: list[int]) -> None:
    i = 0
    while ctx.err() is None:
        await rw.lock()
        try:
            i += 1
            pair[0] = i
            await gr.gosched()
            pair[1] = i
        finally:
            rw.unlock()
        await gr.sleep(0.0005)


async def rw_reader(ctx: gr.Context, rw: gr.RWMutex, pair: list[int]) -> None:
    while ctx.err() is None:
        await rw.rlock()
        try:
            a = pair[0]
            await gr.gosched()
            if pair[0] != a or pair[1] != a:
                T.problem("RWMutex: a torn read (a writer ran while a reader held the lock)")
            T.add("rw.reads")
        finally:
            rw.runlock()


class InUse:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.n = 0
        self.peak = 0


async def sem_worker(ctx: gr.Context, sem: gr.Semaphore, use: InUse, limit: int) -> None:
    while ctx.err() is None:
        await sem.acquire()
        try:
            with use.lock:
                use.n += 1
                use.peak = max(use.peak, use.n)
                if use.n > limit:
                    T.problem(f"Semaphore({limit}): {use.n} holders at once")
            await gr.sleep(0.0002)
            with use.lock:
                use.n -= 1
        finally:
            sem.release()
        T.add("sem.acquired")


# -- sampling -------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    rss_kib: int
    threads: int
    tasks: int
    fds: int
    goroutines: int
    #: ``sys.getallocatedblocks()``: live Python allocations. Flat while RSS
    #: grows: the C allocator keeping freed memory, not a leak of objects.
    blocks: int = 0
    values: int = 0
    echo_bytes: int = 0
    conns: int = 0
    timers: int = 0
    syscalls: int = 0
    jobs: int = 0


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def take_sample(t0: float, goroutines: int) -> Sample:
    c = T.snapshot()
    return Sample(
        t=round(time.monotonic() - t0, 2),
        rss_kib=rss_kib(),
        threads=threading.active_count(),
        tasks=len(os.listdir("/proc/self/task")),
        fds=len(os.listdir("/proc/self/fd")),
        goroutines=goroutines,
        blocks=sys.getallocatedblocks(),
        **{k: c.get(k, 0) for k in PROGRESS},
    )


HEADER = (
    f"{'t(s)':>7} {'rss(MiB)':>9} {'threads':>7} {'tasks':>5} {'fds':>5} {'gs':>6} "
    f"{'blocks(k)':>9}  "
    f"{'values':>10} {'echo(MiB)':>9} {'conns':>7} {'timers':>8} {'syscalls':>8} {'jobs':>7}"
)


def row(s: Sample) -> str:
    return (
        f"{s.t:7.1f} {s.rss_kib / 1024:9.1f} {s.threads:7d} {s.tasks:5d} {s.fds:5d} "
        f"{s.goroutines:6d} {s.blocks / 1000:9.1f}  {s.values:10d} {s.echo_bytes / MiB:9.1f} "
        f"{s.conns:7d} {s.timers:8d} {s.syscalls:8d} {s.jobs:7d}"
    )


async def sampler(ctx: gr.Context, interval: float, t0: float, samples: list[Sample]) -> None:
    k = gr.Ticker(interval)
    try:
        while True:
            i, _ = await gr.select(ctx.done().recv, k.c.recv)
            if i == 0:
                return
            s = take_sample(t0, gr.num_goroutine())
            samples.append(s)
            print(row(s), flush=True)
    finally:
        k.stop()


# -- the run --------------------------------------------------------------------------


@dataclass
class Config:
    minutes: float
    procs: int
    interval: float
    seed: int


async def soak(cfg: Config, samples: list[Sample]) -> dict[str, Any]:
    t0 = time.monotonic()
    ctx, stop = gr.with_timeout(gr.background(), cfg.minutes * 60.0)
    rng = random.Random(cfg.seed)
    work = gr.WaitGroup()

    def go(fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        async def tracked() -> None:
            try:
                await fn(*args)
            finally:
                work.done()

        work.add()
        gr.go(tracked)

    def sub_rng() -> random.Random:
        return random.Random(rng.getrandbits(64))

    print(HEADER, flush=True)
    gr.go(sampler, ctx, cfg.interval, t0, samples)
    pipes = start_pipelines(ctx, go)
    for _ in range(8):
        go(timer_churn, ctx, sub_rng())
    for _ in range(2):
        go(ticker_churn, ctx, sub_rng())

    ln = await net.listen("tcp", "127.0.0.1:0")
    la = ln.addr
    assert isinstance(la, tuple)
    addr = f"{la[0]}:{la[1]}"
    server_wg = gr.WaitGroup()
    server_wg.add()

    async def serve() -> None:
        try:
            await echo_server(ln, server_wg)
        finally:
            server_wg.done()

    gr.go(serve)
    for _ in range(8):
        go(echo_client, ctx, addr, sub_rng())
    go(deadline_client, ctx, addr, sub_rng())

    for _ in range(4):
        go(sleeper, ctx, sub_rng())
    for _ in range(2):
        go(hasher, ctx)
    go(job_spawner, ctx, sub_rng())

    mu = gr.Mutex()
    box = [0]
    for _ in range(16):
        go(mutex_worker, ctx, mu, box, sub_rng())
    rw = gr.RWMutex()
    pair = [0, 0]
    go(rw_writer, ctx, rw, pair)
    for _ in range(4):
        go(rw_reader, ctx, rw, pair)
    sem_limit = 4
    sem = gr.Semaphore(sem_limit)
    use = InUse()
    for _ in range(12):
        go(sem_worker, ctx, sem, use, sem_limit)

    await ctx.done().recv()  # the soak's time is up: everything winds down
    t_end = time.monotonic()
    stop()
    k, _ = await gr.select(_wait_chan(work).recv, gr.after(60.0).recv)
    if k == 1:
        T.problem("goroutines still working 60 s after the end:\n" + gr.stack_dump())
    # Every client connection reached the server before the listener closes
    # (a probe may give up before it is accepted).
    deadline = time.monotonic() + 10.0
    while T.get("echo.accepted") < T.get("echo.dialed") and time.monotonic() < deadline:
        await gr.sleep(0.01)
    ln.close()
    await server_wg.wait()
    wind_down = time.monotonic() - t_end

    deadline = time.monotonic() + 10.0
    while gr.num_goroutine() > 1 and time.monotonic() < deadline:
        await gr.sleep(0.01)
    left = gr.num_goroutine()
    if left != 1:
        T.problem(f"{left - 1} goroutines still exist at the end:\n{gr.stack_dump()}")
    final = take_sample(t0, left)
    return {
        "pipes": pipes,
        "box": box[0],
        "sem_peak": use.peak,
        "wind_down": wind_down,
        "final": final,
    }


def _wait_chan(wg: gr.WaitGroup) -> gr.Chan[None]:
    """A channel closed once ``wg.wait()`` returns."""
    ch: gr.Chan[None] = gr.Chan()

    async def waiter() -> None:
        await wg.wait()
        ch.close()

    gr.go(waiter)
    return ch


# -- the verdict ----------------------------------------------------------------------


def check_accounts(c: dict[str, int], info: dict[str, Any]) -> list[str]:
    """Every value accounted for: what was sent, written, started or
    acquired, was received, echoed, finished or counted."""
    bad = check_pipelines(info["pipes"], c)

    def same(what: str, *names: str) -> None:
        vals = [c.get(n, 0) for n in names]
        if len(set(vals)) != 1:
            bad.append(
                f"{what}: " + ", ".join(f"{n} {v}" for n, v in zip(names, vals, strict=True))
            )

    same("echo bytes", "echo.written", "echo.read", "echo.server_bytes")
    same(
        "echo connections",
        "echo.dialed",
        "echo.client_closed",
        "echo.accepted",
        "echo.server_closed",
    )
    same("syscalls", "sys.started", "sys.finished")
    same("jobs", "job.started", "job.finished")
    ends = c.get("job.completed", 0) + c.get("job.deadline", 0) + c.get("job.canceled", 0)
    if ends != c.get("job.started", 0):
        bad.append(f"jobs: {c.get('job.started', 0)} started, {ends} ended one way or another")
    if info["box"] != c.get("mutex.increments", 0):
        bad.append(f"Mutex: {c.get('mutex.increments', 0)} increments, counter {info['box']}")
    if info["sem_peak"] > 4:
        bad.append(f"Semaphore(4): {info['sem_peak']} holders at once")
    for name in (
        "values",
        "echo.read",
        "echo.accepted",
        "timer.fired",
        "timer.stopped",
        "timer.reset_fired",
        "ticks",
        "syscalls",
        "job.completed",
        "job.deadline",
        "job.canceled",
        "echo.deadline_timeouts",
        "rw.reads",
        "sem.acquired",
    ):
        if c.get(name, 0) == 0:
            bad.append(f"{name}: none at all (that part of the workload did not run)")
    return bad


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def slope_per_min(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``ts`` (seconds), per minute."""
    if len(ts) < 2:
        return 0.0
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return (
        60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den if den else 0.0
    )


@dataclass
class Limits:
    rss_mib: float = 8.0
    rss_pct: float = 10.0
    #: The warm-up: this fraction of the samples, and at least this many seconds.
    warmup: float = 0.2
    warmup_s: float = 30.0
    threads: int = 4
    fds: int = 16
    goroutines: int = 200


def judge(samples: list[Sample], lim: Limits) -> tuple[list[str], list[str]]:
    """(lines describing the trend, reasons it is not flat)."""
    n = len(samples)
    warm = max(1, math.ceil(lim.warmup * n), sum(s.t <= lim.warmup_s for s in samples))
    body = samples[warm:]
    if len(body) < 2:
        return [f"{n} samples: too few to judge growth (need 3 or more)"], [
            f"only {n} samples: run longer or sample more often (--interval)"
        ]
    w = max(1, math.ceil(0.2 * len(body)))
    base, end = body[:w], body[-w:]
    lines, bad = [], []
    lines.append(
        f"{n} samples; warm-up: the first {warm}; baseline: samples {warm + 1}-{warm + w} "
        f"(t {base[0].t:.0f}-{base[-1].t:.0f}s); "
        f"end: the last {w} (t {end[0].t:.0f}-{end[-1].t:.0f}s)"
    )
    ts = [s.t for s in body]

    b_rss = median([s.rss_kib / 1024 for s in base])
    e_rss = median([s.rss_kib / 1024 for s in end])
    tol = max(lim.rss_mib, b_rss * lim.rss_pct / 100)
    growth = e_rss - b_rss
    verdict = "ok" if growth <= tol else "GROWING"
    lines.append(
        f"RSS: baseline median {b_rss:.1f} MiB, end median {e_rss:.1f} MiB: {growth:+.1f} MiB "
        f"(tolerance {tol:.1f} MiB = max({lim.rss_mib:g} MiB, {lim.rss_pct:g} %)); "
        f"trend {slope_per_min(ts, [s.rss_kib / 1024 for s in body]):+.2f} MiB/min: {verdict}"
    )
    if growth > tol:
        bad.append(f"RSS grew {growth:.1f} MiB (> {tol:.1f} MiB) from {b_rss:.1f} MiB")

    def bounded(name: str, get: Callable[[Sample], int], slack: int) -> None:
        b_max = max(get(s) for s in base)
        e_med = median([get(s) for s in end])
        top = max(get(s) for s in body)
        trend = slope_per_min(ts, [get(s) for s in body])
        ok = e_med <= b_max + slack
        lines.append(
            f"{name}: baseline max {b_max}, end median {e_med:g}, highest {top} "
            f"(slack {slack}); trend {trend:+.2f}/min: {'ok' if ok else 'GROWING'}"
        )
        if not ok:
            bad.append(f"{name} went up: end median {e_med:g} > baseline max {b_max} + {slack}")

    bounded("threads", lambda s: s.threads, lim.threads)
    bounded("tasks (/proc/self/task)", lambda s: s.tasks, lim.threads)
    bounded("fds", lambda s: s.fds, lim.fds)
    bounded("goroutines", lambda s: s.goroutines, lim.goroutines)
    b_bl = median([s.blocks / 1000 for s in base])
    e_bl = median([s.blocks / 1000 for s in end])
    lines.append(
        f"Python allocations (sys.getallocatedblocks, not judged): baseline median {b_bl:.1f}k, "
        f"end median {e_bl:.1f}k ({(e_bl - b_bl) / b_bl * 100 if b_bl else 0:+.1f} %); "
        f"trend {slope_per_min(ts, [s.blocks / 1000 for s in body]):+.2f}k/min"
    )
    return lines, bad


def write_csv(path: Path, samples: list[Sample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(samples[0]).keys()) if samples else ["t"])
        w.writeheader()
        for s in samples:
            w.writerow(asdict(s))


def fds_now() -> dict[str, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[name] = os.readlink(f"/proc/self/fd/{name}")
    return out


def watchdog(seconds: float, done: threading.Event) -> None:
    """If the run is not over ``seconds`` from now, SIGQUIT ourselves: the
    runtime prints every goroutine's stack and exits with status 2."""
    if not done.wait(seconds):
        print(f"\nsoak: still running {seconds:.0f}s after the start: SIGQUIT", flush=True)
        os.kill(os.getpid(), signal.SIGQUIT)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the workload runs (10)")
    ap.add_argument("--procs", type=int, default=4, help="gr.run(procs=) (4)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples (5)")
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=None, help="workload seed (random)")
    ap.add_argument("--rss-mib", type=float, default=Limits.rss_mib, help="RSS tolerance, MiB (8)")
    ap.add_argument("--rss-pct", type=float, default=Limits.rss_pct, help="RSS tolerance, %% (10)")
    ap.add_argument(
        "--warmup", type=float, default=Limits.warmup, help="warm-up, fraction of samples (0.2)"
    )
    ap.add_argument(
        "--warmup-s", type=float, default=Limits.warmup_s, help="warm-up at least, seconds (30)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / ".soak", help="CSV directory (.soak)")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    cfg = Config(args.minutes, args.procs, args.interval, seed)
    lim = Limits(args.rss_mib, args.rss_pct, warmup=args.warmup, warmup_s=args.warmup_s)
    csv_path = args.out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}-p{cfg.procs}.csv"
    env = {k: v for k, v in os.environ.items() if k.startswith("GOROUTINES_")}
    print(
        f"soak: {cfg.minutes:g} min at procs {cfg.procs}, a sample every {cfg.interval:g}s, "
        f"workload seed {seed} (--seed {seed}); Python {sys.version.split()[0]}"
        + (f"; {' '.join(f'{k}={v}' for k, v in env.items())}" if env else ""),
        flush=True,
    )
    threads_before, fds_before = threading.active_count(), fds_now()
    samples: list[Sample] = []
    done = threading.Event()
    threading.Thread(
        target=watchdog, args=(cfg.minutes * 60.0 + 120.0, done), daemon=True, name="soak-watchdog"
    ).start()
    t0 = time.monotonic()
    try:
        info = gr.run(soak, cfg, samples, procs=cfg.procs)
    finally:
        done.set()
        write_csv(csv_path, samples)
    elapsed = time.monotonic() - t0
    final: Sample = info["final"]
    print(row(final) + "   (after the wind-down)")

    # The runtime's threads and fds are gone once run() returns.
    deadline = time.monotonic() + 5.0
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    after_threads = [t.name for t in threading.enumerate()]
    fds_left = {k: v for k, v in fds_now().items() if fds_before.get(k) != v}

    c = T.snapshot()
    print()
    print(
        f"soak: {elapsed:.0f}s in gr.run ({info['wind_down']:.2f}s to wind down); "
        f"samples: {csv_path}"
    )
    send_timeouts = sum(c.get(f"pipe.{p}.send_timeouts", 0) for p in info["pipes"])
    print(
        f"  pipelines: {c.get('values', 0)} values through {len(info['pipes'])} pipelines "
        f"({send_timeouts} send timeouts, {c.get('pipe.recv_timeouts', 0)} receive timeouts, "
        f"{c.get('pipe.idle_polls', 0)} default polls)"
    )
    print(
        f"  echo: {c.get('echo.dialed', 0)} connections ({c.get('echo.deadline_timeouts', 0)} "
        f"read deadlines), {c.get('echo.written', 0) / MiB:.1f} MiB written = "
        f"{c.get('echo.read', 0) / MiB:.1f} MiB read back"
    )
    print(
        f"  timers: {c.get('timers', 0)} (fired {c.get('timer.fired', 0)}, stopped "
        f"{c.get('timer.stopped', 0)}, reset {c.get('timer.reset_fired', 0)}), "
        f"{c.get('ticks', 0)} ticks"
    )
    print(
        f"  syscalls: {c.get('sys.finished', 0)}; jobs: {c.get('job.started', 0)} "
        f"(completed {c.get('job.completed', 0)}, deadline {c.get('job.deadline', 0)}, "
        f"canceled {c.get('job.canceled', 0)})"
    )
    print(
        f"  sync: {c.get('mutex.increments', 0)} Mutex increments, {c.get('rw.reads', 0)} "
        f"RWMutex reads, {c.get('sem.acquired', 0)} Semaphore acquires (peak {info['sem_peak']}/4)"
    )

    reasons = [f"broken: {p}" for p in T.problems]
    if T.nproblems > len(T.problems):
        reasons.append(f"... and {T.nproblems - len(T.problems)} more broken invariants")
    reasons += [f"lost: {b}" for b in check_accounts(c, info)]
    if threading.active_count() > threads_before:
        reasons.append(f"threads left after run(): {after_threads} (before: {threads_before})")
    if fds_left:
        reasons.append(f"fds left open after run(): {fds_left}")
    lines, growth = judge(samples, lim)
    print("flatness:")
    for ln in lines:
        print(f"  {ln}")
    reasons += [f"growth: {g}" for g in growth]
    if reasons:
        print("\nsoak: FAILED")
        for r in reasons:
            print(f"  - {r}")
        return 1
    print("\nsoak: OK: everything accounted for, all goroutines exited, RSS/threads/fds flat")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
