"""Time (SPEC §2 time, §3 small print): sleep, after, tick, Timer, Ticker.

Most tests run in a bubble (``@pytest.mark.goroutines(fake_clock=True)``,
at procs 1 and 4 through conftest's ``goroutines_procs``): the virtual
clock jumps from timer to timer, so every time is exact (a sleep of d
wakes at exactly ``t0 + d``, never early nor late) and an hour costs
nothing. The few tests marked "real clock" check what only real time can
show: that the OS wait behind a sleep is never short, a timer firing while
a goroutine computes, CPU use while idle; their bounds are loose (a lower
bound that the runtime must honour and a generous upper one).
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
    # real clock: "at once" means no timer, not even one already due
    async def main() -> float:
        t0 = time.monotonic()
        for _ in range(1000):
            await gr.sleep(d)
        return time.monotonic() - t0

    assert gr.run(main, procs=procs) < 0.5


@pytest.mark.parametrize("d", [0.001, 0.02, 0.1])
def test_sleep_lasts_at_least_its_duration_in_real_time(procs: int, d: float) -> None:
    # real clock: the OS wait behind a sleep is never short
    async def main() -> float:
        t0 = time.monotonic()
        await gr.sleep(d)
        return time.monotonic() - t0

    elapsed = gr.run(main, procs=procs)
    assert d <= elapsed < d + SLACK


@pytest.mark.goroutines(fake_clock=True)
@pytest.mark.parametrize("d", [0.001, 0.02, 0.1, 1, 3600, 1e9])
async def test_sleep_duration(d: float) -> None:
    t0 = gr.monotonic()
    await gr.sleep(d)
    assert gr.monotonic() == t0 + d


@pytest.mark.goroutines(fake_clock=True)
async def test_many_concurrent_sleepers() -> None:
    n = 1000
    done: gr.Chan[None] = gr.Chan(n)
    wrong = 0

    async def sleeper(d: float) -> None:
        nonlocal wrong
        due = gr.monotonic() + d
        await gr.sleep(d)
        if gr.monotonic() != due:
            wrong += 1  # woke early or late: a wrong timer heap
        await done.send(None)

    t0 = gr.monotonic()
    ds = [random.uniform(0, 0.05) for _ in range(n)]
    for d in ds:
        gr.go(sleeper, d)
    for _ in range(n):
        await done.recv()
    assert wrong == 0
    # They slept concurrently, not one after another: done at the longest.
    assert gr.monotonic() == t0 + max(ds)


@pytest.mark.goroutines(fake_clock=True)
async def test_sleep_interleaves_in_deadline_order() -> None:
    out: gr.Chan[int] = gr.Chan(5)

    async def sleeper(k: int) -> None:
        await gr.sleep(0.02 * k)
        await out.send(k)

    for k in (4, 1, 3, 0, 2):
        gr.go(sleeper, k)
    assert [await out.recv() for _ in range(5)] == [0, 1, 2, 3, 4]


@pytest.mark.goroutines(fake_clock=True)
async def test_sleeping_goroutine_is_not_a_deadlock() -> None:
    ch: gr.Chan[str] = gr.Chan()

    async def late() -> None:
        await gr.sleep(0.05)
        await ch.send("woke")

    gr.go(late)
    # every other G is asleep on a timer: not a deadlock
    assert await ch.recv() == "woke"


@pytest.mark.goroutines(fake_clock=True)
async def test_main_sleeping_alone_is_not_a_deadlock() -> None:
    await gr.sleep(0.02)


def test_timer_fires_on_idle_p_while_another_goroutine_computes() -> None:
    # real clock: a goroutine computing holds its P in real time.
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
    # real clock: CPU used while a real half second passes
    async def main() -> float:
        gr.go(gr.Chan().recv)  # a parked goroutine too
        c0 = time.process_time()
        await gr.sleep(0.5)
        return time.process_time() - c0

    assert gr.run(main, procs=procs) < 0.2


# -- after / tick --------------------------------------------------------------------------


@pytest.mark.goroutines(fake_clock=True)
async def test_after_delivers_monotonic_time_once() -> None:
    t0 = gr.monotonic()
    c = gr.after(0.03)
    v = await c.recv()
    assert isinstance(v, float)
    assert v == t0 + 0.03 == gr.monotonic()
    await gr.sleep(0.06)
    assert await gr.select(c.recv, gr.default) == (1, None)  # only once


@pytest.mark.goroutines(fake_clock=True)
async def test_after_zero_fires() -> None:
    t0 = gr.monotonic()
    assert await gr.after(0).recv() == t0


@pytest.mark.goroutines(fake_clock=True)
async def test_after_as_select_timeout() -> None:
    never: gr.Chan[int] = gr.Chan()
    # A Chan is not a case: the timeout idiom is gr.after(d).recv.
    with pytest.raises(TypeError, match="case 1"):
        await gr.select(never.recv, gr.after(0.03))  # type: ignore[arg-type]
    t0 = gr.monotonic()
    i, v = await gr.select(never.recv, gr.after(0.03).recv)
    assert i == 1
    assert v == gr.monotonic() == t0 + 0.03


@pytest.mark.goroutines(fake_clock=True)
async def test_tick_delivers_repeatedly() -> None:
    t0 = gr.monotonic()
    c = gr.tick(0.25)
    ticks = [await c.recv() for _ in range(5)]
    assert ticks == [t0 + 0.25 * k for k in range(1, 6)]


@pytest.mark.goroutines(fake_clock=True)
async def test_ticker_period_and_stop() -> None:
    t0 = gr.monotonic()
    k = gr.Ticker(0.5)
    ticks = [await k.c.recv() for _ in range(4)]
    assert ticks == [t0 + 0.5 * i for i in range(1, 5)]
    assert gr.monotonic() == t0 + 2.0
    k.stop()
    # No tick after stop: not even one fired just before and buffered.
    await gr.sleep(1.75)
    assert await gr.select(k.c.recv, gr.default) == (1, None)


@pytest.mark.goroutines(fake_clock=True)
async def test_ticker_drops_ticks_for_a_slow_reader() -> None:
    t0 = gr.monotonic()
    k = gr.Ticker(0.5)
    await gr.sleep(6.25)  # a dozen periods
    n = 0
    got = []
    while (r := await gr.select(k.c.recv, gr.default))[0] == 0:
        n += 1
        got.append(r[1])
    k.stop()
    assert n == 1  # capacity 1: the rest were dropped
    assert got == [t0 + 0.5]  # the first tick, kept in the buffer


@pytest.mark.goroutines(fake_clock=True)
async def test_ticker_reset_changes_period() -> None:
    k = gr.Ticker(10)
    t0 = gr.monotonic()
    k.reset(0.25)
    assert await k.c.recv() == t0 + 0.25
    assert await k.c.recv() == t0 + 0.5
    k.stop()


def test_stopped_ticker_is_no_reason_to_stay_alive(procs: int) -> None:
    # real clock: the deadlock is reported in real time, not when the
    # period would have elapsed.
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
    with pytest.raises(gr.Deadlock):  # in a bubble too
        gr.testing.run(main, procs=procs)


# -- Timer -----------------------------------------------------------------------------------


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_fires_once() -> None:
    t0 = gr.monotonic()
    t = gr.Timer(0.02)
    assert await t.c.recv() == t0 + 0.02
    await gr.sleep(0.04)
    assert await gr.select(t.c.recv, gr.default) == (1, None)


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_stop_returns_true_while_pending() -> None:
    t = gr.Timer(0.03)
    assert t.stop() is True
    assert t.stop() is False  # already stopped
    await gr.sleep(0.06)
    assert await gr.select(t.c.recv, gr.default) == (1, None)  # never fires


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_stop_returns_false_once_fired_and_received() -> None:
    t = gr.Timer(0.01)
    await t.c.recv()
    assert t.stop() is False


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_stop_after_unreceived_fire_go123() -> None:
    # Go 1.23: Stop drains a value nobody has received, and then returns true
    # ("if the program has not received from t.C already ... Stop is
    # guaranteed to return true"), so the old idiom
    #     if !t.Stop() { <-t.C }
    # never blocks forever.
    t = gr.Timer(0.01)
    await gr.sleep(0.05)  # fired; the value is waiting in t.c
    stopped = t.stop()
    assert await gr.select(t.c.recv, gr.default) == (1, None)  # no stale value after stop
    assert stopped is True, "Timer.stop() drained an unreceived value but returned False"


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_reset_after_unreceived_fire_go123() -> None:
    t = gr.Timer(0.01)
    await gr.sleep(0.05)  # fired; the value is waiting in t.c
    t0 = gr.monotonic()
    was = t.reset(0.02)
    v = await t.c.recv()  # the new firing, not the stale one
    assert v == t0 + 0.02, "received a stale value from before reset()"
    assert was is True, "Timer.reset() drained an unreceived value but returned False"


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_reset_while_pending_returns_true_and_rearms() -> None:
    t = gr.Timer(10)
    t0 = gr.monotonic()
    assert t.reset(0.02) is True
    assert await t.c.recv() == t0 + 0.02


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_reset_after_received_returns_false_and_fires_again() -> None:
    t = gr.Timer(0.01)
    first = await t.c.recv()
    assert first is not None
    assert t.reset(0.01) is False
    assert await t.c.recv() == first + 0.01
    t.stop()
    assert t.reset(0.01) is False  # stopped is not active either
    assert await t.c.recv() is not None


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_reset_later_postpones() -> None:
    t = gr.Timer(0.02)
    t0 = gr.monotonic()
    assert t.reset(0.08) is True
    assert await t.c.recv() == t0 + 0.08


@pytest.mark.goroutines(fake_clock=True)
async def test_timer_zero_fires() -> None:
    t0 = gr.monotonic()
    assert await gr.Timer(0).c.recv() == t0


@pytest.mark.goroutines(fake_clock=True)
async def test_many_stopped_timers_do_not_fire() -> None:
    timers = [gr.Timer(0.02) for _ in range(500)]
    assert all(t.stop() for t in timers)
    await gr.sleep(0.05)
    fired = 0
    for t in timers:
        i, _ = await gr.select(t.c.recv, gr.default)
        fired += i == 0
    assert fired == 0


@pytest.mark.goroutines(fake_clock=True)
async def test_sleepers_and_timers_share_the_heap() -> None:
    """Sleeping Gs are heap entries of their own (no Timer): they fire in
    the same passes as Timers, Tickers and stale entries, and survive the
    heap rebuild that stopped Timers trigger."""
    n = 300
    done: gr.Chan[int] = gr.Chan(n)
    wrong = 0

    async def sleeper(d: float) -> None:
        nonlocal wrong
        due = gr.monotonic() + d
        await gr.sleep(d)
        wrong += gr.monotonic() != due
        await done.send(1)

    async def waiter(d: float) -> None:
        nonlocal wrong
        due = gr.monotonic() + d
        wrong += await gr.after(d).recv() != due
        await done.send(1)

    ticker = gr.Ticker(0.003)
    for i in range(n):
        gr.go(sleeper if i % 2 else waiter, random.uniform(0.03, 0.08))
    await gr.testing.wait()  # all of them parked
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
    assert (got, wrong, stale) == (300, 0, 0)
    assert ticks <= 1  # capacity 1: the ticks missed meanwhile are dropped


@pytest.mark.goroutines(fake_clock=True)
async def test_sleeps_between_channel_operations() -> None:
    """A sleep passes its wake-up time to the timer heap in the G's ``elem``,
    which channel operations use too."""
    ch: gr.Chan[int] = gr.Chan()
    out: list[int] = []
    t0 = gr.monotonic()

    async def producer() -> None:
        for i in range(20):
            await gr.sleep(0.5)
            await ch.send(i)
        ch.close()

    gr.go(producer)
    async for v in ch:
        out.append(v)
        await gr.sleep(0.5)
    assert out == list(range(20))
    assert gr.monotonic() == t0 + 20 * 0.5 + 0.5  # each sleep of each side overlaps


class _Seconds(float):
    pass


@pytest.mark.goroutines(fake_clock=True)
async def test_sleep_takes_ints_and_float_subclasses() -> None:
    t0 = gr.monotonic()
    await gr.sleep(0)
    await gr.sleep(_Seconds(0.25))
    await gr.sleep(2)
    assert gr.monotonic() == t0 + 2.25


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


# -- after_func ------------------------------------------------------------------------------


@pytest.mark.goroutines(fake_clock=True)
async def test_after_func_calls_in_a_goroutine_of_its_own() -> None:
    out: gr.Chan[tuple[float, int]] = gr.Chan(1)
    me = gr.goroutine_id()

    async def call(x: int) -> None:
        assert gr.goroutine_id() != me
        await out.send((gr.monotonic(), x))

    t0 = gr.monotonic()
    t = gr.after_func(5, call, 42)
    assert isinstance(t, gr.Timer)
    assert await out.recv() == (t0 + 5, 42)
    assert t.stop() is False  # already called


@pytest.mark.goroutines(fake_clock=True)
async def test_after_func_stop_cancels_and_reset_rearms() -> None:
    calls: list[float] = []

    async def call() -> None:
        calls.append(gr.monotonic())

    t0 = gr.monotonic()
    t = gr.after_func(5, call)
    await gr.sleep(1)
    assert t.stop() is True  # stopped before the call
    await gr.sleep(10)
    assert calls == []
    assert t.reset(2) is False  # it was not active
    await gr.sleep(3)
    assert calls == [t0 + 11 + 2]
    assert t.reset(1) is False
    await gr.sleep(1)
    await gr.testing.wait()
    assert calls == [t0 + 13, t0 + 15]
    with pytest.raises(TypeError, match="after_func needs an async function"):
        gr.after_func(1, print)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after_func"):
        gr.after_func(-1, call)
