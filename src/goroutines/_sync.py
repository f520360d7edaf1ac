"""Sync: Go's ``sync`` package (Mutex, RWMutex, WaitGroup, Once, Cond) and
``golang.org/x/sync/semaphore``'s weighted Semaphore.

Every primitive is a little state machine guarded by its own ``threading.Lock``
(``_lock``), plus one or more ``_WaitQ``: a FIFO of parked Gs. A blocking
operation is a non-blocking core under ``_lock`` and, if that fails, a park in
a wait queue with ``_lock.release`` as the unlock function (``gopark``), so a
waker cannot find the G before it is suspended. They park goroutines, never
OS threads; ``_lock`` is held only for a few lines (up to the suspension of a
parking G), so waiting for it never blocks a thread for long.

Hand-off, not wake-and-retry. A waker that frees what a waiter wants does not
just wake it to try again: under ``_lock`` it transfers the thing (the
Mutex stays locked, now on the waiter's behalf; a Semaphore's ``cur`` grows by
the waiter's weight; an RWMutex's reader count or writer flag is set) and
then, after releasing ``_lock``, readies the waiter. The woken G returns at
once. This is what makes every queue FIFO and starvation-free (Go's Mutex
"starvation mode", always on): an arriving goroutine cannot barge in ahead of
one that is already queued, because the fast path only succeeds when nobody
is waiting. The uncontended path is one acquire/release of ``_lock``.

Rejected: wake-and-retry (asyncio's Lock): the woken G competes with new
arrivals, so a waiter can starve and FIFO order is lost; and a
``threading.Lock`` per primitive as the state itself, which would block the
OS thread (and so every goroutine on its P).

Invariants (``_lock`` held):

- Mutex: ``_waitq`` non-empty implies ``_locked``.
- RWMutex: ``_writer`` and ``_readers > 0`` never both hold; ``_rwaitq``
  non-empty implies a writer holds or waits; ``_wwaitq`` non-empty implies
  ``_writer`` or ``_readers > 0``.
- WaitGroup: ``_waitq`` non-empty implies ``_n > 0``.
- Once: ``_waitq`` non-empty implies ``_running``.
- Semaphore: ``0 <= _cur <= _size``; the head waiter's weight does not fit
  (``_size - _cur < weight``), so a large waiter at the head blocks later
  small ones, as in x/sync.

Lock order: the ranked table in ``goroutines._runtime``. ``Cond._lock`` (rank 4,
COND) before the ``_lock`` of its ``L`` (rank 5, SYNC; ``Cond.wait``
unlocks ``L`` while holding its own lock so that no signal is lost between
the unlock and the park). No other primitive holds two locks. Gs are woken
(``G.wake``, Go's ``goready``) only after ``_lock`` is released
(``_WaitQ.wake_one``/``wake_all`` release it, then wake).

Guards: every mutable field is guarded by its object's ``_lock``. The G's
``elem`` field carries a Semaphore waiter's weight (written by the G before
it parks, read by wakers under ``_lock``), like a channel's sudog.
"""

from __future__ import annotations

import functools
import threading
import types
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from inspect import isawaitable
from types import TracebackType
from typing import Any, Protocol, final

from ._runtime._goroutine import G, WaitReason, gopark
from ._runtime._lockrank import LockRank, new_lock
from ._runtime._scheduler import current_g

# Enum members bound once: ``WaitReason.X`` goes through EnumType.__getattr__
# (~70 ns on 3.11) on every park.
_SEMACQUIRE = WaitReason.SEMACQUIRE
_SYNC_COND_WAIT = WaitReason.SYNC_COND_WAIT
_SYNC_MUTEX_LOCK = WaitReason.SYNC_MUTEX_LOCK
_SYNC_ONCE = WaitReason.SYNC_ONCE
_SYNC_RWMUTEX_LOCK = WaitReason.SYNC_RWMUTEX_LOCK
_SYNC_RWMUTEX_RLOCK = WaitReason.SYNC_RWMUTEX_RLOCK
_SYNC_WAITGROUP_WAIT = WaitReason.SYNC_WAITGROUP_WAIT
_SYNC_RANK = LockRank.SYNC
_COND_RANK = LockRank.COND

