"""Blocking calls: ``gr.syscall`` and ``@gr.blocking`` (Go's entersyscall/exitsyscall).

What a blocking call must not do: stop the other goroutines of its P (sysmon
hands the P off), cost a thread switch when it returns at once (the fast
path), lose its result or exception, confuse the deadlock detector, or
leave threads behind. Runtime tests run at procs 1 and 4; the ones about
one P (hand-off with nobody else to run the queue) say so.

``grun`` is ``gr.run`` with a watchdog, as in ``test_run.py``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from typing import Any

import pytest

import goroutines as gr
from goroutines._runtime import _machine, _scheduler
from goroutines._runtime._goroutine import GStatus
from helpers import grun


async def wait_status(gid: int, status: GStatus, timeout: float = 5.0) -> None:
    """Yield until goroutine ``gid`` has ``status`` (e.g. it entered its syscall)."""
    sched = _scheduler.require()
    deadline = time.monotonic() + timeout
    while True:
        g = sched.allgs.get(gid)
        if g is not None and g.status == status:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"goroutine {gid} never got to {status.name}:\n{gr.stack_dump()}")
        await gr.gosched()


def run_script(
    script: str, env: dict[str, str], timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


# ------------------------------------------------------------------ not stalling others


def test_blocked_goroutine_does_not_stop_others_one_p() -> None:
    """procs=1: while one goroutine sleeps 0.3 s in a syscall, another
    finishes 100 channel exchanges with main; the sleeper is still asleep."""
    sleeper_done: list[float] = []
    ids: list[int] = []

    async def sleeper(done: gr.Chan[None]) -> None:
        ids.append(gr.goroutine_id())
        await gr.syscall(time.sleep, 0.3)
        sleeper_done.append(time.monotonic())
        await done.send(None)

    async def echo(c: gr.Chan[int]) -> None:
        while (v := await c.recv()) is not None:
            await c.send(v + 1)

    async def main() -> tuple[int, bool, float]:
        done: gr.Chan[None] = gr.Chan()
        c: gr.Chan[int] = gr.Chan()
        t0 = time.monotonic()
        gr.go(sleeper, done)
        await gr.gosched()  # the sleeper runs (its M blocks), we are handed off
        await wait_status(ids[0], GStatus.SYSCALL)
        gr.go(echo, c)
        v = 0
        for _ in range(100):
            await c.send(v)
            v = await c.recv() or 0
        still_asleep = not sleeper_done
        took = time.monotonic() - t0
        c.close()
        await done.recv()
        return v, still_asleep, took

    v, still_asleep, took = grun(main, procs=1)
    assert v == 100
    assert still_asleep, f"the exchange finished only after the sleeper woke ({took:.3f}s)"


def test_blocked_goroutine_waits_for_others(procs: int) -> None:
    """Deterministic version: the blocking call waits on an Event that only
    another goroutine sets. If the P were not handed off (procs=1) nobody
    could set it and the call would time out."""
    ev = threading.Event()

    async def blocker(res: gr.Chan[bool]) -> None:
        await res.send(await gr.syscall(ev.wait, 5.0))

    async def setter() -> None:
        await gr.gosched()
        ev.set()

    async def main() -> bool:
        res: gr.Chan[bool] = gr.Chan()
        gr.go(blocker, res)
        gr.go(setter)
        return bool(await res.recv())

    t0 = time.monotonic()
    assert grun(main, procs=procs) is True
    assert time.monotonic() - t0 < 4.0


def test_many_blocking_calls_overlap(procs: int) -> None:
    """1000 goroutines each in syscall(time.sleep, 0.01) overlap: together
    they take a small multiple of 0.01 s, not 10 s."""
    n = 1000

    async def one(wg: gr.WaitGroup, out: list[int], i: int) -> None:
        await gr.syscall(time.sleep, 0.01)
        out.append(i)
        wg.done()

    async def main() -> tuple[float, list[int], int]:
        wg = gr.WaitGroup()
        out: list[int] = []
        wg.add(n)
        t0 = time.monotonic()
        for i in range(n):
            gr.go(one, wg, out, i)
        await wg.wait()
        took = time.monotonic() - t0
        return took, out, _scheduler.require().mcount

    took, out, mcount = grun(main, procs=procs, timeout=30)
    print(f"procs={procs}: {n} x syscall(time.sleep, 0.01) took {took:.3f}s, {mcount} Ms")
    assert sorted(out) == list(range(n))
    assert took < 1.0, f"{n} blocking calls of 10 ms took {took:.3f}s: they did not overlap"


# ------------------------------------------------------------------ fast path


def test_fast_path_costs_no_thread_switch() -> None:
    """A call that returns at once keeps its P: no hand-off, no new M."""

    async def main() -> tuple[int, int, int, int]:
        sched = _scheduler.require()
        total = 0
        for _ in range(1000):
            total += await gr.syscall(abs, -1)
        counts = sched.mcounters()
        return (total, counts["nsyscall"], counts["nsyscallslow"], len(sched.allm))

    # At the default switch interval (5 ms). The shake runs' 1 µs hands the
    # GIL to sysmon between entering and leaving the call, and a thread that
    # then waits 20 µs for it back is, to sysmon, in a slow call (2 of 1000
    # retaken once, procs 1-8 side by side on 2 cores).
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        total, nsyscall, nslow, nm = grun(main, procs=1)
    finally:
        sys.setswitchinterval(old)
    assert total == 1000
    assert nsyscall == 1000
    assert nslow == 0
    assert nm == 1


# ------------------------------------------------------------------ results and errors


def _raiser(msg: str) -> None:
    raise ValueError(msg)


def test_results_and_kwargs_come_back(procs: int) -> None:
    def f(a: int, b: int, *, c: int = 0) -> tuple[int, int, int]:
        time.sleep(0.01)
        return a, b, c

    async def main() -> list[Any]:
        return [
            await gr.syscall(f, 1, 2, c=3),
            await gr.syscall(f, 4, b=5),
            await gr.syscall(len, "abcd"),
            await gr.syscall(lambda: None),
        ]

    assert grun(main, procs=procs) == [(1, 2, 3), (4, 5, 0), 4, None]


def test_exception_comes_back_with_fn_frame(procs: int) -> None:
    async def main() -> tuple[str, str, list[str], str]:
        try:
            await gr.syscall(_raiser, "boom")
        except ValueError as e:
            names = [fs.name for fs in traceback.extract_tb(e.__traceback__)]
            caught = (type(e).__name__, str(e), names)
        else:
            raise AssertionError("no exception")
        # a slow call's exception too (the G may resume on another M)
        try:
            await gr.syscall(lambda: (time.sleep(0.05), _raiser("slow boom")))
        except ValueError as e:
            slow = str(e)
        return (*caught, slow)

    kind, msg, names, slow = grun(main, procs=procs)
    assert (kind, msg) == ("ValueError", "boom")
    assert "_raiser" in names
    assert "main" in names
    assert slow == "slow boom"


def test_uncaught_syscall_exception_reaches_run(procs: int) -> None:
    async def worker() -> None:
        await gr.syscall(_raiser, "from worker")

    async def main() -> None:
        gr.go(worker)
        await gr.Chan[int]().recv()

    with pytest.raises(ValueError, match="from worker") as ei:
        grun(main, procs=procs)
    assert "worker" in "\n".join(getattr(ei.value, "__notes__", []))


def test_base_exception_comes_back(procs: int) -> None:
    """KeyboardInterrupt/SystemExit from fn go to the goroutine, not the M."""

    def interrupt() -> None:
        raise KeyboardInterrupt("ki")

    async def main() -> str:
        try:
            await gr.syscall(interrupt)
        except KeyboardInterrupt as e:
            return f"caught {e}"
        return "no"

    assert grun(main, procs=procs) == "caught ki"


# ------------------------------------------------------------------ @gr.blocking


@gr.blocking
def slow_add(a: int, b: int = 0) -> int:
    """Add slowly."""
    time.sleep(0.01)
    return a + b


@gr.blocking
def slow_fail() -> None:
    raise OSError(5, "slow fail")


def test_blocking_decorator(procs: int) -> None:
    async def main() -> list[Any]:
        r = [await slow_add(1, 2), await slow_add(5, b=6)]
        try:
            await slow_fail()
        except OSError as e:
            r.append((e.errno, e.strerror))
        return r

    assert grun(main, procs=procs) == [3, 11, (5, "slow fail")]


def test_blocking_keeps_name_and_doc() -> None:
    assert slow_add.__name__ == "slow_add"
    assert slow_add.__qualname__ == "slow_add"
    assert slow_add.__doc__ == "Add slowly."
    assert slow_add.__module__ == __name__
    assert callable(getattr(slow_add, "__wrapped__", None))


def test_blocking_overlaps_like_syscall() -> None:
    """procs=1: 20 decorated 0.1 s calls take well under 20 x 0.1 s."""

    async def main() -> float:
        wg = gr.WaitGroup()
        wg.add(20)

        async def one() -> None:
            await slow_sleep(0.1)
            wg.done()

        t0 = time.monotonic()
        for _ in range(20):
            gr.go(one)
        await wg.wait()
        return time.monotonic() - t0

    slow_sleep = gr.blocking(time.sleep)
    took = grun(main, procs=1)
    assert took < 1.0


# ------------------------------------------------------------------ bad input


async def _async_fn() -> int:
    return 1


class _AsyncCallable:
    async def __call__(self) -> int:
        return 1


def test_syscall_rejects_non_callable_at_call_site() -> None:
    with pytest.raises(TypeError, match=r"syscall\(\) needs a callable, got 123"):
        gr.syscall(123)  # type: ignore[call-overload]


def test_syscall_rejects_async_function_naming_it() -> None:
    with pytest.raises(TypeError, match="_async_fn") as ei:
        gr.syscall(_async_fn)
    assert "async" in str(ei.value)


def test_blocking_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        gr.blocking("not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="_async_fn"):
        gr.blocking(_async_fn)


@pytest.mark.parametrize(
    "fn", [functools.partial(_async_fn), _AsyncCallable()], ids=["partial", "callable_obj"]
)
def test_syscall_rejects_other_async_callables(fn: Any) -> None:
    """Async callables without a ``__code__`` of their own: a partial of an
    async function, an object with ``async def __call__``. Calling one on an
    M would just return an un-awaited coroutine."""
    with pytest.raises(TypeError, match="async"):
        gr.syscall(fn)


def test_syscall_outside_goroutine_is_runtime_error() -> None:
    async def in_asyncio() -> int:
        return await gr.syscall(abs, -1)

    with pytest.raises(RuntimeError, match="not inside a goroutine"):
        asyncio.run(in_asyncio())


# ------------------------------------------------------------------ migration


def test_goroutine_migrates_between_threads(procs: int) -> None:
    """A goroutine alternating blocking calls and gosched while others churn
    runs on more than one OS thread over its life; its results are right."""
    rounds = 60

    def square_slowly(i: int) -> int:
        time.sleep(0.005)
        return i * i

    async def churn(stop: gr.Chan[None], counts: list[int]) -> None:
        n = 0
        while True:
            i, _ = await gr.select(stop.recv, gr.default)
            if i == 0:
                counts.append(n)
                return
            n += sum(range(200))
            await gr.gosched()

    async def mover(res: gr.Chan[tuple[set[int], int]]) -> None:
        seen = {threading.get_ident()}
        total = 0
        for i in range(rounds):
            total += await gr.syscall(square_slowly, i)
            seen.add(threading.get_ident())
            await gr.gosched()
            seen.add(threading.get_ident())
        await res.send((seen, total))

    async def main() -> tuple[set[int], int, list[int]]:
        stop: gr.Chan[None] = gr.Chan()
        res: gr.Chan[tuple[set[int], int]] = gr.Chan()
        counts: list[int] = []
        for _ in range(2 * procs):
            gr.go(churn, stop, counts)
        gr.go(mover, res)
        seen, total = await res.recv() or (set(), -1)
        stop.close()
        return seen, total, counts

    seen, total, _ = grun(main, procs=procs, timeout=20)
    assert total == sum(i * i for i in range(rounds))
    assert len(seen) > 1, "the goroutine never left its first thread"


# ------------------------------------------------------------------ deadlock detection


def test_no_false_deadlock_while_in_syscall(procs: int) -> None:
    async def sender(c: gr.Chan[str]) -> None:
        await gr.syscall(time.sleep, 0.2)
        await c.send("after syscall")

    async def main() -> str | None:
        c: gr.Chan[str] = gr.Chan()
        gr.go(sender, c)
        return await c.recv()  # the only other goroutine is in a syscall

    assert grun(main, procs=procs) == "after syscall"


def test_real_deadlock_after_syscalls_reported(procs: int) -> None:
    async def worker(c: gr.Chan[int]) -> None:
        for _ in range(5):
            await gr.syscall(time.sleep, 0.01)
        await c.send(1)
        await c.send(2)  # nobody receives the second

    async def main() -> None:
        c: gr.Chan[int] = gr.Chan()
        gr.go(worker, c)
        await c.recv()
        await gr.Chan[int]().recv()

    with pytest.raises(gr.Deadlock) as ei:
        grun(main, procs=procs)
    assert "all goroutines are asleep" in str(ei.value)
    assert "chan send" in str(ei.value)


# ------------------------------------------------------------------ threads


def test_maxthreads_exceeded_is_fatal() -> None:
    r = run_script(
        """
        import time
        import goroutines as gr

        async def sleeper(wg):
            await gr.syscall(time.sleep, 0.5)
            wg.done()

        async def main():
            wg = gr.WaitGroup()
            wg.add(50)
            for _ in range(50):
                gr.go(sleeper, wg)
            await wg.wait()
            print("finished", flush=True)

        gr.run(main, procs=2)
        """,
        {"GOROUTINES_MAXTHREADS": "5"},
    )
    assert r.returncode == 1, r.stderr
    assert "finished" not in r.stdout
    assert "RuntimeError" in r.stderr
    assert "5-thread limit" in r.stderr
    assert "GOROUTINES_MAXTHREADS" in r.stderr


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_maxthreads_bad_value(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    async def main() -> None:
        raise AssertionError("must not start")

    monkeypatch.setenv("GOROUTINES_MAXTHREADS", value)
    with pytest.raises(ValueError, match="GOROUTINES_MAXTHREADS") as ei:
        gr.run(main, procs=1)
    assert repr(value) in str(ei.value)
    monkeypatch.delenv("GOROUTINES_MAXTHREADS")
    assert _scheduler.current is None
    assert grun(_async_fn, procs=1) == 1  # nothing left behind


def test_maxthreads_limit_enough_threads_is_fine() -> None:
    r = run_script(
        """
        import time
        import goroutines as gr

        async def sleeper(wg):
            await gr.syscall(time.sleep, 0.02)
            wg.done()

        async def main():
            wg = gr.WaitGroup()
            wg.add(3)
            for _ in range(3):
                gr.go(sleeper, wg)
            await wg.wait()
            print("finished", flush=True)

        gr.run(main, procs=1)
        """,
        {"GOROUTINES_MAXTHREADS": "10"},
    )
    assert r.returncode == 0, r.stderr
    assert "finished" in r.stdout


def test_idle_ms_retire(procs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a burst of 50 concurrent blocking calls, the extra Ms exit once
    idle for IDLE_M_RETIRE (patched to 0.2 s)."""
    monkeypatch.setattr(_machine, "IDLE_M_RETIRE", 0.2)

    async def one(wg: gr.WaitGroup) -> None:
        await gr.syscall(time.sleep, 0.05)
        wg.done()

    async def main() -> tuple[int, int, float, int]:
        sched = _scheduler.require()
        wg = gr.WaitGroup()
        wg.add(50)
        for _ in range(50):
            gr.go(one, wg)
        await wg.wait()
        peak = sched.mcount
        t0 = time.monotonic()
        while sched.mcount > procs + 1 and time.monotonic() - t0 < 3.0:
            await gr.sleep(0.02)
        assert len(sched.mthreads) == len(sched.allm), "retired Ms' threads are kept"
        return peak, sched.mcount, time.monotonic() - t0, len(sched.allm)

    peak, after, took, allm = grun(main, procs=procs)
    print(f"procs={procs}: peak {peak} Ms, {after} after {took:.2f}s")
    assert peak > procs + 1, "the burst did not start extra Ms"
    assert after <= procs + 1
    assert took < 1.5
    assert allm == after, "retired Ms are still in sched.allm"
