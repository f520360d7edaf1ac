"""Time: sleep, after, tick, Timer and Ticker, all entries in the runtime's one timer heap.

``sleep`` parks the G and puts the G itself in the heap, to be readied
when due (no Timer object: see ``_runtime._timers``). It is armed by the
unlock function, after the G is suspended, so it cannot fire early enough to
ready a G that is still running (Go's ``resetForSleep``).

``Timer`` and ``Ticker`` deliver the time (``monotonic()``) on a channel ``c``
of capacity 1 with a non-blocking send (a slow reader of a Ticker misses
ticks, as in Go). Their state is ``_armed`` (a Timer: not yet fired since
it was last armed; a Ticker: running) and ``_gen``, the generation that
the runtime timer's callback carries in its ``arg``.

Invariant (Go 1.23's contract), ``c.lock`` held: a callback delivers only
if its generation is ``_gen``, and then (a Timer) clears ``_armed`` in the
same critical section. ``stop``/``reset`` are one critical section under
``c.lock``: they read the answer (``_armed`` or a value still in the
buffer: "active", exact), bump ``_gen`` (so a firing already popped from
the heap but still waiting for ``c.lock`` is dropped), drain the buffer,
and disarm/re-arm the runtime timer, all before the lock is released. So
after they return no stale value is received, a value received before
they started makes them answer False, and of overlapping resets the last
to take the lock is the one armed (with its own generation). Rejected: the
bump under ``c.lock`` and the disarm under ``Timers.lock`` as two steps, the
answer taken from the runtime timer (a firing in between was dropped as
stale and then "not armed" said False: ``if not t.stop(): await
t.c.recv()`` hung; and "firing" counted as pending after its value was
received). Lock order: the ranked table in ``goroutines._runtime``: ``c.lock``
(CHAN) before ``Timers.lock`` (and ``sched.lock``, through ``on_earlier``).

A Timer or Ticker belongs to the run that made it (``_run``, a
``Sched.run_id``): its channel is bound to that run (``Chan.bind_to_run``:
waiting on it in a later run raises, a value already buffered is still
received) and ``stop``/``reset`` from a later run, or with no run, raise
RuntimeError naming it. That run's timer heap is dropped with it. A timer
at ``inf`` never fires: it is armed (``stop`` says True) but has no entry
in the heap, so it keeps nobody alive (as ``sleep(inf)``).

Durations are ints or floats; an int too large for a float is a ValueError
naming the call (too negative: ``-inf``, a duration long past).

Guards: ``_armed``, ``_gen``: ``c.lock``. ``_run``, ``_t``, ``c``: immutable.
"""

from __future__ import annotations

import functools
import math
import sys
import types
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, final

from ._accel import speedups
from ._chan import Chan
from ._runtime import _clock, _scheduler, _timers, sleep_park
from ._runtime import newproc as go
from ._runtime._goroutine import (
    WaitReason,
    is_async_callable,
    noop,
    register_park_site,
    returns_awaitable,
)
from ._runtime._scheduler import current_g, require

# Enum members bound once: ``WaitReason.X`` goes through EnumType.__getattr__
# (~70 ns on 3.11) on every park.
_SLEEP = WaitReason.SLEEP
_INF = math.inf

__all__ = ["Ticker", "Timer", "after", "after_func", "monotonic", "sleep", "tick"]


def show_number(x: int | float) -> str:
    """``x`` for an error message: a huge int as ``~1e+400`` (its digits
    would fill the screen, and ``str`` refuses more than 4300 of them)."""
    if type(x) is not float and isinstance(x, int) and not -(10**17) < x < 10**17:
        lg = math.log10(abs(x))
        e = int(lg)
        return f"~{'-' if x < 0 else ''}{10 ** (lg - e):.3g}e+{e}"
    return f"{x}"


