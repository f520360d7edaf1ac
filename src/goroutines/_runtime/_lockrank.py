"""lockrank: a checker of the lock order (Go's ``runtime/lockrank.go``).

Every lock of the runtime and of the packages on top of it is made by
``new_lock(rank, owner)``, with its rank from ``LockRank``: the ranked table
in ``goroutines._runtime``'s docstring, which is the lock order. With
``GOROUTINES_DEBUG=lockrank=1`` (read once, at import) ``new_lock`` returns
a ``RankedLock``, which checks on every blocking acquire that the lock's
rank is above the rank of every lock the thread already holds, and
otherwise records the violation (``violations``), prints it with the
thread's held locks and Python stack to stderr, and raises RuntimeError
("lock ordering problem", as Go's ``throw``) before it waits: the check
never deadlocks, and whatever runs the failing code (a goroutine, an M, a
test) fails loudly. Off, ``new_lock`` returns a plain ``threading.Lock``:
the hot paths call ``acquire``/``release`` (and yield ``release`` bound
methods, wrapped in ``Unlock``, as unlock functions) at no cost.
``set_enabled`` (tests) switches it for the locks made afterwards; locks
made at import time (``_run_lock``, ``_signal._lock``, ``_given_lock``,
``_trace._switch_lock``) follow the environment only.

Exceptions to "strictly increasing", as in Go's ``lockRankLeafRank`` and
same-rank partial orders:

- ``CHAN``: ``select`` holds several channel locks at once, taken in
  increasing ``id()`` of their channels (``owner``): a second channel lock
  is allowed only above every channel lock held, in that order.
- ``CONTEXT``: cancelling a context holds the ``_mu`` of every context on
  the path from it down to the one being cancelled, parent before child
  (``_context``); ``_propagate_cancel`` cancels a new child under its
  parent's ``_mu``. Same-rank nesting is allowed unchecked: every nesting
  goes from a context to one of its descendants, and the tree has no
  cycles, so two threads can never take two ``_mu`` in opposite orders.
- Timed and non-blocking acquires are not checked (they are recorded as
  held): they cannot wait for ever. The one in the runtime is SIGQUIT's
  ``stop_the_world(timeout=1.0)``, from a signal handler that may have
  interrupted its own thread holding ``Sched.lock``.
- Acquiring a lock the thread already holds is reported (it would wait for
  ever), at any rank.

Release on another thread. Each held lock remembers the held list of the
thread that acquired it, and ``release`` takes it off that list (an
atomic ``list.remove``), so a lock released by another thread than the one
that took it leaves no stale entry and causes no false report. No ranked
lock is released so today: a goroutine's unlock function (``lock.release``
yielded while parking) is called by the M that stepped it, on the thread
that took the lock, and timer callbacks, ``_close_all`` and signal code
take and drop their locks in one call. The locks that are released by
another thread by design, the M's ``note`` and sysmon's ``note`` (binary
semaphores: held by their owner while awake, released by whoever wakes
it), are not ranked and stay plain ``threading.Lock``s (see the table).

Guards: ``violations`` is appended to (atomic) by any thread. The held list
of a thread is changed by that thread, and by a releasing thread through
``list.remove`` (atomic). ``_enabled`` is written by ``set_enabled`` only
(tests), read racily by ``new_lock``.
"""

from __future__ import annotations

import enum
import sys
import threading
import traceback
from collections.abc import Callable
from typing import NoReturn, cast, final

from .._accel import speedups
from ._debug import _debug_flag

__all__ = ["LockRank", "RankedLock", "enabled", "new_lock", "set_enabled", "violations"]


class LockRank(enum.IntEnum):
    """The ranks of the table in ``goroutines._runtime``'s docstring: a lock
    may be taken only while every lock held has a lower rank."""

    RUN = 1  # _scheduler._run_lock
    SIGNAL = 2  # _signal._lock
    CONTEXT = 3  # _context._CancelCtx._mu (nest: parent before child)
    COND = 4  # _sync.Cond._lock
    SYNC = 5  # _sync Mutex, RWMutex, WaitGroup, Once, Semaphore ._lock
    FD = 6  # net._FD.lock
    CHAN = 7  # Chan.lock (nest: increasing id() of the channels, in select)
    POLLDESC = 8  # _netpoll.PollDesc.lock
    TIMERS = 9  # _timers.Timers.lock
    SCHED = 10  # _scheduler.Sched.lock
    NETPOLL = 11  # _netpoll.Netpoll.lock
    GIVEN = 12  # _goroutine._given_lock
    TRACE_SWITCH = 13  # _trace._switch_lock
    TRACE = 14  # _trace.Tracer.lock (a leaf: a GC callback may take it under any lock)


