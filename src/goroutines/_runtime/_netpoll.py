"""netpoll: the network poller. A G waiting on a socket is parked, not a thread.

One epoll instance per runtime, created on first use. Each fd is registered
once, edge-triggered, for reading and writing (Go's ``netpollopen``), and
has a ``PollDesc`` holding, per direction, either the one G parked waiting
for it or a "ready" flag recording an edge that came while nobody waited.
The I/O code (``goroutines.net``) always tries the non-blocking operation
first and waits only on EAGAIN, then tries again; so a stale or spurious
readiness costs one extra try and nothing else. That is also why a reused
fd needs no generation counter here (trio's ``_io_epoll.py`` essay explains
the stale-fd problem): an fd is unregistered before it is closed, and an
event already fetched for its old owner can only cause a spurious wake-up.

Edge-triggered means two Gs must never wait for the same direction of one
fd, or an edge consumed by one would leave the other asleep with data
waiting; callers serialize each direction (``goroutines.net`` holds a
per-direction Mutex, Go's ``fdMutex``), and ``wait`` raises if they don't.

Who polls (Go's ``findRunnable`` and ``sysmon``):

- the M that parks as ``sched.poll_m`` blocks in ``epoll.poll`` until the
  next timer (or for ever), instead of on its note; waking it means writing
  a byte to the wake-up pipe (``wakeup``), which only a blocking poll drains
  (a non-blocking one would swallow the wake-up meant for the blocked M);
  ``poll_m`` stays set until that M is out of ``poll``, so no second M
  blocks there and takes the byte meant for the first;
- an M that runs out of work polls without blocking before it steals;
- sysmon polls without blocking if nobody has for 10 ms.

``nwaiters`` counts the Gs parked on a PollDesc and those that a poll has
taken off one but not yet put on a run queue (``adjust_waiters``): while it
is above zero, ``checkdead`` reports no deadlock.

A ``PollDesc`` belongs to the run whose poller registered it
(``run_id``): once that run has ended its epoll is closed and its timers
are gone, so ``wait`` (which would park on that poller for ever) and
``set_deadline`` (which would arm a timer in that heap) raise RuntimeError
naming the run; what needs no waiting still works (the non-blocking
operation itself, a read of data already there), and so does ``evict``
(closing).

Guards: ``PollDesc`` fields: ``pd.lock`` (``run_id``, ``fd``, ``netpoll``:
immutable). ``pds``, ``nwaiters``,
``wakesig``: ``Netpoll.lock``, taken after a ``pd.lock`` if both are held
(lock order: the ranked table in ``goroutines._runtime``; ``pd.lock`` is
rank 8, ``Netpoll.lock`` rank 11, above ``Sched.lock``).
``lastpoll``: racy, stale OK. ``ep`` is created under ``Netpoll.lock``
and closed only after every M has stopped.
"""

from __future__ import annotations

import os
import select
import time
import types
from collections.abc import Callable, Generator
from typing import Any, NoReturn

from . import _clock, _timers
from ._goroutine import G, Unlock, WaitReason, register_unpark
from ._lockrank import LockRank, new_lock


def _unset() -> Any:
    raise AssertionError("installed by _scheduler")


# ``_scheduler``'s ``current_g`` and ``current_run_id``, installed by
# ``_scheduler`` once it has made them (it imports this module, so this one
# cannot import it). Not an import inside the functions that use them: a
# ``from ... import`` executed at each ``PollDesc.wait`` cost ~10 000 CPU
# instructions, a fifth of an echo server's round trip.
current_g: Callable[[], G] = _unset
current_run_id: Callable[[], int] = _unset

__all__ = ["ErrClosed", "Netpoll", "PollDesc"]

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLLERR = select.EPOLLERR
_EPOLLHUP = select.EPOLLHUP
_EPOLLRDHUP = select.EPOLLRDHUP
_EPOLLET = select.EPOLLET
_READ_EVENTS = _EPOLLIN | _EPOLLRDHUP | _EPOLLHUP | _EPOLLERR
_WRITE_EVENTS = _EPOLLOUT | _EPOLLHUP | _EPOLLERR
_HUP_EVENTS = _EPOLLRDHUP | _EPOLLHUP | _EPOLLERR
#: Bound once: ``WaitReason.IO_WAIT`` goes through the enum's class lookup.
_IO_WAIT = WaitReason.IO_WAIT