__all__ = ["Cond", "Locker", "Mutex", "Once", "RWMutex", "Semaphore", "WaitGroup"]


def _check_int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be an int, got {type(v).__name__}")
    return v


@final
class _WaitQ:
    """A FIFO of parked Gs. Guarded by the owning primitive's ``_lock``."""

    __slots__ = ("_q",)

    def __init__(self) -> None:
        self._q: deque[G] = deque()

    def __len__(self) -> int:
        return len(self._q)

    @types.coroutine
    def park(
        self,
        lock: threading.Lock,
        reason: WaitReason,
        elem: Any = None,
        give_back: Callable[[], None] | None = None,
    ) -> Generator[Any, None, None]:
        """Enqueue the calling G and park it; ``lock`` is released once it is
        suspended. ``lock`` held on entry, not on return. Returns when a waker
        has dequeued it (having handed it what it waited for).

        ``give_back`` undoes a hand-off (unlocks the Mutex handed to us, ...)
        for a G that is closed after it was handed what it waited for but
        before it ran (``run()`` closing the goroutines left): otherwise a
        Mutex would stay locked by a goroutine that no longer exists.
        """
        try:
            g = current_g()
        except BaseException:
            lock.release()
            raise
        g.elem = elem
        self._q.append(g)
        try:
            yield from gopark(lock.release, reason, g)
        except BaseException:
            # Nothing throws into a parked G except run() closing the
            # goroutines left when main returned. Leave the queue, so that a
            # `finally` in another closed goroutine (or a later run) does
            # not hand this dead G what it waited for.
            with lock:
                try:
                    self._q.remove(g)
                    handed = False
                except ValueError:
                    handed = True  # dequeued by a waker: we hold what it handed us
            if handed and give_back is not None:
                give_back()
            raise
        finally:
            g.elem = None

    def head(self) -> G:
        return self._q[0]

    def pop(self) -> G:
        return self._q.popleft()

    def wake_one(self, lock: threading.Lock) -> None:
        """Dequeue the head, release ``lock`` (held on entry), then wake it:
        a G is readied only after the lock is released. The queue must not be
        empty."""
        g = self._q.popleft()
        lock.release()
        g.wake()

    def wake_all(self, lock: threading.Lock) -> None:
        """Dequeue every G, release ``lock`` (held on entry), then wake them in order."""
        gs = list(self._q)
        self._q.clear()
        lock.release()
        _wake_all(gs)


def _wake_all(gs: list[G]) -> None:
    for g in gs:
        g.wake()


class Locker(Protocol):
    """What ``Cond`` needs of its lock (Go's ``sync.Locker``)."""

    def lock(self) -> Awaitable[None]: ...

    def unlock(self) -> None: ...


class _AsyncWith:
    """``async with``: ``lock`` on entry, ``unlock`` on exit (Mutex, and
    RWMutex's write lock)."""

    __slots__ = ()

    lock: Callable[[], Awaitable[None]]
    unlock: Callable[[], None]

    def __aenter__(self) -> Awaitable[None]:
        return self.lock()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unlock()


# -- Mutex ----------------------------------------------------------------------


@final
class Mutex(_AsyncWith):
    """A mutual exclusion lock (Go's ``sync.Mutex``).

    Unlocked -> locked by ``lock``/``try_lock``. ``unlock`` of a mutex with
    waiters hands it to the first one (it stays locked); without waiters it
    becomes unlocked. Any goroutine may unlock it, not only the one that
    locked it. ``async with mu:`` locks and unlocks.
    """

    __slots__ = ("_lock", "_locked", "_waitq")

    def __init__(self) -> None:
        self._lock = new_lock(_SYNC_RANK, self)
        self._locked = False
        self._waitq = _WaitQ()

    def __repr__(self) -> str:
        state = "locked" if self._locked else "unlocked"
        return f"<Mutex {state} waiters={len(self._waitq)}>"

    @types.coroutine
    def lock(self) -> Generator[Any, None, None]:
        """Lock the mutex, waiting (parked, in FIFO order) while it is held."""
        lk = self._lock
        lk.acquire()
        if not self._locked:
            self._locked = True
            lk.release()
            return
        assert self._locked  # invariant: a waiter implies locked
        yield from self._waitq.park(lk, _SYNC_MUTEX_LOCK, None, self.unlock)
        # unlock handed the mutex to us: it never became unlocked.

    def try_lock(self) -> bool:
        """Lock the mutex if it is free; return whether it was locked."""
        with self._lock:
            if self._locked:
                return False
            self._locked = True
            return True

    def unlock(self) -> None:
        """Unlock, handing the mutex to the first waiter if there is one.

        Raises RuntimeError if the mutex is not locked.
        """
        lk = self._lock
        lk.acquire()
        if not self._locked:
            lk.release()
            raise RuntimeError("sync: unlock of unlocked mutex")
        if self._waitq:
            self._waitq.wake_one(lk)  # it stays locked, now the head's
            return
        self._locked = False
        lk.release()


