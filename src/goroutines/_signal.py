"""Signals as values on channels (Go's ``os/signal``) and the SIGQUIT goroutine dump.

``signal_notify(ch, *signals)`` relays the named OS signals to ``ch``;
``signal_stop(ch)`` undoes every ``signal_notify`` for ``ch``. Each delivery
is a non-blocking send of the ``signal.Signals`` member (an ``int`` for the
unnamed real-time signals), Go's ``select { case c <- sig: default: }``: a
full channel, or an unbuffered one with no receiver waiting, drops the
signal, so give the channel a buffer.

Where things run. CPython runs signal handlers on the main thread only,
between two bytecodes, and only the main thread may install them. While the
runtime runs, that thread sits in ``run()`` serving ``sched.mainq``, an
interruptible wait (a signal wakes it and the handler runs there; Linux
delivers a process-directed signal to the main thread first). So the
registry and the installed handlers are changed on the main thread, through
``call_on_main``, and the handler (``_deliver``) runs there too.

Rejected: a relay goroutine woken by the handler, as Go's ``signal.loop``
(it would wake it with the same locks the direct send takes, plus a
goroutine); ``signal.set_wakeup_fd`` read through netpoll (one fd per
process, which asyncio and others also claim, and the Python handler would
still run later and have to do nothing).

Invariants and guards:

- The registry (``_reg``: which channels want which signals, the handlers we
  replaced) is read and written only on the main thread: by the
  ``call_on_main`` functions, ``reset`` and the handler. It needs no lock,
  but the handler can interrupt an update between any two bytecodes, so the
  one thing it reads, ``targets[sig]``, is a tuple replaced whole.
- The handler takes only locks that the main thread cannot be holding when
  it runs: a channel's lock (the main thread runs no goroutine code while
  the runtime runs) and ``sched.lock`` (inside ``goready``; the main thread
  takes it only in ``reset`` and the shutdown after it, when the registry is
  already empty). So ``sched.nsignotify`` is updated by the caller of
  ``signal_notify``/``signal_stop`` on its own thread, not on the main one.
- ``sched.nsignotify`` (``sched.lock``) counts channels registered for at
  least one signal; while it is > 0 ``checkdead`` reports no deadlock, since
  a signal may still wake a goroutine.
- When no channel wants a signal any more, the handler it replaced is put
  back; ``reset`` (called by ``run()`` once the main thread stops serving)
  puts every one back, so nothing installed here outlives the runtime.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from ._chan import Chan
from ._errors import ChanClosed
from ._runtime import _scheduler
from ._runtime._scheduler import Sched, call_on_main
from ._runtime._traceback import stack_dump

__all__ = ["install_sigquit", "reset", "restore_sigquit", "signal_notify", "signal_stop"]

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

#: Signals no handler can catch.
_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
#: Left out of ``signal_notify(ch)`` with no signals: raised synchronously by
#: a faulting instruction, where a Python-level handler that returns makes the
#: instruction fault again, for ever. (Still accepted when named.)
_SYNCHRONOUS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL})


class _Registry:
    """The signal state of one runtime. Main thread only (see the module docstring)."""

    def __init__(self, sched: Sched) -> None:
        self.sched_ref = weakref.ref(sched)
        #: channel -> the signals it wants (never empty)
        self.chans: dict[Chan[Any], frozenset[int]] = {}
        #: signal -> the channels that want it, in registration order (read by the handler)
        self.targets: dict[int, tuple[Chan[Any], ...]] = {}
        #: signal -> the handler ours replaced
        self.saved: dict[int, _Handler] = {}
        #: set by ``reset``: the runtime is over, register nothing more
        self.closed = False


#: The registry of the running (or last) runtime. Main thread only.
_reg: _Registry | None = None


# -- the handler (main thread, between two bytecodes) ---------------------------


def _as_signal(signum: int) -> int:
    try:
        return signal.Signals(signum)
    except ValueError:  # SIGRTMIN+n has no name
        return signum


def _deliver(signum: int, frame: FrameType | None) -> None:
    """The handler installed by ``signal_notify``: a non-blocking send of the
    signal to each channel that wants it."""
    reg = _reg
    if reg is None or reg.closed:
        return
    chans = reg.targets.get(signum, ())
    sched = reg.sched_ref()
    if not chans or sched is None or _scheduler.current is not sched:
        return
    sig = _as_signal(signum)
    for ch in chans:
        ch.lock.acquire()
        if ch._closed:
            ch.lock.release()
            # Go panics here ("send on closed channel"): the program closed a
            # channel that signals are still relayed to. Stop the runtime;
            # run() raises it. (Raising from here would surface in whatever
            # the main thread happens to be doing.)
            exc = ChanClosed(
                f"send on closed channel: {sig!r} relayed to {ch!r}, which was closed "
                "without signal_stop(ch)"
            )
            with sched.lock:
                if sched.panic is None:
                    sched.panic = exc
                sched.stop_locked()
            return
        res = ch.try_send_locked(sig)
        ch.lock.release()
        if res is not True and res is not False:
            res.wake()


# -- the public API (any goroutine) ----------------------------------------------


def _check_signals(signals: tuple[Any, ...], what: str) -> frozenset[int]:
    valid = signal.valid_signals()
    out: set[int] = set()
    for s in signals:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"{what}: a signal must be an int or signal.Signals, got {s!r}")
        if s in _UNCATCHABLE:
            raise ValueError(f"{what}: {signal.Signals(s).name} cannot be caught")
        if s not in valid:
            raise ValueError(f"{what}: invalid signal number {int(s)}")
        out.add(int(s))
    return frozenset(out)


def _all_signals() -> frozenset[int]:
    return frozenset(int(s) for s in signal.valid_signals()) - _UNCATCHABLE - _SYNCHRONOUS


def signal_notify(ch: Chan[Any], *signals: int) -> None:
    """Relay the OS signals ``signals`` to ``ch`` (Go's ``signal.Notify``).

    With no signals, every signal that can be caught (except the synchronous
    SIGSEGV, SIGBUS, SIGFPE and SIGILL). Each delivery is a non-blocking send
    of the ``signal.Signals`` member: if ``ch`` has no room (or, unbuffered,
    no receiver waiting) the signal is dropped, so give it a buffer. Calling
    it again for the same channel adds signals. While a channel is
    registered, the runtime does not report a deadlock (a signal may come).
    """
    if not isinstance(ch, Chan):
        raise TypeError(f"signal_notify() needs a Chan, got {type(ch).__name__}")
    sigs = _check_signals(signals, "signal_notify()") if signals else _all_signals()
    sched = _scheduler.require()
    delta = call_on_main(lambda: _notify_on_main(sched, ch, sigs))
    if delta:
        with sched.lock:
            sched.nsignotify += delta


def signal_stop(ch: Chan[Any]) -> None:
    """Stop relaying signals to ``ch`` (Go's ``signal.Stop``); when it returns,
    ``ch`` receives no more. A signal no channel wants any more gets back the
    handler it had before ``signal_notify``. A channel never registered: no-op."""
    if not isinstance(ch, Chan):
        raise TypeError(f"signal_stop() needs a Chan, got {type(ch).__name__}")
    sched = _scheduler.require()
    delta = call_on_main(lambda: _stop_on_main(sched, ch))
    if delta:
        with sched.lock:
            sched.nsignotify += delta


# -- registry changes (main thread, through call_on_main) ----------------------------


def _registry(sched: Sched) -> _Registry:
    """The registry of ``sched``, created on first use. Main thread."""
    global _reg
    reg = _reg
    if reg is not None and reg.sched_ref() is not sched:
        # Left over from a runtime whose run() did not call reset(): put its
        # handlers back before starting afresh.
        _restore_all(reg)
        reg = None
    if reg is None:
        reg = _reg = _Registry(sched)
    return reg


def _set_targets(reg: _Registry) -> None:
    """Recompute ``targets`` from ``chans``, one tuple per signal. Main thread."""
    targets: dict[int, list[Chan[Any]]] = {}
    for ch, sigs in reg.chans.items():
        for s in sigs:
            targets.setdefault(s, []).append(ch)
    for s in list(reg.targets):
        if s not in targets:
            del reg.targets[s]
    for s, chans in targets.items():
        reg.targets[s] = tuple(chans)  # replaced whole: the handler may be reading


def _notify_on_main(sched: Sched, ch: Chan[Any], sigs: frozenset[int]) -> int:
    """Register ``ch`` for ``sigs`` and install our handler where needed; return the
    change in the number of registered channels. Main thread."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "signal_notify() needs gr.run() to run on the main thread: "
            "only the main thread can install signal handlers"
        )
    reg = _registry(sched)
    if reg.closed or sched.stopping:
        raise RuntimeError("signal_notify(): the goroutines runtime is stopping")
    # Install first, register after: if installing fails half-way, what was
    # installed is put back and nothing is registered.
    installed: list[int] = []
    try:
        for s in sorted(sigs):
            if s in reg.saved:
                continue
            prev = signal.signal(s, _deliver)
            reg.saved[s] = prev
            installed.append(s)
    except BaseException:
        for s in installed:
            _restore(reg, s)
        raise
    old = reg.chans.get(ch)
    reg.chans[ch] = sigs if old is None else old | sigs
    _set_targets(reg)
    return 1 if old is None else 0


def _stop_on_main(sched: Sched, ch: Chan[Any]) -> int:
    """Unregister ``ch``; put back the handlers of signals nobody wants now. Main thread."""
    reg = _reg
    if reg is None or reg.sched_ref() is not sched or reg.closed:
        return 0
    if reg.chans.pop(ch, None) is None:
        return 0
    _set_targets(reg)
    for s in [s for s in reg.saved if s not in reg.targets]:
        _restore(reg, s)
    return -1


def _restore(reg: _Registry, s: int) -> None:
    """Put back the handler ours replaced for ``s``. Main thread."""
    prev = reg.saved.pop(s)
    if signal.getsignal(s) is not _deliver:
        return  # someone replaced ours since: leave theirs
    # None: the previous handler was not installed from Python; the best we
    # can do is the default.
    signal.signal(s, signal.SIG_DFL if prev is None else prev)


def _restore_all(reg: _Registry) -> None:
    reg.closed = True
    reg.chans.clear()
    reg.targets.clear()
    for s in list(reg.saved):
        _restore(reg, s)


def reset(sched: Sched) -> None:
    """Forget every ``signal_notify`` of ``sched`` and put back the handlers it
    replaced. Called by ``run()`` on the main thread once it stops serving
    ``mainq``, before the shutdown closes leftover goroutines."""
    global _reg
    reg = _reg
    if reg is not None and reg.sched_ref() in (sched, None):
        _restore_all(reg)  # before taking sched.lock: see the module docstring
    with sched.lock:
        sched.nsignotify = 0


# -- SIGQUIT (main thread) ------------------------------------------------------------

#: The SIGQUIT handler ``install_sigquit`` replaced; None when it has not.
_sigquit_prev: _Handler = None


def _sigquit(signum: int, frame: FrameType | None) -> None:
    """Go's SIGQUIT: print every goroutine's stack to stderr and exit with status 2."""
    sched = _scheduler.current
    dump = stack_dump(list(sched.allgs.copy().values())) if sched is not None else ""
    for f in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a broken stream must not stop the dump
            f.flush()
    # os.write, not sys.stderr: the handler may have interrupted a write to it.
    data = ("SIGQUIT: quit\n\n" + dump).encode("utf-8", "backslashreplace")
    try:
        while data:
            data = data[os.write(2, data) :]
    except OSError:
        pass
    os._exit(2)


def install_sigquit() -> None:
    """Make SIGQUIT dump the goroutines and exit with status 2, as Go does.

    Called by ``run()`` on the main thread before it serves ``mainq``. Does
    nothing off the main thread, or if the program has its own SIGQUIT
    handler (only the default is replaced).
    """
    global _sigquit_prev
    if threading.current_thread() is not threading.main_thread() or _sigquit_prev is not None:
        return
    prev = signal.getsignal(signal.SIGQUIT)
    if prev != signal.SIG_DFL:
        return
    signal.signal(signal.SIGQUIT, _sigquit)
    _sigquit_prev = prev


def restore_sigquit() -> None:
    """Undo ``install_sigquit``. Main thread, after ``reset``."""
    global _sigquit_prev
    prev, _sigquit_prev = _sigquit_prev, None
    if prev is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGQUIT) is _sigquit:
        signal.signal(signal.SIGQUIT, prev)
