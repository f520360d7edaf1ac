"""Channels: Go's ``chan`` (``runtime/chan.go``), typed ``Chan[T]``.

Invariants (``lock`` held):

- At least one of ``sendq`` and ``recvq`` has no live waiter, except (as in
  Go's ``hchan``) for an unbuffered channel on which one select waits both
  to send and to receive: then both queues hold its sudogs, and no other
  goroutine's. Dead waiters (sudogs of a select that fired on another case,
  or of a goroutine closed at the end of its run) are skipped when they
  reach the head.
- For buffered channels: ``buf`` non-empty implies ``recvq`` has no live
  waiter; ``len(buf) < cap`` implies ``sendq`` has no live waiter.
- A G found in a queue (``lock`` held) is WAITING: it enqueued itself
  under ``lock``, and the lock is released only once its M has marked it
  so (the unlock function runs after the coroutine is suspended). Asserted
  at each hand-off.
- Closed: no new waiter is enqueued; ``close`` readies every waiter.
- No waiter of a goroutine that has ended stays in a queue: a run closing
  the goroutines it leaves takes them off (``_unpark``, see
  ``_runtime._goroutine``), so a later send or receive (in that run's
  ``finally`` blocks, or in a later run) never pairs with a dead one.

Each operation is a non-blocking core under ``lock`` plus a slow path that
enqueues the waiter and parks: it sets its wait reason and yields
``Unlock(lock.release)`` (made once: ``_unlock``), the park protocol of
``_runtime._goroutine`` (``gopark`` is the same as a generator; a
receiver's frame is what a parked G keeps alive, so the channel yields
itself rather than through one more generator). A woken waiter is readied
by ``goready`` (``G.wake``; a select's ``Sudog.wake`` readies its G). A waiter is a G
(single-channel waits: the G is its own sudog) or a ``Sudog`` (one per
select case); see ``Sudog`` for the waiter protocol. Waiters are woken
only after ``lock`` is released, except that their ``elem``/``success``
are filled in while it is held.

A waiter handed a value directly from the other side never sees the buffer:
an unbuffered send to a parked receiver is a single hand-off.

``_ndead`` counts select waiters left behind in the queues by selects that
fired elsewhere (``_select`` pass 3); when they outnumber the live ones the
queues are compacted, so a select in a loop on a channel that never fires
cannot grow its queue without bound. It may over-count (a dead waiter that
was already popped), which only makes compaction a little early.

Lock order: ``lock`` is rank 7 (CHAN) in the ranked table in
``goroutines._runtime``.

Guards: every field but ``_cap`` and ``_unlock`` (immutable) is guarded by ``lock``;
``len(ch)`` is a racy read, as in Go.
"""

from __future__ import annotations

import dis
import functools
import types
from collections import deque
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._accel import speedups
from ._errors import ChanClosed
from ._runtime import getg_or_none, not_in_goroutine
from ._runtime._goroutine import (
    G,
    Unlock,
    WaitReason,
    register_park_site,
    register_unpark,
    returns_awaitable,
)
from ._runtime._lockrank import LockRank, new_lock
from ._runtime._machine import _tls
from ._runtime._scheduler import current_run_id

__all__ = ["Chan"]

T = TypeVar("T")

_CHAN_SEND = WaitReason.CHAN_SEND
_CHAN_RECEIVE = WaitReason.CHAN_RECEIVE
_CHAN_RANK = LockRank.CHAN

RECV_BLOCK, RECV_OK, RECV_CLOSED = 0, 1, 2

#: ``Chan.recv``'s modes: ``recv``, ``async for`` (``__anext__``), ``recv_ok``.
_RECV, _NEXT, _RECV_OK = 0, 1, 2


def _drained(mode: int) -> Any:
    """What a receive on a closed and drained channel gives, by mode."""
    if mode == _RECV:
        return None
    if mode == _NEXT:
        raise StopAsyncIteration
    return None, False