class ErrClosed(OSError):
    """Use of a closed network connection or listener (Go's ``net.ErrClosed``)."""


class PollDesc:
    """Per-fd poller state (Go's ``pollDesc``), one per socket."""

    __slots__ = (
        "_unlock",
        "closing",
        "fd",
        "lock",
        "netpoll",
        "rd",
        "rg",
        "rhup",
        "rready",
        "rseq",
        "rtimer",
        "run_id",
        "wd",
        "wg",
        "wready",
        "wseq",
        "wtimer",
    )

    def __init__(self, netpoll: Netpoll, fd: int) -> None:
        self.netpoll = netpoll
        self.fd = fd
        #: The run whose poller this is: made by ``netpoll.open``, in that run.
        self.run_id = current_run_id()
        self.lock = new_lock(LockRank.POLLDESC, self)
        #: What ``wait`` yields to park, made once (as a channel's ``_unlock``).
        self._unlock = Unlock(self.lock.release)
        self.closing = False
        # read side: the G waiting, or the ready flag; the deadline (0 = none)
        self.rg: G | None = None
        self.rready = False
        #: Sticky: an event said the peer hung up or the socket failed
        #: (RDHUP, HUP, ERR); see ``wait``'s ``drained``.
        self.rhup = False
        self.rd = 0.0
        self.rseq = 0
        self.rtimer: _timers.Timer | None = None
        # write side
        self.wg: G | None = None
        self.wready = False
        self.wd = 0.0
        self.wseq = 0
        self.wtimer: _timers.Timer | None = None

    # -- waiting (on a goroutine) --------------------------------------------

    @types.coroutine
    def wait(self, write: bool, drained: bool = False) -> Generator[Any, None, None]:
        """Park until the fd may be readable (writable); ``pd.lock`` free on entry.

        Raises ErrClosed once the fd is being closed and TimeoutError once the
        direction's deadline has passed, whether before or while waiting.

        ``drained``: a read waits without having seen EAGAIN, because its
        last read was short (``goroutines.net``). A hang-up then counts as
        ready for good: it shares the edge of the data it came with, so
        the edge consumed for that data was the only one it will make.
        """
        lock = self.lock
        lock.acquire()
        if self.closing:
            lock.release()
            raise ErrClosed("use of closed network connection")
        if self.run_id != current_run_id():
            lock.release()
            self._ended("wait for it")
        dl = self.wd if write else self.rd
        if dl and dl <= _clock.now():
            lock.release()
            raise TimeoutError("i/o timeout")
        if write:
            if self.wready:
                self.wready = False
                lock.release()
                return
            if self.wg is not None:
                lock.release()
                raise RuntimeError(f"two goroutines waiting to write fd {self.fd} at once")
        else:
            if self.rready or (drained and self.rhup):
                self.rready = False
                lock.release()
                return
            if self.rg is not None:
                lock.release()
                raise RuntimeError(f"two goroutines waiting to read fd {self.fd} at once")
        g = current_g()
        g.success = False
        g.elem = None
        if write:
            self.wg = g
        else:
            self.rg = g
        np = self.netpoll
        with np.lock:
            np.nwaiters += 1
        g.wait_reason = _IO_WAIT
        yield self._unlock
        if g.success:
            return
        err = g.elem
        g.elem = None
        raise err

    def _ended(self, what: str) -> NoReturn:
        raise RuntimeError(
            f"net: cannot {what}: this socket (fd {self.fd}) belongs to goroutines run "
            f"#{self.run_id}, which has ended, and so has its poller; close it, and make "
            "a new one in this run"
        )

    # -- readiness and errors (any thread) --------------------------------------

    def _take(self, write: bool) -> G | None:
        """Detach the waiter of one direction. ``pd.lock`` held."""
        if write:
            g, self.wg = self.wg, None
        else:
            g, self.rg = self.rg, None
        return g

    def set_ready(self, r: bool, w: bool, hup: bool, out: list[G]) -> None:
        """An edge: wake the waiter of each ready direction, or remember it."""
        with self.lock:
            if hup:
                self.rhup = True
            if r:
                g = self._take(False)
                if g is None:
                    self.rready = True
                else:
                    g.success = True
                    out.append(g)
            if w:
                g = self._take(True)
                if g is None:
                    self.wready = True
                else:
                    g.success = True
                    out.append(g)

    def _fail_locked(self, write: bool, err: BaseException, out: list[G]) -> None:
        g = self._take(write)
        if g is not None:
            g.success = False
            g.elem = err
            out.append(g)

    def set_deadline(self, read: float | None, write: float | None, *, which: str = "rw") -> None:
        """Set the monotonic deadlines (None = no deadline) of the directions in
        ``which``; a waiter past its new deadline is woken with TimeoutError."""
        if self.run_id != current_run_id():
            self._ended("set a deadline on it")
        woken: list[G] = []
        timers = self.netpoll.timers
        with self.lock:
            now = _clock.now()
            for write_side, dl in ((False, read), (True, write)):
                if ("w" if write_side else "r") not in which:
                    continue
                value = 0.0 if dl is None else max(dl, 1e-9)
                if write_side:
                    self.wd = value
                    self.wseq += 1
                    seq, t = self.wseq, self.wtimer
                else:
                    self.rd = value
                    self.rseq += 1
                    seq, t = self.rseq, self.rtimer
                if t is not None:
                    timers.stop(t)
                if not value:
                    continue
                if value <= now:
                    self._fail_locked(write_side, TimeoutError("i/o timeout"), woken)
                    continue
                t = _timers.Timer(_deadline_fired, (self, write_side, seq))
                if write_side:
                    self.wtimer = t
                else:
                    self.rtimer = t
                timers.add(t, value)
        self.netpoll.wake_all(woken)

    def evict(self) -> None:
        """The fd is being closed: wake both waiters with ErrClosed and
        unregister it. Call before closing the fd itself."""
        woken: list[G] = []
        with self.lock:
            if self.closing:
                return
            self.closing = True
            err = ErrClosed("use of closed network connection")
            self._fail_locked(False, err, woken)
            self._fail_locked(True, err, woken)
            for t in (self.rtimer, self.wtimer):
                if t is not None:
                    self.netpoll.timers.stop(t)
            # Each deadline timer's arg points back at us: no cycle left.
            self.rtimer = self.wtimer = None
        self.netpoll.unregister(self)
        self.netpoll.wake_all(woken)


