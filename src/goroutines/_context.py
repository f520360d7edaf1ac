"""Contexts: cancellation, deadlines and request-scoped values (Go's ``context`` package).

A context is an immutable node in a tree rooted at ``background()``. Four
kinds, as in Go's ``context.go``:

- ``_EmptyCtx``: ``background()`` and ``todo()``. Never cancelled, no
  deadline, no values; ``done()`` is one shared channel that never closes.
- ``_CancelCtx`` (``with_cancel``): owns a lazily made ``done`` channel, the
  first error, and the set of cancellable children to cancel with it.
- ``_TimerCtx`` (``with_deadline``/``with_timeout``): a ``_CancelCtx`` plus a
  deadline and a runtime timer (``_runtime._timers``, the one time
  mechanism) whose callback cancels it with ``DeadlineExceeded``.
- ``_ValueCtx`` (``with_value``) and ``_WithoutCancelCtx``
  (``without_cancel``): a key/value or a cut in the cancellation chain; the
  rest is the parent's.

Cancellation propagates down and never up: a new cancellable context
registers itself in the ``children`` of the nearest cancellable ancestor
(found through value contexts); cancelling a node cancels its whole subtree
and then removes the node from that ancestor's ``children``, so a
long-lived parent does not accumulate dead children. If the parent is a
user-defined ``Context`` (no ``_CancelCtx`` behind it), a watcher goroutine
waits on both ``done()`` channels instead, as Go does.

Invariants (``mu`` of the ``_CancelCtx`` held):

- ``err`` goes from None to an error class once; the first cause wins.
- ``err is not None`` iff ``done`` is closed (or is the shared closed
  channel) iff ``children is None``: nothing can register with a cancelled
  parent, it is cancelled on the spot instead.
- A ``_TimerCtx``'s ``timer`` is armed only while ``err is None``; cancel
  stops it, so a cancelled context never keeps the runtime alive (an armed
  timer means "not deadlocked" to ``checkdead``).

Cancel is a depth-first walk that holds the lock of every context on the
current path, parent before child, as Go does by cancelling children under
the parent's ``mu``: whoever reads ``parent.err()`` non-None after taking
its lock finds the whole subtree cancelled. The walk is iterative (an
explicit stack), so a chain of thousands of contexts cannot overflow the
Python stack. Rejected: cancelling the children after releasing the
parent's lock (simpler, but ``parent.err()`` could then be ``Canceled``
while a child's ``err()`` is still None) and plain recursion (a deep chain
hits the recursion limit, possibly inside a timer callback on an M).

Lock order: the ranked table in ``goroutines._runtime`` (``mu`` is rank 3, CONTEXT: parent
``mu`` before child ``mu``, then ``Chan.lock``, ``Timers.lock`` and, through
readying the Gs parked on ``done``, ``sched.lock``). Removing a cancelled
context from its parent's ``children`` happens after its own ``mu`` is
released.

Across runs: a ``_TimerCtx`` belongs to the run that made it (``_sched``;
its timer is in that run's heap, dropped when the run ends). While it is
not settled (``err is None``), ``done()``, ``err()`` and deriving a
cancellable child from it in a later run, or with no run, raise
RuntimeError naming the run (``_check_run``): it could never expire there.
Its ``done`` channel is bound to the run too (``Chan.bind_to_run``), for a
goroutine that kept the channel itself. ``cancel()`` always works (it stops
the timer only in its own run), and a settled context works everywhere.
A deadline of ``inf`` arms no timer and binds nothing (``_run`` 0). Plain
``with_cancel`` contexts hold no runtime state and work in any run (a
child made in run 1 under a ``_TimerCtx`` of run 1 is not checked: it is
cancelled only by hand after that run).

Guards: ``_CancelCtx.done``, ``err``, ``children``, ``_TimerCtx.timer``:
``mu`` (``done`` is also read racily on the fast path of ``done()``: a
reference read is atomic, and a stale None only sends the reader to the
lock; ``err`` is read racily by ``_check_run``: once set it never changes).
Everything else is immutable after construction.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, Final, TypeAlias, final

from ._chan import Chan
from ._errors import Canceled, DeadlineExceeded
from ._run import go
from ._runtime import _clock, _scheduler
from ._runtime._lockrank import LockRank, new_lock
from ._runtime._timers import Timer
from ._select import select
from ._time import as_float

__all__ = [
    "CancelFunc",
    "Context",
    "background",
    "todo",
    "with_cancel",
    "with_deadline",
    "with_timeout",
    "with_value",
    "without_cancel",
]

#: What ``ctx.err()`` returns once a context is done: the exception class.
ErrType: TypeAlias = type[Canceled] | type[DeadlineExceeded]

#: Cancels its context (and every context derived from it); idempotent.
CancelFunc: TypeAlias = Callable[[], None]

_CONTEXT_RANK = LockRank.CONTEXT


class Context(abc.ABC):
    """Carries a deadline, a cancellation signal and values across goroutines.

    The contexts made by this module are subclasses; a user-defined one
    must implement all four methods (and follow their contracts) to be used
    as a parent.
    """

    __slots__ = ()

    @abc.abstractmethod
    def done(self) -> Chan[None]:
        """A channel closed when this context is cancelled or expires.

        Never close it yourself. For contexts that can never be cancelled it
        is a channel that never closes.
        """

    @abc.abstractmethod
    def err(self) -> ErrType | None:
        """None while ``done()`` is open; then ``Canceled`` or ``DeadlineExceeded`` (the class)."""

    @abc.abstractmethod
    def value(self, key: Any) -> Any:
        """The value bound to ``key`` by the nearest ``with_value``, or None."""

    @abc.abstractmethod
    def deadline(self) -> float | None:
        """The time (on ``gr.monotonic()``) at which this context expires, or None."""


#: ``done()`` of every context that can never be cancelled. Never closed.
_NEVER: Final[Chan[None]] = Chan()

#: ``done`` of a context cancelled before anyone asked for its channel.
_CLOSED: Final[Chan[None]] = Chan()
_CLOSED.close()

#: Key under which a ``_CancelCtx`` answers ``value()`` with itself, so that
#: the nearest one can be found through user-defined contexts that delegate
#: ``value`` to their parent (Go's ``cancelCtxKey``).
_CANCEL_CTX_KEY: Final = object()


@final
class _EmptyCtx(Context):
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def done(self) -> Chan[None]:
        return _NEVER

    def err(self) -> ErrType | None:
        return None

    def value(self, key: Any) -> Any:
        return None

    def deadline(self) -> float | None:
        return None

    def __repr__(self) -> str:
        return f"<context {self._name}>"


_BACKGROUND: Final = _EmptyCtx("background")
_TODO: Final = _EmptyCtx("todo")


def background() -> Context:
    """The root context: never cancelled, no deadline, no values (Go's ``context.Background``)."""
    return _BACKGROUND


def todo() -> Context:
    """Like ``background()``, marking a place where the right context is not known yet."""
    return _TODO


def _lookup(ctx: Context, key: Any) -> Any:
    """``ctx.value(key)``: walk up the chain without recursion."""
    while True:
        t = type(ctx)
        if t is _ValueCtx:
            vc: _ValueCtx = ctx  # type: ignore[assignment]
            if vc._key is key or vc._key == key:
                return vc._val
            ctx = vc._parent
        elif t is _CancelCtx or t is _TimerCtx:
            if key is _CANCEL_CTX_KEY:
                return ctx
            ctx = ctx._parent  # type: ignore[attr-defined]
        elif t is _WithoutCancelCtx:
            if key is _CANCEL_CTX_KEY:
                return None  # the chain of cancellation stops here
            ctx = ctx._parent  # type: ignore[attr-defined]
        elif t is _EmptyCtx:
            return None
        else:
            return ctx.value(key)  # user-defined


def _parent_deadline(ctx: Context) -> float | None:
    """``ctx.deadline()``: walk up to the nearest context that knows, without recursion."""
    while True:
        t = type(ctx)
        if t is _TimerCtx:
            return ctx._deadline  # type: ignore[attr-defined, no-any-return]
        if t is _CancelCtx or t is _ValueCtx:
            ctx = ctx._parent  # type: ignore[attr-defined]
        elif t is _EmptyCtx or t is _WithoutCancelCtx:
            return None
        else:
            return ctx.deadline()


class _CancelCtx(Context):
    """A context that can be cancelled; see the module docstring for its fields' guards."""

    __slots__ = ("_children", "_done", "_err", "_mu", "_parent", "_registered")

    def __init__(self, parent: Context) -> None:
        self._parent = parent
        self._mu = new_lock(_CONTEXT_RANK, self)
        self._done: Chan[None] | None = None  # made lazily by done(); _CLOSED if cancelled first
        self._err: ErrType | None = None
        # {child: None}, in registration order; None once cancelled.
        self._children: dict[_CancelCtx, None] | None = {}
        #: The ancestor whose ``children`` holds us (immutable once set, before
        #: we are shared), so that cancel can remove us from it.
        self._registered: _CancelCtx | None = None

    # -- Context ------------------------------------------------------------

    def done(self) -> Chan[None]:
        d = self._done
        if d is not None:
            return d
        with self._mu:
            if self._done is None:
                self._done = Chan()
            return self._done

    def err(self) -> ErrType | None:
        with self._mu:
            return self._err

    def value(self, key: Any) -> Any:
        return _lookup(self, key)

    def deadline(self) -> float | None:
        return _parent_deadline(self._parent)

    def __repr__(self) -> str:
        return f"<context with_cancel{self._state()}>"

    def _state(self) -> str:
        e = self._err  # racy read, stale OK: only for display
        return "" if e is None else f" err={e.__name__}"

    # -- cancellation ---------------------------------------------------------

    def _cancel_self_locked(self, err: ErrType) -> dict[_CancelCtx, None]:
        """Mark cancelled, close ``done``; return the children to cancel.

        ``mu`` held, not cancelled yet.
        """
        self._err = err
        d = self._done
        if d is None:
            self._done = _CLOSED
        else:
            d.close()
        kids = self._children
        self._children = None
        assert kids is not None
        return kids

    def _cancel(self, remove_from_parent: bool, err: ErrType) -> None:
        """Cancel this context and its subtree with ``err``, unless already done. Any thread."""
        self._mu.acquire()
        if self._err is not None:
            self._mu.release()
            return
        # The depth-first walk of the module docstring: each stack entry's
        # lock is held until all its children are done. An entry is pushed
        # as soon as its lock is taken (before its iterator exists), so the
        # finally releases every lock still held if anything raises.
        stack: list[tuple[_CancelCtx, Any]] = [(self, None)]
        try:
            stack[-1] = (self, iter(self._cancel_self_locked(err)))
            while stack:
                ctx, kids = stack[-1]
                child = next(kids, None)
                if child is None:
                    stack.pop()
                    ctx._mu.release()
                    continue
                child._mu.acquire()
                if child._err is not None:
                    # Cancelled on its own, and not yet out of our children
                    # (it leaves them after releasing its own lock).
                    child._mu.release()
                    continue
                stack.append((child, None))
                stack[-1] = (child, iter(child._cancel_self_locked(err)))
        finally:
            for ctx, _ in reversed(stack):
                ctx._mu.release()
        if remove_from_parent:
            p = self._registered
            if p is not None:
                with p._mu:
                    if p._children is not None:
                        p._children.pop(self, None)

    def _cancel_canceled(self) -> None:
        """The ``CancelFunc`` handed to the user."""
        self._cancel(True, Canceled)


@final
class _TimerCtx(_CancelCtx):
    """A ``_CancelCtx`` that also cancels itself with ``DeadlineExceeded`` at ``deadline``."""

    __slots__ = ("_deadline", "_run", "_sched", "_timer")

    def __init__(self, parent: Context, deadline: float, sched: _scheduler.Sched) -> None:
        super().__init__(parent)
        self._deadline = deadline
        #: The run whose heap holds our timer (see the module docstring);
        #: ``_run`` is its number, 0 if we have no timer (``inf``).
        self._sched = sched
        self._run = 0 if deadline == math.inf else sched.run_id
        self._timer: Timer | None = None  # guarded by mu; armed only while err is None

    def done(self) -> Chan[None]:
        d = self._done
        if d is not None and self._sched is _scheduler.current:
            return d
        self._check_run("Context.done")
        with self._mu:
            if self._done is None:
                self._done = Chan()
                if self._run:
                    self._done.bind_to_run(
                        self._run, "the done() channel of a context with a deadline"
                    )
            return self._done

    def err(self) -> ErrType | None:
        with self._mu:
            e = self._err
        if e is None:
            self._check_run("Context.err")
        return e

    def deadline(self) -> float | None:
        return self._deadline

    def _check_run(self, what: str) -> None:
        """Raise if our run has ended and we are not settled. No lock held."""
        if self._sched is _scheduler.current or not self._run or self._err is not None:
            return
        where = "inside gr.run()" if _scheduler.current is None else "in this run"
        raise RuntimeError(
            f"{what}: this context with a deadline belongs to goroutines run #{self._run}, "
            f"which has ended, and can no longer expire; cancel it, or make a new one {where}"
        )

    def _cancel_self_locked(self, err: ErrType) -> dict[_CancelCtx, None]:
        t = self._timer
        if t is not None:
            self._timer = None
            if self._sched is _scheduler.current:  # else its heap is gone
                self._sched.timers.stop(t)
        return super()._cancel_self_locked(err)

    def __repr__(self) -> str:
        return f"<context with_deadline({self._deadline:.6f}){self._state()}>"


def _expire(ctx: _TimerCtx) -> None:
    """Timer callback (any M, no lock held): the deadline has passed."""
    ctx._cancel(True, DeadlineExceeded)


@final
class _ValueCtx(Context):
    __slots__ = ("_key", "_parent", "_val")

    def __init__(self, parent: Context, key: Any, val: Any) -> None:
        self._parent = parent
        self._key = key
        self._val = val

    def done(self) -> Chan[None]:
        return self._parent.done()

    def err(self) -> ErrType | None:
        return self._parent.err()

    def value(self, key: Any) -> Any:
        return _lookup(self, key)

    def deadline(self) -> float | None:
        return _parent_deadline(self._parent)

    def __repr__(self) -> str:
        return f"<context with_value({self._key!r})>"


@final
class _WithoutCancelCtx(Context):
    __slots__ = ("_parent",)

    def __init__(self, parent: Context) -> None:
        self._parent = parent

    def done(self) -> Chan[None]:
        return _NEVER

    def err(self) -> ErrType | None:
        return None

    def value(self, key: Any) -> Any:
        return _lookup(self, key)

    def deadline(self) -> float | None:
        return None

    def __repr__(self) -> str:
        return "<context without_cancel>"


# -- construction ---------------------------------------------------------------


def _check_parent(parent: Any, what: str) -> Context:
    if not isinstance(parent, Context):
        raise TypeError(f"{what}: parent must be a Context, got {type(parent).__name__}")
    return parent


def _require_sched(what: str) -> _scheduler.Sched:
    sched = _scheduler.current
    if sched is None:
        raise RuntimeError(
            f"{what} needs a running goroutines runtime for its timer: call it inside gr.run()"
        )
    return sched


def _propagate_cancel(parent: Context, child: _CancelCtx, what: str) -> None:
    """Arrange for ``child`` to be cancelled with ``parent`` (Go's ``propagateCancel``).

    ``child`` is not shared yet. RuntimeError (``what`` names the call) if
    the parent is a ``_TimerCtx`` of an ended run, not settled.
    """
    # Find where parent's cancellation comes from: through value contexts
    # to the nearest context of ours that is not one.
    ctx = parent
    while type(ctx) is _ValueCtx:
        ctx = ctx._parent
    t = type(ctx)
    if t is _EmptyCtx or t is _WithoutCancelCtx:
        return  # never cancelled
    p: _CancelCtx | None = None
    if t is _CancelCtx or t is _TimerCtx:
        p = ctx  # type: ignore[assignment]
    else:
        # A user-defined context. Go's parentCancelCtx: trust the nearest
        # _CancelCtx behind it only if that really is where done() comes
        # from (the user's type may override done()).
        done = parent.done()
        if done is _NEVER:
            return
        q = parent.value(_CANCEL_CTX_KEY)
        if isinstance(q, _CancelCtx) and q.done() is done:
            p = q
    if p is not None:
        if type(p) is _TimerCtx:
            p._check_run(what)
        with p._mu:
            if p._err is not None:
                child._cancel(False, p._err)
            else:
                assert p._children is not None
                p._children[child] = None
                child._registered = p
        return
    err = parent.err()
    if err is not None:
        child._cancel(False, err)
        return
    if _scheduler.current is None:
        raise RuntimeError(
            f"deriving a cancellable context from {type(parent).__name__} (not made by this "
            "module) needs a running goroutines runtime, to watch it: call it inside gr.run()"
        )
    go(_watch, parent, child)


async def _watch(parent: Context, child: _CancelCtx) -> None:
    """Cancel ``child`` when a user-defined ``parent`` is done; give up when ``child`` is."""
    i, _ = await select(parent.done().recv, child.done().recv)
    if i == 0:
        child._cancel(False, parent.err() or Canceled)


def with_cancel(parent: Context) -> tuple[Context, CancelFunc]:
    """A child of ``parent`` that is cancelled by ``cancel()`` or with ``parent``.

    Call ``cancel`` as soon as the work is done, to release the child's
    place in its parent (Go: "failing to call cancel leaks the context").
    """
    parent = _check_parent(parent, "with_cancel")
    c = _CancelCtx(parent)
    _propagate_cancel(parent, c, "with_cancel")
    return c, c._cancel_canceled


def with_deadline(parent: Context, deadline: float) -> tuple[Context, CancelFunc]:
    """A child of ``parent`` that also expires at ``deadline`` (a ``gr.monotonic()`` time).

    If ``parent`` expires no later, this is ``with_cancel(parent)``. A
    deadline already past gives a context that is already done, with
    ``err()`` ``DeadlineExceeded``. Needs a running runtime (the timer).
    """
    parent = _check_parent(parent, "with_deadline")
    d = as_float(deadline, "with_deadline", "deadline")
    return _with_deadline(parent, d, "with_deadline")


def with_timeout(parent: Context, seconds: float) -> tuple[Context, CancelFunc]:
    """``with_deadline(parent, gr.monotonic() + seconds)``."""
    parent = _check_parent(parent, "with_timeout")
    s = as_float(seconds, "with_timeout", "seconds")
    return _with_deadline(parent, _clock.now() + s, "with_timeout")


def _with_deadline(parent: Context, d: float, what: str) -> tuple[Context, CancelFunc]:
    sched = _require_sched(what)
    cur = parent.deadline()
    if cur is not None and cur <= d:
        # The parent expires first: its timer is the one that matters.
        c0 = _CancelCtx(parent)
        _propagate_cancel(parent, c0, what)
        return c0, c0._cancel_canceled
    c = _TimerCtx(parent, d, sched)
    _propagate_cancel(parent, c, what)
    if d <= _clock.now():
        c._cancel(True, DeadlineExceeded)
        return c, c._cancel_canceled
    if d != math.inf:  # an infinite deadline never fires: no timer to keep the runtime up
        with c._mu:
            if c._err is None:
                c._timer = Timer(_expire, c)
                sched.timers.add(c._timer, d)
    return c, c._cancel_canceled


def with_value(parent: Context, key: Any, value: Any) -> Context:
    """A child of ``parent`` in which ``value(key)`` is ``value`` (shadowing the parent's)."""
    parent = _check_parent(parent, "with_value")
    if key is None:
        raise TypeError("with_value: key is None")
    try:
        hash(key)
    except TypeError:
        raise TypeError(
            f"with_value: key must be hashable (comparable), got {type(key).__name__}"
        ) from None
    return _ValueCtx(parent, key, value)


def without_cancel(parent: Context) -> Context:
    """A child of ``parent`` with its values but not its cancellation or deadline (Go 1.21)."""
    parent = _check_parent(parent, "without_cancel")
    return _WithoutCancelCtx(parent)
