"""The timer heap: the one time mechanism under sleep, after, Timer, Ticker and deadlines.

One heap per runtime (Go keeps one per P; with the GIL the per-P split buys
nothing and costs a merge on every idle check). Each entry is
``(when, seq, x)``, where ``x`` is a ``Timer`` or a sleeping ``G``.

A ``Timer`` entry is live only while ``timer.active`` and its ``seq`` is the
timer's current one, so ``stop`` and ``reset`` are O(log n) at most: stale
entries are left in the heap and skipped when they surface (Go's "deleted
timers"), and the heap is rebuilt when more than half of it is stale so that
a loop of cancelled timeouts cannot grow it without bound.

A ``G`` entry is ``sleep``'s: one-shot, never stopped, so always live; it
fires by readying the G (``G.wake``). The G is its own timer, as it is its
own sudog for channel waits: a sleeping G keeps alive nothing but its
generator and the entry (W6 parks 100 000 of them, and the cyclic GC
traverses every live object on each full collection). It is armed by
``arm_sleep``, sleep's unlock function, so after the G is suspended (Go's
``resetForSleep``): the time is passed in ``g.elem``, unused while a G sleeps.

Callbacks (and ``G.wake``) run outside ``lock``, on whichever M found the
timer due: an M in ``find_runnable`` (with a P) or the M parked until the next
timer (perhaps without one). They must not block: they ready a G or do a
non-blocking send. A callback may run after its timer was stopped or reset
(it was popped just before): ``stop``'s answer says only whether the timer
was armed, and a caller that needs more (``_time``'s Timer: "was the value
delivered?") keeps that state itself, under its own lock, and has the
callback check it (a generation in ``arg``). Lock order: the ranked table in
``goroutines._runtime``: a caller's lock (a channel's, a ``PollDesc``'s, a
context's) before ``lock`` (rank 9, TIMERS), which is a leaf; ``on_earlier``
is called after ``lock`` is released, with the caller's lock still held.

Far timers: a timer keeps its exact time however far it is (``sleep(1e300)``
is finite), but no OS wait is longer than ``MAX_WAIT``: ``until_next``, the
one source of every wait for the next timer (the idle M's ``epoll.poll`` or
``note.acquire``, sysmon's sleep), is capped there. epoll rejects more than
2**31 ms and a lock more than ``threading.TIMEOUT_MAX``; a capped wait that
ends early finds nothing due and waits again. ``INF`` is never a timer's
time (callers do not arm a timer that never fires), so ``next_when == INF``
means "no timer".

Guards: ``heap``, ``nactive``, ``nstale``, ``seq``, every ``Timer`` field:
``lock``. ``next_when`` is written under ``lock`` and read racily by Ms
deciding whether to look (stale OK: a reader that misses a new earlier timer
is either the M that is about to park, which re-reads it under
``sched.lock``, or is woken by ``on_earlier``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

from .._accel import speedups
from . import _clock
from ._goroutine import G
from ._lockrank import LockRank, new_lock

__all__ = ["INF", "MAX_WAIT", "Timer", "Timers"]

INF = float("inf")
#: The longest OS wait for a timer, in seconds: Go caps netpoll's wait at
#: 1e9 ms too (about 11.6 days; epoll's own limit is 2**31 ms, ~24.8 days).
MAX_WAIT = 1e6
#: A due timer this late means the running Ms are not getting to it (their
#: goroutines keep running): any M that sees it fires it, and sysmon starts
#: an M for it if none is idle-waiting for timers.
TIMER_LATE = 1e-3

_heappush = heapq.heappush
_heappop = heapq.heappop
_heapreplace = heapq.heapreplace
_nextafter = math.nextafter


class Timer:
    """A runtime timer: call ``f(arg)`` at ``when``, then every ``period`` if > 0."""

    __slots__ = ("active", "arg", "f", "period", "seq", "when")

    def __init__(self, f: Callable[[Any], None], arg: Any, period: float = 0.0) -> None:
        self.f = f
        self.arg = arg
        self.period = period
        self.when = 0.0
        self.seq = 0
        self.active = False


def _live(e: tuple[float, int, Timer | G]) -> bool:
    t = e[2]
    return type(t) is not Timer or (t.active and e[1] == t.seq)


class Timers:
    __slots__ = (
        "arm_sleep",
        "heap",
        "lock",
        "nactive",
        "next_when",
        "nstale",
        "on_earlier",
        "run_due",
        "seq",
    )

    def __init__(self, on_earlier: Callable[[], None]) -> None:
        self.lock = new_lock(LockRank.TIMERS, self)
        self.heap: list[tuple[float, int, Timer | G]] = []
        self.next_when = INF
        self.nactive = 0
        self.nstale = 0
        self.seq = 0
        #: Called (no lock held) when a new timer becomes the earliest, to wake
        #: the M sleeping until the previous earliest one.
        self.on_earlier = on_earlier
        #: ``arm_sleep`` (sleep's unlock function, see ``_arm_sleep``) and
        #: ``run_due`` (see ``_run_due``) are bound once, here: the
        #: reference's methods, or the accelerator's C versions of them
        #: (``_speedups.init_timers``), which work on the same heap.
        self.arm_sleep: Callable[[G], None]
        self.run_due: Callable[[], int]
        if _bind is None:
            self.arm_sleep, self.run_due = self._arm_sleep, self._run_due
        else:
            self.arm_sleep, self.run_due = _bind(self)

    # -- lock held --------------------------------------------------------

    def _push(self, t: Timer, when: float) -> bool:
        """Arm ``t``; return whether it is now the earliest. Lock held."""
        self.seq += 1
        t.seq = self.seq
        t.when = when
        if not t.active:
            t.active = True
            self.nactive += 1
        _heappush(self.heap, (when, t.seq, t))
        if when < self.next_when:
            self.next_when = when
            return True
        return False

    def _unarm(self, t: Timer) -> bool:
        """Disarm ``t``; return whether it was armed. Lock held."""
        if not t.active:
            return False
        t.active = False
        self.nactive -= 1
        self.nstale += 1
        if self.nstale > 64 and self.nstale * 2 > len(self.heap):
            self.heap = [e for e in self.heap if _live(e)]
            heapq.heapify(self.heap)
            self.nstale = 0
        self._update_next()
        return True

    def _update_next(self) -> None:
        heap = self.heap
        while heap:
            when, seq, t = heap[0]
            if type(t) is not Timer or (t.active and seq == t.seq):
                self.next_when = when
                return
            _heappop(heap)
            if self.nstale:
                self.nstale -= 1
        self.next_when = INF

    # -- public -----------------------------------------------------------

    def add(self, t: Timer, when: float) -> None:
        """Arm (or re-arm) ``t`` to fire at time ``when`` (on ``_clock``)."""
        with self.lock:
            if t.active:
                self.nstale += 1
            earliest = self._push(t, when)
        if earliest:
            self.on_earlier()

    def _arm_sleep(self, g: G) -> None:
        """``arm_sleep(g)``, ``sleep``'s unlock function (see the module
        docstring): ready ``g`` at the monotonic time in ``g.elem``."""
        when: float = g.elem
        g.elem = None
        # acquire/release, not ``with``: ~80 ns less, on every sleep.
        lock = self.lock
        lock.acquire()
        try:
            self.seq = seq = self.seq + 1
            self.nactive += 1
            _heappush(self.heap, (when, seq, g))
            earliest = when < self.next_when
            if earliest:
                self.next_when = when
        finally:
            lock.release()
        if earliest:
            self.on_earlier()

    def stop(self, t: Timer) -> bool:
        """Disarm ``t``; return whether it was armed. A firing already popped
        may still call its callback (see the module docstring)."""
        with self.lock:
            return self._unarm(t)

    def reset(self, t: Timer, when: float, arg: Any = None, period: float | None = None) -> bool:
        """Re-arm ``t`` for ``when`` (with a new ``arg``/``period`` if given);
        return whether it was armed."""
        with self.lock:
            if arg is not None:
                t.arg = arg
            if period is not None:
                t.period = period
            was = t.active
            if was:
                self.nstale += 1
            earliest = self._push(t, when)
        if earliest:
            self.on_earlier()
        return was

    def _run_due(self) -> int:
        """``run_due()``: fire every timer that is due; return how many
        fired. Any M, no lock held."""
        now = _clock.now()
        # In heap order: a sleeping G, or (f, arg) of a Timer, read
        # under the lock (``reset`` may change them as soon as it is released).
        fired: list[G | tuple[Callable[[Any], None], Any]] = []
        ntimers = 0
        lock = self.lock
        lock.acquire()  # not ``with``, as in _arm_sleep
        try:
            heap = self.heap
            # _update_next, inlined: it ends the loop.
            while heap:
                when, seq, t = heap[0]
                if isinstance(t, G):
                    if when > now:
                        self.next_when = when
                        break
                    _heappop(heap)
                    fired.append(t)
                    self.nactive -= 1
                    continue
                if not (t.active and seq == t.seq):
                    _heappop(heap)
                    if self.nstale:
                        self.nstale -= 1
                    continue
                if when > now:
                    self.next_when = when
                    break
                fired.append((t.f, t.arg))
                ntimers += 1
                if t.period > 0:
                    # Skip the ticks we are late for, as Go does.
                    p = t.period
                    nxt = when + p * (1.0 + (now - when) // p)
                    if not now < nxt < INF:
                        # A period so small that the sum rounds back to
                        # ``now`` (or the quotient overflows): fire on the
                        # next pass, not in a loop here under the lock.
                        nxt = _nextafter(now, INF)
                    self.seq += 1
                    t.seq = self.seq
                    t.when = nxt
                    _heapreplace(heap, (nxt, t.seq, t))
                else:
                    _heappop(heap)
                    t.active = False
                    self.nactive -= 1
            else:
                self.next_when = INF
        finally:
            lock.release()
        if not ntimers:
            for g in fired:
                g.wake()  # type: ignore[union-attr]  # all Gs
            return len(fired)
        for x in fired:
            if isinstance(x, G):
                x.wake()
            else:
                x[0](x[1])
        return len(fired)

    def until_next(self) -> float | None:
        """Seconds until the earliest timer, at most ``MAX_WAIT``; None if
        there is none. What every OS wait for the next timer waits (see
        the module docstring). Racy read."""
        nw = self.next_when
        if nw == INF:
            return None
        return min(max(0.0, nw - _clock.now()), MAX_WAIT)


# The accelerator's ``arm_sleep`` and ``run_due`` (see ``Timers.__init__``).
_bind: Callable[[Timers], tuple[Callable[[G], None], Callable[[], int]]] | None = (
    None if speedups is None else speedups.init_timers(Timers=Timers, Timer=Timer)
)
