"""Signals as channel values: ``signal_notify`` / ``signal_stop`` (Go's os/signal), SIGQUIT.

The tests send signals to their own process (``os.kill(os.getpid(), ...)``).
The ``stray`` fixture installs a recording handler for SIGUSR1 and SIGUSR2
around each test, so that a signal our handler should no longer get (or,
after a bug, never got) lands there instead of killing pytest; "restored"
then means "the stray handler is back". Signals are delivered on the main
thread, asynchronously to the sender: a test learns that a delivery has
happened by receiving from a witness channel registered after the channel
under test (the handler serves channels in registration order).

SIGQUIT kills the process, so it is tested in a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from goroutines._runtime._scheduler import call_on_main
from goroutines._signal import signal_notify, signal_stop
from helpers import grun, signal_when_ready

USR1 = signal.SIGUSR1
USR2 = signal.SIGUSR2


class Stray:
    """The handler in place before the runtime's: records what reaches it."""

    def __init__(self) -> None:
        self.got: list[int] = []

    def __call__(self, signum: int, frame: Any) -> None:
        self.got.append(signum)


@pytest.fixture
def stray() -> Iterator[Stray]:
    s = Stray()
    old = {sig: signal.signal(sig, s) for sig in (USR1, USR2)}
    try:
        yield s
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def kill(sig: int) -> None:
    os.kill(os.getpid(), sig)


