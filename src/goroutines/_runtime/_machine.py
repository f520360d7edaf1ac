"""M: an OS thread that runs goroutines while it holds a P.

Each M is a ``threading.Thread`` running ``schedule``: find a runnable G,
step its coroutine until it parks, yields or ends, repeat. The step in
``schedule`` (Go's ``execute``), with ``execute_request`` for its rare
ends (gosched, a blocking call, a foreign await), is the one place where
goroutine code runs (and ``close_g``, for the goroutines left at the end).

An M with nothing to do gives its P back and parks on its own ``note`` (a
lock it holds while awake; whoever wakes it releases it once). At most one
idle M, ``sched.poll_m``, parks with a timeout: until the earliest timer.
All others sleep until ``startm`` hands them a P (or retire after
``IDLE_M_RETIRE``). ``poll_m`` sleeps in ``netpoll.poll`` once the poller
exists (waking it writes to a pipe), otherwise on its note.

An M in a blocking call (``syscall``) keeps a pointer to its P but not the
P itself; sysmon may hand the P to another M meanwhile. An M whose G called
``gr.lock_os_thread`` runs only that G (``lockedg``): when the G cannot run
it hands its P off and sleeps (``stoplockedm``) until an M that picks the G
up hands it a P (``startlockedm``).

Guards:

- ``p``, ``curg``, ``lockedg``, ``lockedcount``, ``spinning``, counters:
  the M itself (its own thread); ``spinning`` changes only together with
  ``sched.nmspinning`` under ``sched.lock``.
- ``parked``, ``nextp``, ``polling``: ``sched.lock``.

``note`` is a binary semaphore, not a lock: released by whoever wakes the M,
on another thread, so it is left out of the lock order (see the ranked table
in ``goroutines._runtime``).
"""

from __future__ import annotations

import threading
import time
import types
import warnings
from typing import TYPE_CHECKING, Any

from .._accel import speedups
from . import _clock, _trace
from ._asyncgen import drain as drain_agens
from ._asyncgen import install_hooks as install_asyncgen_hooks
from ._goroutine import EMPTY_CTX, GOSCHED, SYSCALL, G, GStatus, Unlock, unpark
from ._processor import P, PStatus
from ._timers import INF, TIMER_LATE, Timers

if TYPE_CHECKING:
    from ._scheduler import Sched

__all__ = ["M", "current_m"]

#: ``_tls.m`` is the M running on this thread, if it is one.
_tls: threading.local = threading.local()


#: The execution tracer recording, or None (``_trace``: it sets this). The
#: step loop itself does not test it: while a trace runs, ``_trace`` swaps
#: ``_coro_send`` for a recording one (a G's start, then its park, yield,
#: blocking call or end), so that tracing off costs the loop nothing.
_tracer: Any = None


def current_m() -> M | None:
    return getattr(_tls, "m", None)


_RUNNING = GStatus.RUNNING
_P_SYSCALL = PStatus.SYSCALL
_P_RUNNING = PStatus.RUNNING
_coro_send: Any = types.CoroutineType.send  # swapped while a trace runs (``_tracer``)
_Unlock = Unlock
#: ``after_execute``: this M leaves its loop.
_EXIT: Any = object()
_RUNNABLE = GStatus.RUNNABLE
_WAITING = GStatus.WAITING
_SYSCALL = GStatus.SYSCALL
_PRUNNING = PStatus.RUNNING
_DEAD = GStatus.DEAD

#: How many times a goroutine that is being closed (``M.close_g``) may try
#: to wait again before it is left unfinished.
CLOSE_TRIES = 100
#: Coroutines left unfinished by ``close_g``: kept for ever, so that no
#: finalizer closes them again (``coroutine.close`` would leave the lock of
#: their next wait held).
_abandoned: list[Any] = []


#: ``M.schedule`` in C, when the accelerator runs (see ``goroutines._accel``).
_c_schedule: Any = None


def call_syscall(gp: G) -> None:
    """Make the blocking call ``gp`` asked for (``g.elem = (fn, args,
    kwargs)``); leave its result, or the exception it raised, in ``g.elem``
    and ``g.success`` for ``gr.syscall`` to return or raise."""
    fn, args, kwargs = gp.elem
    try:
        gp.elem = fn(*args, **kwargs)
        gp.success = True
    except BaseException as e:  # delivered to the goroutine
        gp.elem = e
        gp.success = False


