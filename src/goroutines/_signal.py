"""Signals as values on channels (Go's ``os/signal``) and the SIGQUIT goroutine dump.

``signal_notify(ch, *signals)`` relays the named OS signals to ``ch``;
``signal_stop(ch)`` undoes every ``signal_notify`` for ``ch``. Each delivery
is a non-blocking send of the ``signal.Signals`` member (an ``int`` for the
unnamed real-time signals), Go's ``select { case c <- sig: default: }``: a
full channel, or an unbuffered one with no receiver waiting, drops the
signal, so give the channel a buffer.

How a signal gets to a channel. Only the main thread may install handlers,
so ``signal_notify``/``signal_stop`` do that on it through ``call_on_main``
(while the runtime runs, the main thread sits in ``run()`` serving
``sched.mainq``). The handler they install does nothing itself: its job is
to make CPython's C-level handler run, which writes the signal number to
the wakeup fd (``signal.set_wakeup_fd``). That fd is a pipe read by the
*relay*, a thread of ours (Go's ``signal.loop`` goroutine, here a thread,
blocked in ``os.read``), which makes the non-blocking sends.

Rejected: sending from the Python-level handler on the main thread. CPython
runs that handler only when the main thread next checks for pending calls;
the main thread is blocked in ``mainq.get()``, which a signal interrupts
only if it arrives while the thread is inside the wait. One that arrives as
the thread goes back to waiting (it just served a request, or ran the
handler of the previous signal) is left pending until the next request,
possibly for ever: a goroutine that sends itself a signal right after
receiving one loses it about half the time. It also ran channel and
scheduler code between two arbitrary bytecodes of the main thread.

Rejected: a relay goroutine reading the pipe through netpoll. It would
count in ``num_goroutine()`` and dumps, and a G parked on I/O turns off
deadlock detection for as long as it exists.

Invariants and guards:

- ``_lock`` guards ``_reg`` and every field of the registry. Lock order:
  the ranked table in ``goroutines._runtime`` (``_lock`` is rank 2, SIGNAL: before a
  channel's ``lock`` and ``sched.lock``). The main thread holds
  ``_lock`` only in the functions below; our Python-level handler takes no
  lock, so it can interrupt them safely.
- A channel gets a signal only while it is in ``targets`` (read under
  ``_lock`` by the relay): when ``signal_stop(ch)`` returns, ``ch`` gets no
  more, as Go promises.
- The relay runs, and our pipe is the wakeup fd, while at least one channel
  is registered; when the last one stops, the handlers we replaced and the
  previous wakeup fd are put back and the relay exits. ``reset``, called by
  ``run()`` as it shuts down, does the same for channels never stopped.
- ``sched.nsignotify`` (``sched.lock``) is the number of registered
  channels; while it is > 0 ``checkdead`` reports no deadlock, since a
  signal may still wake a goroutine.
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
from ._runtime._lockrank import LockRank, new_lock
from ._runtime._scheduler import Sched, call_on_main
from ._runtime._traceback import stack_dump

__all__ = ["install_sigquit", "reset", "restore_sigquit", "signal_notify", "signal_stop"]

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

#: Signals no handler can catch.
_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
#: Left out of ``signal_notify(ch)`` with no signals (still accepted when
#: named): raised synchronously, by a faulting instruction (a Python-level
#: handler that returns makes it fault again, for ever) or by ``abort()``
#: (which kills the process anyway); ``faulthandler`` also catches these at
#: the C level, and replacing its handler from Python could not put it back.
_SYNCHRONOUS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT}
)

_lock = new_lock(LockRank.SIGNAL)


class _Registry:
    """The signal state of one runtime; every field guarded by ``_lock``."""

    def __init__(self, sched: Sched) -> None:
        self.sched_ref = weakref.ref(sched)
        #: channel -> the signals it wants (never empty)
        self.chans: dict[Chan[Any], frozenset[int]] = {}
        #: signal -> the channels that want it, in registration order
        self.targets: dict[int, tuple[Chan[Any], ...]] = {}
        #: signal -> the handler ours replaced
        self.saved: dict[int, _Handler] = {}
        #: set by ``reset``: the runtime is over, register nothing more
        self.closed = False
        # the relay: running (and wfd the wakeup fd) while ``chans`` is not empty
        self.relay: threading.Thread | None = None
        self.wfd = -1
        self.old_wakeup_fd = -1


#: The registry of the running (or last) runtime.
_reg: _Registry | None = None


def _as_signal(signum: int) -> int:
    try:
        return signal.Signals(signum)
    except ValueError:  # SIGRTMIN+n has no name
        return signum


# -- the handler (main thread) and the relay (its own thread) ---------------------


def _handler(signum: int, frame: FrameType | None) -> None:
    """Installed for every relayed signal. Does nothing: CPython's C-level
    handler, which runs because this one is installed, has already written
    the signal number to the relay's pipe."""