# -- RWMutex --------------------------------------------------------------------


@final
class RWMutex(_AsyncWith):
    """A reader/writer lock (Go's ``sync.RWMutex``).

    Any number of readers or one writer. A waiting writer blocks new
    readers, so a stream of readers cannot starve a writer; when a writer
    unlocks, every reader that queued while it held the lock gets it before
    the next writer, so writers cannot starve readers either. Hand-off as in
    ``Mutex``. ``async with rw:`` takes the write lock.
    """

    __slots__ = ("_lock", "_readers", "_rwaitq", "_writer", "_wwaitq")

    def __init__(self) -> None:
        self._lock = new_lock(_SYNC_RANK, self)
        self._readers = 0  # readers holding the lock
        self._writer = False  # a writer holds the lock
        self._rwaitq = _WaitQ()
        self._wwaitq = _WaitQ()

    def __repr__(self) -> str:
        return (
            f"<RWMutex readers={self._readers} writer={self._writer} "
            f"waiting readers={len(self._rwaitq)} writers={len(self._wwaitq)}>"
        )

    @types.coroutine
    def rlock(self) -> Generator[Any, None, None]:
        """Lock for reading; waits while a writer holds the lock or waits for it."""
        lk = self._lock
        lk.acquire()
        if not self._writer and not self._wwaitq:
            self._readers += 1
            lk.release()
            return
        yield from self._rwaitq.park(lk, _SYNC_RWMUTEX_RLOCK, None, self.runlock)
        # the unlocking writer counted us in _readers.

    def try_rlock(self) -> bool:
        """Lock for reading if that would not wait; return whether it did."""
        with self._lock:
            if self._writer or self._wwaitq:
                return False
            self._readers += 1
            return True

    def runlock(self) -> None:
        """Undo one ``rlock``; the last reader out hands the lock to a waiting writer.

        Raises RuntimeError if no reader holds the lock.
        """
        lk = self._lock
        lk.acquire()
        if self._readers == 0:
            lk.release()
            raise RuntimeError("sync: RUnlock of unlocked RWMutex")
        self._readers -= 1
        if self._readers == 0 and self._wwaitq:
            self._writer = True
            self._wwaitq.wake_one(lk)
            return
        lk.release()

    @types.coroutine
    def lock(self) -> Generator[Any, None, None]:
        """Lock for writing; waits until no reader or writer holds the lock."""
        lk = self._lock
        lk.acquire()
        if not self._writer and self._readers == 0:
            self._writer = True
            lk.release()
            return
        yield from self._wwaitq.park(lk, _SYNC_RWMUTEX_LOCK, None, self.unlock)
        # runlock or unlock set _writer on our behalf.

    def try_lock(self) -> bool:
        """Lock for writing if that would not wait; return whether it did."""
        with self._lock:
            if self._writer or self._readers:
                return False
            self._writer = True
            return True

    def unlock(self) -> None:
        """Undo ``lock``: readers that queued meanwhile get the lock, else the next writer.

        Raises RuntimeError if no writer holds the lock.
        """
        lk = self._lock
        lk.acquire()
        if not self._writer:
            lk.release()
            raise RuntimeError("sync: Unlock of unlocked RWMutex")
        if self._rwaitq:
            self._writer = False
            self._readers += len(self._rwaitq)
            self._rwaitq.wake_all(lk)
            return
        if self._wwaitq:
            self._wwaitq.wake_one(lk)  # _writer stays True: handed over
            return
        self._writer = False
        lk.release()