def foreign_await_error(gp: G, req: Any) -> TypeError:
    """What a goroutine gets that yielded something not of ours."""
    return TypeError(
        f"goroutine {gp.id} awaited {req!r}, which only works inside its own "
        "event loop; inside a goroutine await goroutines' own operations "
        "(channels, select, sleep, sync, syscall), and run asyncio code with "
        "await gr.from_asyncio(...)"
    )


#: An idle M exits after this long unused if more than ``gomaxprocs`` Ms are
#: idle (bursts of blocking calls start many Ms; they should not stay
#: forever, but a few idle ones make the next burst cheap).
IDLE_M_RETIRE = 10.0
#: How long the M waiting for timers and I/O sleeps at most under a
#: virtual clock (see ``stopm``).
VIRTUAL_POLL = 0.1


class M:
    __slots__ = (
        "curg",
        "id",
        "lockedcount",
        "lockedg",
        "nextp",
        "note",
        "npark",
        "nsched",
        "nsteal",
        "nsyscall",
        "nsyscallslow",
        "p",
        "parked",
        "polling",
        "sched",
        "spinning",
        "thread",
    )

    def __init__(self, sched: Sched, mid: int, nextp: P | None, spinning: bool) -> None:
        self.sched = sched
        self.id = mid
        self.p: P | None = None
        self.nextp = nextp
        self.curg: G | None = None
        self.lockedg: G | None = None  # gr.lock_os_thread: the only G this M runs
        self.lockedcount = 0  # lock_os_thread nesting of lockedg (Go's lockedExt)
        self.spinning = spinning
        self.parked = False
        self.polling = False  # parked in netpoll.poll rather than on note
        self.note = threading.Lock()
        self.note.acquire()
        self.nsched = 0  # Gs stepped (``schedule`` adds its own count in batches)
        self.npark = 0  # times this M parked
        self.nsteal = 0  # Gs stolen from other Ps
        self.nsyscall = 0  # blocking calls made
        self.nsyscallslow = 0  # ... after which the P had been handed off
        self.thread = threading.Thread(target=self.mstart, name=f"goroutines-M{mid}", daemon=True)

    #: Counters kept per M for stats (``Sched.mcounters`` sums them).
    COUNTERS = ("nsched", "npark", "nsteal", "nsyscall", "nsyscallslow")

    def __repr__(self) -> str:
        return f"<M {self.id} p={self.p.id if self.p else None} curg={self.curg}>"

    # -- thread entry ------------------------------------------------------

    def mstart(self) -> None:
        _tls.m = self
        install_asyncgen_hooks(self.sched)
        try:
            p, self.nextp = self.nextp, None
            if p is not None:
                self.acquirep(p)
                self.schedule()
            elif self.stopm():
                self.schedule()
        except BaseException as e:  # a runtime bug: stop, and let run() raise it
            e.add_note(f"in the goroutines scheduler, on M{self.id}")
            self.sched.fatal(e)
        finally:
            self.sched.mexit(self)

    def acquirep(self, p: P) -> None:
        p.status = PStatus.RUNNING
        p.m = self
        self.p = p

    # -- the schedule loop ---------------------------------------------------

    def schedule(self) -> None:
        """Run goroutines until the runtime stops. Holds a P on entry.

        One pass: pick a G, run it until it parks, yields or ends (Go's
        ``execute``: the one place where goroutine code runs), repeat. The
        common picks (a G in our ``runnext``, e.g. just readied by a
        hand-off, else one in our runq, e.g. just started by ``go``; no timer
        due, no 61st tick) are taken here, in the order ``find_runnable``
        would take them; every other case goes through ``find_runnable``,
        which gives the full order. A locked G that becomes runnable again
        is the next G without a pick (``after_execute``). A P removed by
        ``gomaxprocs`` is retired by ``find_runnable``, so within 61 steps
        (a rare event need not cost a test at every step).

        Once the coroutine is suspended (``send`` returned) a parking G is
        parked by calling the unlock function it yielded; after that another
        M may already be running it, so this M must not touch it again.

        With the accelerator this loop runs in C (``_speedups.schedule``, the
        same loop line for line, calling the same methods for every rare
        path); this is the reference.
        """
        if _c_schedule is not None:
            _c_schedule(self)
            return
        sched = self.sched
        timers = sched.timers
        clock = _clock
        # Our P and its queues, reloaded only after the calls that may
        # change our P (a park of the G keeps it).
        p = self.p
        assert p is not None
        rn = p.runnext
        runq = p.runq
        # Gs stepped since ``nsched`` was last brought up to date (before
        # each ``find_runnable``: at least every 61 steps). Kept small so
        # that counting allocates no int object: counters past 256 would,
        # at every step (as ``schedtick`` does, once).
        n = 0
        # The inline pick is Go's order; in shuffle mode every pick goes
        # through find_runnable (``shuffle_pick``).
        inline = not sched.shuffle
        gp: G | None = None  # set at the end of a step only for a locked G
        try:
            while True:
                if gp is None:
                    if (
                        inline
                        and (rn or runq)
                        and (t := p.schedtick + 1) % 61
                        and (timers.next_when == INF or timers.next_when > clock.now())
                    ):
                        try:
                            gp = rn.pop() if rn else runq.popleft()
                            p.schedtick = t
                        except IndexError:  # a stealer took it
                            pass
                    if gp is None:
                        self.nsched += n
                        n = 0
                        gp = self.find_runnable()
                        if gp is None:
                            return
                        p = self.p
                        assert p is not None
                        rn = p.runnext
                        runq = p.runq
                    if self.spinning:  # we found work: stop spinning (both paths)
                        self.resetspinning()
                    if gp.locked_m is not None and gp.locked_m is not self:
                        # gp may run only on its own M: give that M our P, and park.
                        self.startlockedm(gp)
                        gp = None
                        if not self.stopm():
                            return
                        p = self.p
                        assert p is not None
                        rn = p.runnext
                        runq = p.runq
                        continue
                # execute: gp is ours (popped from a run queue, or our locked G).
                gp.status = _RUNNING
                self.curg = gp
                if sched.gate and not self.at_gate(gp):  # after claiming gp: see at_gate
                    return
                n += 1
                try:
                    # The unbound ``send`` of coroutines (``make_coroutine``
                    # wraps generators): ``coro.send`` would make a bound method.
                    req = gp.ctx.run(_coro_send, gp.coro, None)
                except StopIteration as e:
                    self.curg = None
                    sched.goexit(gp, e.value, None)
                except BaseException as e:
                    self.curg = None
                    sched.goexit(gp, None, e)
                else:
                    if req.__class__ is _Unlock:  # a park
                        self.curg = None
                        gp.status = _WAITING
                        gp.wait_since = sched.now
                        req()
                        gp = None
                        # A park changes nothing else about this M (no
                        # syscall: our P stays); ``stopping`` is seen once
                        # the next G is claimed.
                        if self.lockedg is None:
                            continue
                    else:  # GOSCHED, SYSCALL, or not ours
                        self.execute_request(gp, req)
                gp = None
                if self.lockedg is not None or self.p is None or sched.stopping:
                    nxt = self.after_execute()
                    if nxt is _EXIT:
                        return
                    gp = nxt
                p = self.p
                assert p is not None
                rn = p.runnext
                runq = p.runq
        finally:
            self.nsched += n

    def after_execute(self) -> Any:
        """The unusual ends of a step: our locked G parked, yielded or lost
        the P in a blocking call (wait until it is runnable again and we are
        handed a P, and return it to run next), or we lost our P in a
        blocking call (park until we get one: None, pick as usual), or the
        runtime is stopping (``_EXIT``)."""
        sched = self.sched
        if self.lockedg is not None:
            if sched.stopping or not self.stoplockedm():
                return _EXIT
            return self.lockedg
        if sched.stopping:
            return _EXIT
        return None if self.p is not None or self.stopm() else _EXIT

    def at_gate(self, gp: G) -> bool:
        """``sched.gate`` is set: the world is stopped (a goroutine dump is
        reading stacks, ``Sched.stop_the_world``) or the runtime is stopping.
        ``gp`` was just claimed (RUNNING, ``curg``). Wait until the world
        starts again and return True (run ``gp``), or, once stopping, give
        ``gp`` back without running it (``abandon``) and return False.

        Who may touch a G that is not running is a handshake between each M
        and a thread that stops the world (to read stacks) or closes the
        goroutines left (``_run._close_all``), as in Dekker's algorithm: an
        M marks a G RUNNING, then reads ``gate``; the other thread sets
        ``gate``, then reads each G's status. At least one of them sees the
        other's write: either the M waits here, or the other thread sees
        RUNNING and leaves the G alone. So no G is stepped by an M while
        another thread reads its frames or closes it. The check costs the
        schedule loop nothing more than the ``stopping`` test it replaces.

        What this needs of the memory model: the store of ``status`` must
        not be reordered after the load of ``gate`` (nor the other side's).
        Under the GIL every access is sequentially consistent. A
        free-threaded build makes slot stores release and loads acquire,
        which does not forbid that store-load reordering: there the schedule
        step needs a full fence between the two, which pure Python cannot
        issue without taking a lock on every step. The accelerator's loop
        (``_speedups.schedule``) issues it (a sequentially consistent
        ``atomic_thread_fence``); the pure-Python loop relies on the GIL.
        """
        sched = self.sched
        while sched.gate:
            if sched.stopping:
                self.abandon(gp)
                return False
            gp.status = _RUNNABLE  # in our hands, but not running: readable
            sched.world.wait(0.1)
            gp.status = _RUNNING
        return True

    def abandon(self, gp: G) -> None:
        """The runtime is stopping: give back ``gp``, just claimed (RUNNING,
        ``curg``), without running it, so that ``run()`` closes it (see
        ``at_gate``)."""
        self.curg = None
        gp.status = _RUNNABLE
        sched = self.sched
        with sched.lock:
            if not sched.closed:
                sched.runq.append(gp)
                return
        # ``run()`` has closed the goroutines left and returned without this
        # one (it was running too long): close it here, now that it yields.
        err = self.close_g(gp)
        if err is not None:
            warnings.warn(
                f"goroutine {gp.id} ({gp.entry}), closed after run() returned, raised "
                f"{type(err).__name__}: {err}",
                RuntimeWarning,
                stacklevel=1,
            )

    def execute_request(self, gp: G, req: Any) -> None:
        """``gp`` yielded something other than an unlock function (rare)."""
        while True:
            if req is GOSCHED:
                self.curg = None
                gp.status = _RUNNABLE
                self.sched.runq.append(gp)
                # The global queue is work any M may take (unlike our runq).
                self.sched.wakep()
                return
            if req is SYSCALL:
                if not self.syscall(gp):
                    return
                if self.sched.gate and not self.at_gate(gp):  # gp came back RUNNING
                    return
                send, arg = gp.coro.send, None
            else:  # not one of ours: an asyncio future, a trio trap...
                send, arg = gp.coro.throw, foreign_await_error(gp, req)
            try:
                req = gp.ctx.run(send, arg)
            except StopIteration as e:
                self.curg = None
                self.sched.goexit(gp, e.value, None)
                return
            except BaseException as e:
                self.curg = None
                self.sched.goexit(gp, None, e)
                return
            if req.__class__ is _Unlock:
                self.curg = None
                gp.status = _WAITING
                gp.wait_since = self.sched.now
                req()
                return

    def close_g(self, gp: G, start: bool = False) -> BaseException | None:
        """Close ``gp``, a goroutine left when its run ended, on this thread
        (the closer: an M without a P), so that its ``finally`` blocks run as
        that goroutine. ``gp`` must be owned by nobody else (see ``abandon``).
        Returns what it raised, if anything but GeneratorExit; raises
        KeyboardInterrupt (a Ctrl-C while closing) after closing ``gp``'s
        books. ``start``: run ``gp`` from its start instead (a goroutine
        whose whole job is cleanup: an async generator's ``aclose``), on
        the same terms.

        Not ``coroutine.close()``: a ``finally`` that waits (a channel send,
        ``async with mu``) yields an unlock function with a lock held, and
        ``close()`` drops it ("coroutine ignored GeneratorExit"), leaving
        that lock held for ever. Here every yield is served: a park's
        unlock function is called and the G taken off the queue it joined,
        then a RuntimeError that says why is thrown into it (a goroutine
        cannot wait once its run is over: nobody would wake it); a gosched
        resumes it; a blocking call is made on this thread.
        """
        unpark(gp)
        self.curg = gp
        gp.status = _RUNNING
        coro = gp.coro
        ctx = gp.ctx
        send: Any = coro.send if start else coro.throw
        arg: Any = None if start else GeneratorExit()
        try:
            for _ in range(CLOSE_TRIES):
                try:
                    req = ctx.run(send, arg)
                except (StopIteration, GeneratorExit):
                    return None
                except KeyboardInterrupt:
                    raise
                except BaseException as e:
                    return e
                if req.__class__ is _Unlock:
                    gp.status = _WAITING
                    req()
                    unpark(gp)
                    gp.status = _RUNNING
                    send, arg = (
                        coro.throw,
                        RuntimeError(
                            f"goroutine {gp.id} ({gp.entry}) tried to wait "
                            f"({gp.wait_reason.value or 'park'}) while it was being closed at "
                            "the end of gr.run(); a goroutine left when main returns is "
                            "closed, and its finally/except blocks cannot wait"
                        ),
                    )
                elif req is GOSCHED:
                    send, arg = coro.send, None
                elif req is SYSCALL:
                    call_syscall(gp)
                    send, arg = coro.send, None
                else:
                    send, arg = coro.throw, foreign_await_error(gp, req)
            _abandoned.append(coro)
            return RuntimeError(
                f"goroutine {gp.id} ({gp.entry}) kept trying to wait while it was being "
                f"closed ({CLOSE_TRIES} times); it was left unfinished"
            )
        finally:
            self.curg = None
            gp.status = _DEAD
            gp.ctx = EMPTY_CTX

    def startlockedm(self, gp: G) -> None:
        """``gp`` is locked to another M: hand that M our P and wake it to run
        ``gp`` (Go's ``startlockedm``). We are left without a P."""
        mp = gp.locked_m
        assert mp is not None and mp.lockedg is gp
        p = self.p
        assert p is not None
        sched = self.sched
        with sched.lock:
            self.p = None
            p.m = None
            gp.status = _RUNNABLE
            mp.nextp = p
            if mp.parked:
                sched.nmlocked -= 1
                sched.wake_m_locked(mp)
            # else: mp has not parked yet; stoplockedm will find nextp set

    def stoplockedm(self) -> bool:
        """Our locked G cannot run now: hand off our P (if we still have one)
        and sleep until an M that picked the G hands us a P (Go's
        ``stoplockedm``). Returns True holding a P, False when stopping."""
        sched = self.sched
        start: list[M | None] = []
        park = False
        with sched.lock:
            p = self.p
            if p is not None:
                self.p = None
                p.m = None
                start.append(sched.handoffp_locked(p))
            if self.nextp is None and not sched.stopping:
                park = self.parked = True
                sched.nmlocked += 1
                # The last M to park may be this locked one, which runs no
                # other G: then another M takes the idle step.
                if sched.idle_work_locked() and sched.quiescent_locked(0):
                    start.append(sched.kick_idle_step_locked())
                else:
                    sched.checkdead()
        for m in start:
            if m is not None:
                m.thread.start()
        if park:  # consume the one wake-up, even if it came already
            self.note.acquire()
        with sched.lock:
            p, self.nextp = self.nextp, None
            if p is None:
                return False
            self.acquirep(p)
        return not sched.stopping

    def syscall(self, gp: G) -> bool:
        """Make the blocking call ``gp`` asked for (Go's entersyscall/exitsyscall).

        While the call runs our P is marked SYSCALL, and ``self.p`` is None so
        that anything the call itself readies goes to the global queue rather
        than into a P that sysmon may be handing off. If the call returns
        before sysmon notices (the fast path: no lock, no thread switch on
        the way in, one lock on the way out) we take our P back. Otherwise we
        take any idle P, or queue ``gp`` on the global queue and return False:
        this M then has no P and parks.

        The outcome is left in ``gp.elem``/``gp.success`` for ``syscall`` to
        return or raise when ``gp`` resumes, on this M or another.
        """
        p = self.p
        assert p is not None
        self.nsyscall += 1
        gp.status = _SYSCALL
        p.syscalltick += 1
        p.syscallwhen = time.monotonic()
        p.status = _P_SYSCALL
        self.p = None
        if p.runq:
            self.sched.sysmon.kick()
        tr = _tracer
        if tr is not None:
            tr.emit(_trace.EV_SYSCALL_BEGIN, gp.id, p.id)
        call_syscall(gp)
        sched = self.sched
        if tr is not None:
            # Whether sysmon took the P meanwhile (racy: the lock below decides).
            tr.emit(_trace.EV_SYSCALL_END, gp.id, p.m is not self)
        with sched.lock:
            if p.status == _P_SYSCALL and p.m is self:
                p.status = _P_RUNNING
                self.p = p
                gp.status = _RUNNING
                return True
            self.nsyscallslow += 1
            pp = sched.pidleget() if not sched.stopping else None
            if pp is not None:
                self.acquirep(pp)
                gp.status = _RUNNING
                return True
            self.curg = None
            gp.status = _RUNNABLE
            sched.runq.append(gp)
        return False

    def find_runnable(self) -> G | None:
        """Find a G to run: the order of Go's ``findRunnable``.

        1. timers that are due (they ready Gs into our runq);
        2. every 61st tick, the global queue first, then the local runq
           before ``runnext``, so neither a busy P nor a ping-pong pair in
           ``runnext`` can starve queued Gs;
        3. ``runnext``, then the local runq;
        4. the global queue;
        5. ready network I/O, if nobody is blocked in the poller;
        6. steal half of another P's runq (at most half the busy Ps spin);
        7. give the P back, re-check every queue, park (``park_idle``),
           in the poller if this M is the one waiting for timers and I/O.

        Returns None when the runtime is stopping. Holds a P throughout
        (possibly a different one after parking).
        """
        sched = self.sched
        timers = sched.timers
        while True:
            if sched.stopping:
                return None
            p = self.p
            assert p is not None
            if p.id >= sched.gomaxprocs:
                self.retirep()
                if not self.stopm():
                    return None
                continue

            nw = timers.next_when
            if nw != INF:
                now = _clock.now()
                if nw <= now and (nw <= now - TIMER_LATE or not sched.lower_running(p)):
                    # Of the running Ms, the one on the lowest P fires due
                    # timers (at each step); the others only once a timer is
                    # TIMER_LATE (that M's G keeps running). Under the GIL
                    # two Ms firing timers convoy on the timers' lock, and
                    # each keeps itself busy running the Gs it readied.
                    if _tracer is None:
                        timers.run_due()
                    else:
                        _tracer.run_timers(timers)

            p.schedtick += 1
            if sched.shuffle:
                gp = self.shuffle_pick(p)
                if gp is not None:
                    return gp
            if p.schedtick % 61 == 0:
                if sched.runq:
                    gp = sched.globrunqget(p, 1)
                    if gp is not None:
                        return gp
                if p.runq:
                    try:
                        return p.runq.popleft()
                    except IndexError:
                        pass

            rn = p.runnext
            if rn:
                try:
                    return rn.pop()
                except IndexError:  # a stealer took it
                    pass
            if p.runq:
                try:
                    return p.runq.popleft()
                except IndexError:
                    pass

            if sched.runq:
                gp = sched.globrunqget(p, 0)
                if gp is not None:
                    return gp

            netpoll = sched.netpoll
            if netpoll.nwaiters and sched.poll_m is None:
                # An optimization before stealing (as in Go): nobody is
                # blocked in the poller, so look for I/O that is ready.
                ready = netpoll.poll(0)
                if ready:
                    gp = ready.pop()
                    gp.status = _RUNNABLE
                    if ready:
                        sched.injectglist(ready)
                    # gp is ours now (we hold a P and run it next): no
                    # longer a waiter, like those on a run queue.
                    netpoll.adjust_waiters(-1 - len(ready))
                    return gp

            if self.spinning or 2 * sched.nmspinning < sched.gomaxprocs - len(sched.pidle):
                if not self.spinning:
                    with sched.lock:
                        self.spinning = True
                        sched.nmspinning += 1
                gp = self.steal_work(p)
                if gp is not None:
                    return gp

            if not self.park_idle():
                return None

    def shuffle_pick(self, p: P) -> G | None:
        """``GOROUTINES_DEBUG=shuffle=1``: take the next G from a random
        place (the global queue, ``runnext``, any place in our runq) rather
        than in Go's order, with the run's seeded ``rand``: interleavings
        that the usual order never makes are tried, and replay by seed."""
        rand = self.sched.rand
        where = rand.randrange(4)
        if where == 0 and self.sched.runq:
            try:
                return self.sched.runq.popleft()
            except IndexError:
                pass
        if where <= 1:
            gp = p.runnext_get()
            if gp is not None:
                return gp
        runq = p.runq
        n = len(runq)  # stealers may take some meanwhile: the rotation is still random
        if n:
            runq.rotate(-rand.randrange(n))
            try:
                return runq.popleft()
            except IndexError:
                pass
        return None

    def steal_work(self, p: P) -> G | None:
        """Steal half of some other P's runq; four passes in a random order."""
        sched = self.sched
        allp = sched.allp
        n = min(sched.gomaxprocs, len(allp))
        rand = sched.rand
        for _ in range(4):
            start = rand.randrange(n)
            for i in range(n):
                victim = allp[(start + i) % n]
                if victim is p:
                    continue
                if victim.stuck != victim.schedtick and (
                    not victim.runq or victim.status == _PRUNNING
                ):
                    continue  # nothing queued, or its M will get to it (P.stealable)
                gp = victim.runq_steal(p)
                if gp is not None:
                    self.nsteal += 1 + len(p.runq)
                    if _tracer is not None:
                        _tracer.emit(_trace.EV_STEAL, victim.id, p.id, 1 + len(p.runq))
                    return gp
        return None

    def resetspinning(self) -> None:
        """We were spinning and found work: stop spinning, and if we were the
        last spinner and more work is waiting for an M, wake another M for it
        (Go's ``resetspinning``). ``wakep`` skips the wake when no queue has
        work another M may take (our own runq is not such work: we are
        running), because under the GIL an M woken for nothing only slows
        the others."""
        sched = self.sched
        with sched.lock:
            self.spinning = False
            sched.nmspinning -= 1
        if sched.runq or sched.pidle:
            sched.wakep()

    def park_idle(self) -> bool:
        """Nothing to run: give the P back and park (Go's "delicate dance").

        Returns True holding a P (new work may be there), False when the
        runtime is stopping.

        The race to close: a G readies work into a run queue and checks
        (racily) for an idle P and no spinning M, at the same moment as this
        M, having found every queue empty, gives its P back. Either the
        submitter sees our P idle and no spinner (and wakes an M), or we see
        its work when we look at every queue again *after* publishing our P
        as idle and dropping our spinning state.
        """
        sched = self.sched
        p = self.p
        assert p is not None
        if sched.agens:  # here, not on a hot path: we hold no lock, and own our P
            drain_agens(sched)
            return True
        with sched.lock:
            if sched.stopping:
                return False
            if sched.runq:
                return True
            self.p = None
            sched.pidleput_locked(p)
            if self.spinning:
                self.spinning = False
                sched.nmspinning -= 1

        if sched.stealable_work():
            with sched.lock:
                pp = sched.pidleget()
                if pp is not None:
                    self.acquirep(pp)
                    self.spinning = True
                    sched.nmspinning += 1
                    return True
        return self.stopm()

    def retirep(self) -> None:
        """Our P was removed by ``gomaxprocs``: move its work to the global queue."""
        p = self.p
        assert p is not None
        sched = self.sched
        gp = p.runnext_get()
        if gp is not None:
            sched.runq.append(gp)
        while p.runq:
            try:
                sched.runq.append(p.runq.popleft())
            except IndexError:
                break
        with sched.lock:
            p.status = PStatus.DEAD
            p.m = None
            self.p = None
            if self.spinning:
                self.spinning = False
                sched.nmspinning -= 1
        sched.wakep()

    def stopm(self) -> bool:
        """Park this M (which holds no P) until it is given one.

        Returns True holding a P, False when this M should exit: the runtime
        is stopping, or the M was idle for IDLE_M_RETIRE while more than
        ``gomaxprocs`` Ms were idle. If no
        other M is waiting for the next timer, this one does, with a timeout;
        when it wakes it fires what is due, with a P if one is idle, else
        without (readied Gs then go to the global queue, which busy Ms check).
        """
        sched = self.sched
        timers = sched.timers
        netpoll = sched.netpoll
        while True:
            fire = False
            with sched.lock:
                if sched.stopping:
                    return False
                if self.spinning:
                    # A parked M is not spinning; whoever wakes it says
                    # whether it should (startm_locked), so keep the count
                    # of spinning Ms exact here or wakep stops waking anyone.
                    self.spinning = False
                    sched.nmspinning -= 1
                if sched.idle_work_locked() and sched.quiescent_locked(1):
                    # We are the last M to park, and something waits for
                    # the runtime to be quiescent (a G in ``gr.testing.wait()``,
                    # a virtual clock's next timer): take that step, with a
                    # P (every M parked: every P is idle), rather than park.
                    step = sched.idle_step_locked()
                    p = sched.pidleget() if step is not None else None
                    if p is not None:
                        self.acquirep(p)
                        fire = step is True
                if self.p is None:
                    sched.midle.append(self)
                    self.parked = True
                    timeout: float | None = None
                    retire = False
                    self.polling = False
                    if timers.nactive or netpoll.nwaiters:
                        # Wait for timers and I/O only if no other M is running:
                        # a running M fires due timers and polls when it runs out
                        # of work, and under the GIL a second M woken for each
                        # timer only takes the GIL and the timers' lock from it
                        # (sysmon covers a running M that stops scheduling).
                        if sched.poll_m is None and not sched.other_running(None):
                            sched.poll_m = self
                            timeout = timers.until_next()
                            if sched.vclock is not None:
                                # The next timer is on the virtual clock:
                                # the M that parks last moves it (above).
                                # Look again now and then all the same, so
                                # that a missed hand-over costs a pause, not
                                # a hang (the virtual delay is no real one).
                                timeout = VIRTUAL_POLL
                            self.polling = netpoll.inited
                    else:
                        sched.checkdead()
                    if sched.poll_m is not self:
                        timeout = IDLE_M_RETIRE
                        retire = True
            if self.p is not None:  # the idle step gave us work
                if fire:
                    if _tracer is None:
                        timers.run_due()
                    else:
                        _tracer.run_timers(timers)
                return True
            self.npark += 1
            ready: list[G] = []
            if self.polling:
                ready = netpoll.poll(timeout)
                woken = True
            else:
                woken = self.note.acquire(True, -1 if timeout is None else timeout)
            with sched.lock:
                if self.parked:  # timed out, or I/O: nobody took us off midle
                    self.parked = False
                    idle = len(sched.midle)
                    sched.midle.remove(self)
                    if retire:
                        if idle > sched.gomaxprocs:
                            return False  # more idle Ms than Ps could use: exit
                        continue  # still worth keeping: park again
                elif not woken:  # woken just as we timed out: consume the wake
                    self.note.acquire(False)
                self.polling = False
                if sched.poll_m is self:
                    sched.poll_m = None
                p, self.nextp = self.nextp, None
                if p is None and not sched.stopping:
                    p = sched.pidleget()
                if p is not None:
                    self.acquirep(p)
            if ready:
                sched.injectglist(ready)
                netpoll.adjust_waiters(-len(ready))
            if sched.stopping:
                return False
            if timers.next_when <= _clock.now():
                if _tracer is None:
                    timers.run_due()
                else:
                    _tracer.run_timers(timers)
            if self.p is not None:
                return True


if speedups is not None:
    speedups.init_schedule(
        M=M,
        P=P,
        Timers=Timers,
        G=G,
        Unlock=Unlock,
        running=_RUNNING,
        waiting=_WAITING,
        exit=_EXIT,
    )
    _c_schedule = speedups.schedule
