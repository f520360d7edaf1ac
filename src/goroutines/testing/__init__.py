"""Testing goroutine code: the bubble (virtual time), ``wait``, leak checks.

Go's ``testing/synctest`` for goroutines, and the pieces the pytest plugin
(``goroutines.testing.pytest_plugin``, registered through the ``pytest11``
entry point) is made of; this module needs nothing but the standard library.

- ``run(main, *args, procs=1, seed=None, fake_clock=True)`` is ``gr.run``
  in a *bubble*: every timer of the runtime (``sleep``, ``after``, ``tick``,
  ``Timer``, ``Ticker``, context deadlines and timeouts, socket deadlines)
  is on a virtual clock, which jumps straight to the next timer whenever
  every goroutine is durably blocked. A test that
  sleeps an hour takes milliseconds. With ``procs=1`` and a seed the
  schedule is deterministic: the same program makes the same choices in
  every run; ``seed=None`` picks a fresh one, named in any failure.
- ``await wait()`` (synctest's ``Wait``) returns once every other goroutine
  is durably blocked: what a test does instead of sleeping "long enough".
- ``leaked()`` / ``check_leaks()``: goroutines still alive besides the
  caller (Go's goleak), for the end of a test.

Durably blocked: waiting on a channel, in ``select``, asleep or on a
timer, on a sync primitive or in ``wait``. Not durably blocked: running or
runnable, in ``gr.syscall`` (a blocking call finishes in real time), or
waiting on a socket. A plain thread that will wake a goroutine later is
invisible to the bubble: the clock may jump past it.
"""

from __future__ import annotations

import os
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar, overload

from .._run import gosched, run_sched
from .._runtime import _scheduler
from .._runtime._clock import VirtualClock
from .._runtime._goroutine import G, WaitReason, add_note, gopark, noop, register_unpark
from .._runtime._traceback import stack_dump as _stack_dump
from .._syscall import syscall

__all__ = ["LeakError", "check_leaks", "dump", "leaked", "run", "wait"]

T = TypeVar("T")


@overload
def run(
    main: Callable[..., Coroutine[Any, Any, T]],
    /,
    *args: Any,
    procs: int = 1,
    seed: int | None = None,
    fake_clock: bool = True,
) -> T: ...
@overload
def run(
    main: Coroutine[Any, Any, T],
    /,
    *,
    procs: int = 1,
    seed: int | None = None,
    fake_clock: bool = True,
) -> T: ...
def run(
    main: Any,
    /,
    *args: Any,
    procs: int = 1,
    seed: int | None = None,
    fake_clock: bool = True,
) -> Any:
    """Run ``main(*args)`` as ``gr.run`` does, in a bubble: on a virtual clock
    (unless ``fake_clock=False``), at ``procs`` Ps (1 by default: a
    deterministic schedule), with every random choice seeded by ``seed``
    (a fresh one if None). An exception it raises carries a note naming
    the seed, to replay the run with."""
    __tracebackhide__ = True  # pytest: failures show the test, not this
    if seed is None:
        seed = int.from_bytes(os.urandom(6), "big")
    try:
        return run_bubble(main, args, procs, seed, fake_clock)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        if not any(f"seed {seed}" in n for n in getattr(e, "__notes__", ())):
            add_note(
                e, f"goroutines.testing.run: seed {seed}; replay with seed={seed} at procs={procs}"
            )
        raise


def run_bubble(
    main: Any, args: tuple[Any, ...], procs: int | None, seed: int | None, fake_clock: bool
) -> Any:
    """``run`` without the seed's note (the pytest plugin reports it its own way)."""
    __tracebackhide__ = True
    if not isinstance(fake_clock, bool):
        raise TypeError(
            f"testing.run(): fake_clock must be a bool, got {type(fake_clock).__name__}"
        )
    vclock = VirtualClock() if fake_clock else None
    return run_sched(main, args, procs, seed, vclock, "testing.run()")


def _take_off(g: G, frame: Any) -> None:
    """``wait``'s unparker: a G closed at the end of a run leaves the slot."""
    sched = _scheduler.current
    if sched is not None:
        with sched.lock:
            if sched.idle_waiter is g:
                sched.idle_waiter = None


@types.coroutine
def _park_until_quiescent(g: G) -> Generator[Any, None, None]:
    # The G is registered (``idle_waiter``) before it parks: the step that
    # readies it runs only once every M is parked, so after this park.
    yield from gopark(noop, WaitReason.TESTING_WAIT, g)


register_unpark(_park_until_quiescent.__code__, _take_off)


async def wait() -> None:
    """Return once every other goroutine is durably blocked (Go's
    ``synctest.Wait``; see the module docstring). On a virtual clock the
    clock does not move while a goroutine is in ``wait``: it returns first.
    One goroutine at a time may wait: a second gets RuntimeError."""
    g = _scheduler.current_g()
    sched = _scheduler.require()
    with sched.lock:
        other = sched.idle_waiter
        if other is not None:
            raise RuntimeError(
                f"testing.wait(): goroutine {other.id} is already waiting; "
                "only one goroutine at a time may call wait()"
            )
        sched.idle_waiter = g
    await _park_until_quiescent(g)


def dump(gs: list[G] | None = None) -> str:
    """The goroutine dump (``gr.stack_dump()``) of ``gs``, or of every
    goroutine; from any thread (the world is stopped while stacks are read).
    An empty string when no runtime is running."""
    sched = _scheduler.current
    if sched is None:
        return ""
    if not sched.stop_the_world(1.0):
        return "(the goroutine dump is unavailable: the scheduler lock is held)\n"
    try:
        return _stack_dump(list(sched.allgs.copy().values()) if gs is None else gs)
    finally:
        sched.start_the_world()


class LeakError(AssertionError):
    """Goroutines were still alive at the end of a test (``check_leaks``)."""


#: How long ``leaked`` gives goroutines on their way out, in real seconds.
LEAK_GRACE = 0.5


async def leaked(grace: float = LEAK_GRACE) -> list[G]:
    """The goroutines other than the caller still alive, after giving those
    on their way out up to ``grace`` real seconds to finish (goleak's
    retries): the caller yields, then waits in ``gr.syscall`` (real time,
    which also holds a virtual clock still), backing off from 1 ms."""
    me = _scheduler.current_g()
    sched = _scheduler.require()
    deadline = time.monotonic() + grace
    delay = 0.001
    while True:
        for _ in range(3):
            others = [g for gid, g in sched.allgs.copy().items() if gid != me.id]
            if not others:
                return []
            await gosched()
        if time.monotonic() >= deadline:
            return sorted(others, key=lambda g: g.id)
        await syscall(time.sleep, min(delay, max(0.0, deadline - time.monotonic())))
        delay *= 2


async def check_leaks(grace: float = LEAK_GRACE) -> None:
    """Raise ``LeakError`` listing every goroutine other than the caller
    still alive (``leaked``): its function, wait reason, stack and where it
    was created."""
    __tracebackhide__ = True
    gs = await leaked(grace)
    if gs:
        raise LeakError(
            f"{len(gs)} goroutine{'s' if len(gs) != 1 else ''} leaked "
            "(still alive when the test was done):\n\n" + dump(gs)
        )
