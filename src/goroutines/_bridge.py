"""Bridges between goroutines and the rest of a program: futures, asyncio, plain threads.

- ``await wait_future(fut)``: a goroutine waits for a
  ``concurrent.futures.Future`` (a thread or process pool's, Dask's
  ``client.get_executor()``'s, Ray's ``ObjectRef.future()``) or an
  ``asyncio.Future`` of another loop, holding no M and no thread: it parks,
  and the future's done-callback readies it.
- ``await from_asyncio(aw, ctx=None)``: a goroutine runs an asyncio
  awaitable on the runtime's own event loop (one thread, started on first
  use, stopped with the run; uvloop with ``GOROUTINES_ASYNCIO=uvloop``)
  and parks until it is done; ``ctx`` done cancels the asyncio task.
- ``from_thread(async_fn, *args, timeout=None)``: a plain thread runs
  ``async_fn(*args)`` as a goroutine of the running runtime and blocks
  until it returns or raises.

A goroutine waiting on a future can be woken only from outside the
runtime, like one waiting on a socket: while any does, the runtime counts
it (``Sched.nexternal``) so that it is neither taken for a deadlock nor,
in a bubble, for durably blocked (real time has to finish the future).

Guards: ``_FutureWait.g``, ``armed``, ``fired``: ``_FutureWait.lock``
(an unranked leaf, held for a field swap only); ``Sched.nexternal``:
``sched.lock``; ``_loops``: ``_loops_lock`` (a leaf).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
import time
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from ._chan import Chan
from ._context import Context
from ._run import go
from ._runtime import _scheduler
from ._runtime._goroutine import G, Unlock, WaitReason, gopark, make_coroutine, register_unpark
from ._runtime._machine import current_m
from ._select import select

__all__ = ["asyncio_loop", "from_asyncio", "from_thread", "wait_future"]

T = TypeVar("T")

#: How often a thread blocked in ``from_thread`` checks that the run it
#: called into is still on (a goroutine never started when the run ended
#: would otherwise leave it blocked for ever).
RUN_CHECK = 0.1


class _FutureWait:
    """A goroutine parked in ``wait_future``: woken once, by the future's
    done-callback or by its context, unless ``run()`` closed it first.

    ``armed`` is set by the unlock function once the G is suspended; a
    wake-up that comes before (the context's watcher is another goroutine)
    only sets ``fired``, and the arming wakes the G at once.
    """

    __slots__ = ("armed", "fired", "g", "lock", "sched")

    def __init__(self, g: G, sched: _scheduler.Sched) -> None:
        self.g: G | None = g
        self.sched = sched
        self.lock = threading.Lock()
        self.armed = False
        self.fired = False

    def arm(self, add_callback: Callable[[Callable[[Any], None]], None]) -> None:
        """The G is suspended: count it, then hand the future our callback
        (which may run at once), or wake it now if woken already."""
        with self.sched.lock:
            self.sched.nexternal += 1
        with self.lock:
            self.armed = True
            fired = self.fired
        if fired:
            self.done(None)
        else:
            add_callback(self.done)

    def take(self) -> G | None:
        with self.lock:
            if not self.armed:
                self.fired = True
                return None
            g, self.g = self.g, None
        if g is not None:
            with self.sched.lock:
                self.sched.nexternal -= 1
        return g

    def done(self, fut: Any) -> None:
        """The future's done-callback (any thread), or the context's watcher."""
        g = self.take()
        if g is not None:
            g.wake()


def _arm(arg: tuple[_FutureWait, Callable[[Callable[[Any], None]], None]]) -> None:
    """``wait_future``'s unlock function (see ``_FutureWait.arm``)."""
    arg[0].arm(arg[1])


@types.coroutine
def _park(
    g: G, w: _FutureWait, add: Callable[[Callable[[Any], None]], None]
) -> Generator[Any, None, None]:
    yield from gopark(Unlock(_arm, (w, add)), WaitReason.FUTURE, g)


def _unpark(g: G, frame: Any) -> None:
    """A G closed while it waits: it leaves the count; a late callback finds nobody."""
    w = frame.f_locals.get("w")
    if isinstance(w, _FutureWait):
        w.take()


register_unpark(_park.__code__, _unpark)


async def wait_future(
    fut: concurrent.futures.Future[T] | asyncio.Future[T], *, ctx: Context | None = None
) -> T:
    """Wait for ``fut`` and return its result, or raise its exception
    (``concurrent.futures.CancelledError`` / ``asyncio.CancelledError`` if
    it was cancelled). The goroutine parks; no thread waits.

    ``fut`` is a ``concurrent.futures.Future`` (from ``executor.submit``:
    threads, processes, or a cluster's executor) or an ``asyncio.Future``
    (or Task) of an event loop running in another thread.

    With ``ctx`` (e.g. ``gr.with_timeout(parent, 5)``): once ``ctx`` is
    done the wait ends with ``ctx.err()`` raised, and ``fut`` is cancelled
    (a pool's future only if it has not started).
    """
    if isinstance(fut, concurrent.futures.Future):
        add: Callable[[Callable[[Any], None]], None] = fut.add_done_callback
        cancel: Callable[[], Any] = fut.cancel
    elif isinstance(fut, asyncio.Future):
        loop = fut.get_loop()
        if not loop.is_running() and not fut.done():
            raise RuntimeError(
                f"wait_future: the event loop of {fut!r} is not running, so it can never finish"
            )

        def add(cb: Callable[[Any], None]) -> None:
            # An asyncio future is not thread-safe: add the callback on its loop.
            loop.call_soon_threadsafe(fut.add_done_callback, cb)

        def cancel() -> None:
            loop.call_soon_threadsafe(fut.cancel)

    else:
        raise TypeError(
            "wait_future needs a concurrent.futures.Future or an asyncio.Future, "
            f"got {type(fut).__name__}"
        )
    if fut.done():
        return fut.result()
    g = _scheduler.current_g()
    w = _FutureWait(g, _scheduler.require())
    if ctx is None:
        await _park(g, w, add)
        return fut.result()
    finished: Chan[None] = Chan()

    async def watch() -> None:
        i, _ = await select(ctx.done().recv, finished.recv)
        if i == 0:
            w.done(None)

    go(watch)
    try:
        await _park(g, w, add)
    finally:
        finished.close()
    if fut.done():
        return fut.result()
    cancel()
    err = ctx.err()
    assert err is not None
    raise err("wait_future: the context is done; the future was cancelled (if it could be)")


def from_thread(fn: Callable[..., Awaitable[T]], /, *args: Any, timeout: float | None = None) -> T:
    """Run ``fn(*args)`` (an async function) as a goroutine of the running
    runtime and block this thread until it returns (its result) or raises
    (its exception). For plain threads: ``gr.from_thread(ch.send, v)``,
    ``v = gr.from_thread(ch.recv)``.

    ``TimeoutError`` once ``timeout`` seconds have passed (the goroutine
    goes on: pass it a context to stop it). ``RuntimeError`` from a
    goroutine (await ``fn(*args)`` there), with no runtime running, or when
    the run ends before the goroutine has finished. (Type checkers check
    the result's type, not the arguments: a keyword after ``*args`` cannot
    be typed with a ParamSpec.)
    """
    if current_m() is not None:
        raise RuntimeError(
            "gr.from_thread() called from a goroutine's thread: await the function instead"
        )
    sched = _scheduler.current
    if sched is None:
        raise RuntimeError("gr.from_thread(): no goroutines runtime is running")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise TypeError(
            f"from_thread: timeout must be a number or None, got {type(timeout).__name__}"
        )
    coro = make_coroutine(fn, args, {}, "from_thread()")
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    async def call() -> None:
        try:
            result = await coro
        except Exception as e:
            fut.set_exception(e)
        except BaseException:
            fut.set_exception(RuntimeError("gr.from_thread(): the run ended during the call"))
            raise
        else:
            fut.set_result(result)

    call.__qualname__ = getattr(coro, "__qualname__", call.__qualname__)
    go(call)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = RUN_CHECK if deadline is None else min(RUN_CHECK, deadline - time.monotonic())
        try:
            return fut.result(max(0.0, wait))
        except TimeoutError:
            if fut.done():
                return fut.result()
            if _scheduler.current is not sched or sched.stopping:
                raise RuntimeError(
                    "gr.from_thread(): the run ended before the goroutine finished"
                ) from None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"gr.from_thread(): no result within {timeout} s (the goroutine goes on)"
                ) from None


