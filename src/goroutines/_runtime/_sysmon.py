"""sysmon: the thread without a P that keeps the scheduler honest (Go's ``sysmon``).

It wakes every 20 µs while it has lately had something to do, backing off
(doubling) after 50 idle rounds up to 10 ms. Each round it retakes Ps from
Ms stuck in a blocking call: a P whose M has been in the same syscall
(``syscalltick``) for SYSCALL_THRESHOLD (20 µs) is handed off
(``Sched.handoffp_locked``), so the goroutines queued behind it run on
another M; a call that returns sooner never costs a thread switch. While
backed off, sysmon would see a call only up to 10 ms late, so an M entering
a syscall with Gs queued behind it kicks sysmon awake (``kick``). (Go
compares ``syscalltick`` across two rounds instead; with a 10 ms back-off
that misses every call shorter than a round, e.g. a stream of 10 ms sleeps,
which we measured serializing a burst of them.) As in Go, a P with nothing queued behind it is
left alone for up to 10 ms if another M is spinning or a P is idle (those
would pick up new work anyway), which spares a thread start for short calls.

Why a thread and not a check in the Ms: the Ms that would check are the ones
that are stuck. Under the GIL its rounds cost the running Ms a GIL hand-over
each; a blocking call releases the GIL, so sysmon runs at once when it
matters, and the back-off keeps a busy-but-not-blocking runtime at
about 100 rounds a second (an idle one at about one: see below).

Each round it also sets ``sched.now``, the coarse clock that parking Gs
read for ``wait_since``.

When every P is idle (all goroutines parked, none in a blocking call) it has
nothing to watch: it sleeps until the next timer, or at most IDLE_SLEEP,
until an M takes a P (``Sched.pidleget`` wakes it, Go's ``sysmonwait``). A
runtime whose goroutines are all parked then costs a wake-up per timer and
one a second, instead of sysmon's 100 rounds a second.

With ``GOROUTINES_DEBUG=schedtrace=MS`` it prints Go's SCHED line to
stderr every MS ms (gomaxprocs, idle Ps, threads, spinning and idle Ms,
the global queue's length and each P's), to see wasted wake-ups;
``scheddetail=1`` adds, as Go does, a line per P, per M and per G.

It also polls the network if no M has for 10 ms (an M busy running
goroutines does not look), and with ``GOROUTINES_DEBUG=slowgoroutine=MS``
warns about a goroutine that has run MS ms without yielding.

Guards: ``sched_ticks`` is sysmon's own; ``waiting``: ``sched.lock``. It
reads Ps racily and re-checks under ``sched.lock`` before taking one.
``note`` is a binary semaphore released by whoever wakes sysmon: not
ranked (see the table in ``goroutines._runtime``).
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

from . import _clock, _trace
from ._asyncgen import drain as drain_agens
from ._debug import _debug_flag, _debug_setting
from ._processor import PStatus
from ._timers import TIMER_LATE

if TYPE_CHECKING:
    from ._machine import M
    from ._scheduler import Sched

__all__ = ["Sysmon"]

MIN_DELAY = 20e-6
MAX_DELAY = 10e-3
#: A P whose M has been in one syscall this long is handed off (Go: one
#: sysmon round, at least 20 µs): shorter calls never cost a thread switch.
SYSCALL_THRESHOLD = 20e-6
#: A P in a syscall with nothing queued behind it is retaken only after this.
IDLE_SYSCALL_RETAKE = 10e-3
#: A P whose G has run this long with other Gs waiting in its ``runnext``
#: or ``runq`` lets them be stolen (see ``P.runnext``). Two GIL switch
#: intervals: an M merely waiting for the GIL while another M runs Python
#: also shows no progress for up to one interval, and taking its work then
#: would only keep two Ms busy with the same Python work (Go's figure, the
#: preemption time slice, is 10 ms too).
RUNNEXT_STUCK = max(1e-3, 2 * sys.getswitchinterval())
#: Poll the network if no M has for this long.
NETPOLL_STALE = 10e-3
#: sysmon's longest sleep while every P is idle (Go: half of forcegcperiod).
IDLE_SLEEP = 1.0


def _debug_ms(name: str) -> float:
    """``GOROUTINES_DEBUG=name=MS`` in seconds; 0 (off) when absent.
    ``slowgoroutine``: warn about a goroutine that runs MS milliseconds
    without yielding. ``schedtrace``: print Go's SCHED line to stderr every
    MS milliseconds."""
    value = _debug_setting(name)
    if value is None:
        return 0.0
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not ms > 0:
        raise ValueError(f"GOROUTINES_DEBUG: {name} needs a positive number of ms, got {value!r}")
    return ms / 1000.0


#: The execution tracer recording, or None (``_trace``: it sets this).
_tracer: Any = None


class Sysmon:
    def __init__(self, sched: Sched) -> None:
        self.sched = sched
        self.note = threading.Lock()
        self.note.acquire()
        self.thread = threading.Thread(target=self.loop, name="goroutines-sysmon", daemon=True)
        #: The current sleep between rounds (racy read by ``kick``).
        self.delay = MIN_DELAY
        #: Asleep because every P is idle; cleared by whoever takes a P.
        self.waiting = False
        self.nrounds = 0
        self.nretake = 0
        self.slow_limit = _debug_ms("slowgoroutine")
        self.schedtrace = _debug_ms("schedtrace")
        self.scheddetail = _debug_flag("scheddetail")
        self.start_time = self.next_trace = time.monotonic()
        #: p.id -> (schedtick seen, when first seen, warned already)
        self.sched_ticks: dict[int, tuple[int, float, bool]] = {}

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Cut the current sleep short (at shutdown). Any thread."""
        try:
            self.note.release()
        except RuntimeError:  # already released: a wake is pending
            pass

    def stop(self) -> None:
        self.wake()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(1.0)

    def loop(self) -> None:
        sched = self.sched
        idle = 0
        delay = MIN_DELAY
        while not sched.stopping:
            if not self.schedtrace and len(sched.pidle) == sched.gomaxprocs:
                until = sched.timers.until_next()
                # Not with a timer due: then we must go on looking (is it late?).
                if (until is None or until > 0) and self.all_idle():
                    # Until pidleget or stop wakes us, or the next timer is
                    # due (an idle M waits for it too; we look if it is late).
                    woken = self.note.acquire(
                        True, IDLE_SLEEP if until is None else min(until, IDLE_SLEEP)
                    )
                    with sched.lock:
                        self.waiting = False
                    if woken:  # an M took a P: watch it closely again
                        idle = 0
            if idle == 0:
                delay = MIN_DELAY
            elif idle > 50:
                delay = min(delay * 2, MAX_DELAY)
            self.delay = delay
            if self.note.acquire(True, delay):
                idle = 0  # kicked: a blocking call has work queued behind it
            if sched.stopping:
                return
            self.nrounds += 1
            sched.now = now = time.monotonic()
            busy = self.retake(now)
            if _tracer is not None:
                _tracer.counters(sched)
            if sched.agens:  # dropped while every M stays busy: see _asyncgen
                drain_agens(sched)
                busy += 1
            np = sched.netpoll
            if np.nwaiters and now - np.lastpoll > NETPOLL_STALE and sched.poll_m is None:
                ready = np.poll(0)
                if ready:  # no P here: to the global queue, and an M is woken
                    sched.injectglist(ready)
                    np.adjust_waiters(-len(ready))
                busy += len(ready)
            self.check_running(now)
            if sched.timers.next_when < _clock.now() - TIMER_LATE and sched.poll_m is None:
                # No M fired a due timer: the running ones are stuck in
                # goroutines that do not yield (or in blocking calls), and no
                # idle M waits for timers. Start one (Go's sysmon does too).
                sched.wake_poll_m()
            if self.schedtrace and now >= self.next_trace:
                self.next_trace = now + self.schedtrace
                sys.stderr.write(self.schedline(now) + "\n")
                if self.scheddetail:
                    sys.stderr.write("".join(f"  {ln}\n" for ln in self.scheddetail_lines()))
            if busy:
                idle = 0
            else:
                idle += 1

    def all_idle(self) -> bool:
        """Whether every P is idle; if so, ``waiting`` is set (under
        ``sched.lock``, as ``pidleget`` clears it) before sysmon sleeps."""
        sched = self.sched
        if len(sched.pidle) != sched.gomaxprocs:  # racy first look
            return False
        with sched.lock:
            if len(sched.pidle) == sched.gomaxprocs and not sched.stopping:
                self.waiting = True
        return self.waiting

    def schedline(self, now: float) -> str:
        """Go's ``schedtrace`` line (racy reads: a snapshot for a human)."""
        sched = self.sched
        allp = sched.allp[: sched.gomaxprocs]
        return (
            f"SCHED {(now - self.start_time) * 1000:.0f}ms: gomaxprocs={sched.gomaxprocs} "
            f"idleprocs={len(sched.pidle)} threads={sched.mcount} "
            f"spinningthreads={sched.nmspinning} idlethreads={len(sched.midle)} "
            f"runqueue={len(sched.runq)} "
            f"[{' '.join(str(len(p.runq) + len(p.runnext)) for p in allp)}]"
        )

    def scheddetail_lines(self) -> list[str]:
        """Go's ``scheddetail`` lines: every P, M and G (racy reads)."""
        sched = self.sched

        def mid(m: M | None) -> int:
            return -1 if m is None else m.id

        lines = [
            f"P{p.id}: status={p.status.name.lower()} schedtick={p.schedtick} "
            f"syscalltick={p.syscalltick} m={mid(p.m)} "
            f"runqsize={len(p.runq) + len(p.runnext)} stuck={p.stuck >= 0}"
            for p in sched.allp
        ]
        running: dict[int, int] = {}
        for m in list(sched.allm):
            g = m.curg
            if g is not None:
                running[g.id] = m.id
            lines.append(
                f"M{m.id}: p={-1 if m.p is None else m.p.id} curg={-1 if g is None else g.id} "
                f"spinning={str(m.spinning).lower()} blocked={str(m.parked).lower()} "
                f"lockedg={-1 if m.lockedg is None else m.lockedg.id}"
            )
        for g in sched.allgs.copy().values():
            reason = g.wait_reason.value
            lines.append(
                f"G{g.id}: status={int(g.status)}({reason or g.status.name.lower()}) "
                f"m={running.get(g.id, -1)} lockedm={mid(g.locked_m)}"
            )
        return lines

    def check_running(self, now: float) -> None:
        """Watch Ps whose G keeps running without yielding (same ``schedtick``).

        After RUNNEXT_STUCK with Gs waiting in ``runnext`` or ``runq``, mark the P
        ``stuck`` so that a stealer may take that G, and wake an M for it:
        otherwise a G started or readied by a goroutine that then computes
        would wait for it although Ps are idle. With
        ``GOROUTINES_DEBUG=slowgoroutine=MS``, also warn once per episode
        about a G that has run that long (Go would preempt it; we cannot, so
        we say where it is).
        """
        sched = self.sched
        for p in sched.allp[: sched.gomaxprocs]:
            m = p.m
            g = m.curg if m is not None else None
            if p.status != PStatus.RUNNING or g is None:
                self.sched_ticks.pop(p.id, None)
                continue
            t = p.schedtick
            seen = self.sched_ticks.get(p.id)
            if seen is None or seen[0] != t:
                self.sched_ticks[p.id] = (t, now, False)
                continue
            ran = now - seen[1]
            if (p.runnext or p.runq) and ran >= RUNNEXT_STUCK and p.stuck != t:
                p.stuck = t
                sched.wakep()
            if not self.slow_limit or seen[2] or ran < self.slow_limit:
                continue
            self.sched_ticks[p.id] = (t, seen[1], True)
            where = ""
            frame = sys._current_frames().get(m.thread.ident or 0) if m is not None else None
            if frame is not None:
                where = f" at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
            warnings.warn(
                f"goroutine {g.id} ({g.entry}) has run for {ran * 1000:.0f} ms "
                f"without yielding its processor{where}",
                RuntimeWarning,
                stacklevel=1,
            )

    def kick(self) -> None:
        """A blocking call starts with Gs queued behind it while sysmon is
        backed off: have it look now rather than in up to 10 ms. Any thread."""
        if self.delay > MIN_DELAY:
            self.delay = MIN_DELAY
            self.wake()

    def retake(self, now: float) -> int:
        """Hand off every P whose M has been in the same syscall for at least
        SYSCALL_THRESHOLD; return how many."""
        sched = self.sched
        n = 0
        for p in sched.allp[: sched.gomaxprocs]:
            if p.status != PStatus.SYSCALL:
                continue
            t = p.syscalltick
            since = now - p.syscallwhen
            if since < SYSCALL_THRESHOLD:
                continue
            if (
                p.runq_empty()
                and not sched.runq
                and sched.nmspinning + len(sched.pidle) > 0
                and since < IDLE_SYSCALL_RETAKE
            ):
                continue
            m: M | None = None
            took = False
            with sched.lock:
                if p.status == PStatus.SYSCALL and p.syscalltick == t and not sched.stopping:
                    p.m = None
                    m = sched.handoffp_locked(p)
                    n += 1
                    took = True
            if took and _tracer is not None:
                _tracer.emit(_trace.EV_RETAKE, p.id, m is not None)
            if m is not None:
                m.thread.start()
        self.nretake += n
        return n
