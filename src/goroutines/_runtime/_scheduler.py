"""Sched: the global scheduler state, and the verbs that move Gs, Ps and Ms.

One ``Sched`` per ``run()``; ``current`` points at it while it runs (one
runtime per process at a time: ``run`` is not re-entrant).

Waking Ms (Go's "worker thread parking/unparking", ``proc.go`` header). We
want enough running Ms to use the Ps, but under the GIL every M woken for
nothing costs the running ones, so we wake an M only when work is put where
another M should take it: the global queue, or the queue of a P whose M is
not getting to it (in a blocking call, or ``stuck``: sysmon saw its G keep
running). Work a running G readies or starts goes to its own P (``runnext``,
the G it displaces to the ``runq``) and wakes nobody: that P's M runs it
next. Go wakes an M for the displaced G and lets it steal half the queue;
under the GIL the second M adds no throughput, and two Ms running Python on
the same channels, timers and ``sched.lock`` convoy: a thread blocked on one
of these locks gets it while waiting for the GIL, so every later acquire by
the other M hands the GIL over (measured on W6 at procs=2: ~30 000 contended
timer-lock acquires and ~70 000 context switches a run, 1.5x slower than
procs=1). Real parallelism is kept where it exists: a blocking call's P is
handed off by sysmon, a G that computes (or releases the GIL in C code)
without yielding is seen by sysmon as stuck and an M steals from its P,
a small batch at a time (``P.runq_steal``). Rejected alternatives, as in Go:
waking an M on every ready (thrashes threads), keeping Ms spinning (burns a
core, and under the GIL slows the M doing the work), and handing work to a
specific M (needs to know which Ps are about to go idle). Chosen protocol:

1. A submitter puts a G on a run queue, then ``wakep``: if there is an idle P
   and no M is spinning, take the P and start an M for it as *spinning*.
2. A spinning M that finds work stops spinning and, if it was the last
   spinner and more work is queued, calls ``wakep`` again.
3. A spinning M that finds nothing gives its P back, stops spinning, then
   looks at every queue once more before parking (``M.park_idle``). Either
   the submitter of (1) sees the idle P and no spinner, or the parker sees
   the work: no lost wake-up.

Deadlock (``checkdead``): when the last M parks with no timer armed, no G
waiting on I/O or a signal and nothing queued, no G can become runnable
again unless a thread outside the runtime wakes one (``ch.close()`` from a
``threading.Timer``, ``gr.go`` from a worker thread). The main thread looks
twice, ``DEAD_GRACE`` apart (``confirm_dead``), and reports the deadlock
only if no such thread is alive: one that has already readied or started a
goroutine, or any thread started during the run. The rule and its
limits are in the README ("Reliability": "Deadlock, and threads").

Lock order: the ranked table in ``goroutines._runtime`` (``lock`` is
rank 10, SCHED; ``_run_lock`` rank 1).

Guards (``lock``, Go's ``sched.lock``): ``pidle``, ``midle``, ``allm``, ``mexited``, ``mcount``,
``nmspinning``, ``poll_m``, ``gomaxprocs``, ``allp`` (replaced, never
mutated, so racy readers see a consistent list), ``goidgen``, ``stopping``
(racy reads, stale OK: an M rechecks at each schedule step), the outcome
fields, ``idle_waiter``. ``runq`` (global) is a deque: append/popleft are
atomic, so it needs no lock; its length is a racy read. ``allgs`` is a
dict: each item set, delete and ``copy`` is atomic. ``vclock``: immutable.

Quiescence (the bubble of ``goroutines.testing``, Go's synctest): the
runtime is *quiescent* when every M is parked, nothing is queued and no G
waits on I/O (``quiescent_locked``): every G is durably blocked. Only an M
parking can make it so, and each parks under ``lock``, so the last one sees
it and takes the *idle step* instead of parking (``M.stopm``,
``idle_step_locked``): it readies the G in ``gr.testing.wait()``, or else
moves a virtual clock to the earliest timer and fires it. An M that stops
being counted without ``stopm`` (one that retires, or parks locked to its
G) hands the step to another M (``kick_idle_step_locked``).
"""

from __future__ import annotations

import os
import queue
import random
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable
from contextvars import copy_context
from typing import Any

from .._accel import speedups
from . import _clock, _goroutine, _netpoll, _trace
from ._clock import VirtualClock
from ._debug import _debug_flag
from ._goroutine import (
    EMPTY_CTX,
    G,
    GStatus,
    Site,
    Sites,
    Unlock,
    WaitReason,
    add_note,
    make_coroutine,
    new_g,
)
from ._lockrank import LockRank, new_lock
from ._machine import M, _tls, current_m
from ._netpoll import Netpoll
from ._processor import P, PStatus
from ._sysmon import Sysmon
from ._timers import INF, Timers

__all__ = [
    "Sched",
    "current",
    "current_g",
    "current_run_id",
    "getg_or_none",
    "go",
    "not_in_goroutine",
    "ready",
    "require",
]

#: The running runtime, or None. Written under ``_run_lock``.
current: Sched | None = None
_run_lock = new_lock(LockRank.RUN)
#: The number of the last ``run()`` of this process (``Sched.run_id``);
#: guarded by ``_run_lock``.
_last_run_id = 0


def current_run_id() -> int:
    """The number of the running ``run()``, 0 when none is running."""
    s = current
    return 0 if s is None else s.run_id


