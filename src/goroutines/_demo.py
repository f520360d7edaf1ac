"""``python -m goroutines demo``: the runtime at work on small real programs.

Five sections, each its own ``gr.run()``:

1. Go's concurrent prime sieve (a chain of filter goroutines, one per prime);
2. a worker pool with fan-out/fan-in, a WaitGroup and a context deadline;
3. a deadlock, caught by the runtime and explained with a goroutine dump;
4. a ping-pong over two unbuffered channels, timed at procs 1 and all cores;
5. blocking calls (``gr.syscall``) not stalling the other goroutines, at procs=1.

After each run the scheduler's counters are printed (``Probe``). They are
read from the runtime's internals (``Sched``, its Ps and Ms) after ``run()``
has returned and its Ms have stopped; the demo only reads them, it changes
nothing in the runtime.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, final

import goroutines as gr
from goroutines import _accel

from ._runtime import _scheduler
from ._runtime._scheduler import Sched

__all__ = ["Probe", "RunStats", "main"]

T = TypeVar("T")

#: The main goroutine is 1; ``Sched.goidgen`` starts at 2 (Go's numbering).
_FIRST_GOID = 2


@final
@dataclass(frozen=True)
class RunStats:
    """The scheduler's counters for one finished ``gr.run()``."""

    procs: int
    goroutines: int  # created, the main goroutine included
    ms_started: int  # OS threads (Ms) the run started
    parks: int  # times an M went idle and parked
    steals: int  # Gs taken from another P's run queue
    steps: int  # times an M resumed a G (until it parked, yielded or ended)

    def __str__(self) -> str:
        return (
            f"goroutines created: {self.goroutines}, Ms started: {self.ms_started}, "
            f"parks: {self.parks}, steals: {self.steals}, G steps: {self.steps}"
        )


@final
class Probe:
    """Run one ``gr.run()`` and read the scheduler's counters once it is over.

    The counters stay readable when ``run()`` raises (a ``Deadlock``, say).
    """

    __slots__ = ("_sched",)

    def __init__(self) -> None:
        self._sched: Sched | None = None

    def run(self, main: Callable[..., Awaitable[T]], *args: Any, procs: int | None = None) -> T:
        """``gr.run(main, *args, procs=procs)``, keeping hold of its scheduler."""
        result: T = gr.run(main_goroutine, self, main, args, procs=procs)
        return result

    def attach(self) -> None:
        """Called by the main goroutine: the runtime is installed, grab it."""
        self._sched = _scheduler.require()

    @property
    def stats(self) -> RunStats:
        sched = self._sched
        if sched is None:
            raise RuntimeError("Probe.stats: the probe has not run")
        allp = list(sched.allp)
        # Goroutine ids are handed to each P in batches (Go's goidcache); ids
        # still cached on a P were never used.
        unused = sum(p.goidcacheend - p.goidcache for p in allp)
        counts = sched.mcounters()
        return RunStats(
            procs=sched.gomaxprocs,
            goroutines=1 + (sched.goidgen - _FIRST_GOID) - unused,
            ms_started=sched.mnext,
            parks=counts["npark"],
            steals=counts["nsteal"],
            steps=counts["nsched"],
        )


async def main_goroutine(
    probe: Probe, main: Callable[..., Awaitable[T]], args: tuple[Any, ...]
) -> T:
    """The main goroutine of a probed run (it shows up in goroutine dumps under this name)."""
    probe.attach()
    return await main(*args)


def _header(title: str) -> None:
    print(f"\n== {title} ==")


# -- 1. the prime sieve ----------------------------------------------------


async def generate(ch: gr.Chan[int]) -> None:
    """Send 2, 3, 4, ... to ``ch``."""
    i = 2
    while True:
        await ch.send(i)
        i += 1


async def filter_multiples(src: gr.Chan[int], dst: gr.Chan[int], prime: int) -> None:
    """Copy the values from ``src`` to ``dst``, dropping multiples of ``prime``."""
    while True:
        i = await src.recv()
        assert i is not None
        if i % prime != 0:
            await dst.send(i)


async def sieve(n: int) -> list[int]:
    """The first ``n`` primes: each prime found starts a filter goroutine."""
    ch: gr.Chan[int] = gr.Chan()
    gr.go(generate, ch)
    primes: list[int] = []
    for _ in range(n):
        prime = await ch.recv()
        assert prime is not None
        primes.append(prime)
        ch1: gr.Chan[int] = gr.Chan()
        gr.go(filter_multiples, ch, ch1, prime)
        ch = ch1
    return primes


