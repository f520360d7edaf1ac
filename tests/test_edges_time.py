"""Trust at the edges, for time: timers racing their firing, far timers,
durations a float cannot hold, and runtime-bound objects outliving a run.

- ``Timer.stop``/``reset`` (and ``Ticker``'s) are one linearizable step with
  Go 1.23's contract: after they return no stale value is received, and the
  return value is exact (True iff the timer was armed or its value was
  still unreceived). White-box tests widen the windows in which the old
  two-step implementation gave wrong answers; black-box stresses race
  ``stop``/``reset`` against the firing with a tiny switch interval.
- A timer far in the future never makes an OS wait overflow (epoll's limit
  is 2**31 ms, a lock's ``threading.TIMEOUT_MAX``): the waits are capped.
  (In a bubble, on the virtual clock, far timers simply fire.)

These tests stay on the real clock, except the bubble's far timers: the
races need real firings during ``stop``/``reset``, and the far-timer and
cap tests are about the OS waits themselves.
- An int too large for a float is a ValueError naming the call.
- A Timer, Ticker, ``with_timeout`` context or socket made in one ``run()``
  and used, still live, in a later one raises RuntimeError naming its run.
"""

from __future__ import annotations

import math
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import goroutines as gr
from goroutines import _time, net
from goroutines._context import background, with_cancel, with_deadline, with_timeout, with_value
from goroutines._errors import Canceled, DeadlineExceeded
from goroutines._runtime import _scheduler, _timers
from helpers import grun

DAY = 86400.0
YEAR = 365.25 * DAY