def _relay(reg: _Registry, rfd: int) -> None:
    """The relay thread: read signal numbers from the wakeup pipe and send
    each to the channels that want it. Exits when the write end is closed."""
    try:
        while True:
            try:
                data = os.read(rfd, 512)
            except OSError:
                return
            if not data:
                return
            _dispatch(reg, data)
    finally:
        os.close(rfd)


def _dispatch(reg: _Registry, data: bytes) -> None:
    sched = reg.sched_ref()
    if sched is None:
        return
    woken: list[Any] = []
    closed: list[tuple[int, Chan[Any]]] = []
    with _lock:
        if reg.closed:
            return
        for signum in data:
            chans = reg.targets.get(signum)
            if not chans:
                continue  # stopped since, or another handler's signal
            sig = _as_signal(signum)
            for ch in chans:
                with ch.lock:
                    if ch._closed:
                        closed.append((sig, ch))
                        continue
                    res = ch.try_send_locked(sig)
                if res is not True and res is not False:
                    woken.append(res)
    if closed:
        # Go panics here ("send on closed channel"): the program closed a
        # channel that signals are still relayed to. Stop the runtime;
        # run() raises it.
        sig, ch = closed[0]
        exc = ChanClosed(
            f"send on closed channel: {sig!r} relayed to {ch!r}, which was closed "
            "without signal_stop(ch)"
        )
        sched.fatal(exc)
    if woken and _scheduler.current is sched:
        for w in woken:
            w.wake()


def _relay_start_locked(reg: _Registry) -> None:
    """Make a pipe the wakeup fd and start the relay on it. Main thread, ``_lock`` held."""
    if reg.relay is not None:
        return
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    try:
        os.set_blocking(wfd, False)  # the C handler must never block
        reg.old_wakeup_fd = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    except BaseException:
        os.close(rfd)
        os.close(wfd)
        raise
    reg.wfd = wfd
    reg.relay = threading.Thread(
        target=_relay, args=(reg, rfd), name="goroutines-signal", daemon=True
    )
    reg.relay.start()


