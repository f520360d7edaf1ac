"""The execution tracer (Go's ``runtime/trace``): what the scheduler did, per M.

Owns ``active`` (the Tracer recording, or None) and the events. The
scheduler calls it at each scheduling event; ``goroutines.trace`` (public)
starts and stops it, and writes the Chrome/Perfetto trace-event JSON
(``to_chrome``).

The events (Go's ``traceEv*``): a goroutine created (its parent and
creation site), started on an M and P, stopped (parked with its wait
reason, yielded, or gone into a blocking call), readied (by whom: a
goroutine, or the poller, a timer, sysmon, a thread of the user's),
ended; a blocking call's start and end, and the P handed off during it;
a steal; the poller's wake-ups; timers fired; sysmon's retakes; garbage
collections (``gc.callbacks``); and, from sysmon, counters (goroutines,
run-queue lengths).

Cost. Off, the accelerator's goroutine-switch sites test a C static
(``_speedups.set_trace``); the reference's hot paths test nothing: its step
loop calls ``_machine._coro_send`` and readies Gs through ``G.wake`` /
``goready``, which ``_set_sites`` swaps for recording versions while a
trace runs (``_recording_send``, ``wake``). The rarer sites (``go``,
blocking calls, timers, steals, the poller, sysmon) test a module global
(``_machine._tracer``, ``_scheduler._tracer``...). ``make bench``'s W12
counts them with callgrind against the runtime built without them:
+0.3 % of W1's instructions with the accelerator, none in W4 or in pure
mode. On, the accelerator records the hot events (a G's start, park,
end, and every wake-up) in C, into a struct buffer per thread
(``trace_take`` hands them over at the end; 1.8x W1's time); every other
event, and all of them in pure mode, is a tuple appended to the
recording thread's own list (1.8x W1's instructions, W12). No lock on
the hot path either way. Each thread holds at most ``limit`` events
(``GOROUTINES_TRACE_LIMIT``, default 1 000 000) in each of the two;
past that, its newest events are dropped and counted (the JSON says how
many).

Timestamps are ``time.perf_counter_ns()``: real time, also in a testing
bubble (the virtual clock would put a whole run at one instant).

Locks (ranked in ``goroutines._runtime``'s table): ``_switch_lock``
(TRACE_SWITCH) guards ``active`` and switching the sites on and off;
``Tracer.lock`` (TRACE, a leaf: a GC callback records, so it may be taken
under any other lock) guards ``Tracer.bufs`` (a thread's first event
registers its list). In C, ``tr_lock`` (a leaf) guards the list of C
buffers, and each buffer's ``busy`` flag orders its writer against
``trace_take`` (see ``_speedups.c``). Each list is appended to by its own
thread only; ``stop`` reads them after the sites have been switched off
(an event racing with ``stop`` lands in a list already read, and is lost).
``names`` is a dict whose item sets are atomic.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import types
from typing import TYPE_CHECKING, Any, Final

from .._accel import speedups
from ._goroutine import SYSCALL, Unlock
from ._lockrank import LockRank, new_lock

if TYPE_CHECKING:
    from ._goroutine import G

__all__ = ["Tracer", "active", "start", "stop"]

#: Event kinds (the first two fields of every event: ``(ts, kind, ...)``).
EV_CREATE: Final = "create"  # gid, parent gid (0: none), name, site
EV_START: Final = "start"  # gid, mid, pid
EV_PARK: Final = "park"  # gid, wait reason
EV_SCHED: Final = "sched"  # gid: yielded (gosched), runnable again
EV_SYSCALL: Final = "syscall"  # gid: went into a blocking call (the M makes it)
EV_END: Final = "end"  # gid
EV_UNPARK: Final = "unpark"  # gid, waker gid (0: not a goroutine), waker kind
EV_SYSCALL_BEGIN: Final = "syscall_begin"  # gid, what
EV_SYSCALL_END: Final = "syscall_end"  # gid, whether the P was handed off
EV_HANDOFF: Final = "handoff"  # pid, to whom: a P handed off (an M blocked or locked)
EV_STEAL: Final = "steal"  # from pid, to pid, n
EV_NETPOLL: Final = "netpoll"  # n goroutines made ready
EV_TIMERS: Final = "timers"  # timers fired from here...
EV_TIMERS_END: Final = "timers_end"  # ...to here (their wake-ups are a timer's)
EV_RETAKE: Final = "retake"  # pid
EV_GC_START: Final = "gc_start"  # generation
EV_GC_END: Final = "gc_end"  # collected
EV_COUNTERS: Final = "counters"  # goroutines, global runq, {pid: runq length}

#: The accelerator's hook kinds (``_speedups.c``: ``TR_*``).
TR_START, TR_PARK, TR_REQUEST, TR_END, TR_UNPARK, TR_CREATE, TR_NAME = 1, 2, 3, 4, 5, 6, 7

DEFAULT_LIMIT: Final = 1_000_000

_now = time.perf_counter_ns


class Tracer:
    """One recording: per-thread event lists, and the names of goroutines."""

    def __init__(self, path: str | None, limit: int = DEFAULT_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self.t0 = _now()
        self.lock = new_lock(LockRank.TRACE, self)
        #: (thread ident, thread name, events, [dropped]) per recording thread.
        self.bufs: list[tuple[int, str, list[tuple[Any, ...]], list[int]]] = []
        self._local = threading.local()
        #: gid -> the goroutine's function (``G.entry``), set at its first event.
        self.names: dict[int, str] = {}
        #: The accelerator's buffers, taken by ``stop`` (``_speedups.trace_take``).
        self.cbufs: list[tuple[int, str, list[tuple[Any, ...]], int]] = []
        self.stopped_at = 0

    def _buf(self) -> tuple[list[tuple[Any, ...]], list[int]]:
        try:
            return self._local.buf  # type: ignore[no-any-return]
        except AttributeError:
            pass
        t = threading.current_thread()
        events: list[tuple[Any, ...]] = []
        dropped = [0]
        # Everything that allocates before the lock, and ``_local`` set
        # first: an allocation may run a collection, whose callback
        # (``_gc``) records on this thread, and would register a second
        # list, or (under the lock) wait for ever on the lock it holds.
        self._local.buf = (events, dropped)
        self._local.events = events
        entry = (t.ident or 0, t.name, events, dropped)
        with self.lock:
            self.bufs.append(entry)
        return events, dropped

    def emit(self, *ev: Any) -> None:
        events, dropped = self._buf()
        if len(events) < self.limit:
            events.append((_now(), *ev))
        else:
            dropped[0] += 1

    def name(self, gp: G) -> int:
        gid = gp.id
        if gid not in self.names:
            try:
                self.names[gid] = gp.entry
            except Exception:  # a G whose coroutine is gone: keep its id
                self.names[gid] = "?"
        return gid

    # -- the scheduler's events ----------------------------------------------------

    def create(self, gp: G, parent: G | None) -> None:
        gid = self.name(gp)
        by = gp.created_by
        where = f"{os.path.basename(by[0])}:{by[1]}" if by is not None else ""
        self.emit(EV_CREATE, gid, parent.id if parent is not None else 0, where)

    # start, park and unpark are on every goroutine switch (in pure mode):
    # written out, without ``emit``'s argument tuple; a park keeps the wait
    # reason itself (``events`` takes its text).

    def start(self, gp: G, m: Any) -> None:
        try:
            events = self._local.events
        except AttributeError:
            events = self._buf()[0]
        gid = gp.id
        if gid not in self.names:
            self.name(gp)
        if len(events) < self.limit:
            p = m.p
            events.append((_now(), EV_START, gid, m.id, p.id if p is not None else -1))
        else:
            self._buf()[1][0] += 1

    def park(self, gp: G) -> None:
        try:
            events = self._local.events
        except AttributeError:
            events = self._buf()[0]
        if len(events) < self.limit:
            events.append((_now(), EV_PARK, gp.id, gp.wait_reason))
        else:
            self._buf()[1][0] += 1

    def request(self, gp: G, req: Any) -> None:
        self.emit(EV_SYSCALL if req is SYSCALL else EV_SCHED, gp.id)

    def end(self, gp: G) -> None:
        self.emit(EV_END, gp.id)

    def unpark(self, gp: G, waker: str = "") -> None:
        try:
            m = _tls.m
        except AttributeError:
            m = None
        cur = m.curg if m is not None else None
        if cur is not None and cur is not gp:
            try:
                events = self._local.events
            except AttributeError:
                events = self._buf()[0]
            gid = gp.id
            if gid not in self.names:
                self.name(gp)
            if len(events) < self.limit:
                events.append((_now(), EV_UNPARK, gid, cur.id, "goroutine"))
            else:
                self._buf()[1][0] += 1
        else:
            if not waker:
                waker = "M" if m is not None else threading.current_thread().name
            self.emit(EV_UNPARK, self.name(gp), 0, waker)

    def run_timers(self, timers: Any) -> None:
        """``timers.run_due()`` between two events: the wake-ups recorded on
        this thread in between are a timer's (``events`` says so)."""
        self.emit(EV_TIMERS)
        try:
            timers.run_due()
        finally:
            self.emit(EV_TIMERS_END)

    def netpoll(self, gs: list[G]) -> None:
        self.emit(EV_NETPOLL, len(gs))
        for g in gs:
            self.emit(EV_UNPARK, self.name(g), 0, "netpoll")

    def counters(self, sched: Any) -> None:
        """Sysmon's sample: goroutines, and each run queue's length."""
        runqs = {p.id: len(p.runq) + len(p.runnext) for p in sched.allp[: sched.gomaxprocs]}
        self.emit(EV_COUNTERS, len(sched.allgs), len(sched.runq), runqs)

    def hook(self, kind: int, gp: G, arg: Any) -> None:
        """The accelerator's calls (``_speedups.set_trace``)."""
        if kind == TR_START:
            self.start(gp, _current_m())
        elif kind == TR_PARK:
            self.park(gp)
        elif kind == TR_REQUEST:
            self.request(gp, arg)
        elif kind == TR_END:
            self.end(gp)
        elif kind == TR_UNPARK:
            self.unpark(gp)
        elif kind == TR_CREATE:
            m = _current_m()
            self.create(gp, m.curg if m is not None else None)
        elif kind == TR_NAME:
            self.name(gp)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.emit(EV_GC_START, info.get("generation", -1))
        else:
            self.emit(EV_GC_END, info.get("collected", 0))

    # -- the end ------------------------------------------------------------------

    def events(self) -> tuple[list[tuple[int, str, tuple[Any, ...]]], int]:
        """Every event as ``(thread ident, thread name, event)``, in time
        order, and how many were dropped. The accelerator's events (taken
        by ``stop``) are put in the reference's form here: a park's wait
        reason as its text, a wake-up's waker as a goroutine id or a kind."""
        with self.lock:
            bufs = list(self.bufs)
        out: list[tuple[int, str, tuple[Any, ...]]] = []
        dropped = 0
        for ident, tname, evs, d in bufs:
            dropped += d[0]
            for ev in list(evs):
                if ev[1] == EV_PARK and not isinstance(ev[3], str):
                    ev = (ev[0], EV_PARK, ev[2], ev[3].value or "park")
                out.append((ident, tname, ev))
        for cident, cname, cevs, cdropped in self.cbufs:
            dropped += cdropped
            for ev in cevs:
                if ev[1] == EV_PARK:
                    ev = (ev[0], EV_PARK, ev[2], getattr(ev[3], "value", "") or "park")
                elif ev[1] == EV_UNPARK:
                    waker, on_m = ev[3], ev[4]
                    kind = "goroutine" if waker else "M" if on_m else cname
                    ev = (ev[0], EV_UNPARK, ev[2], waker, kind)
                out.append((cident, cname, ev))
        out.sort(key=lambda x: x[2][0])
        # A wake-up by no goroutine on an M, while that thread fires timers,
        # is a timer's.
        firing: set[int] = set()
        for i, (ident, tname, ev) in enumerate(out):
            if ev[1] == EV_TIMERS:
                firing.add(ident)
            elif ev[1] == EV_TIMERS_END:
                firing.discard(ident)
            elif ev[1] == EV_UNPARK and ev[4] == "M" and ident in firing:
                out[i] = (ident, tname, (*ev[:4], "timer"))
        out = [x for x in out if x[2][1] != EV_TIMERS_END]
        return out, dropped


