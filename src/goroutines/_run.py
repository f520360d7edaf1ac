"""Running goroutines: run, go, gomaxprocs and the runtime's introspection.

This is the thin public face of ``_runtime``: it validates arguments at the
call site and drives ``_scheduler`` (start, wait for the main goroutine,
stop the Ms, close what is left).
"""

from __future__ import annotations

import os
import queue
import time
import types
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from . import _signal
from ._accel import speedups
from ._errors import Deadlock
from ._runtime import _scheduler
from ._runtime._asyncgen import aclose as aclose_agen
from ._runtime._asyncgen import take as take_agens
from ._runtime._clock import VirtualClock
from ._runtime._goroutine import GOSCHED, G, GStatus, add_note, new_g
from ._runtime._machine import M, _tls, current_m
from ._runtime._scheduler import DEADCHECK, Sched, current_g
from ._runtime._traceback import stack_dump as _stack_dump

__all__ = [
    "go",
    "gomaxprocs",
    "goroutine_id",
    "gosched",
    "lock_os_thread",
    "num_goroutine",
    "run",
    "stack_dump",
    "unlock_os_thread",
]

T = TypeVar("T")
P = ParamSpec("P")

#: ``gomaxprocs`` for the next ``run()`` when none is running; 0 = cpu count.
_default_procs = 0


def _check_procs(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what}: procs must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{what}: procs must be >= 1, got {n}")
    return n


@overload
def run(
    main: Callable[..., Coroutine[Any, Any, T]],
    /,
    *args: Any,
    procs: int | None = None,
    seed: int | None = None,
) -> T: ...
@overload
def run(
    main: Coroutine[Any, Any, T], /, *, procs: int | None = None, seed: int | None = None
) -> T: ...
@overload
def run(
    main: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    procs: int | None = None,
    seed: int | None = None,
) -> T: ...
def run(main: Any, /, *args: Any, procs: int | None = None, seed: int | None = None) -> Any:
    """Start the runtime, run ``main(*args)`` as the main goroutine, return its result.

    When main returns the program is over: the other goroutines are closed
    (their ``finally`` blocks run) and ``run`` returns. An exception escaping
    any goroutine stops the runtime and is raised here; so is ``Deadlock``
    when no goroutine can ever run again, and KeyboardInterrupt on Ctrl-C.

    ``seed`` (else ``GOROUTINES_SEED``) seeds every random choice of the
    runtime (select's poll order, steal victims); at ``procs=1`` a program
    that does not depend on real time then makes the same choices in every
    run. An exception raised by a seeded run says how to replay it.
    """
    return run_sched(main, args, procs, seed, None, "run()")


def run_sched(
    main: Any,
    args: tuple[Any, ...],
    procs: int | None,
    seed: int | None,
    vclock: VirtualClock | None,
    what: str,
) -> Any:
    """``run``, on a virtual clock if ``vclock`` is given (``gr.testing.run``);
    ``what`` names the caller in errors."""
    __tracebackhide__ = True  # pytest: a goroutine's failure is shown from the test
    if procs is None:
        n = _default_procs or os.cpu_count() or 1
    else:
        n = _check_procs(procs, what)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"{what}: seed must be an int, got {type(seed).__name__}")
    if _scheduler.current is not None:
        if isinstance(main, types.CoroutineType):
            main.close()
        raise RuntimeError(f"gr.{what} called while a goroutines runtime is already running")
    sched = Sched(n, seed, vclock)
    trace_path = os.environ.get("GOROUTINES_TRACE", "")
    if trace_path:
        from .trace import start_for_run

        start_for_run(sched, trace_path)
    try:
        _scheduler.start(sched, main, args)
        _signal.install_sigquit()
        _serve_main(sched)
    except BaseException:  # Ctrl-C (even during start): stop everything, then let it through
        if _scheduler.current is sched:
            _shutdown(sched)
        _exit_hooks(sched)  # (not started: the trace GOROUTINES_TRACE began, if any)
        raise
    dump, errors = _shutdown(sched)
    hook_error = _exit_hooks(sched)
    if hook_error is not None and sched.panic is None and not sched.deadlock:
        raise hook_error
    if sched.deadlock:
        dead = Deadlock("all goroutines are asleep - deadlock!\n\n" + dump)
        _note_seed(sched, dead, True)
        raise dead
    if sched.panic is not None:
        exc = sched.panic
        _note_seed(sched, exc, False)
        for e in errors:
            add_note(exc, f"also, while closing goroutines: {type(e).__name__}: {e}")
        raise exc
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise BaseExceptionGroup("errors while closing goroutines left when main returned", errors)
    return sched.result


def _exit_hooks(sched: Sched) -> BaseException | None:
    """Run ``sched.at_exit`` (each one, whatever the others raise: the
    asyncio bridge's loop must stop even if a Group's warning is an error);
    return the first exception."""
    first: BaseException | None = None
    for hook in sched.at_exit:
        try:
            hook()
        except BaseException as e:
            if first is None:
                first = e
    return first


