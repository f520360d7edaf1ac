"""P: a processor, the right to run goroutines, with its local run queue.

There are ``gomaxprocs`` Ps. An M must hold a P to run a G. A P carries the
local run queue and the ``runnext`` slot, so when a P moves from one M to
another (an M parks, or later is stuck in a syscall) its queued work moves
with it.

Guards:

- ``runnext``: a one-slot deque. A G readied by the running G goes here so
  that a ping-pong between two goroutines stays on one M and never wakes
  another one. Only the owner appends, and it pops the slot first, so it
  never holds two; the owner and stealers take with ``pop()``, atomic on
  deques, so each G is taken once. (Not a list: a list is reallocated on
  every append to and pop to empty, ~400 CPU instructions each, four per
  W1 round trip.) Stealers take it only from a P that
  sysmon found ``stuck``: its G kept running for a while with a G waiting
  in ``runnext`` (Go lets a stealer take it after 3 µs; under the GIL a
  stealer cannot tell a busy P from one that is waiting for the GIL, so
  sysmon, which watches ``schedtick``, decides).
- ``runq``: a ``collections.deque``. Only the owner appends (``ready``,
  ``go``, refills from the global queue or a steal); the owner and stealers
  ``popleft``, which is atomic on deques (documented thread-safe, with or
  without the GIL), so each G is taken by exactly one M. ``len(runq)`` from
  another M is a racy read, stale OK. Stealers take from the runq of a
  RUNNING P only once sysmon found it ``stuck`` too (``stealable``): a P
  whose M keeps scheduling will get to its own queue, and under the GIL a
  second M running that work adds no throughput, only GIL hand-offs and
  lock convoys (see ``_scheduler``'s docstring).
- ``status``, ``m``: guarded by ``sched.lock`` while the P is idle; written
  by the owner M otherwise.
- ``schedtick``, ``goidcache*``, ``syscalltick``, ``syscallwhen``: owner M only (sysmon reads
  ``syscalltick`` racily and re-checks it under ``sched.lock``).
- RUNNING -> SYSCALL: the owner, without a lock (nobody else acts on a
  RUNNING P). SYSCALL -> anything: under ``sched.lock``, by the owner coming
  back or by sysmon taking the P away, whichever gets there first.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._goroutine import G

__all__ = ["P", "PStatus"]


#: Most Gs stolen at once from the runq of a P whose G keeps running.
STUCK_STEAL = 32


class PStatus(enum.IntEnum):
    #: On ``sched.pidle``; owned by the scheduler (``sched.lock``). Its
    #: ``runnext`` and ``runq`` are empty (``Sched.pidleput_locked`` asserts
    #: it), so stealers, which read queues without a lock, find nothing on
    #: it, and ``procresize`` may drop it without moving anything.
    IDLE = 0
    #: Held by an M, which alone may change this.
    RUNNING = 1
    #: Its M is in a blocking call (``gr.syscall``) and may be away for long.
    #: The M may take it back (``exitsyscall``) or sysmon may hand it to
    #: another M (``retake``); both change it only under ``sched.lock``.
    SYSCALL = 2
    #: Removed by ``gomaxprocs``; its work was moved to the global queue.
    DEAD = 3


class P:
    __slots__ = (
        "goidcache",
        "goidcacheend",
        "id",
        "m",
        "runnext",
        "runq",
        "schedtick",
        "status",
        "stuck",
        "syscalltick",
        "syscallwhen",
    )

    def __init__(self, pid: int) -> None:
        self.id = pid
        self.status = PStatus.IDLE
        self.m: Any = None
        self.runnext: deque[G] = deque()
        #: The ``schedtick`` at which sysmon found this P stuck (see above).
        self.stuck = -1
        self.runq: deque[G] = deque()
        self.schedtick = 0
        self.syscalltick = 0  # bumped by the owner at each syscall; sysmon compares
        self.syscallwhen = 0.0  # when the current syscall started (owner writes)
        self.goidcache = 0
        self.goidcacheend = 0

    def stealable(self) -> bool:
        """Whether another M should take work from this P (racy read): it has
        queued Gs and its M is not going to get to them soon, because it
        is in a blocking call, or its G has kept running (``stuck``)."""
        return bool(self.runq) and (self.status != PStatus.RUNNING or self.stuck == self.schedtick)

    def runq_empty(self) -> bool:
        """Racy: may be stale by the time the caller acts on it."""
        return not self.runq and not self.runnext

    def runnext_put(self, gp: G) -> None:
        """Put ``gp`` in ``runnext``; the G there moves to the runq. Owner only."""
        rn = self.runnext
        if rn:
            try:
                self.runq.append(rn.pop())
            except IndexError:  # a stealer took it
                pass
        rn.append(gp)
        assert len(rn) <= 1, "runnext holds one G"  # only the owner appends, after a pop

    def runnext_get(self) -> G | None:
        """Take the G in ``runnext``, if any. Owner, or a stealer of a stuck P."""
        rn = self.runnext
        if rn:
            try:
                return rn.pop()
            except IndexError:
                pass
        return None

    def runq_steal(self, into: P) -> G | None:
        """Move half of this P's runq to ``into`` (owned by the caller) and return one G.

        Runs on the M that owns ``into``; this P may be owned by another M
        that is popping at the same time, so every pop may find it empty.
        """
        victim = self.runq
        n = (len(victim) + 1) // 2
        if self.status == PStatus.RUNNING:
            if self.stuck != self.schedtick:
                return None  # its M keeps scheduling: it will run them itself
            # Its G keeps running: take a small batch (we come back for
            # more while it stays stuck), not half (Go). Under the GIL a big
            # batch taken now would be run by two Ms at once once that G
            # yields, and two Ms running Python on the same channels and
            # timers convoy on their locks; one at a time would make each
            # steal take ``sched.lock`` (spinning) per G.
            n = min(n, STUCK_STEAL)
        if n == 0:
            if self.stuck == self.schedtick and self.status == PStatus.RUNNING:
                return self.runnext_get()
            return None
        stolen: G | None = None
        dst = into.runq
        try:
            stolen = victim.popleft()
            for _ in range(n - 1):
                dst.append(victim.popleft())
        except IndexError:
            pass
        return stolen

    def __repr__(self) -> str:
        return f"<P {self.id} {self.status.name.lower()} runq={len(self.runq)}>"
