"""Time: sleep, after, tick, Timer and Ticker, all entries in the runtime's one timer heap.

``sleep`` parks the G and puts the G itself in the heap, to be readied
when due (no Timer object: see ``_runtime._timers``). It is armed by the
unlock function, after the G is suspended, so it cannot fire early enough to
ready a G that is still running (Go's ``resetForSleep``).

``Timer`` and ``Ticker`` deliver ``time.monotonic()`` on a channel of
capacity 1 with a non-blocking send (a slow reader of a Ticker misses ticks,
as in Go). As in Go 1.23, after ``stop()`` or ``reset()`` returns no stale
value is received: both bump a generation under the channel's lock and
drain the buffer, and a firing whose generation is old is dropped.
"""

from __future__ import annotations

import math
import time
import types
from collections.abc import Generator
from typing import Any, final

from ._chan import Chan
from ._runtime import _timers
from ._runtime._goroutine import WaitReason, noop
from ._runtime._machine import _tls
from ._runtime._scheduler import current_g, require

# Enum members bound once: ``WaitReason.X`` goes through EnumType.__getattr__
# (~70 ns on 3.11) on every park.
_SLEEP = WaitReason.SLEEP
_INF = math.inf
_MethodType = types.MethodType
_monotonic = time.monotonic

__all__ = ["Ticker", "Timer", "after", "sleep", "tick"]


def _check_seconds(seconds: Any, what: str, positive: bool = False) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what}: seconds must be a number, got {type(seconds).__name__}")
    if math.isnan(seconds):
        raise ValueError(f"{what}: seconds is NaN")
    if positive and seconds <= 0:
        raise ValueError(f"{what}: seconds must be > 0, got {seconds}")
    if seconds < 0 and what != "sleep":
        raise ValueError(f"{what}: seconds must be >= 0, got {seconds}")
    return float(seconds)


@types.coroutine
def sleep(seconds: float) -> Generator[Any, None, None]:
    """Pause the calling goroutine for ``seconds``; ``seconds <= 0`` returns at once."""
    # The common case (a positive finite float) skips _check_seconds; NaN
    # fails the comparison and gets its error there.
    if type(seconds) is not float or not 0.0 < seconds < _INF:
        seconds = _check_seconds(seconds, "sleep")
        if seconds <= 0:
            return
        if seconds == _INF:
            current_g().wait_reason = _SLEEP
            yield noop
            return
    when = _monotonic() + seconds
    # current_g() and require(), inlined: this is the hot path (W6). Not
    # ``try: _tls.m``: an exception handler would add a stack slot to the
    # frame of every sleeping G.
    m: Any = _tls.__dict__.get("m")
    g: Any = None if m is None else m.curg
    if g is None:
        current_g()  # raises the error that says why
    # The G is its own timer (see _timers): the unlock function pushes it on
    # the heap once the G is suspended, taking the time from ``g.elem``.
    g.elem = when
    g.wait_reason = _SLEEP
    yield _MethodType(m.sched.timers.arm_sleep, g)


def _fire(arg: tuple[_ChanTimer, int]) -> None:
    """Timer callback: deliver the time unless stop/reset came since it was armed."""
    owner, gen = arg
    c = owner.c
    with c.lock:
        if owner._gen != gen or c._closed:
            return
        res = c.try_send_locked(time.monotonic())
    if res is not True and res is not False:
        res.wake()


class _ChanTimer:
    """What Timer and Ticker share: a runtime timer that sends on ``c``."""

    __slots__ = ("_gen", "_t", "_timers", "c")

    def __init__(self, seconds: float, period: float) -> None:
        self._timers = require().timers
        self.c: Chan[float] = Chan(1)
        self._gen = 0
        self._t = _timers.Timer(_fire, (self, 0), period)
        self._timers.add(self._t, time.monotonic() + seconds)

    def _bump(self) -> tuple[int, bool]:
        """Invalidate firings in flight and drain the channel; return the new
        generation and whether an unreceived value was drained."""
        c = self.c
        with c.lock:
            self._gen += 1
            drained = bool(c._buf)
            c._buf.clear()
            return self._gen, drained


@final
class Timer(_ChanTimer):
    """A single event: ``t.c`` receives the time once, ``seconds`` from now."""

    __slots__ = ()

    def __init__(self, seconds: float) -> None:
        super().__init__(_check_seconds(seconds, "Timer"), 0.0)

    def stop(self) -> bool:
        """Stop the timer; return whether it was still pending.

        As in Go 1.23, a value that fired but was not received counts as
        pending: it is discarded and stop returns True.
        """
        _, drained = self._bump()
        return self._timers.stop(self._t) or drained

    def reset(self, seconds: float) -> bool:
        """Re-arm the timer for ``seconds`` from now; return whether it was
        pending (counted as in ``stop``)."""
        d = _check_seconds(seconds, "Timer.reset")
        gen, drained = self._bump()
        return self._timers.reset(self._t, time.monotonic() + d, arg=(self, gen)) or drained


@final
class Ticker(_ChanTimer):
    """``k.c`` receives the time every ``seconds``; ticks a slow reader misses are dropped."""

    __slots__ = ()

    def __init__(self, seconds: float) -> None:
        d = _check_seconds(seconds, "Ticker", positive=True)
        super().__init__(d, d)

    def stop(self) -> None:
        """Stop the ticker; no more ticks are delivered."""
        self._bump()
        self._timers.stop(self._t)

    def reset(self, seconds: float) -> None:
        """Stop the ticker and restart it with period ``seconds``."""
        d = _check_seconds(seconds, "Ticker.reset", positive=True)
        gen, _ = self._bump()
        self._timers.reset(self._t, time.monotonic() + d, arg=(self, gen), period=d)


def after(seconds: float) -> Chan[float]:
    """A channel that receives the time once, ``seconds`` from now (Go's ``time.After``)."""
    return Timer(seconds).c


def tick(seconds: float) -> Chan[float]:
    """A channel that receives the time every ``seconds`` (Go's ``time.Tick``)."""
    return Ticker(seconds).c