# -- WaitGroup ------------------------------------------------------------------


@final
class WaitGroup:
    """Waits for a collection of goroutines to finish (Go's ``sync.WaitGroup``).

    ``add(n)`` before starting work, ``done()`` when each piece finishes,
    ``await wait()`` until the counter is zero. When it reaches zero every
    waiter is woken.
    """

    __slots__ = ("_lock", "_n", "_waitq")

    def __init__(self) -> None:
        self._lock = new_lock(_SYNC_RANK, self)
        self._n = 0
        self._waitq = _WaitQ()

    def __repr__(self) -> str:
        return f"<WaitGroup counter={self._n} waiters={len(self._waitq)}>"

    def add(self, n: int = 1) -> None:
        """Add ``n`` (which may be negative) to the counter.

        Raises RuntimeError, leaving the counter as it was, if that would
        make it negative.
        """
        _check_int(n, "WaitGroup.add: n")
        lk = self._lock
        lk.acquire()
        v = self._n + n
        if v < 0:
            lk.release()
            raise RuntimeError("sync: negative WaitGroup counter")
        self._n = v
        if v == 0 and self._waitq:
            self._waitq.wake_all(lk)
            return
        lk.release()

    def done(self) -> None:
        """Decrement the counter by one."""
        self.add(-1)

    @types.coroutine
    def wait(self) -> Generator[Any, None, None]:
        """Wait until the counter is zero (at once if it already is)."""
        lk = self._lock
        lk.acquire()
        if self._n == 0:
            lk.release()
            return
        yield from self._waitq.park(lk, _SYNC_WAITGROUP_WAIT)


# -- Once -----------------------------------------------------------------------