def _deadline_fired(arg: tuple[PollDesc, bool, int]) -> None:
    pd, write, seq = arg
    woken: list[G] = []
    with pd.lock:
        if seq == (pd.wseq if write else pd.rseq):
            pd._fail_locked(write, TimeoutError("i/o timeout"), woken)
    pd.netpoll.wake_all(woken)


class Netpoll:
    def __init__(self, timers: _timers.Timers, on_init: Callable[[], None]) -> None:
        self.timers = timers
        self.lock = new_lock(LockRank.NETPOLL, self)
        self.ep: select.epoll | None = None
        self.rfd = -1
        self.wfd = -1
        self.pds: dict[int, PollDesc] = {}
        self.nwaiters = 0
        self.wakesig = False
        self.lastpoll = time.monotonic()
        #: Called once the poller exists, so that an M sleeping on its note
        #: as ``poll_m`` moves into ``poll``.
        self.on_init = on_init

    @property
    def inited(self) -> bool:
        return self.ep is not None

    def open(self, fd: int) -> PollDesc:
        """Start polling ``fd`` (already non-blocking)."""
        first = False
        with self.lock:
            if self.ep is None:
                self.ep = select.epoll()
                self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                self.ep.register(self.rfd, _EPOLLIN)
                first = True
            pd = PollDesc(self, fd)
            # In ``pds`` before it is registered: ``register`` releases the
            # GIL, and the M blocked in ``poll`` may take the first event
            # (the state of the socket so far: data, or a hang-up, that came
            # before we registered) at once; found in ``pds`` by nobody, it
            # would be lost, and no other edge may ever come.
            self.pds[fd] = pd
            try:
                self.ep.register(fd, _EPOLLIN | _EPOLLOUT | _EPOLLRDHUP | _EPOLLET)
            except BaseException:
                del self.pds[fd]  # a failed open changes nothing
                raise
        if first:
            self.on_init()
        return pd

    def unregister(self, pd: PollDesc) -> None:
        with self.lock:
            if self.pds.get(pd.fd) is pd:
                del self.pds[pd.fd]
                if self.ep is not None:
                    try:
                        self.ep.unregister(pd.fd)
                    except OSError:  # the fd was closed under us already
                        pass

    def wake_all(self, gs: list[G]) -> None:
        """Ready Gs taken off PollDescs (no ``pd.lock`` held); they stop
        counting as I/O waiters once they are on a run queue."""
        if not gs:
            return
        for g in gs:
            g.wake()
        self.adjust_waiters(-len(gs))

    def adjust_waiters(self, n: int) -> None:
        """Add ``n`` to ``nwaiters`` (Go's ``netpollAdjustWaiters``). Gs that
        ``poll`` found ready still count as waiters until whoever polled has
        put them on a run queue (``injectglist``): in between nobody else
        can see them, and ``checkdead`` would take a runtime whose only
        goroutines are in that hand for a deadlock."""
        with self.lock:
            self.nwaiters += n

    def poll(self, timeout: float | None) -> list[G]:
        """Wait up to ``timeout`` (None: until woken) for I/O; return the Gs it
        made runnable, for the caller to ready and then to uncount with
        ``adjust_waiters(-len(gs))``. Any thread, no lock held."""
        ep = self.ep
        if ep is None:
            return []
        try:
            events = ep.poll(-1 if timeout is None else timeout)
        except (OSError, ValueError):  # closed at shutdown
            return []
        self.lastpoll = time.monotonic()
        gs: list[G] = []
        pds = self.pds
        for fd, ev in events:
            if fd == self.rfd:
                if timeout == 0:
                    # The wake-up is for the M blocked in poll, not for us;
                    # the pipe is level-triggered, so it will still see it.
                    continue
                try:
                    while os.read(self.rfd, 64):
                        pass
                except (BlockingIOError, OSError):
                    pass
                with self.lock:
                    self.wakesig = False
                continue
            pd = pds.get(fd)
            if pd is not None:
                pd.set_ready(
                    bool(ev & _READ_EVENTS), bool(ev & _WRITE_EVENTS), bool(ev & _HUP_EVENTS), gs
                )
        if gs and _tracer is not None:
            _tracer.netpoll(gs)
        return gs

    def wakeup(self) -> None:
        """Break a blocking ``poll`` (Go's ``netpollBreak``). Any thread."""
        with self.lock:
            if self.wakesig or self.wfd < 0:
                return
            self.wakesig = True
            try:
                os.write(self.wfd, b"\0")
            except OSError:
                self.wakesig = False

    def close(self) -> None:
        """Release the epoll fd and the pipe. After every M has stopped."""
        with self.lock:
            ep, self.ep = self.ep, None
            fds = (self.rfd, self.wfd)
            self.rfd = self.wfd = -1
        if ep is not None:
            ep.close()
            for fd in fds:
                os.close(fd)


#: The execution tracer recording, or None (``_trace``: it sets this).
_tracer: Any = None


def _unpark(g: G, frame: Any) -> None:
    """``register_unpark``'s hook for a G parked in ``PollDesc.wait``."""
    pd: PollDesc = frame.f_locals["self"]
    with pd.lock:
        if pd.rg is g:
            pd.rg = None
        elif pd.wg is g:
            pd.wg = None
        else:
            return  # woken already
    pd.netpoll.adjust_waiters(-1)


register_unpark(PollDesc.wait.__code__, _unpark)