def demo_sieve(n: int = 1000) -> None:
    _header(f"1. Concurrent prime sieve: first {n} primes, one goroutine per prime")
    probe = Probe()
    t0 = time.perf_counter()
    primes = probe.run(sieve, n)
    dt = time.perf_counter() - t0
    print(f"last prime: {primes[-1]}, sum: {sum(primes)}")
    print(f"time: {dt:.2f} s at procs={probe.stats.procs} (main returned: the filters are closed)")
    print(probe.stats)


# -- 2. a worker pool with a deadline ----------------------------------------

_NJOBS = 2000
_NWORKERS = 8
_JOB_SECONDS = 0.004  # each job "waits on I/O" this long
_DEADLINE = 0.4


async def produce(ctx: gr.Context, jobs: gr.Chan[int]) -> None:
    """Feed the job numbers into ``jobs`` until they run out or ``ctx`` is done."""
    try:
        for job in range(_NJOBS):
            i, _ = await gr.select(ctx.done().recv, (jobs.send, job))
            if i == 0:
                return
    finally:
        jobs.close()


async def work(
    ctx: gr.Context, jobs: gr.Chan[int], results: gr.Chan[int], wg: gr.WaitGroup
) -> None:
    """Take jobs until there are none left or ``ctx`` is done; every wait also watches ctx."""
    try:
        while True:
            i, v = await gr.select(ctx.done().recv, jobs.recv_ok)
            if i == 0 or not v[1]:
                return
            job: int = v[0]
            i, _ = await gr.select(ctx.done().recv, gr.after(_JOB_SECONDS).recv)
            if i == 0:
                return  # cancelled halfway through the job: drop it
            i, _ = await gr.select(ctx.done().recv, (results.send, job * job))
            if i == 0:
                return
    finally:
        wg.done()


async def close_when_done(wg: gr.WaitGroup, results: gr.Chan[int]) -> None:
    await wg.wait()
    results.close()


async def pool() -> tuple[int, type[BaseException] | None, int]:
    ctx, cancel = gr.with_timeout(gr.background(), _DEADLINE)
    try:
        jobs: gr.Chan[int] = gr.Chan()
        results: gr.Chan[int] = gr.Chan()
        wg = gr.WaitGroup()
        gr.go(produce, ctx, jobs)
        for _ in range(_NWORKERS):
            wg.add(1)
            gr.go(work, ctx, jobs, results, wg)
        gr.go(close_when_done, wg, results)
        done = 0
        async for _ in results:  # fan-in: ends when the last worker has left
            done += 1
        err = ctx.err()
    finally:
        cancel()
    # The closer goroutine may still be on its way out: give it a moment.
    deadline = time.monotonic() + 1.0
    while gr.num_goroutine() > 1 and time.monotonic() < deadline:
        await gr.sleep(0.001)
    return done, err, gr.num_goroutine()


def demo_pool() -> None:
    _header(
        f"2. Worker pool: {_NJOBS} jobs of {_JOB_SECONDS * 1000:.0f} ms, "
        f"{_NWORKERS} workers, deadline {_DEADLINE} s"
    )
    probe = Probe()
    t0 = time.perf_counter()
    done, err, left = probe.run(pool)
    dt = time.perf_counter() - t0
    why = err.__name__ if err is not None else "no error"
    print(f"jobs done before the deadline: {done} of {_NJOBS} (ctx.err(): {why})")
    print(f"time: {dt:.2f} s; goroutines left: {left}" + (" (no leak)" if left == 1 else " (LEAK)"))
    print(probe.stats)


# -- 3. a deadlock -----------------------------------------------------------


async def relay(inbox: gr.Chan[str], outbox: gr.Chan[str], wg: gr.WaitGroup) -> None:
    """Receive a message, pass it on. Two of these, each receiving from the other first."""
    try:
        msg = await inbox.recv()
        await outbox.send(f"{msg}!")
    finally:
        wg.done()


async def deadlocked() -> None:
    a: gr.Chan[str] = gr.Chan()
    b: gr.Chan[str] = gr.Chan()
    wg = gr.WaitGroup()
    wg.add(2)
    gr.go(relay, a, b, wg)  # waits on a, which only the other one sends to
    gr.go(relay, b, a, wg)  # waits on b, which only the first one sends to
    await wg.wait()