class Sched:
    def __init__(
        self, procs: int, seed: int | None = None, vclock: VirtualClock | None = None
    ) -> None:
        global _last_run_id
        with _run_lock:
            _last_run_id += 1
            #: Which ``run()`` of this process this is (1, 2, ...): objects
            #: bound to one run (timers, connections) name it in their errors.
            self.run_id = _last_run_id
        self.lock = new_lock(LockRank.SCHED, self)
        #: The seed of every random choice the runtime makes (select's poll
        #: order, steal victims, shuffle mode's picks): ``run(seed=)``, else
        #: ``GOROUTINES_SEED``, else a fresh one. ``seeded``: one was given.
        env_seed = _env_seed()
        self.seeded = seed is not None or env_seed is not None
        self.seed: int = (
            seed if seed is not None else env_seed if env_seed is not None else _fresh_seed()
        )
        self.rand = random.Random(self.seed)
        #: ``GOROUTINES_DEBUG=shuffle=1``: perturb scheduling at every pick
        #: (``M.shuffle_pick``) and ready (``ready``: runnext bypassed at random).
        self.shuffle = _debug_flag("shuffle")
        self.gomaxprocs = procs
        self.allp: list[P] = [P(i) for i in range(procs)]
        self.pidle: list[P] = []
        self.midle: list[M] = []
        self.allm: list[M] = []  # Ms whose thread has not exited
        #: The thread of every M of this run that had not exited when it
        #: began to stop (``stopms`` joins them).
        self.mthreads: list[threading.Thread] = []
        #: The counters (``M.COUNTERS``) of Ms that have exited, summed.
        self.mexited: dict[str, int] = dict.fromkeys(M.COUNTERS, 0)
        self.mcount = 0  # Ms started and not exited
        #: Set once the runtime is stopping and every M has left its loop
        #: (``stopms`` waits for it): counts the Ms made but whose thread has
        #: not started yet too, which a join of ``allm``'s threads would miss.
        self.mgone = threading.Event()
        self.mnext = 0
        self.nmspinning = 0
        self.poll_m: M | None = None
        self.runq: deque[G] = deque()
        self.timers = Timers(self.wake_poll_m)
        #: A bubble's virtual clock (``gr.testing.run``; installed as the
        #: runtime's clock while this run is ``current``), or None.
        self.vclock = vclock
        #: The G parked in ``gr.testing.wait()`` (at most one), readied when
        #: the runtime is next quiescent (``idle_step_locked``).
        self.idle_waiter: G | None = None
        self.netpoll = Netpoll(self.timers, self.wake_poll_m)
        self.allgs: dict[int, G] = {}
        self.sites = Sites()  # where Gs were created, interned (see Sites)
        self.goidgen = 2  # the main goroutine is 1, as in Go
        self.ngo = 0  # goroutines created (updated under lock in batches)
        self.main_g: G | None = None
        self.main_thread = threading.current_thread()
        self.maxthreads = _maxthreads()
        #: A coarse clock (``time.monotonic()`` as of sysmon's last round, at
        #: most ~10 ms old): what a parking G records as ``wait_since``. Dumps
        #: show waits in whole seconds, and Go's ``waitsince`` is approximate
        #: too; reading the clock and keeping a float per parked G is not
        #: worth it on every park (with 100 000 parked Gs, 32 bytes each).
        #: Written only by sysmon; readers take whatever float is there.
        self.now = time.monotonic()
        self.sysmon = Sysmon(self)
        # outcome
        self.stopping = False
        #: ``stopping`` or the world stopped (``stop_the_world``): an M that
        #: claims a G looks at this one field (``M.at_gate``). ``world`` is
        #: set while the world runs; ``nstw``: stops in progress.
        self.gate = False
        self.world = threading.Event()
        self.world.set()
        self.nstw = 0
        #: Set by ``run()`` (under ``lock``) once it has closed the goroutines
        #: left: an M that gives a G back after that closes it itself
        #: (``M.abandon``).
        self.closed = False
        self.done = threading.Event()
        #: Work for the thread blocked in ``run()`` (``call_on_main``); None
        #: means "the runtime is done". ``SimpleQueue`` is thread-safe, and
        #: its ``get`` is interruptible, so Ctrl-C and signal handlers still
        #: run on the main thread while it waits.
        #: ``DEADCHECK`` asks it to look for a deadlock (``checkdead``).
        self.mainq: queue.SimpleQueue[Any]
        self.mainq = queue.SimpleQueue()
        #: Channels registered by ``signal_notify``: while > 0, Gs waiting for
        #: a signal can still be woken, so ``checkdead`` reports no deadlock.
        self.nsignotify = 0
        #: Gs parked on something only the world outside the runtime can
        #: finish (``wait_future``): like sockets, they keep ``checkdead``
        #: quiet and the runtime from being quiescent.
        self.nexternal = 0
        #: Set by ``checkdead`` when the runtime looks deadlocked; the main
        #: thread then looks again (``confirm_dead``). ``deadseen``: the
        #: ``nforeign`` count at its first look (-1: none yet).
        self.deadcheck = False
        self.deadseen = -1
        #: How soon the main thread looks again while ``deadcheck`` is set.
        self.deadpoll = DEAD_GRACE
        #: Threads that are not Ms and have readied or started a goroutine
        #: (ident -> thread), and how many times they did: see ``live_waker``.
        self.wakers: dict[int | None, threading.Thread] = {}
        self.nforeign = 0
        #: The threads alive when this run started (``live_waker``).
        self.prior_threads = frozenset(threading.enumerate())
        #: Ms asleep in ``stoplockedm`` until their locked G can run: not
        #: idle (nobody else may use them) but not running either.
        self.nmlocked = 0
        self.result: Any = None
        #: Called by ``run()`` once the run is over and its goroutines are
        #: closed (a Group reports errors nobody retrieved). Appended to
        #: from goroutines (a list append is atomic); read by ``run()`` only.
        self.at_exit: list[Callable[[], None]] = []
        #: Async generators the garbage collector dropped, to ``aclose()`` in
        #: goroutines (``_asyncgen``): appended from any thread, taken by an
        #: M in ``find_runnable`` (deque append/popleft are atomic).
        self.agens: deque[Any] = deque()
        self.panic: BaseException | None = None
        self.deadlock = False

    # -- Ps -----------------------------------------------------------------

    def pidleget(self) -> P | None:
        """Take an idle P. ``lock`` held.

        The only way a P leaves ``pidle`` for an M: so it is where sysmon,
        asleep while every P was idle (Go's ``sysmonwait``), is woken.
        """
        if not self.pidle:
            return None
        sysmon = self.sysmon
        if sysmon.waiting:
            sysmon.waiting = False
            # sysmon's coarse clock stopped while it slept: Gs about to park
            # read it for their dumps' "waiting N seconds".
            self.now = time.monotonic()
            sysmon.wake()
        return self.pidle.pop()

    def pidleput_locked(self, p: P) -> None:
        """Put ``p`` on the idle list (Go's ``pidleput``). ``lock`` held.

        Its queues are empty (asserted): only a P's owner appends to them,
        and an owner gives its P up only once it found them empty (or, for
        a P taken from an M in a blocking call, ``handoffp_locked`` found
        them empty: nobody appends to such a P's queues). So an idle P has
        nothing for a stealer to take, and ``procresize`` may drop it.
        """
        assert p.runq_empty(), p
        p.status = PStatus.IDLE
        p.m = None
        self.pidle.append(p)

    def procresize(self, n: int) -> int:
        """Change the number of Ps to ``n`` while running; return the old number.

        New Ps go idle (and an M is woken if work is queued). Removed idle Ps
        die at once; a removed P that an M holds is retired by that M within
        61 schedule steps, the next time it looks beyond its own queues
        (``M.retirep``), which moves its Gs to the global queue.
        """
        with self.lock:
            old = self.gomaxprocs
            allp = list(self.allp)
            while len(allp) < n:
                allp.append(P(len(allp)))
                allp[-1].status = PStatus.DEAD
            for p in allp[old:n]:
                if p.status == PStatus.DEAD:
                    self.pidleput_locked(p)
            if n < old:
                for p in [p for p in self.pidle if p.id >= n]:
                    # An idle P's queues are empty (``pidleput_locked``),
                    # so no stealer can be reading them: it just dies.
                    assert p.runq_empty(), p
                    self.pidle.remove(p)
                    p.status = PStatus.DEAD
            self.allp = allp
            self.gomaxprocs = n
        self.wakep()
        return old

    def globrunqget(self, p: P, most: int) -> G | None:
        """Take a G from the global queue, and a fair share more into ``p``'s runq
        (at most ``most`` in all if > 0). Owner M of ``p``; no lock needed."""
        q = self.runq
        n = len(q) // self.gomaxprocs + 1
        if most and n > most:
            n = most
        try:
            gp = q.popleft()
        except IndexError:
            return None
        runq = p.runq
        try:
            for _ in range(n - 1):
                runq.append(q.popleft())
        except IndexError:
            pass
        return gp

    # -- Ms -----------------------------------------------------------------

    def wakep(self) -> None:
        """Start a spinning M on an idle P, unless an M is already spinning."""
        if self.nmspinning or not self.pidle or self.stopping:
            return
        with self.lock:
            if self.nmspinning or not self.pidle or self.stopping:
                return
            if not self.stealable_work():
                return
            p = self.pidleget()
            assert p is not None
            self.nmspinning += 1
            m = self.startm_locked(p, spinning=True)
        if m is not None:
            m.thread.start()

    def stealable_work(self) -> bool:
        """Whether some queue holds work that an idle M would take (racy):
        the global queue, or the queue of a P whose own M is not going to get
        to it soon (``P.stealable``, or a ``stuck`` P's ``runnext``)."""
        if self.runq:
            return True
        for p in self.allp[: self.gomaxprocs]:
            if p.stealable() or (p.runnext and p.stuck == p.schedtick):
                return True
        return False

    def other_running(self, p: P | None) -> bool:
        """Whether a P other than ``p`` is held by a running M (racy)."""
        for pp in self.allp[: self.gomaxprocs]:
            if pp.status == PStatus.RUNNING and pp is not p:
                return True
        return False

    def lower_running(self, p: P) -> bool:
        """Whether a P with a lower id than ``p`` is held by a running M (racy)."""
        # A plain loop, not any(genexpr): this is on every timer check
        # (W6 makes ~60 000), and P0 has nothing below it.
        for pp in self.allp[: p.id]:  # noqa: SIM110 - see above
            if pp.status == _P_RUNNING:
                return True
        return False

    def startm_locked(self, p: P, spinning: bool) -> M | None:
        """Give ``p`` to an idle M (woken) or to a new one, returned for the
        caller to start once it has dropped ``lock``. ``lock`` held."""
        p.status = PStatus.RUNNING
        if self.midle:
            m = self.midle.pop()
            m.nextp = p
            m.spinning = spinning
            self.wake_m_locked(m)
            return None
        if self.mcount >= self.maxthreads:
            # Go's "program exceeds 10000-thread limit": fatal, not a hang.
            if self.panic is None:
                self.panic = RuntimeError(
                    f"goroutines: program exceeds {self.maxthreads}-thread limit "
                    "(GOROUTINES_MAXTHREADS): too many goroutines blocked in gr.syscall"
                )
            self.stop_locked()
            self.pidleput_locked(p)
            return None
        m = M(self, self.mnext, p, spinning)
        self.mnext += 1
        self.mcount += 1
        self.allm.append(m)
        self.mthreads.append(m.thread)
        return m

    def injectglist(self, gs: list[G]) -> None:
        """Make a batch of Gs runnable at once (Go's ``injectglist``): what
        netpoll found ready. Onto the calling M's P's runq if it has one,
        else onto the global queue; then one ``wakep`` for the batch (a
        started M that finds more work than it takes wakes the next one),
        rather than ``ready``'s runnext shuffle and check per G."""
        for g in gs:
            g.status = _RUNNABLE
        try:
            m: M | None = _tls.m
        except AttributeError:
            m = None
        p = m.p if m is not None else None
        # extend: only the owner appends to a P's runq, and the global queue
        # is a deque (a deque's methods are atomic, with or without the GIL).
        (p.runq if p is not None else self.runq).extend(gs)
        self.wakep()

    def handoffp_locked(self, p: P) -> M | None:
        """Find work for ``p``, whose M is stuck in a syscall (Go's ``handoffp``).
        ``lock`` held; returns a new M for the caller to start after unlocking.

        If it has queued Gs, or there is global work, start an M on it. If
        no M is spinning and no P is idle, start a spinning M on it to look
        for work (nobody else would). If it is the last P and nobody waits
        in the poller, start an M to wait there. Otherwise it just goes idle.
        """
        m: M | None = None
        if not p.runq_empty() or self.runq:
            to, m = "an M for its work", self.startm_locked(p, spinning=False)
        elif self.nmspinning + len(self.pidle) == 0:
            self.nmspinning += 1
            to, m = "a spinning M", self.startm_locked(p, spinning=True)
        elif (
            len(self.pidle) == self.gomaxprocs - 1
            and self.poll_m is None
            and (self.netpoll.nwaiters or self.timers.nactive)
        ):
            # The last P going idle, and no M waits for I/O and timers (the
            # others are in blocking calls too): start one that will, or a
            # socket that becomes ready waits for sysmon, asleep while every
            # P is idle (Go's handoffp does the same).
            to, m = "an M for the poller", self.startm_locked(p, spinning=False)
        else:
            to = "idle"
            self.pidleput_locked(p)
        if _tracer is not None:
            _tracer.emit(_trace.EV_HANDOFF, p.id, to)
        return m

    def wake_m_locked(self, m: M) -> None:
        """Wake a parked M, at most once per park. ``lock`` held."""
        if not m.parked:
            return
        m.parked = False
        if m in self.midle:
            self.midle.remove(m)
        # poll_m stays set: the M clears it once it is out of its wait, so
        # that no second M starts waiting in the poller meanwhile.
        if m.polling:
            self.netpoll.wakeup()
        else:
            m.note.release()

    def wake_poll_m(self) -> None:
        """A timer became the earliest: wake the M sleeping until the old
        earliest; if no M is waiting for timers, start one on an idle P (Go's
        ``wakeNetPoller``), or a goroutine computing on the only busy M would
        keep the timer from firing until it yields."""
        if self.poll_m is None:
            if not self.pidle or self.nmspinning:
                return
            cm = current_m()
            if cm is not None and cm.p is not None:
                # A running M fires due timers at each schedule step; if its
                # G keeps running instead, sysmon sees the timer late and
                # calls us from its own thread.
                return
        m: M | None = None
        with self.lock:
            if self.poll_m is not None:
                self.wake_m_locked(self.poll_m)
            elif self.pidle and not self.nmspinning and not self.stopping:
                self.nmspinning += 1
                p = self.pidleget()
                assert p is not None
                m = self.startm_locked(p, spinning=True)
        if m is not None:
            m.thread.start()

    def mexit(self, m: M) -> None:
        """``m``'s thread is leaving: forget it (an M retired after being
        idle must not stay in ``allm``, or a server with bursts of blocking
        calls would keep every M it ever started)."""
        with self.lock:
            self.mcount -= 1
            if m in self.midle:
                self.midle.remove(m)
            self.allm.remove(m)
            for k in M.COUNTERS:
                self.mexited[k] += getattr(m, k)
            kick = None
            if self.stopping:
                if self.mcount == 0:
                    self.mgone.set()
            else:  # a retiring M: nobody will join it (mthreads stays bounded)
                self.mthreads.remove(m.thread)
                kick = self.kick_idle_step_locked()
        if kick is not None:
            kick.thread.start()

    def mcounters(self) -> dict[str, int]:
        """Each of ``M.COUNTERS`` summed over every M this runtime started.
        Racy for Ms still running (a snapshot for stats and tests)."""
        with self.lock:
            total = dict(self.mexited)
            for m in self.allm:
                for k in M.COUNTERS:
                    total[k] += getattr(m, k)
        return total

    def checkdead(self) -> None:
        """Called by an M about to park with no timer armed. ``lock`` held.

        If every M is now idle and nothing is queued, armed or awaited, no G
        can run again unless a thread outside the runtime wakes one: ask the
        main thread to decide (``confirm_dead``). (Work still queued at this
        point would be a lost wake-up: start an M for it instead.)

        Every counter trusted here must cover the Gs in someone's hands, or
        an M parking while they are in flight sees a dead runtime (Go keeps
        the same rule):

        - I/O: ``netpoll.nwaiters`` counts Gs a poll found until they are
          queued (``Netpoll.adjust_waiters``), whoever polled: an idle M (in
          ``midle`` while it polls), an M with a P, or sysmon (no M at all).
        - Timers: ``run_due`` drops ``nactive`` before it readies the Gs, but
          it only runs on an M that is not in ``midle`` (``find_runnable``,
          or ``stopm`` after leaving ``midle``): that M counts as running.
        - Blocking calls: an M in ``syscall`` is not idle; on its way back
          it queues its G under ``lock`` before it parks, and parking sees it.
        - Signals: ``nsignotify`` while a channel is registered; the relay
          thread that readies a G counts as a waker (``note_foreign``).
        - Threads: a dequeued G on its way to ``ready`` from a thread is in no
          counter: the two looks of ``confirm_dead`` cover it.
        """
        if len(self.midle) + self.nmlocked < self.mcount or self.nsignotify or self.nexternal:
            return
        if self.timers.nactive or self.netpoll.nwaiters or self.idle_waiter is not None:
            return
        if self.runq or any(not p.runq_empty() for p in self.allp):
            p = self.pidleget()
            if p is not None:
                m = self.midle.pop()
                m.nextp = p
                self.wake_m_locked(m)
            return
        if not self.deadcheck:
            self.deadcheck = True
            self.deadpoll = DEAD_GRACE
            self.mainq.put(DEADCHECK)  # wakes the main thread; see confirm_dead

    def quiescent_locked(self, parking: int) -> bool:
        """Whether every goroutine is durably blocked: every M parked (so no
        G runs or is in a blocking call), counting ``parking`` Ms about to
        park and not yet in ``midle``; nothing queued; no G waiting on I/O.
        Sleeping, and waiting on a channel, select, sync primitive or
        signal, are durable: only another goroutine or a timer ends them.
        ``lock`` held (it is what every M takes to park)."""
        return (
            len(self.midle) + self.nmlocked + parking == self.mcount
            and not self.netpoll.nwaiters
            and not self.nexternal
            and not self.runq
            and all(p.runq_empty() for p in self.allp)
        )

    def idle_work_locked(self) -> bool:
        """Whether a quiescent runtime has a next step (``idle_step_locked``)."""
        return self.idle_waiter is not None or (
            self.vclock is not None and self.timers.next_when != INF
        )

    def kick_idle_step_locked(self) -> M | None:
        """An M left (``mexit``) or parked locked to its G (``stoplockedm``)
        without passing through ``stopm``: if that made the runtime
        quiescent with an idle step to take, give an idle P to an M that
        will take it (``stopm``). Returns a new M for the caller to start
        once it has dropped ``lock``. ``lock`` held."""
        if self.stopping or not (self.idle_work_locked() and self.quiescent_locked(0)):
            return None
        p = self.pidleget()
        if p is None:
            return None
        return self.startm_locked(p, spinning=False)

    def idle_step_locked(self) -> bool | None:
        """The runtime is quiescent: take the next step, as Go's synctest
        does. First the G in ``gr.testing.wait()`` is readied (onto the
        global queue; False); else a virtual clock moves to the earliest
        timer (True: the caller runs the timers, holding a P, once it has
        dropped ``lock``). None: neither applies. ``lock`` held."""
        gp = self.idle_waiter
        if gp is not None:
            self.idle_waiter = None
            gp.status = _RUNNABLE
            if _tracer is not None:  # readied by no one: the quiescence
                _tracer.unpark(gp, "quiescent")
            self.runq.append(gp)
            return False
        vc = self.vclock
        nw = self.timers.next_when
        if vc is not None and nw != INF:
            vc.advance(nw)
            return True
        return None

    def all_idle_locked(self) -> bool:
        """``checkdead``'s test: every M idle, nothing queued, armed or awaited."""
        return (
            len(self.midle) + self.nmlocked == self.mcount
            and not self.nsignotify
            and not self.nexternal
            and self.idle_waiter is None
            and not self.timers.nactive
            and not self.netpoll.nwaiters
            and not self.runq
            and all(p.runq_empty() for p in self.allp)
        )

    def note_foreign(self) -> None:
        """A thread that is not an M readied or started a goroutine: it may do
        so again, so while it lives no deadlock is reported (see
        ``live_waker``). Any thread; a dict item set is atomic."""
        self.nforeign += 1  # racy: only compared for change by confirm_dead
        t = threading.current_thread()
        if self.wakers.get(t.ident) is not t:
            self.wakers[t.ident] = t

    def live_waker(self) -> threading.Thread | None:
        """A live thread outside the runtime that may still wake a goroutine:
        one that has (``note_foreign``), or any thread started while this
        run was on (a ``threading.Timer`` that will close a channel, a
        worker thread, ...). Threads that were there before ``run()`` and
        have not touched the runtime do not count, nor do the runtime's own.
        (Whether a thread is a daemon says nothing here: a thread started by
        a goroutine inherits ``daemon=True`` from its M.)"""
        for t in list(self.wakers.values()):
            if t.is_alive():
                return t
        for t in threading.enumerate():
            if t not in self.prior_threads and not t.name.startswith(THREAD_PREFIX):
                return t
        return None

    def confirm_dead(self) -> bool:
        """Main thread, while ``deadcheck`` is set: look again. Report the
        deadlock only when the runtime was idle at two looks ``DEAD_GRACE``
        apart with no thread outside it that could still wake a goroutine
        alive, and no such thread woke one in between (a wake-up in flight
        from a thread: dequeued from a channel, not yet on a run queue, is
        invisible to one look). Returns whether ``deadcheck`` is still set
        (look again in ``DEAD_GRACE``)."""
        with self.lock:
            if not self.deadcheck:
                return False
            if not self.all_idle_locked() or self.stopping:
                self.deadcheck = False
                self.deadseen = -1
                return False
            if self.live_waker() is not None:
                self.deadseen = -1
                self.deadpoll = WAKER_POLL
                return True
            self.deadpoll = DEAD_GRACE
            if self.deadseen != self.nforeign:
                self.deadseen = self.nforeign  # the first look; confirm at the next
                return True
            self.deadcheck = False
            self.deadlock = True
            self.stop_locked()
            return False

    # -- Gs -----------------------------------------------------------------

    def goidbatch(self, p: P | None) -> int:
        """A fresh goroutine id, for a G created on ``p`` (None: not on an M
        with a P). Ids come in batches of 16 per P, as in Go, so that most
        ``go`` calls take no lock; this is the refill (and the no-P case)."""
        with self.lock:
            gid = self.goidgen
            n = 16 if p is not None else 1
            self.goidgen += n
            self.ngo += n
        if p is not None:
            p.goidcache = gid
            p.goidcacheend = gid + 16
        return gid

    def goexit(self, gp: G, value: Any, exc: BaseException | None) -> None:
        """``gp`` finished (returned ``value`` or raised ``exc``). On its M."""
        gp.status = _DEAD
        self.allgs.pop(gp.id, None)
        lm = gp.locked_m
        if lm is not None:
            lm.lockedg = None
            lm.lockedcount = 0
            gp.locked_m = None
        gp.ctx = EMPTY_CTX
        if gp is self.main_g:
            if exc is not None:
                asyncio_hint(exc)
            with self.lock:
                if exc is not None and self.panic is None:
                    self.panic = exc
                self.result = value
                self.stop_locked()
        elif exc is not None:
            self.gopanic(gp, exc)

    def gopanic(self, gp: G, exc: BaseException) -> None:
        """An exception escaped a goroutine: stop the runtime, ``run()`` raises it."""
        asyncio_hint(exc)
        note = f"raised in goroutine {gp.id} ({gp.entry})"
        if gp.created_by is not None:
            f, line, fn = gp.created_by
            note += f", created by {fn} at {f}:{line}"
        add_note(exc, note)
        with self.lock:
            if self.panic is None:
                self.panic = exc
            else:
                add_note(self.panic, f"also, {type(exc).__name__}: {exc} ({note})")
            self.stop_locked()

    def set_signal_waiters(self, n: int) -> None:
        """``n`` channels are registered for signals (``_signal``): while
        there are any, a goroutine waiting on one may still be woken, so
        ``checkdead`` reports no deadlock."""
        with self.lock:
            self.nsignotify = n

    def fatal(self, exc: BaseException) -> None:
        """Stop; ``run()`` raises ``exc`` (the scheduler itself failed, Go's
        ``throw``, or a program error found outside any goroutine, such as a
        signal relayed to a closed channel), unless something was raised first."""
        with self.lock:
            if self.panic is None:
                self.panic = exc
            self.stop_locked()

    def stop_locked(self) -> None:
        """Stop the runtime: every M leaves its loop at its next step. ``lock`` held."""
        if not self.stopping:
            self.mainq.put(None)
        self.stopping = True
        self.gate = True
        if self.mcount == 0:
            self.mgone.set()
        self.sysmon.wake()
        for m in list(self.allm):  # idle ones, and locked ones waiting for their G
            self.wake_m_locked(m)
        self.done.set()

    def stop(self) -> None:
        with self.lock:
            self.stop_locked()

    def stop_the_world(self, timeout: float = -1) -> bool:
        """From now until ``start_the_world``, no M starts stepping a G (Go's
        stopTheWorld, for goroutine dumps): the frames of every G that is
        not RUNNING or SYSCALL can be read safely (see ``M.at_gate``). Gs
        already running go on (their stacks are not read). Any thread.
        Returns False, having stopped nothing, if ``lock`` could not be
        taken within ``timeout`` (a signal handler that interrupted its own
        thread while it held it)."""
        if not self.lock.acquire(True, timeout):
            return False
        try:
            self.nstw += 1
            self.gate = True
            self.world.clear()
        finally:
            self.lock.release()
        return True

    def start_the_world(self) -> None:
        with self.lock:
            self.nstw -= 1
            if self.nstw == 0:
                self.gate = self.stopping
                self.world.set()