def _claim(sg: Any) -> bool:
    """Claim a waiter: True if it is no select's (``sel`` None) or its select
    had not fired yet. Lock held."""
    sel = sg.sel
    if sel is None:
        return True
    try:
        sel.pop()  # atomic: exactly one case of a select wins
    except IndexError:
        return False
    return True


def dequeue(q: deque[Any]) -> Any:
    """Pop the first live waiter of ``q``, claiming it if it is a select's. Lock held."""
    while q:
        sg = q.popleft()
        if sg.sel is None or _claim(sg):
            return sg
        # else: that select already fired on another case
    return None


class _ChanCore:
    """The reference implementation of a channel's state and hot operations
    (``send``, ``recv``, ``recv_ok``, ``__anext__``, ``close``): the base of ``Chan`` in
    pure mode. The accelerator's ``_speedups.ChanCore`` is the same in C
    (see ``goroutines._accel``); the rest of ``Chan`` is shared."""

    __slots__ = (
        "_bound",
        "_buf",
        "_cap",
        "_closed",
        "_ndead",
        "_recvq",
        "_room",
        "_sendq",
        "_unlock",
        "lock",
    )

    def __init__(self, cap: int = 0) -> None:
        if not isinstance(cap, int) or isinstance(cap, bool):
            raise TypeError(f"Chan capacity must be an int, got {type(cap).__name__}")
        if cap < 0:
            raise ValueError(f"Chan capacity must be >= 0, got {cap}")
        self.lock = new_lock(_CHAN_RANK, self)
        #: ``Unlock(lock.release)``, made once: what a parking G yields (a
        #: bound method made at each park costs ~500 CPU instructions).
        self._unlock = Unlock(self.lock.release)
        self._cap = cap
        self._buf: deque[Any] = deque()
        self._closed = False
        #: ``cap`` while open, -1 once closed: ``send`` tests "open and room
        #: in the buffer" with one comparison.
        self._room = cap
        self._recvq: deque[Any] = deque()  # waiters: G or Sudog, elem filled in by a sender
        self._sendq: deque[Any] = deque()  # waiters: G or Sudog, elem is the value to send
        self._ndead = 0
        #: ``(run_id, what)`` when only an object of one run sends on this
        #: channel (a Timer's ``c``): waiting on it in a later run, when no
        #: value can ever come, raises RuntimeError instead (``bind_to_run``).
        self._bound: tuple[int, str] | None = None

    def check_bound_locked(self) -> None:
        raise NotImplementedError  # Chan's

    # -- send -----------------------------------------------------------------

    @types.coroutine
    def _send(self, v: Any) -> Generator[Any, None, None]:
        """Send ``v``; wait until a receiver takes it or there is room in the buffer.

        Raises ChanClosed if the channel is closed (or gets closed while waiting).
        """
        self.lock.acquire()
        # A closed channel has no waiting receiver (``close`` woke them all,
        # and none waits on a closed channel) and no room (``_room``): its
        # ``closed`` test comes after the two fast paths.
        if self._recvq:
            sg = self._recvq.popleft()
            # A G (its own sudog: told by its class, cheaper than reading
            # ``sel``, a class attribute, through the instance), or a
            # select's sudog, which must be claimed.
            if sg.__class__ is not G and not _claim(sg):
                sg = dequeue(self._recvq)
            if sg is not None:  # a parked receiver: hand it v (it never sees the buffer)
                sg.elem = v
                sg.success = True
                self.lock.release()
                sg.wake()  # goready (of the select's G, for a sudog)
                return
        if len(self._buf) < self._room:
            self._buf.append(v)
            self.lock.release()
            return
        if self._closed:
            self.lock.release()
            raise ChanClosed("send on closed channel")
        if self._bound is not None:
            self.check_bound_locked()
        g = getg_or_none()
        if g is None:
            self.lock.release()
            raise not_in_goroutine()
        g.elem = v
        g.success = False
        self._sendq.append(g)
        g.wait_reason = _CHAN_SEND
        yield self._unlock  # gopark (see _runtime): the M releases lock once we are suspended
        g.elem = None
        if not g.success:
            raise ChanClosed("send on closed channel")

    @types.coroutine
    def _recv(self, *, _mode: int = _RECV) -> Generator[Any, None, Any]:
        """The one receive: ``recv``, ``recv_ok`` and ``__anext__`` are this
        function with their ``_mode`` (``_with_mode``), which says what a value is
        returned as and what a closed and drained channel gives (None;
        ``(None, False)``; StopAsyncIteration). A parked receiver keeps this
        frame alive (W5): four locals and a stack of three, 224 bytes
        (pymalloc rounds to 16: a fifth local would cost 16 bytes per
        parked G).
        """
        self.lock.acquire()
        while True:  # again after a select's waiter that had fired elsewhere
            if self._buf:
                v = self._buf.popleft()
                if self._sendq:  # the buffer was full: a waiting sender's value moves in
                    sg = dequeue(self._sendq)
                    if sg is not None:
                        self._buf.append(sg.elem)
                        sg.success = True
                        self.lock.release()
                        sg.wake()
                        return (v, True) if _mode == _RECV_OK else v
                self.lock.release()
                return (v, True) if _mode == _RECV_OK else v
            if not self._sendq:
                break
            sg = self._sendq.popleft()
            if sg.__class__ is G or _claim(sg):  # a parked sender: take its value, ready it
                v = sg.elem
                sg.success = True
                self.lock.release()
                sg.wake()
                return (v, True) if _mode == _RECV_OK else v
        if self._closed:  # and drained
            self.lock.release()
            return _drained(_mode)
        if self._bound is not None:
            self.check_bound_locked()
        sg = getg_or_none()
        if sg is None:
            self.lock.release()
            raise not_in_goroutine()
        sg.elem = None
        sg.success = False
        self._recvq.append(sg)
        sg.wait_reason = _CHAN_RECEIVE
        yield self._unlock  # gopark (see _runtime): the M releases lock once we are suspended
        v = sg.elem
        sg.elem = None
        if sg.success:
            return (v, True) if _mode == _RECV_OK else v
        return _drained(_mode)  # woken by close

    # -- close ------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel: every waiting receiver gets (None, False), every
        waiting sender raises ChanClosed; buffered values are still delivered.
        Raises ChanClosed if already closed."""
        with self.lock:
            if self._closed:
                raise ChanClosed("close of closed channel")
            self._closed = True
            self._room = -1
            woken: list[Any] = []
            for q in (self._recvq, self._sendq):
                while q:
                    sg = dequeue(q)
                    if sg is None:
                        break
                    if q is self._recvq:
                        sg.elem = None
                    sg.success = False
                    woken.append(sg)
            self._ndead = 0
        for sg in woken:
            sg.wake()


if TYPE_CHECKING or speedups is None:

    class _Base(_ChanCore):
        __slots__ = ()

else:

    class _Base(speedups.ChanCore):
        __slots__ = ()


@final
class Chan(_Base, Generic[T]):
    """A Go channel: goroutines send values to it and receive them from it.

    ``Chan()`` (capacity 0) is unbuffered: a send waits for a receiver, and
    the value passes straight from one to the other. ``Chan(n)`` buffers up
    to ``n`` values. ``Chan[int]`` types it. ::

        ch: gr.Chan[int] = gr.Chan(10)
        await ch.send(1)              # waits while the buffer is full
        v = await ch.recv()           # waits while it is empty; None once closed
        v, ok = await ch.recv_ok()    # ok is False once closed and drained
        ch.close()                    # receivers drain what is buffered
        async for v in ch: ...        # until closed and drained

    Values arrive in the order they were sent. ``close`` wakes every waiter:
    receivers get None (``ok`` False), senders raise ``ChanClosed``; sending
    on or closing a closed channel raises ``ChanClosed``. ``len(ch)`` is
    the number buffered, ``ch.cap`` the capacity. Use ``gr.select`` to wait
    on several channels at once.
    """

    # Its state and hot operations come from ``_Base``: the reference
    # ``_ChanCore``, or the accelerator's ``ChanCore`` (``goroutines._accel``).

    __slots__ = ("__weakref__",)

    if TYPE_CHECKING:  # ``_ChanCore``'s, or the accelerator's: both are awaitables

        def __init__(self, cap: int = 0) -> None: ...

        def send(self, v: T) -> Coroutine[Any, Any, None]:
            """Send ``v``; wait until a receiver takes it or there is room in the buffer.

            Raises ChanClosed if the channel is closed (or gets closed while waiting).
            """

        def recv(self) -> Coroutine[Any, Any, T | None]:
            """Receive a value; None once the channel is closed and drained."""

        def recv_ok(self) -> Coroutine[Any, Any, tuple[T | None, bool]]:
            """Receive a value: ``(v, True)``, or ``(None, False)`` once closed and drained."""

        def __anext__(self) -> Coroutine[Any, Any, T]: ...

    def bind_to_run(self, run_id: int, what: str) -> None:
        """Only ``what`` (e.g. "the channel of a Timer"), an object of run
        ``run_id``, sends on this channel: a goroutine of a later run that
        would wait on it gets RuntimeError naming that run."""
        self._bound = (run_id, what)

    def check_bound_locked(self) -> None:
        """Raise (releasing ``lock``) if waiting here could never end: the
        only sender belonged to a run that has ended. ``lock`` held."""
        bound = self._bound
        if bound is not None and bound[0] != current_run_id():
            self.lock.release()
            raise RuntimeError(
                f"{bound[1]} belongs to goroutines run #{bound[0]}, which has ended: "
                "no value will ever come; make a new one in this run"
            )

    @property
    def cap(self) -> int:
        return self._cap

    def __len__(self) -> int:
        return len(self._buf)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Chan cap={self._cap} len={len(self._buf)}{state}>"

    def try_send_locked(self, v: T) -> Any:
        """Non-blocking send core. ``lock`` held, channel open.

        Returns the waiter to wake (after unlocking), True if buffered, or
        False if the send would block.
        """
        sg = dequeue(self._recvq) if self._recvq else None
        if sg is not None:
            sg.elem = v
            sg.success = True
            return sg
        if len(self._buf) < self._cap:
            self._buf.append(v)
            return True
        return False

    # -- receive ---------------------------------------------------------------

    def try_recv_locked(self) -> tuple[int, Any, Any]:
        """Non-blocking receive core. ``lock`` held.

        Returns (state, value, waiter to wake after unlocking), where state
        is RECV_BLOCK (would block), RECV_OK, or RECV_CLOSED (closed and
        drained: value None).
        """
        buf = self._buf
        if buf:
            v = buf.popleft()
            sg = dequeue(self._sendq) if self._sendq else None
            if sg is not None:  # buffer was full: move the sender's value in
                buf.append(sg.elem)
                sg.success = True
            return RECV_OK, v, sg
        if self._sendq:
            sg = dequeue(self._sendq)
            if sg is not None:
                sg.success = True
                return RECV_OK, sg.elem, sg
        return (RECV_CLOSED if self._closed else RECV_BLOCK), None, None

    # -- iteration -------------------------------------------------------------

    def __aiter__(self) -> Chan[T]:
        return self

    # -- select support (lock held) ----------------------------------------------

    def enqueue_locked(self, sg: Any, send: bool) -> None:
        (self._sendq if send else self._recvq).append(sg)

    def forget_locked(self, n: int) -> None:
        """``n`` select waiters of ours are dead; compact when they are most of the queues."""
        self._ndead += n
        nd = self._ndead
        if nd > 16 and nd * 2 > len(self._recvq) + len(self._sendq):
            self._recvq = deque(s for s in self._recvq if s.sel is None or s.sel)
            self._sendq = deque(s for s in self._sendq if s.sel is None or s.sel)
            self._ndead = 0


def _unpark(g: G, where: Any) -> None:
    """``register_unpark``'s hook for a G parked in ``send``, ``recv``,
    ``recv_ok`` or ``__anext__`` (``where``: the reference's parking frame,
    or the accelerator's ``ChanOp``): take it off the channel's queue (a
    single-channel waiter is the G itself), unless a waker has dequeued it
    already."""
    ch: Chan[Any] = where.f_locals["self"] if isinstance(where, types.FrameType) else where.chan
    with ch.lock:
        for q in (ch._recvq, ch._sendq):
            try:
                q.remove(g)
            except ValueError:
                continue
            return


def _with_mode(fn: Any, name: str, mode: int | None, doc: str) -> Any:
    """``fn`` (``_ChanCore._recv`` or ``_send``) under another name with
    another ``_mode``: the same code, so one receive and no wrapper call per
    receive (renamed, so that dumps and tracebacks show ``Chan.recv``)."""
    code = fn.__code__.replace(co_name=name, co_qualname=f"Chan.{name}")
    f = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    if mode is not None:
        f.__kwdefaults__ = {"_mode": mode}
    f.__qualname__ = f"Chan.{name}"
    f.__doc__ = doc
    return f


for _name, _fn, _mode, _doc in (
    (
        "send",
        _ChanCore._send,
        None,
        "Send ``v``; wait until a receiver takes it or there is room in the buffer.\n\n"
        "Raises ChanClosed if the channel is closed (or gets closed while waiting).",
    ),
    (
        "recv",
        _ChanCore._recv,
        _RECV,
        "Receive a value; None once the channel is closed and drained.",
    ),
    (
        "recv_ok",
        _ChanCore._recv,
        _RECV_OK,
        "Receive a value: ``(v, True)``, or ``(None, False)`` once closed and drained.",
    ),
    ("__anext__", _ChanCore._recv, _NEXT, "The next value of ``async for``."),
):
    setattr(_ChanCore, _name, _with_mode(_fn, _name, _mode, _doc))
    register_unpark(getattr(_ChanCore, _name).__code__, _unpark)
del _ChanCore._send, _ChanCore._recv


@functools.cache
def _yield_line(name: str) -> tuple[str, str, int]:
    """The reference's frame that ``_ChanCore``'s operation ``name`` parks in:
    (qualname, file, line of its one yield)."""
    code = getattr(_ChanCore, name).__code__
    line = next(
        i.positions.lineno
        for i in dis.get_instructions(code)
        if i.opname == "YIELD_VALUE" and i.positions is not None and i.positions.lineno
    )
    return code.co_qualname, code.co_filename, line


def _park_site(op: Any) -> tuple[str, str, int]:
    """Dumps show a G parked in the accelerator's ``ChanOp`` as the
    reference's frame at the same wait."""
    return _yield_line(op.__name__)


if speedups is not None:
    # G, Unlock, the statuses and ready were handed over by the runtime
    # (``_machine``'s init_schedule, ``_scheduler``'s init_ready).
    speedups.init(
        tls=_tls,
        reason_send=_CHAN_SEND,
        reason_recv=_CHAN_RECEIVE,
        ChanClosed=ChanClosed,
        not_in_goroutine=not_in_goroutine,
        new_lock=new_lock,
        chan_rank=_CHAN_RANK,
    )
    register_unpark(speedups.ChanOp, _unpark)
    register_park_site(speedups.ChanOp, _park_site)
    for _m in ("send", "recv", "recv_ok"):
        returns_awaitable(getattr(speedups.ChanCore, _m))