#: The recording tracer, or None.
active: Tracer | None = None

#: Guards ``active`` and the switching of the sites (rank TRACE_SWITCH).
_switch_lock = new_lock(LockRank.TRACE_SWITCH)


def _no_m() -> Any:
    return None


#: ``_machine.current_m`` and its thread-local, bound when a trace starts
#: (``_machine`` imports us).
_current_m: Any = _no_m
_tls: Any = threading.local()


def _c_hook(kind: int, gp: G, arg: Any) -> None:
    """The accelerator's calls, passed on to the recording tracer. A module
    function, not ``Tracer.hook``: the C module never releases its
    reference to the hook (a site on another M may be calling it as the
    trace stops), and a bound method would keep each trace, with all its
    events, alive for ever."""
    t = active
    if t is not None:
        t.hook(kind, gp, arg)


def _recording_send(t: Tracer) -> Any:
    """``_machine._coro_send`` while ``t`` records (the reference's step
    loop; the accelerator's records in C): the coroutine's ``send``, with
    the G's start before it, and after it the G's park (before the unlock
    function is called: after it another M may run the G), yield, blocking
    call or end. The step loop has no test of its own, so that off it costs
    nothing; on, the start and the park (every goroutine switch) are
    written out here rather than calls of ``t.start`` and ``t.park``."""
    from . import _machine

    send = types.CoroutineType.send
    tls = _machine._tls
    local = t._local
    names = t.names
    limit = t.limit
    now = _now

    def recording_send(coro: Any, value: Any) -> Any:
        m = tls.m
        gp = m.curg  # set by the step before the send
        try:
            events = local.events
        except AttributeError:
            events = t._buf()[0]
        gid = gp.id
        if gid not in names:
            t.name(gp)
        p = m.p
        if len(events) < limit:
            events.append((now(), EV_START, gid, m.id, p.id if p is not None else -1))
        else:
            t._buf()[1][0] += 1
        try:
            req = send(coro, value)
        except BaseException:  # StopIteration (a return) included
            t.end(gp)
            raise
        if req.__class__ is Unlock:
            if len(events) < limit:
                events.append((now(), EV_PARK, gid, gp.wait_reason))
            else:
                t._buf()[1][0] += 1
        else:
            t.request(gp, req)
        return req

    return recording_send


