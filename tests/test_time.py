"""Time (SPEC §2 time, §3 small print): sleep, after, tick, Timer, Ticker.

These tests measure real time, so every bound is loose: a lower bound that
the runtime must honour (never early) and a generous upper one.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import pytest

import goroutines as gr

SLACK = 0.25  # generous: CI machines stall


# -- sleep ---------------------------------------------------------------------------


@pytest.mark.parametrize("d", [0, 0.0, -1, -0.5, -math.inf])
def test_sleep_non_positive_returns_at_once(procs: int, d: float) -> None:
    async def main() -> float:
        t0 = time.monotonic()
        for _ in range(1000):
            await gr.sleep(d)
        return time.monotonic() - t0

    assert gr.run(main, procs=procs) < 0.5


@pytest.mark.parametrize("d", [0.001, 0.02, 0.1])
def test_sleep_duration(procs: int, d: float) -> None:
    async def main() -> float:
        t0 = time.monotonic()
        await gr.sleep(d)
        return time.monotonic() - t0

    elapsed = gr.run(main, procs=procs)
    assert d <= elapsed < d + SLACK


def test_many_concurrent_sleepers(procs: int) -> None:
    n = 1000

    async def main() -> tuple[float, int]:
        done: gr.Chan[None] = gr.Chan(n)
        late = 0

        async def sleeper(d: float) -> None:
            nonlocal late
            t0 = time.monotonic()
            await gr.sleep(d)
            if time.monotonic() - t0 < d:
                late += 1  # woke early: count it (a wrong timer heap)
            await done.send(None)

        t0 = time.monotonic()
        for _ in range(n):
            gr.go(sleeper, random.uniform(0, 0.05))
        for _ in range(n):
            await done.recv()
        return time.monotonic() - t0, late

    elapsed, early = gr.run(main, procs=procs)
    assert early == 0
    assert elapsed < 0.6  # they sleep concurrently, not one after another


def test_sleep_interleaves_in_deadline_order(procs: int) -> None:
    async def main() -> list[int]:
        out: gr.Chan[int] = gr.Chan(5)

        async def sleeper(k: int) -> None:
            await gr.sleep(0.02 * k)
            await out.send(k)

        for k in (4, 1, 3, 0, 2):
            gr.go(sleeper, k)
        return [await out.recv() for _ in range(5)]  # type: ignore[misc]

    assert gr.run(main, procs=procs) == [0, 1, 2, 3, 4]


def test_sleeping_goroutine_is_not_a_deadlock(procs: int) -> None:
    async def main() -> str:
        ch: gr.Chan[str] = gr.Chan()

        async def late() -> None:
            await gr.sleep(0.05)
            await ch.send("woke")

        gr.go(late)
        v = await ch.recv()  # every other G is asleep on a timer: not a deadlock
        assert v is not None
        return v

    assert gr.run(main, procs=procs) == "woke"


def test_main_sleeping_alone_is_not_a_deadlock(procs: int) -> None:
    async def main() -> int:
        await gr.sleep(0.02)
        return 1

    assert gr.run(main, procs=procs) == 1


def test_timer_fires_on_idle_p_while_another_goroutine_computes() -> None:
    # Four Ps, one busy with a goroutine that never yields: a sleeper's timer
    # is work another M can take (Go's wakeNetPoller on timer add), so it
    # must wake on time, not when the busy goroutine next parks.
    async def main() -> float | None:
        woke: list[float] = []
        t0 = time.monotonic()

        async def sleeper() -> None:
            await gr.sleep(0.01)
            woke.append(time.monotonic() - t0)

        gr.go(sleeper)
        await gr.gosched()  # the sleeper runs and parks on its timer
        while not woke and time.monotonic() - t0 < 1.0:
            pass  # CPU-bound: no await
        return woke[0] if woke else None

    woke_at = gr.run(main, procs=4)
    assert woke_at is not None, "the sleeper never woke while main computed"
    assert woke_at < 0.01 + SLACK


def test_idle_runtime_burns_little_cpu(procs: int) -> None:
    async def main() -> float:
        gr.go(gr.Chan().recv)  # a parked goroutine too
        c0 = time.process_time()
        await gr.sleep(0.5)
        return time.process_time() - c0

    assert gr.run(main, procs=procs) < 0.2


# -- after / tick --------------------------------------------------------------------------


def test_after_delivers_monotonic_time_once(procs: int) -> None:
    async def main() -> None:
        t0 = time.monotonic()
        c = gr.after(0.03)
        v = await c.recv()
        now = time.monotonic()
        assert isinstance(v, float)
        assert t0 + 0.03 <= v <= now
        await gr.sleep(0.06)
        assert await gr.select(c.recv, gr.default) == (1, None)  # only once

    gr.run(main, procs=procs)


def test_after_zero_fires(procs: int) -> None:
    async def main() -> float | None:
        return await gr.after(0).recv()

    assert isinstance(gr.run(main, procs=procs), float)


def test_after_as_select_timeout(procs: int) -> None:
    async def main() -> tuple[int, float]:
        never: gr.Chan[int] = gr.Chan()
        t0 = time.monotonic()
        i, _ = await gr.select(never.recv, gr.after(0.03))
        return i, time.monotonic() - t0

    # A Chan is not a case: the timeout idiom is gr.after(d).recv.
    with pytest.raises(TypeError, match="case 1"):
        gr.run(main, procs=procs)

    async def main2() -> tuple[int, float]:
        never: gr.Chan[int] = gr.Chan()
        t0 = time.monotonic()
        i, _ = await gr.select(never.recv, gr.after(0.03).recv)
        return i, time.monotonic() - t0

    i, elapsed = gr.run(main2, procs=procs)
    assert i == 1
    assert 0.03 <= elapsed < 0.03 + SLACK


def test_tick_delivers_repeatedly(procs: int) -> None:
    async def main() -> list[float]:
        c = gr.tick(0.01)
        return [v for v in [await c.recv() for _ in range(5)] if v is not None]

    ticks = gr.run(main, procs=procs)
    assert len(ticks) == 5
    assert ticks == sorted(ticks) and len(set(ticks)) == 5


def test_ticker_period_and_stop(procs: int) -> None:
    async def main() -> None:
        t0 = time.monotonic()
        k = gr.Ticker(0.02)
        ticks = [await k.c.recv() for _ in range(4)]
        elapsed = time.monotonic() - t0
        assert 4 * 0.02 <= elapsed < 4 * 0.02 + SLACK
        assert all(isinstance(v, float) for v in ticks)
        k.stop()
        # No tick after stop: not even one fired just before and buffered.
        await gr.sleep(0.07)
        assert await gr.select(k.c.recv, gr.default) == (1, None)

    gr.run(main, procs=procs)


def test_ticker_drops_ticks_for_a_slow_reader(procs: int) -> None:
    async def main() -> int:
        k = gr.Ticker(0.005)
        await gr.sleep(0.06)  # a dozen periods
        n = 0
        while (await gr.select(k.c.recv, gr.default))[0] == 0:
            n += 1
        k.stop()
        return n

    assert gr.run(main, procs=procs) == 1  # capacity 1: the rest were dropped


def test_ticker_reset_changes_period(procs: int) -> None:
    async def main() -> float:
        k = gr.Ticker(10)
        t0 = time.monotonic()
        k.reset(0.02)
        await k.c.recv()
        await k.c.recv()
        k.stop()
        return time.monotonic() - t0

    elapsed = gr.run(main, procs=procs)
    assert 0.04 <= elapsed < 0.04 + SLACK


def test_stopped_ticker_is_no_reason_to_stay_alive(procs: int) -> None:
    # With the ticker stopped no timer is armed: waiting on it is a deadlock,
    # reported at once rather than when the period would have elapsed.
    async def main() -> None:
        k = gr.Ticker(5)
        k.stop()
        await k.c.recv()

    t0 = time.monotonic()
    with pytest.raises(gr.Deadlock):
        gr.run(main, procs=procs)
    assert time.monotonic() - t0 < 2


# -- Timer -----------------------------------------------------------------------------------


def test_timer_fires_once(procs: int) -> None:
    async def main() -> None:
        t0 = time.monotonic()
        t = gr.Timer(0.02)
        v = await t.c.recv()
        assert isinstance(v, float) and v >= t0 + 0.02
        await gr.sleep(0.04)
        assert await gr.select(t.c.recv, gr.default) == (1, None)

    gr.run(main, procs=procs)


def test_timer_stop_returns_true_while_pending(procs: int) -> None:
    async def main() -> None:
        t = gr.Timer(0.03)
        assert t.stop() is True
        assert t.stop() is False  # already stopped
        await gr.sleep(0.06)
        assert await gr.select(t.c.recv, gr.default) == (1, None)  # never fires

    gr.run(main, procs=procs)


def test_timer_stop_returns_false_once_fired_and_received(procs: int) -> None:
    async def main() -> None:
        t = gr.Timer(0.01)
        await t.c.recv()
        assert t.stop() is False

    gr.run(main, procs=procs)


def test_timer_stop_after_unreceived_fire_go123(procs: int) -> None:
    # Go 1.23: Stop drains a value nobody has received, and then returns true
    # ("if the program has not received from t.C already ... Stop is
    # guaranteed to return true"), so the old idiom
    #     if !t.Stop() { <-t.C }
    # never blocks forever.
    async def main() -> tuple[bool, tuple[int, Any]]:
        t = gr.Timer(0.01)
        await gr.sleep(0.05)  # fired; the value is waiting in t.c
        stopped = t.stop()
        return stopped, await gr.select(t.c.recv, gr.default)

    stopped, after = gr.run(main, procs=procs)
    assert after == (1, None)  # no stale value after stop
    assert stopped is True, "Timer.stop() drained an unreceived value but returned False"


def test_timer_reset_after_unreceived_fire_go123(procs: int) -> None:
    async def main() -> tuple[bool, float, float]:
        t = gr.Timer(0.01)
        await gr.sleep(0.05)  # fired; the value is waiting in t.c
        t0 = time.monotonic()
        was = t.reset(0.02)
        v = await t.c.recv()  # the new firing, not the stale one
        assert v is not None
        return was, t0, v

    was, t0, v = gr.run(main, procs=procs)
    assert v >= t0 + 0.02, "received a stale value from before reset()"
    assert was is True, "Timer.reset() drained an unreceived value but returned False"


def test_timer_reset_while_pending_returns_true_and_rearms(procs: int) -> None:
    async def main() -> tuple[bool, float, float]:
        t = gr.Timer(10)
        t0 = time.monotonic()
        was = t.reset(0.02)
        v = await t.c.recv()
        assert v is not None
        return was, t0, v

    was, t0, v = gr.run(main, procs=procs)
    assert was is True
    assert t0 + 0.02 <= v < t0 + 0.02 + SLACK


def test_timer_reset_after_received_returns_false_and_fires_again(procs: int) -> None:
    async def main() -> None:
        t = gr.Timer(0.01)
        first = await t.c.recv()
        assert first is not None
        assert t.reset(0.01) is False
        second = await t.c.recv()
        assert second is not None and second >= first + 0.01
        t.stop()
        assert t.reset(0.01) is False  # stopped is not active either
        assert await t.c.recv() is not None

    gr.run(main, procs=procs)


def test_timer_reset_later_postpones(procs: int) -> None:
    async def main() -> None:
        t = gr.Timer(0.02)
        t0 = time.monotonic()
        assert t.reset(0.08) is True
        v = await t.c.recv()
        assert v is not None and v >= t0 + 0.08

    gr.run(main, procs=procs)


def test_timer_zero_fires(procs: int) -> None:
    async def main() -> float | None:
        return await gr.Timer(0).c.recv()

    assert isinstance(gr.run(main, procs=procs), float)


def test_many_stopped_timers_do_not_fire(procs: int) -> None:
    async def main() -> int:
        timers = [gr.Timer(0.02) for _ in range(500)]
        assert all(t.stop() for t in timers)
        await gr.sleep(0.05)
        fired = 0
        for t in timers:
            i, _ = await gr.select(t.c.recv, gr.default)
            fired += i == 0
        return fired

    assert gr.run(main, procs=procs) == 0


def test_sleepers_and_timers_share_the_heap(procs: int) -> None:
    """Sleeping Gs are heap entries of their own (no Timer): they fire in
    the same passes as Timers, Tickers and stale entries, and survive the
    heap rebuild that stopped Timers trigger."""

    async def main() -> tuple[int, int, int, int]:
        n = 300
        done: gr.Chan[int] = gr.Chan(n)
        early = 0

        async def sleeper(d: float) -> None:
            nonlocal early
            t0 = time.monotonic()
            await gr.sleep(d)
            early += time.monotonic() - t0 < d
            await done.send(1)

        async def waiter(d: float) -> None:
            nonlocal early
            t0 = time.monotonic()
            await gr.after(d).recv()
            early += time.monotonic() - t0 < d
            await done.send(1)

        ticker = gr.Ticker(0.003)
        for i in range(n):
            gr.go(sleeper if i % 2 else waiter, random.uniform(0.03, 0.08))
        await gr.sleep(0.01)  # all of them parked
        for _ in range(n + 100):
            # Stale entries, more than half of the heap: it is rebuilt.
            assert gr.Timer(1.0).stop()
        got = 0
        give_up = gr.after(5.0)  # fail rather than hang if sleepers were lost
        for _ in range(n):
            i, _ = await gr.select(done.recv, give_up.recv)
            if i == 1:
                break
            got += 1
        ticks = 0
        while (await gr.select(ticker.c.recv, gr.default))[0] == 0:
            ticks += 1
        ticker.stop()
        await gr.sleep(0.01)
        stale = 0
        while (await gr.select(ticker.c.recv, gr.default))[0] == 0:
            stale += 1
        return got, early, ticks, stale

    got, early, ticks, stale = gr.run(main, procs=procs)
    assert (got, early, stale) == (300, 0, 0)
    assert ticks <= 1  # capacity 1: the ticks missed meanwhile are dropped


def test_sleeps_between_channel_operations(procs: int) -> None:
    """A sleep passes its wake-up time to the timer heap in the G's ``elem``,
    which channel operations use too."""

    async def main() -> list[int]:
        ch: gr.Chan[int] = gr.Chan()
        out: list[int] = []

        async def producer() -> None:
            for i in range(20):
                await gr.sleep(0.0005)
                await ch.send(i)
            ch.close()

        gr.go(producer)
        async for v in ch:
            out.append(v)
            await gr.sleep(0.0005)
        return out

    assert gr.run(main, procs=procs) == list(range(20))


class _Seconds(float):
    pass


def test_sleep_takes_ints_and_float_subclasses(procs: int) -> None:
    async def main() -> float:
        t0 = time.monotonic()
        await gr.sleep(0)
        await gr.sleep(_Seconds(0.02))
        return time.monotonic() - t0

    assert 0.02 <= gr.run(main, procs=procs) < 0.02 + SLACK


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "exc", "pattern"),
    [
        (lambda: gr.Timer(-1), ValueError, r"Timer.*-1"),
        (lambda: gr.Timer(math.nan), ValueError, r"Timer.*NaN"),
        (lambda: gr.Ticker(0), ValueError, r"Ticker.*> 0"),
        (lambda: gr.Ticker(-0.5), ValueError, r"Ticker.*-0.5"),
        (lambda: gr.tick(0), ValueError, r"^tick: .*> 0"),
        (lambda: gr.after(-1), ValueError, r"^after: .*-1"),
        (lambda: gr.Timer("1"), TypeError, r"Timer.*number.*str"),  # type: ignore[arg-type]
        (lambda: gr.Ticker(None), TypeError, r"Ticker.*number.*NoneType"),  # type: ignore[arg-type]
        (lambda: gr.after(True), TypeError, r"number.*bool"),
        (lambda: gr.Timer(1).reset(-1), ValueError, r"reset.*-1"),
        (lambda: gr.Timer(1).reset("x"), TypeError, r"reset.*str"),  # type: ignore[arg-type]
        (lambda: gr.Ticker(1).reset(0), ValueError, r"reset.*> 0"),
    ],
)
def test_bad_durations(procs: int, make: Any, exc: type[Exception], pattern: str) -> None:
    async def main() -> None:
        with pytest.raises(exc, match=pattern):
            make()

    gr.run(main, procs=procs)


@pytest.mark.parametrize(
    ("d", "exc"),
    [("0.1", TypeError), (None, TypeError), (True, TypeError), (math.nan, ValueError)],
)
def test_bad_sleep(procs: int, d: Any, exc: type[Exception]) -> None:
    async def main() -> None:
        with pytest.raises(exc, match="sleep"):
            await gr.sleep(d)

    gr.run(main, procs=procs)


def test_timer_outside_runtime_is_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"gr\.run"):
        gr.Timer(1)