def as_float(x: Any, what: str, name: str) -> float:
    """``x``, an int or a float, as a float: TypeError for another kind,
    ValueError (naming ``what`` and ``name``) for NaN or an int too large
    for a float; an int too negative for one is ``-inf``."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{what}: {name} must be a number, got {type(x).__name__}")
    try:
        f = float(x)
    except OverflowError:  # an int beyond the float range
        if x < 0:
            return -_INF
        raise ValueError(
            f"{what}: {name} {show_number(x)} is too large for a float "
            f"(the largest is {sys.float_info.max:.4g})"
        ) from None
    if f != f:
        raise ValueError(f"{what}: {name} is NaN")
    return f


def _check_seconds(seconds: Any, what: str, positive: bool = False) -> float:
    d = as_float(seconds, what, "seconds")
    if positive and d <= 0:
        raise ValueError(f"{what}: seconds must be > 0, got {show_number(seconds)}")
    if d < 0 and what != "sleep":
        raise ValueError(f"{what}: seconds must be >= 0, got {show_number(seconds)}")
    return d


def monotonic() -> float:
    """The runtime's clock, in seconds: what every timer, deadline and
    ``after``/``tick`` value is on. ``time.monotonic()``, except inside a
    bubble (``gr.testing.run``), where it is the bubble's virtual clock;
    code there that reads ``time.monotonic()`` itself sees real time."""
    return _clock.now()


@types.coroutine
def sleep(seconds: float) -> Generator[Any, None, None]:
    """Pause the calling goroutine for ``seconds`` (an int or float); other
    goroutines run meanwhile. ``seconds <= 0`` returns at once. In a test
    bubble (gr.testing) the seconds are virtual.

        await gr.sleep(0.5)

    TypeError for a non-number, ValueError for NaN; RuntimeError outside a
    goroutine."""
    # The common case (a positive finite float) skips _check_seconds; NaN
    # fails the comparison and gets its error there.
    if type(seconds) is not float or not 0.0 < seconds < _INF:
        seconds = _check_seconds(seconds, "sleep")
        if seconds <= 0:
            return
        if seconds == _INF:
            current_g().wait_reason = _SLEEP
            yield noop  # parked for ever: nothing will wake it (a timer at inf never fires)
            return
    # The G is its own timer (see _runtime._timers), pushed on the heap once
    # it is suspended: the park door ``sleep_park`` makes that unlock.
    yield sleep_park(_clock.now() + seconds)


def _fire(arg: tuple[Timer, int]) -> None:
    """A Timer's callback: deliver the time, unless stop/reset came since it
    was armed (see the module docstring)."""
    owner, gen = arg
    c = owner.c
    with c.lock:
        if owner._gen != gen:
            return
        owner._armed = False
        # Fired: the runtime timer lets go of us (owner -> _t -> its arg ->
        # owner is a cycle, which only the cyclic GC would free, with the
        # channel and its buffers). ``_reset`` always passes a new arg.
        owner._t.arg = None
        call = owner._call
        if call is None:
            if c._closed:
                return
            res = c.try_send_locked(_clock.now())
    if call is not None:  # after_func: the call, in a goroutine of its own
        go(call[0], *call[1])
        return
    if res is not True and res is not False:
        res.wake()


def _tick(arg: tuple[_ChanTimer, int]) -> None:
    """A Ticker's callback: as ``_fire``, but it stays armed (a full buffer
    drops the tick: a slow reader misses ticks)."""
    owner, gen = arg
    c = owner.c
    with c.lock:
        if owner._gen != gen or c._closed:
            return
        res = c.try_send_locked(_clock.now())
    if res is not True and res is not False:
        res.wake()


class _ChanTimer:
    """What Timer and Ticker share: a runtime timer that sends on ``c``."""

    __slots__ = ("_armed", "_gen", "_run", "_t", "c")

    def _start(self, d: float, period: float, what: str) -> None:
        """Arm for ``d`` seconds from now (then every ``period`` if > 0);
        ``what`` names the channel in errors."""
        sched = require()
        self._run = sched.run_id
        self.c: Chan[float] = Chan(1)
        self.c.bind_to_run(self._run, what)
        self._gen = 0
        self._armed = True
        self._t = _timers.Timer(_tick if period else _fire, (self, 0), period)
        when = _clock.now() + d
        if when != _INF:  # never fires: no heap entry (see the module docstring)
            sched.timers.add(self._t, when)

    def _timers_of_run(self, what: str) -> _timers.Timers:
        """The timers of our run; RuntimeError if it has ended."""
        s = _scheduler.current
        if s is None or s.run_id != self._run:
            where = "inside gr.run()" if s is None else "in this run"
            raise RuntimeError(
                f"{what}: this {type(self).__name__} belongs to goroutines run "
                f"#{self._run}, which has ended; make a new one {where}"
            )
        return s.timers

    def _stop(self, timers: _timers.Timers) -> bool:
        """Disarm, drop what fired and was not received; return whether the
        timer was active (armed, or its value unreceived)."""
        c = self.c
        with c.lock:
            was = self._armed or bool(c._buf)
            self._gen += 1
            self._armed = False
            c._buf.clear()
            timers.stop(self._t)
            # As in ``_fire``: no cycle through the stopped timer's arg (a
            # firing already popped keeps its own copy, and fails the _gen test).
            self._t.arg = None
        return was

    def _reset(self, timers: _timers.Timers, d: float, period: float | None) -> bool:
        """Re-arm for ``d`` seconds from now; return what ``_stop`` would."""
        c = self.c
        with c.lock:
            was = self._armed or bool(c._buf)
            self._gen += 1
            self._armed = True
            c._buf.clear()
            when = _clock.now() + d
            if when == _INF:
                timers.stop(self._t)
            else:
                timers.reset(self._t, when, arg=(self, self._gen), period=period)
        return was


@final
class Timer(_ChanTimer):
    """A single event: ``t.c`` receives the time once, ``seconds`` from now
    (or, made by ``after_func``, a function is called then)."""

    __slots__ = ("_call",)

    def __init__(self, seconds: float) -> None:
        self._call: tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]] | None = None
        self._start(_check_seconds(seconds, "Timer"), 0.0, "the channel of a Timer")

    def stop(self) -> bool:
        """Stop the timer; return whether it was active.

        As in Go 1.23, a value that fired but was not received counts as
        active: it is discarded, and stop returns True. False means the
        value was received (or the timer was stopped already). Either way
        no value comes on ``c`` after stop returns.
        """
        return self._stop(self._timers_of_run("Timer.stop"))

    def reset(self, seconds: float) -> bool:
        """Re-arm the timer for ``seconds`` from now; return whether it was
        active (as in ``stop``). Only the new firing comes on ``c``."""
        d = _check_seconds(seconds, "Timer.reset")
        return self._reset(self._timers_of_run("Timer.reset"), d, None)


@final
class Ticker(_ChanTimer):
    """``k.c`` receives the time every ``seconds``; ticks a slow reader misses are dropped."""

    __slots__ = ()

    def __init__(self, seconds: float) -> None:
        d = _check_seconds(seconds, "Ticker", positive=True)
        self._start(d, d, "the channel of a Ticker")

    def stop(self) -> None:
        """Stop the ticker; no tick comes on ``c`` after stop returns."""
        self._stop(self._timers_of_run("Ticker.stop"))

    def reset(self, seconds: float) -> None:
        """Restart the ticker with period ``seconds``; the ticks that come on
        ``c`` after reset returns are all of the new period."""
        d = _check_seconds(seconds, "Ticker.reset", positive=True)
        self._reset(self._timers_of_run("Ticker.reset"), d, d)


def after(seconds: float) -> Chan[float]:
    """A channel that receives the time once, ``seconds`` from now (Go's ``time.After``)."""
    t = Timer.__new__(Timer)
    t._call = None
    t._start(_check_seconds(seconds, "after"), 0.0, "the channel of an after()")
    return t.c


def after_func(seconds: float, fn: Callable[..., Awaitable[Any]], /, *args: Any) -> Timer:
    """Call ``fn(*args)`` (an async function) in a goroutine of its own,
    ``seconds`` from now (Go's ``time.AfterFunc``). The Timer returned
    cancels the call with ``stop()`` (True if it stopped it before it was
    made) and re-arms it with ``reset(seconds)``; its ``c`` never receives.
    """
    d = _check_seconds(seconds, "after_func")
    if not is_async_callable(fn):
        raise TypeError(
            f"after_func needs an async function, got {fn!r}"
            + (" (a plain function: declare it 'async def')" if callable(fn) else "")
        )
    t = Timer.__new__(Timer)
    t._call = (fn, args)
    t._start(d, 0.0, "the channel of an after_func() Timer")
    return t


def tick(seconds: float) -> Chan[float]:
    """A channel that receives the time every ``seconds`` (Go's ``time.Tick``)."""
    d = _check_seconds(seconds, "tick", positive=True)
    k = Ticker.__new__(Ticker)
    k._start(d, d, "the channel of a tick()")
    return k.c


#: The reference ``sleep`` (a generator), whatever the mode.
_sleep_reference = sleep


@functools.cache
def _sleep_yield() -> tuple[str, str, int]:
    """The reference ``sleep``'s frame at its last yield (a finite sleep)."""
    import dis

    code = _sleep_reference.__code__
    line = [
        i.positions.lineno
        for i in dis.get_instructions(code)
        if i.opname == "YIELD_VALUE" and i.positions is not None and i.positions.lineno
    ][-1]
    return code.co_qualname, code.co_filename, line


def _sleep_site(op: Any) -> tuple[str, str, int]:
    """Dumps show a G parked in the accelerator's ``SleepOp`` as the
    reference's frame at the same wait."""
    return _sleep_yield()


if not TYPE_CHECKING and speedups is not None:
    # ``gr.sleep`` of a positive finite float in C (``_speedups.SleepOp``);
    # it calls the reference for everything else.
    speedups.init_sleep(fallback=_sleep_reference, reason=_SLEEP)
    register_park_site(speedups.SleepOp, _sleep_site)
    sleep = returns_awaitable(speedups.sleep)