def _set_sites(t: Tracer | None) -> None:
    """Switch every site on (``t``) or off (None).

    Wake-ups: the accelerator's ``ready`` records them; in pure mode
    ``G.wake`` and ``goready`` (the only ways to ready a G) are swapped for
    a recording ``ready`` while a trace runs, so that the reference's
    ``ready``, on every channel hand-off, has no test at all."""
    from . import _goroutine, _machine, _netpoll, _scheduler, _sysmon

    global _current_m, _tls
    _current_m = _machine.current_m
    _tls = _machine._tls
    for mod in (_machine, _scheduler, _netpoll, _sysmon):
        mod._tracer = t  # type: ignore[attr-defined]
    _machine._coro_send = types.CoroutineType.send if t is None else _recording_send(t)
    if speedups is not None:
        if t is None:
            speedups.set_trace(None)
        else:
            speedups.set_trace(_c_hook, t.names, t.limit)
        return
    ready = _scheduler.ready
    if t is None:
        wake: Any = ready
    else:

        def wake(gp: G) -> None:
            t.unpark(gp)  # first: the G cannot run before it is recorded
            ready(gp)

    _goroutine.G.wake = wake  # type: ignore[method-assign]
    _goroutine.goready = wake


def start(path: str | None, limit: int = DEFAULT_LIMIT) -> Tracer:
    """Start recording; RuntimeError if a trace is already being recorded."""
    global active
    with _switch_lock:
        if active is not None:
            raise RuntimeError(
                f"a trace is already being recorded (to {active.path!r}): stop it first"
            )
        t = Tracer(path, limit)
        gc.callbacks.append(t._gc)
        active = t
        _set_sites(t)
        return t


def stop() -> Tracer | None:
    """Stop recording; the tracer that was recording, or None."""
    global active
    with _switch_lock:
        t = active
        if t is None:
            return None
        _set_sites(None)
        if speedups is not None:
            t.cbufs = speedups.trace_take()
        active = None
        try:
            gc.callbacks.remove(t._gc)
        except ValueError:
            pass
        t.stopped_at = _now()
        return t