def _note_seed(sched: Sched, exc: BaseException, ours: bool) -> None:
    """Tell how to replay a failure found under a seed or in shuffle mode:
    on our own exception (Deadlock) whenever a seed was given or shuffle mode
    is on; on a program's own exception only when shuffle mode made up the
    seed (it is raised as is otherwise: whoever gave the seed knows it)."""
    if (ours and sched.seeded) or (sched.shuffle and not sched.seeded):
        add_note(
            exc,
            f"goroutines: run #{sched.run_id} used seed {sched.seed}"
            f"{' in shuffle mode' if sched.shuffle else ''}; replay with "
            f"GOROUTINES_SEED={sched.seed} (or run(..., seed={sched.seed})) at procs=1",
        )


#: How long the main thread waits for a request before it looks for a
#: pending signal handler (see ``_serve_main``).
MAIN_WAIT = 0.25


def _serve_main(sched: Sched) -> None:
    """The main thread's job while the runtime runs: wait for the end, doing
    what only the main thread may (``call_on_main``) in the meantime."""
    while True:
        try:
            # A timeout, because a signal that lands just as this thread
            # goes back to sleep does not interrupt the wait: its Python
            # handler (Ctrl-C's KeyboardInterrupt, SIGQUIT's dump) would
            # wait for the next request. Any other signal interrupts the
            # wait at once, so the timeout only bounds that rare case; 4
            # wake-ups a second are most of what an idle runtime costs
            # (about 0.06 % of a core; 20 a second cost 0.2 %).
            item = sched.mainq.get(timeout=sched.deadpoll if sched.deadcheck else MAIN_WAIT)
        except queue.Empty:
            if sched.deadcheck:
                sched.confirm_dead()
            continue
        if item is None:
            return
        if item is DEADCHECK:
            continue  # look again in sched.deadpoll (the timeout above)
        fn, box, ev = item
        try:
            box[:] = [True, fn()]
        except BaseException as e:  # handed to the caller
            box[:] = [False, e]
        ev.set()


def _shutdown(sched: Sched) -> tuple[str, list[BaseException]]:
    """Stop the Ms, take the deadlock dump, close what is left, uninstall. Main thread.

    The runtime stays installed while leftovers are closed, so a ``finally``
    block that wakes another goroutine (closing a channel, unlocking a
    Mutex) just queues it, and that one is closed in turn. Whatever
    interrupts this (a second Ctrl-C), the runtime is uninstalled: a later
    ``run()`` in the same process (a REPL, a notebook, pytest) must work.
    """
    try:
        _signal.reset(sched)  # no signal is relayed while goroutines are closed
        _scheduler.stopms(sched)
        while not sched.mainq.empty():  # requests that came too late to be served
            item = sched.mainq.get()
            if item is not None and item is not DEADCHECK:
                item[1][:] = [False, RuntimeError("the goroutines runtime stopped")]
                item[2].set()
        dump = _stack_dump(list(sched.allgs.values())) if sched.deadlock else ""
        return dump, _close_leftovers(sched)
    finally:
        _uninstall(sched)


def _uninstall(sched: Sched) -> None:
    """Uninstall ``sched`` and put SIGQUIT's handler back, even if Ctrl-C
    interrupts that (then it is done again, and the interrupt raised after)."""
    interrupt: BaseException | None = None
    while True:
        try:
            _scheduler.uninstall(sched)
            _signal.restore_sigquit()
            break
        except KeyboardInterrupt as e:
            interrupt = e
    if interrupt is not None:
        raise interrupt


def _close_leftovers(sched: Sched) -> list[BaseException]:
    """Close every goroutine still alive (their ``finally`` blocks run), including
    any that those ``finally`` blocks start. Main thread."""
    errors: list[BaseException] = []
    # The closing thread acts as an M without a P, so that code in a
    # ``finally`` runs as its goroutine (goroutine_id, channel ops that do not
    # block) and anything it readies lands on the global queue.
    closer = M(sched, -1, None, False)
    _tls.m = closer
    try:
        _close_all(sched, closer, errors)
    finally:
        del _tls.m
    sched.allgs.clear()
    return errors


#: How long ``run()`` waits, after stopping the Ms, for goroutines that are
#: still running on a thread to come back (see ``_close_all``).
CLOSE_WAIT = 1.0