# Enum members bound once: ``GStatus.DEAD`` goes through EnumType.__getattr__
# (~70 ns on 3.11), a module global is a dict hit.
_RUNNABLE = GStatus.RUNNABLE
_WAITING = GStatus.WAITING
_P_RUNNING = PStatus.RUNNING
_DEAD = GStatus.DEAD


def asyncio_hint(exc: BaseException) -> None:
    """asyncio code run in a goroutine fails with "no running event loop":
    say what to do instead."""
    if type(exc) is RuntimeError and str(exc) == "no running event loop":
        add_note(
            exc,
            "goroutines: asyncio code needs an asyncio event loop; from a goroutine, "
            "run it with await gr.from_asyncio(coro) (the runtime's own loop)",
        )


def _env_seed() -> int | None:
    raw = os.environ.get("GOROUTINES_SEED", "").strip()
    if not raw:
        return None
    try:
        return int(raw, 0)
    except ValueError:
        raise ValueError(f"GOROUTINES_SEED must be an integer, got {raw!r}") from None


def _fresh_seed() -> int:
    return int.from_bytes(os.urandom(6), "big")


def _maxthreads() -> int:
    raw = os.environ.get("GOROUTINES_MAXTHREADS", "")
    if not raw:
        return 10_000
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"GOROUTINES_MAXTHREADS must be a positive integer, got {raw!r}")
    return n