# ---------------------------------------------------------------- asyncio


class _LoopThread:
    """The runtime's asyncio event loop, on a thread of its own."""

    def __init__(self) -> None:
        want = os.environ.get("GOROUTINES_ASYNCIO", "").strip()
        if want not in ("", "asyncio", "uvloop"):
            raise ValueError(f"GOROUTINES_ASYNCIO must be asyncio or uvloop, got {want!r}")
        if want == "uvloop":
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="goroutines-asyncio", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # The run is over: cancel what is left, let it unwind, close.
            tasks = asyncio.all_tasks(loop)
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)


_loops: dict[int, _LoopThread] = {}
_loops_lock = threading.Lock()


def asyncio_loop() -> asyncio.AbstractEventLoop:
    """The running runtime's asyncio event loop (started on first use, on a
    thread of its own, and stopped when the run ends): where
    ``from_asyncio`` runs its awaitables. RuntimeError with no runtime."""
    sched = _scheduler.require()
    with _loops_lock:
        lt = _loops.get(sched.run_id)
        if lt is None:
            lt = _loops[sched.run_id] = _LoopThread()
            run_id = sched.run_id

            def stop() -> None:
                with _loops_lock:
                    done = _loops.pop(run_id, None)
                if done is not None:
                    done.stop()

            sched.at_exit.append(stop)
    return lt.loop


async def _on_loop(aw: Awaitable[T]) -> T:
    return await aw


async def from_asyncio(aw: Awaitable[T], *, ctx: Context | None = None) -> T:
    """Run the asyncio awaitable ``aw`` (a coroutine, or a task or future of
    ``asyncio_loop()``) on the runtime's asyncio event loop, and return its
    result or raise its exception. The goroutine parks meanwhile; any
    number of goroutines may have asyncio work in flight at once.

    With ``ctx``: once ``ctx`` is done the asyncio task is cancelled and
    ``ctx.err()`` is raised here. If the run ends first, the task is
    cancelled with the loop.
    """
    if not inspect.isawaitable(aw):
        raise TypeError(
            f"from_asyncio needs an awaitable (a coroutine, task or future), got {aw!r}"
        )
    try:
        loop = asyncio_loop()
    except BaseException:
        if inspect.iscoroutine(aw):
            aw.close()  # it will never run: no "never awaited" warning
        raise
    cfut = asyncio.run_coroutine_threadsafe(_on_loop(aw), loop)
    if ctx is None:
        return await wait_future(cfut)
    try:
        return await wait_future(cfut, ctx=ctx)  # ctx done: cancels cfut, hence the task
    except BaseException as e:
        err = ctx.err()
        if err is not None and type(e) is err:
            raise err("from_asyncio: the context is done; the asyncio task was cancelled") from None
        raise