async def wait_for(cond: Any, what: str, timeout: float = 5.0, wake_main: bool = False) -> None:
    """Poll ``cond``. ``wake_main``: also make the main thread serve a no-op,
    so that a Python-level handler pending there runs (CPython runs it only
    when the main thread wakes, and it may not wake for the signal itself)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if wake_main:
            call_on_main(lambda: None)
        await gr.sleep(0.001)


# ------------------------------------------------------------------ delivery


def test_notify_delivers_signal_on_channel(procs: int, stray: Stray) -> None:
    async def main() -> list[Any]:
        ch: gr.Chan[int] = gr.Chan(1)
        signal_notify(ch, USR1)
        installed = signal.getsignal(USR1) is not stray
        kill(USR1)
        v1 = await ch.recv()
        await gr.syscall(os.kill, os.getpid(), USR1)  # from a blocking call too
        v2 = await ch.recv()
        signal_stop(ch)
        return [installed, v1, type(v1), v2]

    assert grun(main, procs=procs) == [True, USR1, signal.Signals, USR1]
    assert stray.got == []


def test_unbuffered_channel_with_waiting_receiver(procs: int, stray: Stray) -> None:
    """A receiver already parked on an unbuffered channel gets the signal directly."""

    async def receiver(ch: gr.Chan[int], out: gr.Chan[Any]) -> None:
        await out.send(await ch.recv())

    async def main() -> Any:
        ch: gr.Chan[int] = gr.Chan()
        out: gr.Chan[Any] = gr.Chan()
        signal_notify(ch, USR2)
        gr.go(receiver, ch, out)
        sched = _scheduler.require()
        await wait_for(lambda: bool(ch._recvq), "the receiver to park")
        assert sched.nsignotify == 1
        kill(USR2)
        v = await out.recv()
        signal_stop(ch)
        return v

    assert grun(main, procs=procs) == USR2
    assert stray.got == []


def test_two_channels_both_get_it(procs: int, stray: Stray) -> None:
    async def main() -> list[Any]:
        a: gr.Chan[int] = gr.Chan(1)
        b: gr.Chan[int] = gr.Chan(1)
        signal_notify(a, USR1)
        signal_notify(b, USR1, USR2)
        kill(USR1)
        got = [await a.recv(), await b.recv()]
        kill(USR2)
        got.append(await b.recv())
        got.append(len(a))  # a did not ask for USR2
        signal_stop(a)
        signal_stop(b)
        return got

    assert grun(main, procs=procs) == [USR1, USR1, USR2, 0]
    assert stray.got == []


def test_notify_again_adds_signals(procs: int, stray: Stray) -> None:
    async def main() -> list[Any]:
        sched = _scheduler.require()
        ch: gr.Chan[int] = gr.Chan(2)
        signal_notify(ch, USR1)
        signal_notify(ch, USR2)
        signal_notify(ch, USR1)
        counts = [sched.nsignotify]
        kill(USR1)
        a = await ch.recv()
        kill(USR2)
        b = await ch.recv()
        signal_stop(ch)
        counts.append(sched.nsignotify)
        return [a, b, counts]

    assert grun(main, procs=procs) == [USR1, USR2, [1, 0]]


def test_realtime_signal_delivered_as_int(stray: Stray) -> None:
    rt = signal.SIGRTMIN + 1

    async def main() -> Any:
        ch: gr.Chan[int] = gr.Chan(1)
        signal_notify(ch, rt)
        kill(rt)
        v = await ch.recv()
        signal_stop(ch)
        return v

    prev = signal.getsignal(rt)
    v = grun(main, procs=1)
    assert v == rt
    assert type(v) is int
    assert signal.getsignal(rt) == prev


def test_notify_without_signals_means_all(procs: int, stray: Stray) -> None:
    before = {
        s: signal.getsignal(s)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGSEGV, signal.SIGABRT)
    }

    async def main() -> list[Any]:
        ch: gr.Chan[int] = gr.Chan(1)
        signal_notify(ch)
        ours = signal.getsignal(USR2)
        replaced = [signal.getsignal(s) is ours for s in (signal.SIGINT, signal.SIGTERM)]
        untouched = all(signal.getsignal(s) == before[s] for s in (signal.SIGSEGV, signal.SIGABRT))
        kill(USR2)
        v = await ch.recv()
        signal_stop(ch)
        after = {s: signal.getsignal(s) for s in before}
        return [replaced, untouched, v, after == before, signal.getsignal(USR2) is stray]

    assert grun(main, procs=procs) == [[True, True], True, USR2, True, True]
    assert stray.got == []


# ------------------------------------------------------------------ stop


def test_stop_stops_delivery_and_restores_previous_handler(procs: int, stray: Stray) -> None:
    async def main() -> list[Any]:
        sched = _scheduler.require()
        a: gr.Chan[int] = gr.Chan(1)
        witness: gr.Chan[int] = gr.Chan(1)
        signal_notify(a, USR1)
        signal_notify(witness, USR1)
        counts = [sched.nsignotify]
        signal_stop(a)
        counts.append(sched.nsignotify)
        still_ours = signal.getsignal(USR1) is not stray  # witness still wants it
        kill(USR1)
        await witness.recv()
        a_after_stop = len(a)
        signal_stop(witness)
        counts.append(sched.nsignotify)
        restored = signal.getsignal(USR1) is stray
        kill(USR1)  # now to the previous handler, not to any channel
        await wait_for(lambda: bool(stray.got), "the previous handler to run", wake_main=True)
        signal_stop(a)  # again: a no-op
        signal_stop(gr.Chan())  # never registered: a no-op
        counts.append(sched.nsignotify)
        return [counts, still_ours, a_after_stop, restored, len(witness)]

    assert grun(main, procs=procs) == [[2, 1, 0, 0], True, 0, True, 0]
    assert stray.got == [USR1]


def test_stop_restores_default_handler(procs: int) -> None:
    old = signal.signal(USR1, signal.SIG_DFL)
    try:

        async def main() -> list[Any]:
            ch: gr.Chan[int] = gr.Chan(1)
            signal_notify(ch, USR1)
            kill(USR1)
            v = await ch.recv()
            signal_stop(ch)
            return [v, signal.getsignal(USR1)]

        assert grun(main, procs=procs) == [USR1, signal.SIG_DFL]
    finally:
        signal.signal(USR1, old)


# ------------------------------------------------------------------ dropping


def test_full_channel_drops_without_blocking(procs: int, stray: Stray) -> None:
    async def main() -> list[Any]:
        full: gr.Chan[int] = gr.Chan(1)
        unbuffered: gr.Chan[int] = gr.Chan()  # nobody receiving: every signal dropped
        witness: gr.Chan[int] = gr.Chan(10)
        signal_notify(full, USR1)
        signal_notify(unbuffered, USR1)
        signal_notify(witness, USR1)
        for _ in range(3):
            kill(USR1)
            await witness.recv()  # this delivery is over
        got = [len(full), await full.recv()]
        i, _ = await gr.select(full.recv, unbuffered.recv, gr.default)
        got.append(i)
        for c in (full, unbuffered, witness):
            signal_stop(c)
        return got

    assert grun(main, procs=procs) == [1, USR1, 2]
    assert stray.got == []


# ------------------------------------------------------------------ run() and the runtime


def test_handlers_restored_after_run_returns(stray: Stray) -> None:
    """Channels never stopped: run() puts the handlers back when it returns
    (``_signal.reset``, called from run()'s shutdown)."""
    int_before = signal.getsignal(signal.SIGINT)

    async def main() -> int:
        ch: gr.Chan[int] = gr.Chan(1)
        signal_notify(ch, USR1, signal.SIGINT)
        kill(USR1)
        return await ch.recv() or 0

    assert grun(main, procs=2) == USR1
    assert signal.getsignal(USR1) is stray
    assert signal.getsignal(signal.SIGINT) == int_before


def test_handlers_restored_after_run_raises(stray: Stray) -> None:
    async def main() -> None:
        signal_notify(gr.Chan[int](1), USR2)
        raise LookupError("main failed")

    with pytest.raises(LookupError, match="main failed"):
        grun(main, procs=1)
    assert signal.getsignal(USR2) is stray


def test_waiting_only_on_signal_is_not_deadlock(procs: int, stray: Stray) -> None:
    """Every goroutine blocked, but one waits on a signal channel: no Deadlock.
    The signal comes from a thread started before run(), after a short delay."""
    registered = threading.Event()

    def sender() -> None:
        if registered.wait(5.0):
            time.sleep(0.2)
            kill(USR1)

    th = threading.Thread(target=sender)
    th.start()

    async def main() -> Any:
        ch: gr.Chan[int] = gr.Chan(1)
        signal_notify(ch, USR1)
        registered.set()
        v = await ch.recv()
        signal_stop(ch)
        return v

    try:
        assert grun(main, procs=procs) == USR1
    finally:
        registered.set()
        th.join()
    assert stray.got == []


def test_deadlock_reported_after_signal_stop(procs: int, stray: Stray) -> None:
    async def main() -> None:
        ch: gr.Chan[int] = gr.Chan(1)
        signal_notify(ch, USR1)
        signal_stop(ch)
        await ch.recv()

    with pytest.raises(gr.Deadlock):
        grun(main, procs=procs)


def test_signal_to_closed_channel_stops_runtime(procs: int, stray: Stray) -> None:
    """Go panics when it relays a signal to a closed channel: run() raises."""

    async def main() -> None:
        ch: gr.Chan[int] = gr.Chan(1)
        signal_notify(ch, USR1)
        ch.close()
        kill(USR1)
        await gr.Chan[int]().recv()

    with pytest.raises(gr.ChanClosed, match="signal_stop"):
        grun(main, procs=procs)


def test_concurrent_notify_stop(procs: int, stray: Stray) -> None:
    """Goroutines registering, signalling and stopping at once: each gets
    its signal every round, and everything is unregistered at the end."""

    async def worker(wg: gr.WaitGroup, sig: int) -> None:
        ch: gr.Chan[int] = gr.Chan(1)
        for _ in range(10):
            signal_notify(ch, sig)
            kill(sig)
            assert await ch.recv() == sig
            signal_stop(ch)
        wg.done()

    async def main() -> int:
        wg = gr.WaitGroup()
        wg.add(6)
        for i in range(6):
            gr.go(worker, wg, USR1 if i % 2 else USR2)
        await wg.wait()
        return _scheduler.require().nsignotify

    assert grun(main, procs=procs) == 0
    assert signal.getsignal(USR1) is stray
    assert signal.getsignal(USR2) is stray


# ------------------------------------------------------------------ bad input


def test_bad_input(stray: Stray) -> None:
    async def main() -> None:
        ch: gr.Chan[int] = gr.Chan(1)
        with pytest.raises(TypeError, match="needs a Chan, got NoneType"):
            signal_notify(None, USR1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="needs a Chan, got list"):
            signal_notify([], USR1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"signal_stop\(\) needs a Chan, got int"):
            signal_stop(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'SIGUSR1'"):
            signal_notify(ch, "SIGUSR1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="True"):
            signal_notify(ch, True)
        for bad in (0, -1, 999):
            with pytest.raises(ValueError, match=f"invalid signal number {bad}"):
                signal_notify(ch, USR1, bad)
        for sig, name in ((signal.SIGKILL, "SIGKILL"), (signal.SIGSTOP, "SIGSTOP")):
            with pytest.raises(ValueError, match=f"{name} cannot be caught"):
                signal_notify(ch, sig)
            with pytest.raises(ValueError, match=f"{name} cannot be caught"):
                signal_notify(ch, int(sig))
        # nothing was registered by the failed calls
        assert _scheduler.require().nsignotify == 0
        assert signal.getsignal(USR1) is stray

    grun(main, procs=1)


def test_outside_run_is_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="no goroutines runtime"):
        signal_notify(gr.Chan[int](1), USR1)
    with pytest.raises(RuntimeError, match="no goroutines runtime"):
        signal_stop(gr.Chan[int](1))


# ------------------------------------------------------------------ SIGQUIT

SIGQUIT_SCRIPT = """
import os
import signal
import goroutines as gr
from goroutines import _signal
from goroutines._runtime import _scheduler
from goroutines._runtime._goroutine import GStatus
from goroutines._runtime._scheduler import call_on_main

async def parked_forever(c):
    await c.recv()

async def sleeper():
    await gr.sleep(3600)  # keeps the runtime from being a deadlock

async def announce(c):
    # "ready" once every other goroutine is parked, so the dump shows where
    sched = _scheduler.require()
    me = gr.goroutine_id()
    while not all(g.status == GStatus.WAITING for g in sched.allgs.copy().values() if g.id != me):
        await gr.gosched()
    print("ready", flush=True)
    await c.recv()

async def main():
    # run() is meant to do this itself; doing it again is harmless
    call_on_main(_signal.install_sigquit)
    c = gr.Chan()
    gr.go(sleeper)
    gr.go(parked_forever, c)
    NOTIFY
    gr.go(announce, c)
    await c.recv()

gr.run(main, procs=2)
"""


def _sigquit_run(notify: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(SIGQUIT_SCRIPT).replace("NOTIFY", notify)
    return signal_when_ready(script, signal.SIGQUIT)[0]


def test_sigquit_dumps_goroutines_and_exits_2() -> None:
    r = _sigquit_run("pass")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("SIGQUIT: quit\n\n"), r.stderr
    assert "goroutine 1 [chan receive]" in r.stderr
    assert "parked_forever" in r.stderr
    assert "created by" in r.stderr


def test_sigquit_notified_goes_to_channel() -> None:
    """signal_notify(ch, SIGQUIT) replaces the dump (as in Go); signal_stop
    brings the dump back."""
    r = _sigquit_run(
        """q = gr.Chan(1)
    _signal.signal_notify(q, signal.SIGQUIT)
    os.kill(os.getpid(), signal.SIGQUIT)
    print("got", await q.recv(), flush=True)
    _signal.signal_stop(q)"""
    )
    assert "got Signals.SIGQUIT" in r.stdout or "got 3" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("SIGQUIT: quit\n\n"), r.stderr


def test_install_sigquit_keeps_a_program_handler() -> None:
    """A SIGQUIT handler the program set itself is left alone."""
    script = """
    import signal
    from goroutines import _signal
    def mine(s, f):
        pass
    signal.signal(signal.SIGQUIT, mine)
    _signal.install_sigquit()
    assert signal.getsignal(signal.SIGQUIT) is mine
    _signal.restore_sigquit()
    assert signal.getsignal(signal.SIGQUIT) is mine
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    _signal.install_sigquit()
    assert signal.getsignal(signal.SIGQUIT) is _signal._sigquit
    _signal.install_sigquit()
    _signal.restore_sigquit()
    assert signal.getsignal(signal.SIGQUIT) == signal.SIG_DFL
    print("ok")
    """
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=20
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


# ------------------------------------------------------------------ the main thread's wait


def test_python_handler_runs_while_run_waits(stray: Stray) -> None:
    """A signal whose Python-level handler is not ours (Ctrl-C's
    KeyboardInterrupt, the SIGQUIT dump, any handler the program set) runs
    on the main thread, which is blocked in run(). CPython runs the handler
    only when that thread wakes up; a signal that arrives as it goes back to
    waiting (it just served a ``call_on_main`` request, under GIL contention)
    interrupts nothing and is left pending. run() must still get to it
    promptly (e.g. by waiting with a timeout)."""

    async def spinner(stop: list[int]) -> None:
        while not stop:
            await gr.gosched()

    async def main() -> list[float]:
        stop: list[int] = []
        gr.go(spinner, stop)
        lat: list[float] = []
        try:
            for i in range(100):
                n = len(stray.got)
                call_on_main(lambda: None)  # main serves, then goes back to waiting
                kill(USR1)
                t = time.monotonic()
                while len(stray.got) == n:
                    if time.monotonic() - t > 0.3:
                        call_on_main(lambda: None)  # wake main so the test can end
                        raise AssertionError(f"signal {i}: handler still pending after 0.3 s")
                    await gr.sleep(0.001)
                lat.append(time.monotonic() - t)
        finally:
            stop.append(1)
        return lat

    lat = grun(main, procs=2)
    assert max(lat) < 0.3