#: The names of the runtime's own threads (Ms, sysmon, the signal relay) start so.
THREAD_PREFIX = "goroutines-"
#: ``current.shuffle``, read by ``ready`` at every wake-up (a global is
#: cheaper than two attribute loads); written by ``start``.
_shuffle = False
#: Put on ``mainq`` by ``checkdead``: the main thread looks again (``confirm_dead``).
DEADCHECK: Any = object()
#: How long apart the main thread's two looks at a runtime that seems dead are.
DEAD_GRACE = 0.02
#: How often it looks while a thread that may wake a goroutine is alive.
WAKER_POLL = 0.1


def ready(gp: G) -> None:
    """Make a parked G runnable (Go's ``goready``). Any thread.

    From a running G (or an M with a P) it goes to that P's ``runnext``, so
    the woken G runs next on this M; the G it displaces goes to the runq,
    and only then is another M worth waking. From anywhere else it goes to
    the global queue.
    """
    assert gp.status is _WAITING, gp  # taken off a wait queue: see _chan's invariants
    gp.status = _RUNNABLE
    try:  # 3.11: ~25 CPU instructions less than ``_tls.__dict__.get("m")``
        m: M | None = _tls.m
    except AttributeError:
        m = None
    if m is not None:
        p = m.p
        if p is not None:
            if _shuffle and m.sched.rand.random() < 0.5:
                p.runq.append(gp)  # shuffle mode: bypass runnext
                return
            rn = p.runnext
            if rn:
                p.runnext_put(gp)  # no wakep: see "Waking Ms" above
            else:
                rn.append(gp)
            return
        sched = m.sched
    else:
        sched = require()
        sched.note_foreign()
    sched.runq.append(gp)
    sched.wakep()