def demo_deadlock() -> None:
    _header("3. A deadlock: two goroutines each waiting to receive from the other")
    probe = Probe()
    try:
        probe.run(deadlocked, procs=2)
    except gr.Deadlock as e:
        print("gr.run() raised gr.Deadlock:\n")
        cwd = os.getcwd() + os.sep
        for line in str(e).splitlines():
            print(f"    {line.replace(cwd, '')}".rstrip())
        print(
            "\nGoroutine 2 waits to receive on a, which only goroutine 3 sends to, and only\n"
            "after it has received on b, which only goroutine 2 sends to; main waits for both.\n"
            "No timer is armed, so nothing can ever wake them: run() raises instead of hanging."
        )
    else:
        print("no deadlock?! (this is a bug)")
    print(probe.stats)


# -- 4. ping-pong --------------------------------------------------------------


async def ponger(ping: gr.Chan[int], pong: gr.Chan[int]) -> None:
    async for v in ping:
        await pong.send(v + 1)


async def ping_pong(n: int) -> float:
    """``n`` round trips over two unbuffered channels; returns seconds per round trip."""
    ping: gr.Chan[int] = gr.Chan()
    pong: gr.Chan[int] = gr.Chan()
    gr.go(ponger, ping, pong)
    t0 = time.perf_counter()
    for i in range(n):
        await ping.send(i)
        await pong.recv()
    dt = time.perf_counter() - t0
    ping.close()
    return dt / n


def demo_ping_pong(n: int = 100_000) -> None:
    ncpu = os.cpu_count() or 1
    _header(f"4. Ping-pong: {n} round trips over two unbuffered channels")
    for procs in sorted({1, ncpu}):
        probe = Probe()
        per = probe.run(ping_pong, n, procs=procs)
        print(f"procs={procs}: {per * 1e6:.2f} µs per round trip")
        print(f"  {probe.stats}")


# -- 5. blocking calls --------------------------------------------------------


async def blocking_calls(n: int) -> tuple[int, float, float]:
    """A goroutine blocks its thread for 0.3 s in ``gr.syscall`` while another
    keeps ticking; then ``n`` goroutines each block 10 ms at once.
    Returns (ticks during the blocking call, its duration, the burst's duration)."""
    ticks = 0
    done: gr.Chan[None] = gr.Chan()

    async def sleeper() -> None:
        await gr.syscall(time.sleep, 0.3)  # a blocking call: its thread is stuck
        done.close()

    gr.go(sleeper)
    t0 = time.perf_counter()
    while (await gr.select(done.recv, gr.default))[0] == 1:
        await gr.sleep(0.01)  # still running, on another thread
        ticks += 1
    blocked = time.perf_counter() - t0

    wg = gr.WaitGroup()

    async def blocker() -> None:
        await gr.syscall(time.sleep, 0.01)
        wg.done()

    t0 = time.perf_counter()
    for _ in range(n):
        wg.add()
        gr.go(blocker)
    await wg.wait()
    return ticks, blocked, time.perf_counter() - t0


def demo_blocking_calls(n: int = 1000) -> None:
    _header("5. Blocking calls do not stall other goroutines (procs=1)")
    probe = Probe()
    ticks, blocked, burst = probe.run(blocking_calls, n, procs=1)
    print(
        f"while one goroutine sat {blocked:.2f} s in gr.syscall(time.sleep, 0.3), "
        f"another ticked {ticks} times"
    )
    print(f"{n} goroutines each in gr.syscall(time.sleep, 0.01): all done in {burst:.3f} s")
    print(f"  {probe.stats}")


def main(trace: str | None = None) -> int:
    """The demo; ``trace``: write an execution trace of section 2 (the
    worker pool) there (``goroutines.trace``)."""
    ncpu = os.cpu_count() or 1
    v = sys.version_info
    print(f"goroutines demo: Go's concurrency model in Python {v.major}.{v.minor}, {ncpu} cores")
    why = f" ({_accel.WHY_PURE})" if _accel.WHY_PURE else ""
    print(
        f"hot paths: {gr.__speedups__}{why}"
        + (" = the C accelerator goroutines._speedups" if gr.__speedups__ == "c" else "")
    )
    t0 = time.perf_counter()
    demo_sieve()
    if trace:
        os.environ["GOROUTINES_TRACE"] = trace  # read by the run demo_pool starts
        try:
            demo_pool()
        finally:
            del os.environ["GOROUTINES_TRACE"]
        print(f"execution trace of section 2 written to {trace}")
    else:
        demo_pool()
    demo_deadlock()
    demo_ping_pong()
    demo_blocking_calls()
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s")
    return 0
