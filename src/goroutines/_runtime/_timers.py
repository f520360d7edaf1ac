"""The timer heap: the one time mechanism under sleep, after, Timer, Ticker and deadlines.

One heap per runtime (Go keeps one per P; with the GIL the per-P split buys
nothing and costs a merge on every idle check). Each entry is
``(when, seq, timer)``; an entry is live only while ``timer.active`` and its
``seq`` is the timer's current one, so ``stop`` and ``reset`` are O(log n)
at most: stale entries are left in the heap and skipped when they surface
(Go's "deleted timers"), and the heap is rebuilt when more than half of it is
stale so that a loop of cancelled timeouts cannot grow it without bound.

Callbacks run outside ``lock``, on whichever M found the timer due: an M in
``find_runnable`` (with a P) or the M parked until the next timer (perhaps
without one). They must not block: they ready a G or do a non-blocking send.

Guards: ``heap``, ``nactive``, ``nstale``, every ``Timer`` field: ``lock``.
``next_when`` is written under ``lock`` and read racily by Ms deciding
whether to look (stale OK: a reader that misses a new earlier timer is either
the M that is about to park, which re-reads it under ``sched.lock``, or is
woken by ``on_earlier``).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["INF", "Timer", "Timers"]

INF = float("inf")
#: A due timer this late means the running Ms are not getting to it (their
#: goroutines keep running): any M that sees it fires it, and sysmon starts
#: an M for it if none is idle-waiting for timers.
TIMER_LATE = 1e-3


class Timer:
    """A runtime timer: call ``f(arg)`` at ``when``, then every ``period`` if > 0."""

    __slots__ = ("active", "arg", "f", "firing", "period", "seq", "when")

    def __init__(self, f: Callable[[Any], None], arg: Any, period: float = 0.0) -> None:
        self.f = f
        self.arg = arg
        self.period = period
        self.when = 0.0
        self.seq = 0
        self.active = False
        #: Firings popped from the heap whose callback has not returned yet:
        #: ``stop`` counts them as pending (Go's ``isSending``), so that
        #: "stop returned False" still means "the value was delivered".
        self.firing = 0


class Timers:
    __slots__ = ("heap", "lock", "nactive", "next_when", "nstale", "on_earlier", "seq")

    def __init__(self, on_earlier: Callable[[], None]) -> None:
        self.lock = threading.Lock()
        self.heap: list[tuple[float, int, Timer]] = []
        self.next_when = INF
        self.nactive = 0
        self.nstale = 0
        self.seq = 0
        #: Called (no lock held) when a new timer becomes the earliest, to wake
        #: the M sleeping until the previous earliest one.
        self.on_earlier = on_earlier

    # -- lock held --------------------------------------------------------

    def _push(self, t: Timer, when: float) -> bool:
        """Arm ``t``; return whether it is now the earliest. Lock held."""
        self.seq += 1
        t.seq = self.seq
        t.when = when
        if not t.active:
            t.active = True
            self.nactive += 1
        heapq.heappush(self.heap, (when, t.seq, t))
        if when < self.next_when:
            self.next_when = when
            return True
        return False

    def _unarm(self, t: Timer) -> bool:
        """Disarm ``t``; return whether it was armed or firing. Lock held."""
        if not t.active:
            return t.firing > 0
        t.active = False
        self.nactive -= 1
        self.nstale += 1
        if self.nstale > 64 and self.nstale * 2 > len(self.heap):
            self.heap = [e for e in self.heap if e[2].active and e[1] == e[2].seq]
            heapq.heapify(self.heap)
            self.nstale = 0
        self._update_next()
        return True

    def _update_next(self) -> None:
        heap = self.heap
        while heap:
            when, seq, t = heap[0]
            if t.active and seq == t.seq:
                self.next_when = when
                return
            heapq.heappop(heap)
            if self.nstale:
                self.nstale -= 1
        self.next_when = INF

    # -- public -----------------------------------------------------------

    def add(self, t: Timer, when: float) -> None:
        """Arm (or re-arm) ``t`` to fire at monotonic time ``when``."""
        with self.lock:
            if t.active:
                self.nstale += 1
            earliest = self._push(t, when)
        if earliest:
            self.on_earlier()

    def stop(self, t: Timer) -> bool:
        """Disarm ``t``; return whether it was armed (Go's ``Timer.Stop``)."""
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
            was = t.active or t.firing > 0
            if was:
                self.nstale += 1
            earliest = self._push(t, when)
        if earliest:
            self.on_earlier()
        return was

    def run_due(self) -> int:
        """Fire every timer that is due; return how many fired. Any M, no lock held."""
        now = time.monotonic()
        fired: list[tuple[Callable[[Any], None], Any, Timer]] = []
        with self.lock:
            heap = self.heap
            while heap and heap[0][0] <= now:
                when, seq, t = heapq.heappop(heap)
                if not (t.active and seq == t.seq):
                    if self.nstale:
                        self.nstale -= 1
                    continue
                fired.append((t.f, t.arg, t))
                t.firing += 1
                if t.period > 0:
                    # Skip the ticks we are late for, as Go does.
                    nxt = when + t.period * (1 + int((now - when) / t.period))
                    self.seq += 1
                    t.seq = self.seq
                    t.when = nxt
                    heapq.heappush(heap, (nxt, t.seq, t))
                else:
                    t.active = False
                    self.nactive -= 1
            self._update_next()
        if not fired:
            return 0
        try:
            for f, arg, _ in fired:
                f(arg)
        finally:
            with self.lock:
                for _, _, t in fired:
                    t.firing -= 1
        return len(fired)

    def until_next(self) -> float | None:
        """Seconds until the earliest timer, None if there is none. Racy read."""
        nw = self.next_when
        if nw == INF:
            return None
        return max(0.0, nw - time.monotonic())