# Waiters are woken through ``wake()``; for a G that is ``ready`` itself (one
# call, not two: it is on every channel hand-off).
G.wake = ready  # type: ignore[method-assign,assignment]
_goroutine.goready = ready


def call_on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn()`` on the thread blocked in ``run()`` (signal handlers can
    only be installed there) and return its result or raise its exception.
    Blocks the calling thread for as long as that takes: the main thread
    does nothing else while the runtime runs."""
    sched = require()
    if threading.current_thread() is sched.main_thread:
        return fn()
    box: list[Any] = []
    ev = threading.Event()
    sched.mainq.put((fn, box, ev))
    ev.wait()
    ok, value = box
    if ok:
        return value
    raise value


def require() -> Sched:
    s = current
    if s is None:
        raise RuntimeError("no goroutines runtime is running: call this inside gr.run()")
    return s


def getg_or_none() -> G | None:
    """The G running on this thread, or None (Go's ``getg``, which cannot fail)."""
    try:
        return _tls.m.curg  # type: ignore[no-any-return]
    except AttributeError:  # not an M's thread
        return None


def sleep_park(when: float) -> Unlock:
    """What ``sleep`` yields to park the calling G until monotonic ``when``:
    the G is its own timer, pushed on the heap by ``Timers.arm_sleep`` once
    it is suspended (Go's ``resetForSleep``), with the time in ``g.elem``.
    RuntimeError outside a goroutine."""
    try:
        m: M = _tls.m
        g = m.curg
    except AttributeError:  # not an M's thread
        g = None
    if g is None:
        raise not_in_goroutine()
    g.elem = when
    g.wait_reason = _SLEEP
    return Unlock(m.sched.timers.arm_sleep, g)


def poll_open(fd: int) -> Any:
    """Register the non-blocking ``fd`` with the running runtime's poller
    and return its ``PollDesc`` (Go's ``runtime_pollOpen``)."""
    return require().netpoll.open(fd)


def shuffle(cases: list[Any]) -> None:
    """Shuffle ``cases`` with the running runtime's seeded generator (the
    module's outside one): a replay with the same seed makes the same choices."""
    try:
        rand = _tls.m.sched.rand
    except AttributeError:  # not an M's thread
        rand = random
    rand.shuffle(cases)


def not_in_goroutine() -> RuntimeError:
    """The error of a call that needs a goroutine, made outside one."""
    return RuntimeError("not inside a goroutine: call this from code run by gr.run() or gr.go()")


def current_g() -> G:
    """The G running on this thread; RuntimeError outside a goroutine."""
    try:
        g = _tls.m.curg
    except AttributeError:
        g = None
    if g is None:
        raise not_in_goroutine()
    return g  # type: ignore[no-any-return]


_getframe = sys._getframe
_FunctionType = types.FunctionType
_CO_COROUTINE = 0x80
_NO_REASON = WaitReason.NONE
_SLEEP = WaitReason.SLEEP


async def _nothing() -> None:
    """``_last_fn``'s first value (a plain async function, as every later one)."""


#: One-entry caches of ``go`` (``go`` in a loop starts the same function from
#: the same place): the last plain async function it was given (the checks of
#: ``fn.__class__`` and ``fn.__code__`` are generic attribute lookups, ~5% of
#: W2), and the last creation site. Any thread: a stale or lost write only
#: costs a lookup; each holds one object alive.
_last_fn: Any = _nothing
_last_site: Site = (_nothing.__code__, -1)  # no bytecode offset is -1


#: The execution tracer recording, or None (``_trace``: it sets this).
_tracer: Any = None


def go(fn: Any, /, *args: Any, **kwargs: Any) -> None:
    """Start ``fn(*args, **kwargs)`` as a new goroutine and return at once
    (Go's ``go`` statement). ``fn`` is an async function, or pass a
    coroutine object alone.

        gr.go(worker, jobs, results)
        gr.go(ch.send, 42)

    An exception that escapes the goroutine stops the program: gr.run()
    raises it, noted with the goroutine and where it was started (use
    gr.Group to collect errors instead). TypeError if fn is not async;
    RuntimeError with no runtime running. Safe to call from any thread.
    """
    # Go's ``newproc``: create a G (``new_g``) and put it in this P's
    # ``runnext`` (or on the global queue when not called from a goroutine).
    # W2 spawns 100 000 goroutines: a plain async function skips
    # ``make_coroutine``'s checks (calling it can only give a coroutine), and
    # the creation site is looked up in ``Sched.sites`` through one-entry
    # caches.
    sched = current
    if sched is None:
        if isinstance(fn, types.CoroutineType):
            fn.close()  # it will never run: don't leave a "never awaited" warning behind
        require()
        raise AssertionError  # pragma: no cover - require raised
    global _last_fn, _last_site
    if fn is _last_fn:
        coro = fn(*args, **kwargs)
    elif fn.__class__ is _FunctionType and fn.__code__.co_flags & _CO_COROUTINE:
        _last_fn = fn
        coro = fn(*args, **kwargs)
    else:
        coro = make_coroutine(fn, args, kwargs, "go()")
    try:
        f = _getframe(1)
    except ValueError:  # called from C with no Python frame above
        site: Site | None = None
    else:
        code = f.f_code
        lasti = f.f_lasti
        site = _last_site
        if site[0] is not code or site[1] != lasti:
            at = sched.sites.codes.get(id(code))
            site = at.get(lasti) if at is not None else None
            if site is None:
                site = sched.sites.intern(code, lasti)
            _last_site = site
    try:
        m: M | None = _tls.m
    except AttributeError:
        m = None
    p = m.p if m is not None else None
    if p is not None:
        gid = p.goidcache
        if gid == p.goidcacheend:
            gid = sched.goidbatch(p)
        p.goidcache = gid + 1
    else:
        gid = sched.goidbatch(None)
    gp = new_g(gid, coro, copy_context(), site)
    sched.allgs[gid] = gp
    if _tracer is not None:
        _tracer.create(gp, m.curg if m is not None else None)
    if p is not None:
        p.runnext_put(gp)  # Go's newproc: our runnext; the G there moves to our runq
    else:
        if m is None:
            sched.note_foreign()
        sched.runq.append(gp)
        sched.wakep()


def start(sched: Sched, main: Any, args: tuple[Any, ...]) -> None:
    """Install ``sched`` as the running runtime and start M0 with the main G."""
    global current, _shuffle
    with _run_lock:
        if current is not None:
            raise RuntimeError("gr.run() called while a goroutines runtime is already running")
        coro = make_coroutine(main, args, {}, "run()")
        current = sched
        _shuffle = sched.shuffle
        _clock.install(sched.vclock)
    gp = new_g(1, coro, copy_context(), None)
    sched.main_g = gp
    sched.allgs[1] = gp
    if _tracer is not None:  # GOROUTINES_TRACE: started just before
        _tracer.create(gp, None)
    with sched.lock:
        p0 = sched.allp[0]
        sched.pidle = sched.allp[:0:-1]
        p0.runq.append(gp)
        m0 = sched.startm_locked(p0, spinning=False)
    assert m0 is not None
    m0.thread.start()
    sched.sysmon.start()


def stopms(sched: Sched) -> None:
    """Stop ``sched`` and wait (up to a second) for its Ms to leave their loops
    and their threads to end. Main thread, after ``done``. An M stuck in a
    goroutine that never yields is left behind (it is a daemon thread)."""
    sched.stop()
    sched.sysmon.stop()
    me = threading.current_thread()
    deadline = time.monotonic() + 1.0
    # mcount, not allm's threads: an M made just before the stop may not
    # have started its thread yet (startm starts it after dropping the lock).
    sched.mgone.wait(1.0)
    with sched.lock:
        threads = [t for t in sched.mthreads if t is not me and t.is_alive()]
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if sched.mgone.is_set():
        sched.netpoll.close()


def uninstall(sched: Sched) -> None:
    global current
    with _run_lock:
        if current is sched:
            current = None
            _clock.install(None)


if speedups is not None:
    # ``gr.go``'s common case in C (``_speedups.go``); it calls this ``go``
    # for every other case.
    speedups.init_go(fallback=go, reason_none=_NO_REASON, dead=_DEAD, empty_ctx=EMPTY_CTX)
    # ``ready`` in C for its common case (``G.wake``, a method made in C;
    # ``goready`` is the same, unbound); the reference for every other.
    G.wake = speedups.init_ready(  # type: ignore[method-assign]
        fallback=ready, sched_globals=globals(), runnable=_RUNNABLE
    )
    _goroutine.goready = G.wake

# The doors _netpoll uses (it cannot import this module: see there).
_netpoll.current_g = current_g
_netpoll.current_run_id = current_run_id
