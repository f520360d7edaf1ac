"""The scheduler's design, tested from outside (SPEC §1): where Gs run, which Ms wake.

These read runtime internals on purpose (``_scheduler.current``: its Ms and
their thread idents): they check the G-P-M design, not just the API. ``grun``
is ``gr.run`` with a watchdog that turns a hang into a failure with a dump.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from helpers import grun


def test_ping_pong_stays_on_one_thread() -> None:
    """A readied G goes to runnext: a ping-pong runs on one M and wakes no other."""
    rounds = 1000

    async def pong(ping: gr.Chan[int], back: gr.Chan[int], idents: set[int]) -> None:
        for _ in range(rounds):
            v = await ping.recv()
            idents.add(threading.get_ident())
            assert v is not None
            await back.send(v + 1)

    async def main() -> dict[str, Any]:
        sched = _scheduler.require()
        idents: set[int] = set()
        ping: gr.Chan[int] = gr.Chan()
        back: gr.Chan[int] = gr.Chan()
        gr.go(pong, ping, back, idents)
        for i in range(rounds):
            await ping.send(i)
            idents.add(threading.get_ident())
            assert await back.recv() == i + 1
        return {"idents": idents, "allm": len(sched.allm), "mcount": sched.mcount}

    res = grun(main, procs=4)
    assert len(res["idents"]) == 1
    assert res["allm"] == 1
    assert res["mcount"] == 1


@pytest.mark.parametrize("procs", [1, 4])
def test_idle_runtime_uses_little_cpu(procs: int) -> None:
    async def main() -> None:
        await gr.sleep(1.0)

    t0 = time.process_time()
    w0 = time.monotonic()
    grun(main, procs=procs)
    cpu = time.process_time() - t0
    assert time.monotonic() - w0 >= 1.0
    assert cpu < 0.2, f"an idle runtime burned {cpu:.3f}s of CPU in 1s"


def test_work_spreads_over_ms() -> None:
    """With procs=2, CPU-bound goroutines that gosched are run by more than one M."""
    workers, iters = 8, 300

    async def worker(out: gr.Chan[set[int]]) -> None:
        seen: set[int] = set()
        x = 0
        for i in range(iters):
            for j in range(200):  # a little work, no blocking
                x += i * j
            seen.add(threading.get_ident())
            await gr.gosched()
        await out.send(seen)

    async def main() -> tuple[set[int], int]:
        sched = _scheduler.require()
        out: gr.Chan[set[int]] = gr.Chan()
        for _ in range(workers):
            gr.go(worker, out)
        seen: set[int] = set()
        for _ in range(workers):
            s = await out.recv()
            assert s is not None
            seen |= s
        return seen, len(sched.allm)

    seen, nm = grun(main, procs=2)
    assert len(seen) > 1, "all the work ran on one thread"
    assert nm >= 2


def test_new_goroutine_starts_while_parent_computes() -> None:
    """With a P idle, a goroutine started by a parent that then computes without
    yielding runs on another M (Go: newproc calls wakep, and an idle P steals
    even ``runnext`` from a P whose G keeps running)."""

    async def child(started: list[float]) -> None:
        started.append(time.monotonic())

    async def main() -> float | None:
        started: list[float] = []
        t0 = time.monotonic()
        gr.go(child, started)
        while not started and time.monotonic() - t0 < 1.0:
            pass  # CPU-bound, never yields
        return started[0] - t0 if started else None

    waited = grun(main, procs=2)
    assert waited is not None, "the child did not start until its parent yielded"
    assert waited < 0.5


def test_g_migrates_between_ms() -> None:
    """A G is not bound to a thread: one that keeps yielding while others churn
    is resumed by more than one M.

    There are more churners than Ps so the global queue always holds several
    Gs: with as many Gs as Ps, each M (holding the GIL for a switch interval)
    would take back the G it just queued, and nothing would move.
    """
    yields, churners = 1000, 16

    async def churn(stop: list[bool]) -> None:
        x = 0
        while not stop[0]:
            for j in range(100):
                x += j
            await gr.gosched()

    async def watched(out: gr.Chan[set[int]], stop: list[bool]) -> None:
        seen: set[int] = set()
        for _ in range(yields):
            seen.add(threading.get_ident())
            await gr.gosched()
        stop[0] = True
        await out.send(seen)

    async def main() -> set[int]:
        stop = [False]
        out: gr.Chan[set[int]] = gr.Chan()
        for _ in range(churners):
            gr.go(churn, stop)
        gr.go(watched, out, stop)
        seen = await out.recv()
        assert seen is not None
        return seen

    seen = grun(main, procs=4)
    assert len(seen) > 1, "the goroutine never moved to another M"


@pytest.mark.parametrize("procs", [2, 4, 8])
def test_no_lost_wakeups(procs: int) -> None:
    """2000 short-lived goroutines in waves, each doing channel hand-offs.

    A lost wake-up shows as a hang (caught by the watchdog) or a false Deadlock.
    """
    waves, pairs = 10, 100  # 2 goroutines per pair: 2000 goroutines per run

    async def producer(inp: gr.Chan[int], mid: gr.Chan[int]) -> None:
        v = await inp.recv()
        assert v is not None
        await mid.send(v)

    async def consumer(mid: gr.Chan[int], out: gr.Chan[int]) -> None:
        v = await mid.recv()
        assert v is not None
        await out.send(v + 1)

    async def feeder(inp: gr.Chan[int], base: int) -> None:
        for i in range(pairs):
            await inp.send(base + i)

    async def main() -> None:
        for w in range(waves):
            inp: gr.Chan[int] = gr.Chan()
            out: gr.Chan[int] = gr.Chan(w % 2)
            for k in range(pairs):
                mid: gr.Chan[int] = gr.Chan(k % 2)
                gr.go(consumer, mid, out)
                gr.go(producer, inp, mid)
            gr.go(feeder, inp, w * pairs)
            got = sorted([await out.recv() for _ in range(pairs)])  # type: ignore[type-var]
            assert got == list(range(w * pairs + 1, (w + 1) * pairs + 1))

    for _ in range(20):
        t0 = time.monotonic()
        grun(main, procs=procs, timeout=5.0)
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, f"a run took {elapsed:.2f}s"


def test_global_queue_fairness_against_runnext_ping_pong() -> None:
    """Every 61st schedule tick the global queue comes first: a G put there by
    gosched runs even while two others ping-pong forever through runnext."""

    async def pinger(
        a: gr.Chan[int], b: gr.Chan[int], flag: list[bool], done: gr.Chan[int]
    ) -> None:
        n = 0
        while not flag[0]:
            await a.send(n)
            await b.recv()
            n += 1
        await done.send(n)

    async def ponger(a: gr.Chan[int], b: gr.Chan[int]) -> None:
        while True:
            v = await a.recv()
            await b.send(v)  # type: ignore[arg-type]

    async def setter(flag: list[bool]) -> None:
        await gr.gosched()  # to the global queue, behind the ping-pong
        flag[0] = True

    async def main() -> int:
        a: gr.Chan[int] = gr.Chan()
        b: gr.Chan[int] = gr.Chan()
        flag = [False]
        done: gr.Chan[int] = gr.Chan()
        gr.go(pinger, a, b, flag, done)
        gr.go(ponger, a, b)
        gr.go(setter, flag)
        n = await done.recv()
        assert n is not None
        return n

    rounds = grun(main, procs=1, timeout=5.0)
    assert rounds < 1000, f"the queued goroutine waited {rounds} ping-pong rounds"