#: What each rank's locks are called in reports.
_NAMES = {
    LockRank.RUN: "_scheduler._run_lock",
    LockRank.SIGNAL: "_signal._lock",
    LockRank.CONTEXT: "_CancelCtx._mu",
    LockRank.COND: "Cond._lock",
    LockRank.SYNC: "_lock",
    LockRank.FD: "_FD.lock",
    LockRank.CHAN: "Chan.lock",
    LockRank.POLLDESC: "PollDesc.lock",
    LockRank.TIMERS: "Timers.lock",
    LockRank.SCHED: "Sched.lock",
    LockRank.NETPOLL: "Netpoll.lock",
    LockRank.GIVEN: "_goroutine._given_lock",
    LockRank.TRACE_SWITCH: "_trace._switch_lock",
    LockRank.TRACE: "Tracer.lock",
}

#: The lock every ranked lock is: ``threading.Lock``, or with the accelerator
#: its ``Lock`` (the same interface, a C fast path for the channel operations
#: and a cheaper try-acquire: see ``_speedups.c``).
_Lock: Callable[[], threading.Lock] = threading.Lock if speedups is None else speedups.Lock
_enabled = _debug_flag("lockrank")

#: Every violation seen in this process, as its message (tests read it).
violations: list[str] = []

_tls = threading.local()


def enabled() -> bool:
    """Whether locks made now are checked."""
    return _enabled


def set_enabled(on: bool) -> bool:
    """Check (or not) the locks made from now on; return the previous
    setting. For tests: locks that exist keep their kind."""
    global _enabled
    old, _enabled = _enabled, bool(on)
    return old


def new_lock(rank: LockRank, owner: object = None) -> threading.Lock:
    """A lock of rank ``rank`` for ``owner`` (the object it guards: its
    ``id()`` orders same-rank ``CHAN`` locks, and its type names the lock in
    reports). A plain lock (``_Lock``) unless lockrank is on."""
    if not _enabled:
        return _Lock()
    # Typed as a threading.Lock: it has the methods the runtime uses
    # (acquire, release, locked, with), and every annotation says Lock.
    return cast("threading.Lock", RankedLock(rank, owner))


def _held() -> list[RankedLock]:
    """The ranked locks this thread holds, in the order it took them."""
    try:
        held: list[RankedLock] = _tls.held
    except AttributeError:
        held = _tls.held = []
    return held


@final
class RankedLock:
    """A ``threading.Lock`` that checks the lock order (see the module docstring)."""

    __slots__ = ("_held", "_lock", "order", "rank", "what")

    def __init__(self, rank: LockRank, owner: object = None) -> None:
        self._lock = _Lock()
        self.rank = rank
        #: Orders same-rank CHAN locks: the ``id()`` select sorts channels by.
        #: An id, not the owner: the owner holds the lock, not the reverse.
        self.order = id(self) if owner is None else id(owner)
        self.what = "" if owner is None else type(owner).__name__
        #: The held list of the thread holding us (None: not held, or taken
        #: by a plain ``acquire`` of the inner lock, which nothing does).
        self._held: list[RankedLock] | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        held = _held()
        if held and blocking and timeout == -1:
            _check(self, held)
        if not self._lock.acquire(blocking, timeout):
            return False
        self._held = held
        held.append(self)
        return True

    def release(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            try:
                held.remove(self)  # atomic, from whichever thread releases
            except ValueError:  # pragma: no cover - only if the lists were bypassed
                pass
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        name = _NAMES[self.rank]
        if self.rank == LockRank.SYNC and self.what:
            name = f"{self.what}._lock"
        return f"{name} (rank {int(self.rank)} {self.rank.name}, {self.order:#x})"


def _check(lock: RankedLock, held: list[RankedLock]) -> None:
    """``lock`` is about to be acquired (blocking) by a thread holding ``held``."""
    r = lock.rank
    for h in held:
        if h.rank < r:
            continue
        if h is lock:
            problem = "it is held already by this thread (self-deadlock)"
        elif h.rank == r == LockRank.CHAN:
            if h.order < lock.order:
                continue
            problem = "channel locks must be taken in increasing id() of their channels"
        elif h.rank == r == LockRank.CONTEXT:
            continue
        else:
            problem = "its rank is not above that of a lock held"
        _report(lock, h, held, problem)


def _report(lock: RankedLock, h: RankedLock, held: list[RankedLock], problem: str) -> NoReturn:
    msg = (
        f"lock ordering problem: acquiring {lock!r} while holding {h!r}: {problem} "
        f"(thread {threading.current_thread().name})"
    )
    violations.append(msg)
    try:
        stack = "".join(f"    {x!r}\n" for x in held)
        sys.stderr.write(
            f"goroutines lockrank: {msg}\n  held, oldest first:\n{stack}"
            + "".join(traceback.format_stack(limit=16)[:-2])
        )
    except Exception:  # pragma: no cover - a broken stderr must not hide the error
        pass
    raise RuntimeError(msg)