@final
class Once:
    """Runs a function at most once (Go's ``sync.Once``).

    States: not started -> running (the first caller runs ``fn``; concurrent
    callers park until it finishes) -> done (every call returns at once). If
    ``fn`` raises, the exception reaches the first caller only and the Once
    is done all the same.
    """

    __slots__ = ("_done", "_lock", "_running", "_waitq")

    def __init__(self) -> None:
        self._lock = new_lock(_SYNC_RANK, self)
        self._done = False
        self._running = False
        self._waitq = _WaitQ()

    def __repr__(self) -> str:
        state = "done" if self._done else "running" if self._running else "not done"
        return f"<Once {state}>"

    async def do(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` (awaiting its result if it is awaitable) unless a call
        of ``do`` on this Once already did; return when that call has finished."""
        lk = self._lock
        lk.acquire()
        if self._done:
            lk.release()
            return
        if self._running:
            await self._waitq.park(lk, _SYNC_ONCE)
            return
        self._running = True
        lk.release()
        try:
            r = fn()
            if isawaitable(r):
                await r
        finally:
            lk.acquire()
            self._done = True
            self._running = False
            self._waitq.wake_all(lk)


# -- Cond -----------------------------------------------------------------------


@final
class Cond:
    """A condition variable (Go's ``sync.Cond``) over a Locker ``L``.

    ``wait`` unlocks ``L``, parks until ``signal`` (wakes the longest
    waiter) or ``broadcast`` (wakes all), then locks ``L`` again before
    returning; as in Go, call it in a loop that rechecks the condition.
    A signal with no waiter is lost.
    """

    __slots__ = ("L", "_lock", "_waitq")

    def __init__(self, L: Locker) -> None:
        if not (callable(getattr(L, "lock", None)) and callable(getattr(L, "unlock", None))):
            raise TypeError(f"Cond needs a Locker (with lock and unlock), got {L!r}")
        self.L = L  # Go's c.L
        self._lock = new_lock(_COND_RANK, self)
        self._waitq = _WaitQ()

    def __repr__(self) -> str:
        return f"<Cond waiters={len(self._waitq)}>"

    async def wait(self) -> None:
        """Unlock ``L``, wait for a signal or broadcast, lock ``L`` again.

        ``L`` must be locked; if it is not, its ``unlock`` raises and
        nothing waits.
        """
        lk = self._lock
        lk.acquire()
        # L is unlocked with our lock held, so that a signal sent as soon as
        # L is free (by whoever takes it next) finds us already queued.
        try:
            self.L.unlock()
        except BaseException:
            lk.release()
            raise
        try:
            await self._waitq.park(lk, _SYNC_COND_WAIT)
            await self.L.lock()
        except BaseException:
            # Closed while parked (run() closing leftover goroutines): we
            # cannot park again to relock L, but the caller's `finally` /
            # `async with` will unlock it, so take it if it is free
            # (threading.Condition.wait also relocks on the way out).
            try_lock = getattr(self.L, "try_lock", None)
            if try_lock is not None:
                try_lock()
            raise

    def signal(self) -> None:
        """Wake the goroutine that has waited longest, if any."""
        lk = self._lock
        lk.acquire()
        if self._waitq:
            self._waitq.wake_one(lk)
        else:
            lk.release()

    def broadcast(self) -> None:
        """Wake every waiting goroutine."""
        self._lock.acquire()
        self._waitq.wake_all(self._lock)


# -- Semaphore ------------------------------------------------------------------


@final
class Semaphore:
    """A weighted semaphore (``golang.org/x/sync/semaphore.Weighted``).

    ``acquire(k)`` takes ``k`` of the ``n`` units, waiting in FIFO order:
    a waiter that does not fit blocks every later one, even those that
    would fit, so large requests are not starved by small ones.
    ``release(k)`` gives units back and hands them to waiters from the head
    while they fit. ``async with sem:`` acquires one unit and releases it.
    """

    __slots__ = ("_cur", "_lock", "_size", "_waitq")

    def __init__(self, n: int) -> None:
        _check_int(n, "Semaphore size")
        if n < 0:
            raise ValueError(f"Semaphore size must be >= 0, got {n}")
        self._lock = new_lock(_SYNC_RANK, self)
        self._size = n
        self._cur = 0  # units held
        self._waitq = _WaitQ()  # g.elem: the weight it waits for

    def __repr__(self) -> str:
        return f"<Semaphore {self._cur}/{self._size} held waiters={len(self._waitq)}>"

    def _check_k(self, k: Any, what: str) -> int:
        _check_int(k, f"Semaphore.{what}: k")
        if k < 1:
            raise ValueError(f"Semaphore.{what}: k must be >= 1, got {k}")
        if k > self._size:
            raise ValueError(
                f"Semaphore.{what}: k={k} is more than the semaphore's size {self._size}"
            )
        return int(k)

    @types.coroutine
    def acquire(self, k: int = 1) -> Generator[Any, None, None]:
        """Take ``k`` units, waiting (FIFO) until they are free."""
        k = self._check_k(k, "acquire")
        lk = self._lock
        lk.acquire()
        if self._size - self._cur >= k and not self._waitq:
            self._cur += k
            lk.release()
            return
        yield from self._waitq.park(lk, _SEMACQUIRE, k, functools.partial(self.release, k))
        # release counted our k in _cur.

    def try_acquire(self, k: int = 1) -> bool:
        """Take ``k`` units if they are free and nobody waits; return whether it did."""
        k = self._check_k(k, "try_acquire")
        with self._lock:
            if self._size - self._cur >= k and not self._waitq:
                self._cur += k
                return True
            return False

    def release(self, k: int = 1) -> None:
        """Give back ``k`` units. Raises RuntimeError if fewer than ``k`` are held."""
        k = self._check_k(k, "release")
        lk = self._lock
        lk.acquire()
        if self._cur < k:
            held = self._cur
            lk.release()
            raise RuntimeError(f"semaphore: released more than held ({k} > {held})")
        self._cur -= k
        q = self._waitq
        woken: list[G] = []
        while q:
            g = q.head()
            w: int = g.elem
            if self._size - self._cur < w:
                break  # the head does not fit: it blocks everyone behind it
            self._cur += w
            woken.append(q.pop())
        assert 0 <= self._cur <= self._size, self
        lk.release()
        _wake_all(woken)

    async def __aenter__(self) -> Semaphore:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