def _close_all(sched: Sched, closer: M, errors: list[BaseException]) -> None:
    """Close the goroutines left, each on this thread (``M.close_g``).

    Which Gs are ours to close: ``sched.gate`` was set (with ``stopping``)
    before we look at any status, and an M marks a G RUNNING before it reads
    ``gate`` (``M.at_gate``): so a G we read as RUNNING or SYSCALL may still be
    stepped by its M (we leave it, and look again: its M gives it back as
    soon as it yields, or comes back from its blocking call), and any other
    G will never be stepped by an M again. Those still running after
    CLOSE_WAIT are left with a warning; if one comes back after that, its
    M closes it (``closed``, under ``sched.lock``).
    """
    seen: set[int] = set()
    deadline = time.monotonic() + CLOSE_WAIT
    while True:
        # Async generators dropped so far, or by the finally blocks just run:
        # each one's aclose() runs now, as a goroutine of its own, on the
        # terms of the rest (its finally cannot wait).
        for agen in take_agens(sched):
            gp = new_g(sched.goidbatch(None), aclose_agen(agen), copy_context(), None)
            err = closer.close_g(gp, start=True)
            if err is not None:
                add_note(err, f"while closing {agen!r}")
                errors.append(err)
        busy: list[G] = []
        for g in sorted(sched.allgs.copy().values(), key=lambda g: g.id):
            if g.id in seen:
                continue
            status = g.status
            if status == GStatus.RUNNING or status == GStatus.SYSCALL:
                busy.append(g)
                continue
            seen.add(g.id)
            if status != GStatus.DEAD:
                err = closer.close_g(g)
                if err is not None:
                    add_note(err, f"while closing goroutine {g.id} ({g.entry})")
                    errors.append(err)
            sched.allgs.pop(g.id, None)
        if not busy:
            with sched.lock:  # the last look, under the lock ``M.abandon`` reads ``closed`` with
                if not sched.agens and all(g.id in seen for g in sched.allgs.copy().values()):
                    sched.closed = True
                    return
            continue
        if time.monotonic() >= deadline:
            with sched.lock:
                if any(
                    g.id not in seen and g.status not in (GStatus.RUNNING, GStatus.SYSCALL)
                    for g in sched.allgs.copy().values()
                ):
                    continue  # one came back meanwhile: close it first
                sched.closed = True
            for g in busy:
                warnings.warn(
                    f"goroutine {g.id} ({g.entry}) was still running on its thread when "
                    "run() returned; it is closed when it next yields",
                    RuntimeWarning,
                    stacklevel=5,
                )
            return
        time.sleep(0.005)


#: ``gr.go``: the spawn path is one function, with no wrapper (see ``_scheduler.go``;
#: with the accelerator, ``_speedups.go``, which calls it for all but the common case).
#: For type checkers, its signature: the arguments are checked against ``fn``'s.
if TYPE_CHECKING:

    @overload
    def go(fn: Callable[P, Awaitable[Any]], /, *args: P.args, **kwargs: P.kwargs) -> None: ...
    @overload
    def go(fn: Coroutine[Any, Any, Any], /) -> None: ...
    def go(fn: Any, /, *args: Any, **kwargs: Any) -> None:
        """Start ``fn(*args, **kwargs)`` (an async function, or a coroutine
        object) as a goroutine."""

elif speedups is None:
    go = _scheduler.go
else:
    go = speedups.go


def gomaxprocs(n: int | None = None) -> int:
    """Set the number of Ps (if ``n`` is given) and return the previous number."""
    global _default_procs
    if n is not None:
        n = _check_procs(n, "gomaxprocs()")
    sched = _scheduler.current
    if sched is not None:
        return sched.procresize(n) if n is not None else sched.gomaxprocs
    old = _default_procs or os.cpu_count() or 1
    if n is not None:
        _default_procs = n
    return old


def num_goroutine() -> int:
    """The number of goroutines that exist (Go's ``runtime.NumGoroutine``)."""
    sched = _scheduler.current
    return len(sched.allgs) if sched is not None else 0


@types.coroutine
def gosched() -> Generator[Any, None, None]:
    """Yield the processor: the calling goroutine goes to the back of the global queue."""
    current_g()
    yield GOSCHED


def lock_os_thread() -> None:
    """Wire the calling goroutine to its current OS thread (Go's ``runtime.LockOSThread``).

    Until as many ``unlock_os_thread`` calls, it runs only on this thread
    and this thread runs nothing else: when the goroutine parks, the
    thread's processor goes to another thread. For thread-affine objects
    (sqlite3 connections, thread-locals, GUI toolkits).
    """
    g = current_g()
    m = g.locked_m
    if m is None:
        m = current_m()
        assert m is not None
        g.locked_m = m
        m.lockedg = g
    m.lockedcount += 1


def unlock_os_thread() -> None:
    """Undo one ``lock_os_thread``; a no-op if the goroutine is not locked."""
    g = current_g()
    m = g.locked_m
    if m is None:
        return
    m.lockedcount -= 1
    if m.lockedcount == 0:
        m.lockedg = None
        g.locked_m = None


def goroutine_id() -> int:
    """The id of the calling goroutine (the main goroutine is 1)."""
    return current_g().id


def stack_dump(*, group: bool = False) -> str:
    """Every goroutine: id, state or wait reason, how long it has waited,
    its stack and where it was created (Go's SIGQUIT dump).

    With ``group=True``, goroutines with the same wait reason (or state),
    stack and creation site are shown once, under a header such as
    ``1000 goroutines: [chan receive]``, the largest groups first (pprof's
    goroutine profile, ``debug=1``): to find where a thousand goroutines are
    stuck. How long each has waited is left out (it would split groups).
    """
    if not isinstance(group, bool):
        raise TypeError(f"stack_dump(): group must be a bool, got {type(group).__name__}")
    sched = _scheduler.require()
    sched.stop_the_world()
    try:
        return _stack_dump(list(sched.allgs.copy().values()), group=group)
    finally:
        sched.start_the_world()