@pytest.fixture
def tiny_switch() -> Iterator[None]:
    """``sys.setswitchinterval(1e-6)``: threads switch as often as they can."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def ended(n: int) -> str:
    """The regex of the error for an object of the ended run ``n``."""
    return rf"goroutines run #{n}\b.*which has ended"


# -- 1. stop/reset racing the firing: white-box ---------------------------------------


@pytest.mark.parametrize("op", ["stop", "reset"])
def test_firing_inside_stop_is_not_lost(
    procs: int, op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """White-box: the timer fires while ``stop()``/``reset()`` is under way.

    The window is widened by a delay at the start of ``Timers.stop``/
    ``Timers.reset`` (the runtime half of the call), during which a plain
    thread fires the due timer through ``Timers.run_due``. The old
    implementation did the call in two critical sections (the generation
    bump under the channel's lock, then the disarm under ``Timers.lock``):
    the firing landing between them was dropped as stale, and then the
    disarm found nothing armed, so ``stop()`` returned False though no
    value was ever delivered (``if not t.stop(): await t.c.recv()`` hangs).
    Now the whole call holds the channel's lock, so the firing waits for it
    and is dropped, and the call answers True (the timer was armed).
    """
    orig = getattr(_timers.Timers, op)
    target: list[Any] = []
    firers: list[threading.Thread] = []

    def widened(self: _timers.Timers, t: _timers.Timer, *args: Any, **kwargs: Any) -> Any:
        if target and t is target[0]:
            target.clear()

            def fire_when_due() -> None:
                while time.monotonic() < t.when + 0.002:
                    time.sleep(0.001)
                self.run_due()

            th = threading.Thread(target=fire_when_due)
            th.start()
            firers.append(th)
            th.join(0.3)  # the old code: done; the new: blocked on the channel's lock
        return orig(self, t, *args, **kwargs)

    monkeypatch.setattr(_timers.Timers, op, widened)

    async def main() -> tuple[Any, tuple[int, Any], float]:
        t = gr.Timer(0.02)
        target.append(t._t)
        t0 = time.monotonic()
        was = t.stop() if op == "stop" else t.reset(0.1)
        # stop: nothing may come; reset: only the new firing, >= t0 + 0.1.
        got = await gr.select(t.c.recv, gr.after(0.5).recv)
        return was, got, t0

    was, (i, v), t0 = grun(main, procs=procs)
    for th in firers:
        th.join(5)
    assert firers, "the window was never entered"
    assert was is True, f"{op}() returned {was} though the timer never delivered a value"
    if op == "stop":
        assert i == 1, "a value came after stop() returned True"
    else:
        assert i == 0, "reset() did not re-arm the timer"
        assert v >= t0 + 0.1, "received a stale value from before reset()"


@pytest.mark.parametrize("op", ["stop", "reset"])
def test_received_value_is_not_reported_pending(
    procs: int, op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """White-box: between the firing and ``run_due``'s bookkeeping after it.

    ``_time._fire`` (the callback ``run_due`` calls for a popped Timer) is
    wrapped: after it has delivered the value, and before ``run_due`` is
    back, a receiver takes the value and ``stop()``/``reset()`` is called.
    The old implementation counted a firing as pending until ``run_due``
    was done with it (the ``firing`` count), so ``stop()`` returned True
    although the value had been received. Now the answer comes from the
    timer's state under the channel's lock: delivered and received, False.
    """
    orig = _time._fire
    seen: list[tuple[int, Any, Any]] = []

    def fire_then_receive_and_call(arg: Any) -> None:
        orig(arg)
        owner = arg[0]
        c = owner.c
        with c.lock:
            state, v, _ = c.try_recv_locked()  # a receiver takes the value
        r = owner.stop() if op == "stop" else owner.reset(10.0)
        seen.append((state, v, r))

    monkeypatch.setattr(_time, "_fire", fire_then_receive_and_call)

    async def main() -> None:
        t = gr.Timer(0.005)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            await gr.sleep(0.002)
        t.stop()

    grun(main, procs=procs)
    assert seen, "the timer never fired"
    _, v, r = seen[0]
    assert isinstance(v, float), "the receiver got no value"
    assert r is False, f"{op}() returned True though the value had been received"


@pytest.mark.parametrize("kind", ["Timer", "Ticker"])
def test_concurrent_resets_leave_the_timer_armed(
    procs: int, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """White-box: two ``reset()`` calls overlap (from plain threads).

    A delay at the start of ``Timers.reset`` for A's call widens the
    window. The old implementation bumped the generation first (A: 1, then
    B: 2) and armed the runtime timer after (B with 2, then A with 1,
    replacing B's arming before it fired): the timer was left armed with a
    stale generation, and its firing was dropped, so it never fired. Now
    each reset is one step under the channel's lock.
    """
    orig = _timers.Timers.reset
    first = [True]

    def widened(self: _timers.Timers, t: _timers.Timer, *args: Any, **kwargs: Any) -> Any:
        if first[0] and threading.current_thread().name == "reset-A":
            first[0] = False
            time.sleep(0.1)
        return orig(self, t, *args, **kwargs)

    monkeypatch.setattr(_timers.Timers, "reset", widened)

    async def main() -> int:
        t: Any = gr.Timer(10) if kind == "Timer" else gr.Ticker(10)
        a = threading.Thread(target=t.reset, args=(0.01,), name="reset-A")
        # B's firing must not come before A's stale arming replaces it.
        b = threading.Thread(target=t.reset, args=(0.2,), name="reset-B")
        a.start()
        await gr.syscall(time.sleep, 0.03)
        b.start()
        await gr.syscall(a.join)
        await gr.syscall(b.join)
        i, _ = await gr.select(t.c.recv, gr.after(2.0).recv)
        t.stop()
        return i

    assert grun(main, procs=procs) == 0, f"the {kind} never fired after two resets"
    assert not first[0], "the window was never entered"


# -- 1. stop/reset racing the firing: black-box stress --------------------------------


@pytest.mark.stress
def test_stop_racing_the_firing(procs: int, tiny_switch: None) -> None:
    """``if not t.stop(): await t.c.recv()`` never hangs; a True ``stop()`` is
    never followed by a value, and with a receiver it is exact: True iff
    the receiver did not get the value."""

    async def trial(k: int, out: gr.Chan[str | None]) -> None:
        # Half of them stop exactly when the timer is due: the timer and the
        # sleep come out of the heap in the same pass, the firing first.
        d = 0.002 if k % 4 < 2 else random.uniform(0, 0.002)
        t = gr.Timer(d)
        got: gr.Chan[bool] = gr.Chan(1)
        quit_: gr.Chan[None] = gr.Chan()
        with_receiver = k % 2 == 0

        async def receiver() -> None:
            i, _ = await gr.select(t.c.recv, quit_.recv)
            await got.send(i == 0)

        if with_receiver:
            gr.go(receiver)
        await gr.sleep(d if k % 4 < 2 else random.uniform(0, 0.002))
        was = t.stop()
        err = None
        if with_receiver:
            quit_.close()
            received = await got.recv()
            if was == received:
                err = f"stop() returned {was} and the receiver got a value: {received}"
        elif not was:
            i, _ = await gr.select(t.c.recv, gr.after(2.0).recv)
            if i != 0:
                err = "stop() returned False but no value ever came"
        await gr.sleep(0.004)
        if (await gr.select(t.c.recv, gr.default))[0] == 0:
            err = f"a value came after stop() returned {was}"
        await out.send(err)

    async def main() -> list[str]:
        errors: list[str] = []
        for _ in range(4):
            n = 150
            out: gr.Chan[str | None] = gr.Chan(n)
            for k in range(n):
                gr.go(trial, k, out)
            for _ in range(n):
                e = await out.recv()
                if e is not None:
                    errors.append(e)
        return errors

    assert grun(main, procs=procs, timeout=60) == []


@pytest.mark.stress
def test_reset_racing_the_firing(procs: int, tiny_switch: None) -> None:
    """After ``reset(d)`` the next value is the new firing (not a stale one)
    and ``reset`` says whether an old value was still to come."""

    async def trial(out: gr.Chan[str | None]) -> None:
        t = gr.Timer(random.uniform(0, 0.002))
        await gr.sleep(random.uniform(0, 0.002))
        t0 = time.monotonic()
        t.reset(0.003)
        i, v = await gr.select(t.c.recv, gr.after(2.0).recv)
        err = None
        if i != 0:
            err = "reset() left the timer unarmed"
        elif v < t0 + 0.003:
            err = "received a stale value after reset()"
        elif t.stop():
            err = "stop() after the value was received returned True"
        await out.send(err)

    async def main() -> list[str]:
        errors = []
        for _ in range(4):
            out: gr.Chan[str | None] = gr.Chan(150)
            for _ in range(150):
                gr.go(trial, out)
            for _ in range(150):
                e = await out.recv()
                if e is not None:
                    errors.append(e)
        return errors

    assert grun(main, procs=procs, timeout=60) == []


@pytest.mark.stress
def test_concurrent_resets_black_box(procs: int, tiny_switch: None) -> None:
    """Goroutines resetting one timer at the same time leave it armed."""

    async def trial(out: gr.Chan[bool]) -> None:
        t = gr.Timer(10)
        gate: gr.Chan[None] = gr.Chan()
        wg = gr.WaitGroup()

        async def resetter() -> None:
            await gate.recv()
            t.reset(0.001)
            wg.done()

        for _ in range(4):
            wg.add()
            gr.go(resetter)
        gate.close()
        await wg.wait()
        i, _ = await gr.select(t.c.recv, gr.after(2.0).recv)
        await out.send(i == 0)

    async def main() -> int:
        out: gr.Chan[bool] = gr.Chan(200)
        for _ in range(200):
            gr.go(trial, out)
        return sum([not await out.recv() for _ in range(200)])

    assert grun(main, procs=procs, timeout=60) == 0


@pytest.mark.stress
def test_ticker_stop_and_reset_racing_ticks(procs: int, tiny_switch: None) -> None:
    """No tick of the old period after ``Ticker.stop``/``reset`` returns."""

    async def trial(k: int, out: gr.Chan[str | None]) -> None:
        tk = gr.Ticker(0.0005)
        await gr.sleep(random.uniform(0, 0.003))
        err = None
        if k % 2:
            tk.stop()
            await gr.sleep(0.003)
            if (await gr.select(tk.c.recv, gr.default))[0] == 0:
                err = "a tick came after stop()"
        else:
            t0 = time.monotonic()
            tk.reset(0.004)
            i, v = await gr.select(tk.c.recv, gr.after(2.0).recv)
            if i != 0:
                err = "no tick after reset()"
            elif v < t0 + 0.004:
                err = "a tick of the old period came after reset()"
            tk.stop()
        await out.send(err)

    async def main() -> list[str]:
        out: gr.Chan[str | None] = gr.Chan(200)
        for k in range(200):
            gr.go(trial, k, out)
        return [e for e in [await out.recv() for _ in range(200)] if e is not None]

    assert grun(main, procs=procs, timeout=60) == []


# -- 2. far timers ------------------------------------------------------------------------


@pytest.mark.parametrize("far", ["timeout_30_days", "deadline_1000_years", "sleep_1e300"])
@pytest.mark.parametrize("wait", ["epoll", "note"])
def test_far_timer_while_idle(procs: int, far: str, wait: str) -> None:
    """The earliest timer is days or centuries away while every M is idle:
    the M waiting for it (in epoll when a socket is open, else on its note)
    must not overflow the OS wait (epoll's 2**31 ms, ``TIMEOUT_MAX``). A
    goroutine started from a plain thread after 0.2 s ends the program."""
    a, b = socket.socketpair()

    async def main() -> None:
        done: gr.Chan[None] = gr.Chan()
        if wait == "epoll":
            conn = net.wrap(a)
            assert isinstance(conn, net.Conn)

            async def reader() -> None:
                await conn.read(1)  # parked in the poller until the end

            gr.go(reader)
        cancel: Callable[[], None] = lambda: None  # noqa: E731
        if far == "timeout_30_days":
            _, cancel = with_timeout(background(), 30 * DAY)
        elif far == "deadline_1000_years":
            _, cancel = with_deadline(background(), time.monotonic() + 1000 * YEAR)
        else:

            async def sleeper() -> None:
                await gr.sleep(1e300)  # left over at the end

            gr.go(sleeper)
        await gr.sleep(0.01)  # every other goroutine parked

        async def finish() -> None:
            await done.send(None)

        threading.Timer(0.2, gr.go, (finish,)).start()
        await done.recv()
        cancel()

    try:
        grun(main, procs=procs, timeout=10)
    finally:
        a.close()
        b.close()


@pytest.mark.goroutines(fake_clock=True)
async def test_far_timers_in_a_bubble() -> None:
    """On the virtual clock no OS wait is involved: far timers fire, at
    exactly their time, as soon as everything else is blocked."""
    t0 = gr.monotonic()
    ctx, cancel = with_timeout(background(), 30 * DAY)
    await ctx.done().recv()
    assert gr.monotonic() == t0 + 30 * DAY
    cancel()
    t1 = gr.monotonic()
    await gr.sleep(1000 * YEAR)
    assert gr.monotonic() == t1 + 1000 * YEAR
    k = gr.Ticker(YEAR)
    assert await k.c.recv() == t1 + 1001 * YEAR
    k.stop()


def test_far_timers_are_kept_exactly() -> None:
    """The cap is on the waits only: a far timer keeps its time."""

    async def main() -> None:
        t = gr.Timer(30 * DAY)
        assert _timers.MAX_WAIT < 30 * DAY
        sched = _scheduler.require()
        until = sched.timers.until_next()
        assert until is not None and 0 < until <= _timers.MAX_WAIT
        assert sched.timers.next_when > time.monotonic() + 29 * DAY
        assert t.stop() is True

    grun(main)


def test_capped_waits_wait_again(procs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait cut short by the cap finds nothing due and waits again: with
    ``MAX_WAIT`` shrunk to 20 ms, a 0.3 s sleep and Timer still end on
    time, never early, while every M is idle."""
    monkeypatch.setattr(_timers, "MAX_WAIT", 0.02)

    async def main() -> tuple[float, float, float]:
        t0 = time.monotonic()
        t = gr.Timer(0.3)
        await gr.sleep(0.3)
        slept = time.monotonic() - t0
        v = await t.c.recv()
        assert v is not None
        return t0, slept, v

    t0, slept, v = grun(main, procs=procs)
    assert 0.3 <= slept < 0.3 + 0.25
    assert t0 + 0.3 <= v < t0 + 0.3 + 0.25


# -- 3. durations that overflow a float ----------------------------------------------------


HUGE = 10**400


def _calls() -> list[tuple[str, Callable[[], Any]]]:
    t_holder: list[Any] = []

    def timer_reset() -> Any:
        t = gr.Timer(1)
        t_holder.append(t)
        return t.reset(HUGE)

    def ticker_reset() -> Any:
        k = gr.Ticker(1)
        t_holder.append(k)
        return k.reset(HUGE)

    return [
        ("Timer", lambda: gr.Timer(HUGE)),
        ("Ticker", lambda: gr.Ticker(HUGE)),
        ("after", lambda: gr.after(HUGE)),
        ("tick", lambda: gr.tick(HUGE)),
        ("Timer.reset", timer_reset),
        ("Ticker.reset", ticker_reset),
        ("with_timeout", lambda: with_timeout(background(), HUGE)),
        ("with_deadline", lambda: with_deadline(background(), HUGE)),
    ]


def test_int_too_large_for_a_float_is_a_value_error() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match=r"^sleep: seconds ~1e\+400 is too large") as ei:
            await gr.sleep(HUGE)
        assert len(str(ei.value)) < 120
        for name, call in _calls():
            what = "deadline" if name == "with_deadline" else "seconds"
            pat = rf"^{re.escape(name)}: {what} ~1e\+400 is too large for a float"
            with pytest.raises(ValueError, match=pat):
                call()
        # Negative: as -inf (a duration <= 0, a deadline long past).
        await gr.sleep(-HUGE)
        ctx, _ = with_timeout(background(), -HUGE)
        assert ctx.err() is DeadlineExceeded
        ctx, _ = with_deadline(background(), -HUGE)
        assert ctx.err() is DeadlineExceeded
        with pytest.raises(ValueError, match=r"^Timer: seconds must be >= 0, got ~-1e\+400$"):
            gr.Timer(-HUGE)

    grun(main)


def test_huge_finite_durations_stay_finite() -> None:
    """``monotonic() + 1.7e308`` is finite: such timers are armed far away,
    never at inf (which ``Timers`` reads as "no timer")."""

    async def main() -> None:
        big = sys.float_info.max
        t = gr.Timer(big)
        k = gr.Ticker(big)
        ctx, cancel = with_timeout(background(), big)
        assert ctx.deadline() == big
        timers = _scheduler.require().timers
        assert timers.nactive == 3
        assert math.isfinite(timers.next_when)
        assert t.stop() is True
        k.stop()
        cancel()
        assert timers.next_when == math.inf

    grun(main)


@pytest.mark.parametrize("period", [1e-300, 1e-320])
def test_tiny_ticker_period(procs: int, period: float) -> None:
    """A period so small that ``when + period == when``: the ticker used to
    re-fire at the same time in a loop under ``Timers.lock`` (1e-300: the
    runtime hung) or to overflow ``int()`` skipping missed ticks (1e-320:
    OverflowError in the scheduler)."""

    async def main() -> None:
        k = gr.Ticker(period)
        for _ in range(3):
            await k.c.recv()
        k.stop()

    grun(main, procs=procs, timeout=10)


# -- 4. runtime-bound objects outliving a run -------------------------------------------


def test_timers_of_an_ended_run(procs: int) -> None:
    kept: dict[str, Any] = {}

    async def run1() -> None:
        kept["run"] = _scheduler.current_run_id()
        kept["timer"] = gr.Timer(10)
        kept["ticker"] = gr.Ticker(10)
        kept["after"] = gr.after(10)
        kept["tick"] = gr.tick(10)
        kept["fired"] = gr.Timer(0.001)
        await gr.sleep(0.02)  # fired, its value waiting in the channel

    grun(run1, procs=procs)
    n = kept["run"]
    t, k = kept["timer"], kept["ticker"]
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("Timer.stop", t.stop),
        ("Timer.reset", lambda: t.reset(1)),
        ("Ticker.stop", k.stop),
        ("Ticker.reset", lambda: k.reset(1)),
    ]

    async def run2() -> None:
        assert _scheduler.current_run_id() != n
        for name, call in calls:
            with pytest.raises(RuntimeError, match=rf"^{re.escape(name)}: .*{ended(n)}"):
                call()
        for ch in (t.c, k.c, kept["after"], kept["tick"]):
            with pytest.raises(RuntimeError, match=ended(n)):
                await ch.recv()
            with pytest.raises(RuntimeError, match=ended(n)):
                await gr.select(ch.recv, gr.after(5).recv)
        v = await kept["fired"].c.recv()  # buffered in run 1: still received
        assert isinstance(v, float)

    grun(run2, procs=procs, timeout=5)
    for _name, call in calls:  # and with no run running
        with pytest.raises(RuntimeError, match=ended(n)):
            call()


def test_timeout_contexts_of_an_ended_run(procs: int) -> None:
    kept: dict[str, Any] = {}

    async def run1() -> None:
        kept["run"] = _scheduler.current_run_id()
        kept["live"] = with_timeout(background(), 10)
        kept["live2"] = with_deadline(background(), time.monotonic() + 10)
        kept["live2"][0].done()  # its channel exists: done()'s fast path
        kept["outside"] = with_timeout(background(), 10)
        kept["cancelled"] = with_timeout(background(), 10)
        kept["cancelled"][1]()
        expired, _ = kept["expired"] = with_timeout(background(), 0.001)
        await expired.done().recv()

    grun(run1, procs=procs)
    n = kept["run"]
    live, cancel = kept["live"]
    live2, cancel2 = kept["live2"]

    async def run2() -> None:
        for ctx in (live, live2, with_value(live, "k", 1)):
            with pytest.raises(RuntimeError, match=ended(n)):
                ctx.done()
            with pytest.raises(RuntimeError, match=ended(n)):
                ctx.err()
            with pytest.raises(RuntimeError, match=ended(n)):
                with_cancel(ctx)
            with pytest.raises(RuntimeError, match=ended(n)):
                with_timeout(ctx, 1)
            with pytest.raises(RuntimeError, match=ended(n)):
                with_timeout(ctx, 100)  # later than its deadline: with_cancel
        # Settled contexts work everywhere.
        for key, err in (("cancelled", Canceled), ("expired", DeadlineExceeded)):
            ctx = kept[key][0]
            assert ctx.err() is err
            await ctx.done().recv()
            child, _ = with_cancel(ctx)
            assert child.err() is err
        # cancel() always works, and settles the context.
        cancel()
        cancel()
        assert live.err() is Canceled
        await live.done().recv()
        child, _ = with_timeout(live, 1)
        assert child.err() is Canceled

    grun(run2, procs=procs, timeout=5)
    outside, cancel3 = kept["outside"]
    for f in (outside.done, outside.err, lambda: with_cancel(outside)):
        with pytest.raises(RuntimeError, match=ended(n)):
            f()
    cancel3()
    assert outside.err() is Canceled
    assert isinstance(outside.done(), gr.Chan)
    cancel2()
    assert live2.err() is Canceled


def test_sockets_of_an_ended_run(procs: int) -> None:
    kept: dict[str, Any] = {}
    a, b = socket.socketpair()
    pa, pb = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    async def run1() -> None:
        kept["run"] = _scheduler.current_run_id()
        kept["conn"] = net.wrap(a)
        kept["packet"] = net.wrap(pa)
        kept["ln"] = await net.listen("tcp", "127.0.0.1:0")
        b.sendall(b"x")

    try:
        grun(run1, procs=procs)
        n = kept["run"]
        conn, packet, ln = kept["conn"], kept["packet"], kept["ln"]

        async def run2() -> None:
            assert await conn.read(10) == b"x"  # there already: still read
            with pytest.raises(RuntimeError, match=ended(n)):
                await conn.read(10)  # would wait on run 1's poller
            with pytest.raises(RuntimeError, match=ended(n)):
                conn.set_deadline(time.monotonic() + 1)
            with pytest.raises(RuntimeError, match=ended(n)):
                await ln.accept()
            with pytest.raises(RuntimeError, match=ended(n)):
                await packet.read_from()
            conn.close()
            ln.close()
            packet.close()

        grun(run2, procs=procs, timeout=5)
    finally:
        for s in (a, b, pa, pb):
            s.close()


def test_a_timer_that_fired_or_stopped_leaves_no_reference_cycle(procs: int) -> None:
    """A Timer's, Ticker's or ``after``'s channel is freed by reference
    counting once the timer fired (and was received) or was stopped: no
    cycle for the cyclic GC to find (before: ``_ChanTimer -> runtime Timer
    -> its arg -> _ChanTimer``, so every timer's channel, three deques and a
    lock waited for a GC pass: the soak's memory churn, found by its RSS)."""
    import gc
    import weakref

    async def main() -> list[str]:
        refs: list[tuple[str, weakref.ref[Any]]] = []
        t = gr.Timer(0.001)
        await t.c.recv()
        refs.append(("Timer fired", weakref.ref(t.c)))
        del t
        t = gr.Timer(10.0)
        t.stop()
        refs.append(("Timer stopped", weakref.ref(t.c)))
        del t
        t = gr.Timer(10.0)
        t.reset(0.001)
        await t.c.recv()
        refs.append(("Timer reset, fired", weakref.ref(t.c)))
        del t
        c = gr.after(0.001)
        await c.recv()
        refs.append(("after", weakref.ref(c)))
        del c
        tk = gr.Ticker(0.001)
        await tk.c.recv()
        tk.stop()
        refs.append(("Ticker stopped", weakref.ref(tk.c)))
        del tk
        return [what for what, r in refs if r() is not None]

    gc.disable()
    try:
        alive = grun(main, procs=procs)
    finally:
        gc.enable()
    assert alive == []


def test_closing_a_socket_drops_its_deadline_timers(procs: int) -> None:
    """A socket's poll descriptor and its deadline timers point at each
    other (each timer's arg names the descriptor): closing the socket drops
    the timers, so that no cycle keeps the descriptor for the cyclic GC."""
    from goroutines import net

    async def main() -> list[Any]:
        ln = await net.listen("tcp", "127.0.0.1:0")
        host, port = ln.addr[:2]
        c = await net.dial("tcp", net.join_host_port(host, port))
        s = await ln.accept()
        c.set_deadline(time.monotonic() + 30.0)
        pd = c._fd.pd
        assert pd.rtimer is not None and pd.wtimer is not None
        c.close()
        s.close()
        ln.close()
        return [pd.rtimer, pd.wtimer]

    assert grun(main, procs=procs) == [None, None]
