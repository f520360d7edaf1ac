"""Group: errgroup and task group in one (Go's ``x/sync/errgroup``, asyncio's ``TaskGroup``).

A Group owns the goroutines started through it, its *members*. ``wait()``
waits for every member; the first error cancels ``g.ctx`` (so the others
can stop early, ``errgroup.WithContext``); no error is lost: ``wait()``
raises every member's exception, in the order they happened, together in
an ``ExceptionGroup`` (``except*`` works on it). ``limit=n`` runs at most n
members at once: ``go()`` never blocks, the others start in order as
members end (``SetLimit`` without blocking the caller).

A member's ``Exception`` belongs to the group, not to the runtime (unlike
``gr.go``, whose escaping exception stops the program): the member's
goroutine keeps it, with a note naming the goroutine and where it was
started. Anything else (KeyboardInterrupt, SystemExit, the GeneratorExit
of a run closing its goroutines) passes through as for any goroutine.
Never silent: errors that no ``wait()`` returned are reported as a
``RuntimeWarning`` when the group is garbage collected, or when the run
ends with the group still alive.

Built on the public doors only: ``gr.go``, ``WaitGroup``, ``with_cancel``.

Guards: ``_lock`` (rank 5, SYNC: a leaf; goroutines are started and the
WaitGroup touched after it is released): ``_running``, ``_pending``,
``_errors``, ``_closed``, ``_retrieved``.
"""

from __future__ import annotations

import sys
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, final

from ._context import Context, background, with_cancel
from ._run import go, goroutine_id
from ._runtime import _scheduler
from ._runtime._goroutine import Site, add_note, make_coroutine
from ._runtime._lockrank import LockRank, new_lock
from ._sync import WaitGroup

__all__ = ["Group"]

P = ParamSpec("P")