def _relay_stop_locked(reg: _Registry) -> threading.Thread | None:
    """Put the old wakeup fd back and tell the relay to exit; return it for
    the caller to join once it has dropped ``_lock``. Main thread, ``_lock`` held."""
    relay, reg.relay = reg.relay, None
    if relay is None:
        return None
    prev = signal.set_wakeup_fd(reg.old_wakeup_fd)
    if prev != reg.wfd:  # someone set their own since: leave theirs
        signal.set_wakeup_fd(prev)
    os.close(reg.wfd)  # the relay reads EOF and exits
    reg.wfd = reg.old_wakeup_fd = -1
    return relay


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        if t is not threading.current_thread():
            t.join(1.0)


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
    SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT). Each delivery is a non-blocking send
    of the ``signal.Signals`` member: if ``ch`` has no room (or, unbuffered,
    no receiver waiting) the signal is dropped, so give it a buffer. Calling
    it again for the same channel adds signals. While a channel is
    registered, the runtime does not report a deadlock (a signal may come).
    """
    if not isinstance(ch, Chan):
        raise TypeError(f"signal_notify() needs a Chan, got {type(ch).__name__}")
    sigs = _check_signals(signals, "signal_notify()") if signals else _all_signals()
    sched = _scheduler.require()
    call_on_main(lambda: _notify_on_main(sched, ch, sigs))


def signal_stop(ch: Chan[Any]) -> None:
    """Stop relaying signals to ``ch`` (Go's ``signal.Stop``); when it returns,
    ``ch`` receives no more. A signal no channel wants any more gets back the
    handler it had before ``signal_notify``. A channel never registered: no-op."""
    if not isinstance(ch, Chan):
        raise TypeError(f"signal_stop() needs a Chan, got {type(ch).__name__}")
    sched = _scheduler.require()
    call_on_main(lambda: _stop_on_main(sched, ch))


# -- registry changes (main thread, through call_on_main) ----------------------------


def _set_targets_locked(reg: _Registry) -> None:
    targets: dict[int, list[Chan[Any]]] = {}
    for ch, sigs in reg.chans.items():
        for s in sigs:
            targets.setdefault(s, []).append(ch)
    reg.targets = {s: tuple(chans) for s, chans in targets.items()}


def _set_count_locked(reg: _Registry, sched: Sched) -> None:
    sched.set_signal_waiters(len(reg.chans))


def _notify_on_main(sched: Sched, ch: Chan[Any], sigs: frozenset[int]) -> None:
    """Register ``ch`` for ``sigs``: start the relay, install our handler where
    needed. Main thread."""
    global _reg
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "signal_notify() needs gr.run() to run on the main thread: "
            "only the main thread can install signal handlers"
        )
    joins: list[threading.Thread] = []
    try:
        with _lock:
            reg = _reg
            if reg is not None and reg.sched_ref() is not sched:
                # Left over from a runtime whose run() did not call reset().
                joins += _close_locked(reg)
                reg = None
            if reg is None:
                reg = _reg = _Registry(sched)
            if reg.closed or sched.stopping:
                raise RuntimeError("signal_notify(): the goroutines runtime is stopping")
            _relay_start_locked(reg)
            # Install first, register after: if installing fails half-way,
            # what was installed is put back and nothing is registered.
            installed: list[int] = []
            try:
                for s in sorted(sigs):
                    if s not in reg.saved:
                        reg.saved[s] = signal.signal(s, _handler)
                        installed.append(s)
            except BaseException:
                for s in installed:
                    _restore_locked(reg, s)
                if not reg.chans:
                    r = _relay_stop_locked(reg)
                    joins += [r] if r is not None else []
                raise
            reg.chans[ch] = reg.chans.get(ch, frozenset()) | sigs
            _set_targets_locked(reg)
            _set_count_locked(reg, sched)
    finally:
        _join(joins)


def _stop_on_main(sched: Sched, ch: Chan[Any]) -> None:
    """Unregister ``ch``; put back the handlers of the signals nobody wants now,
    and stop the relay if nobody wants any. Main thread."""
    relay: threading.Thread | None = None
    with _lock:
        reg = _reg
        if reg is None or reg.sched_ref() is not sched or reg.closed:
            return
        if reg.chans.pop(ch, None) is None:
            return
        _set_targets_locked(reg)
        for s in [s for s in reg.saved if s not in reg.targets]:
            _restore_locked(reg, s)
        if not reg.chans:
            relay = _relay_stop_locked(reg)
        _set_count_locked(reg, sched)
    if relay is not None:
        _join([relay])


def _restore_locked(reg: _Registry, s: int) -> None:
    """Put back the handler ours replaced for ``s``. Main thread, ``_lock`` held."""
    prev = reg.saved.pop(s)
    if signal.getsignal(s) is not _handler:
        return  # someone replaced ours since: leave theirs
    # None: the previous handler was not installed from Python; the best we
    # can do is the default.
    signal.signal(s, signal.SIG_DFL if prev is None else prev)


def _close_locked(reg: _Registry) -> list[threading.Thread]:
    """Forget everything, put every handler back, stop the relay. Main thread,
    ``_lock`` held; returns the relay to join."""
    reg.closed = True
    reg.chans.clear()
    reg.targets = {}
    for s in list(reg.saved):
        _restore_locked(reg, s)
    relay = _relay_stop_locked(reg)
    return [relay] if relay is not None else []


def reset(sched: Sched) -> None:
    """Forget every ``signal_notify`` of ``sched``, put back the handlers it
    replaced and stop the relay. Called by ``run()`` on the main thread as
    it shuts down, before it closes leftover goroutines."""
    joins: list[threading.Thread] = []
    with _lock:
        reg = _reg
        if reg is not None and reg.sched_ref() in (sched, None):
            joins = _close_locked(reg)
        sched.set_signal_waiters(0)
    _join(joins)


# -- SIGQUIT (main thread) ------------------------------------------------------------

#: The SIGQUIT handler ``install_sigquit`` replaced; None when it has not.
_sigquit_prev: _Handler = None


def _sigquit(signum: int, frame: FrameType | None) -> None:
    """Go's SIGQUIT: print every goroutine's stack to stderr and exit with status 2."""
    sched = _scheduler.current
    dump = ""
    if sched is not None:
        # The world stays stopped: we exit. Not for ever if this thread was
        # interrupted holding sched.lock: then the dump shows what it can.
        sched.stop_the_world(timeout=1.0)
        dump = stack_dump(list(sched.allgs.copy().values()))
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

    Called by ``run()`` on the main thread once the runtime has started. Does
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
    """Undo ``install_sigquit``. Main thread, at the very end of ``run()``."""
    global _sigquit_prev
    prev, _sigquit_prev = _sigquit_prev, None
    if prev is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGQUIT) is _sigquit:
        signal.signal(signal.SIGQUIT, prev)