@final
class Group:
    """A set of goroutines waited for together, whose errors are collected.

    ``g = gr.Group(ctx=None, limit=None)``; ``g.go(fn, *args, **kwargs)``
    starts ``fn`` as a member; ``await g.wait()`` waits for every member and
    raises an ``ExceptionGroup`` of their exceptions, if any. As a context
    manager, ``async with gr.Group() as g:`` waits at the end of the block
    (an exception in the block cancels ``g.ctx`` first, and joins the
    group's). ``g.ctx`` is a child of ``ctx`` (``background()`` if None),
    cancelled at the first error and when ``wait()`` returns. ``limit``: at
    most that many members run at once; the rest start in order.

    Use ``gr.go`` for a fire-and-forget goroutine whose exception should
    stop the program (Go's panic); use a Group when the caller waits for
    the goroutines and handles their errors.
    """

    __slots__ = (
        "__weakref__",
        "_cancel",
        "_closed",
        "_errors",
        "_limit",
        "_lock",
        "_pending",
        "_retrieved",
        "_running",
        "_wg",
        "ctx",
    )

    def __init__(self, ctx: Context | None = None, limit: int | None = None) -> None:
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"Group: limit must be an int or None, got {type(limit).__name__}")
            if limit < 1:
                raise ValueError(f"Group: limit must be >= 1, got {limit}")
        if ctx is not None and not isinstance(ctx, Context):
            raise TypeError(f"Group: ctx must be a Context or None, got {type(ctx).__name__}")
        self.ctx, self._cancel = with_cancel(background() if ctx is None else ctx)
        self._lock = new_lock(LockRank.SYNC, self)
        self._limit = limit
        self._running = 0
        self._pending: deque[tuple[Coroutine[Any, Any, Any], Site]] = deque()
        self._errors: list[Exception] = []
        self._retrieved = True  # no error that wait() has not returned
        self._closed = False  # wait() has returned: no more members
        self._wg = WaitGroup()

    def __repr__(self) -> str:
        return f"<Group running={self._running} pending={len(self._pending)}>"

    def go(
        self,
        fn: Callable[P, Awaitable[Any]] | Coroutine[Any, Any, Any],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        """Start ``fn(*args, **kwargs)`` (an async function, or a coroutine
        object) as a member, now or, past ``limit``, once a member ends."""
        coro = make_coroutine(fn, args, kwargs, "Group.go()")
        f = sys._getframe(1)
        site: Site = (f.f_code, f.f_lasti)
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                start = self._limit is None or self._running < self._limit
                if start:
                    self._running += 1
                else:
                    self._pending.append((coro, site))
        if closed:
            coro.close()
            raise RuntimeError("Group.go() after the group's wait() returned: start a new Group")
        self._wg.add(1)
        if start:
            self._start(coro, site)

    def _start(self, coro: Coroutine[Any, Any, Any], site: Site) -> None:
        member: Any = self._member(coro, site)
        # Dumps and notes name the member's own function, not ``_member``.
        member.__qualname__ = getattr(coro, "__qualname__", member.__qualname__)
        go(member)

    async def _member(self, coro: Coroutine[Any, Any, Any], site: Site) -> None:
        g = _scheduler.current_g()
        g.site = site  # created by the caller of Group.go, not by Group.go
        try:
            await coro
        except Exception as e:
            created = g.created_by
            add_note(
                e,
                f"raised in goroutine {goroutine_id()} ({getattr(coro, '__qualname__', coro)}), "
                f"a member of a Group"
                + (f", started at {created[0]}:{created[1]}" if created else ""),
            )
            with self._lock:
                self._errors.append(e)
                first = self._retrieved
                self._retrieved = False
            if first:
                _unretrieved_at_exit(self)
            self._cancel()
        except BaseException:
            self._end(False)
            raise
        self._end(True)

    def _end(self, start_next: bool) -> None:
        """A member ended: start the next pending one (its slot), or close
        every pending one when the member was closed with its run."""
        nxt = None
        drop: list[Coroutine[Any, Any, Any]] = []
        with self._lock:
            if start_next and self._pending:
                nxt = self._pending.popleft()
            else:
                self._running -= 1
                if not start_next:
                    drop = [c for c, _ in self._pending]
                    self._pending.clear()
        for c in drop:
            c.close()
        if nxt is not None:
            self._start(*nxt)
        self._wg.done()

    async def wait(self) -> None:
        """Wait for every member; then cancel ``ctx`` and raise an
        ``ExceptionGroup`` of the members' exceptions (in the order they
        happened), if any. No member can be added once it has returned."""
        errors = await self._join()
        if errors:
            raise ExceptionGroup(f"{len(errors)} of a Group's goroutines failed", errors)

    async def _join(self) -> list[Exception]:
        await self._wg.wait()
        with self._lock:
            self._closed = True
            errors, self._errors = self._errors, []
            self._retrieved = True
        _retrieved(self)
        self._cancel()
        return errors

    async def __aenter__(self) -> Group:
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._cancel()
            if not isinstance(exc, Exception):
                await self._wg.wait()
                return  # KeyboardInterrupt and the like pass through as they are
        errors = await self._join()
        if exc is not None:
            assert isinstance(exc, Exception)
            errors.insert(0, exc)
        if errors:
            raise ExceptionGroup(f"{len(errors)} errors in a Group", errors) from None

    def _warn_unretrieved(self) -> None:
        with self._lock:
            if self._retrieved:
                return
            errors, self._errors = self._errors, []
            self._retrieved = True
        _retrieved(self)
        lines = "\n".join(f"  {type(e).__name__}: {e}" for e in errors)
        warnings.warn(
            f"a Group's errors were never retrieved (no wait() returned them):\n{lines}",
            RuntimeWarning,
            stacklevel=2,
        )

    def __del__(self) -> None:
        if not getattr(self, "_retrieved", True):  # (True: __init__ raised)
            self._warn_unretrieved()


#: Groups holding errors that no ``wait()`` has returned yet -> the run
#: they happened in; and the runs whose end checks them. Guarded by
#: ``_unretrieved_lock`` (a leaf: it is taken holding no other lock).
_unretrieved: weakref.WeakKeyDictionary[Group, int] = weakref.WeakKeyDictionary()
_checked_runs: set[int] = set()
_unretrieved_lock = threading.Lock()


def _unretrieved_at_exit(group: Group) -> None:
    """Report ``group``'s errors at the end of the run if no ``wait()`` has
    returned them by then (the group may outlive the run). One check per
    run, whatever the number of groups: a server may make a Group per
    request."""
    sched = _scheduler.require()
    rid = sched.run_id
    with _unretrieved_lock:
        _unretrieved[group] = rid
        if rid in _checked_runs:
            return
        _checked_runs.add(rid)

    def check() -> None:
        with _unretrieved_lock:
            _checked_runs.discard(rid)
            groups = [g for g, r in _unretrieved.items() if r == rid]
        for g in groups:
            g._warn_unretrieved()

    sched.at_exit.append(check)


def _retrieved(group: Group) -> None:
    with _unretrieved_lock:
        _unretrieved.pop(group, None)
