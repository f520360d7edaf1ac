"""Trust at the edges: regressions for defects found by probing the runtime's edges.

Each test here failed before its fix. They are black-box where the defect can
be reached through the API; where a window is too narrow to hit from outside,
the test widens it (monkeypatching a delay into it) and says so.

- a false Deadlock while the poller holds ready goroutines (``nwaiters``);
- a coroutine given to ``go`` twice, or one already started or finished;
- waiters of a finished run left in a channel's queues;
- leftover goroutines that wait in their ``finally`` (a lock left held);
- a second Ctrl-C during shutdown (the runtime left installed);
- plain threads that wake goroutines, and real deadlocks beside threads;
- the yield protocol: what a foreign awaitable yields is never taken for ours;
- small ones: ``__notes__`` that is a tuple, ``go``'s positional-only ``fn``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Generator
from typing import Any

import pytest

import goroutines as gr
from goroutines._runtime import _netpoll
from helpers import grun


def notes(e: BaseException) -> str:
    return "\n".join(getattr(e, "__notes__", []))


def run_script(script: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (a hang at exit fails the test)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------ 1. netpoll's waiters


def test_no_false_deadlock_while_poll_holds_ready_goroutines(
    procs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The M that polled holds the goroutines it found until it puts them on a
    run queue; until then they must count as I/O waiters, or an M that parks
    in that window takes the runtime for dead. White-box: the window is
    widened by a delay after ``Netpoll.poll`` returns them.

    Scenario: main waits on a socket; another goroutine is in a blocking
    call, so its P is handed off and an idle M waits in epoll. A plain thread
    writes to the socket: the idle M's poll returns main (and sits on it
    for 0.3 s); meanwhile the blocking call returns and its goroutine parks,
    and its M, out of work, parks too.
    """
    real_poll = _netpoll.Netpoll.poll

    def slow_poll(self: _netpoll.Netpoll, timeout: float | None) -> list[Any]:
        gs = real_poll(self, timeout)
        if gs:
            time.sleep(0.3)
        return gs

    monkeypatch.setattr(_netpoll.Netpoll, "poll", slow_poll)

    async def parker(ch: gr.Chan[None]) -> None:
        await gr.syscall(time.sleep, 0.15)
        await ch.recv()

    async def main() -> bytes:
        ln = await gr.net.listen("tcp", "127.0.0.1:0")
        plain = socket.create_connection(ln.addr)
        conn = await ln.accept()
        ch: gr.Chan[None] = gr.Chan()
        gr.go(parker, ch)
        writer = threading.Timer(0.05, plain.sendall, (b"x",))
        writer.daemon = True  # not a waker: see the thread tests below
        writer.start()
        try:
            data = await conn.read(1)
            await ch.send(None)
            return data
        finally:
            writer.join()
            conn.close()
            ln.close()
            plain.close()

    assert grun(main, procs=procs) == b"x"


# ------------------------------------------------------------------ 3. one coroutine, one goroutine


def test_go_rejects_a_coroutine_given_twice(procs: int) -> None:
    ran: list[int] = []

    async def work(n: int) -> None:
        ran.append(n)

    async def main() -> str:
        coro = work(1)
        gr.go(coro)
        with pytest.raises(RuntimeError, match="already given to go") as ei:
            gr.go(coro)
        await gr.sleep(0.01)
        return str(ei.value)

    msg = grun(main, procs=procs)
    assert ran == [1]
    assert "work" in msg


def test_go_rejects_a_started_or_finished_coroutine(procs: int) -> None:
    async def forever(ch: gr.Chan[int]) -> int | None:
        return await ch.recv()

    async def done() -> int:
        return 1

    async def main() -> list[str]:
        msgs = []
        ch: gr.Chan[int] = gr.Chan()
        inner = forever(ch)

        async def awaiting() -> None:
            await inner  # inner is now suspended inside this goroutine

        gr.go(awaiting)
        await gr.sleep(0.01)
        with pytest.raises(RuntimeError, match="already started") as ei:
            gr.go(inner)
        msgs.append(str(ei.value))
        finished = done()
        await finished
        with pytest.raises(RuntimeError, match="already finished") as ei:
            gr.go(finished)
        msgs.append(str(ei.value))
        await ch.send(5)  # the one receiver gets it: nothing was lost to a second G
        return msgs

    assert len(grun(main, procs=procs)) == 2


def test_run_rejects_a_coroutine_already_used() -> None:
    async def main() -> int:
        return 1

    coro = main()
    assert gr.run(coro, procs=1) == 1
    with pytest.raises(RuntimeError, match="already finished"):
        gr.run(coro, procs=1)


# ------------------------------------------------------------------ 4. waiters of an ended run


def test_waiters_of_an_ended_run_leave_the_channel(procs: int) -> None:
    """A goroutine left parked in a run is closed when the run ends, and taken
    off the channel's queue: the next run's send reaches its own receiver
    (before: the dead receiver of the first run took the value, and it was
    lost), and its receive does not get the value of a dead sender."""
    unbuffered: gr.Chan[int] = gr.Chan()
    full: gr.Chan[int] = gr.Chan(1)

    async def run1() -> None:
        gr.go(unbuffered.recv)
        gr.go(unbuffered.send, 99)  # may pair with the receiver: then both finish
        await full.send(0)
        gr.go(full.send, 98)  # parks: the buffer is full
        gr.go(gr.select, unbuffered.recv, (full.send, 97))
        await gr.sleep(0.02)

    async def run2() -> list[int | None]:
        got: gr.Chan[int | None] = gr.Chan(3)

        async def recv_one() -> None:
            await got.send(await unbuffered.recv())

        gr.go(recv_one)
        await gr.sleep(0.01)
        await unbuffered.send(7)
        out = [await got.recv(), await full.recv()]
        out.append(len(full))  # no dead sender's value moved into the buffer
        return out

    grun(run1, procs=procs)
    assert grun(run2, procs=procs) == [7, 0, 0]


def test_select_waiters_of_an_ended_run_are_dead(procs: int) -> None:
    a: gr.Chan[int] = gr.Chan()

    async def run1() -> None:
        gr.go(gr.select, a.recv, gr.Chan[int]().recv)
        await gr.sleep(0.02)

    async def run2() -> int | None:
        gr.go(a.send, 5)
        return await a.recv()

    grun(run1, procs=procs)
    assert grun(run2, procs=procs) == 5


def test_mutex_waiter_of_an_ended_run_does_not_keep_it(procs: int) -> None:
    mu = gr.Mutex()

    async def run1() -> None:
        await mu.lock()
        gr.go(mu.lock)  # parks behind us
        await gr.sleep(0.02)
        mu.unlock()  # hands it to the waiter, which then never runs: closed

    async def run2() -> bool:
        await mu.lock()
        mu.unlock()
        return True

    grun(run1, procs=procs)
    assert grun(run2, procs=procs, timeout=5)


# ------------------------------------------------------------------ 5. closing leftovers that wait


def test_leftover_that_waits_in_finally_gets_an_error_and_leaves_no_lock_held(
    procs: int,
) -> None:
    """Before: the send in the finally yielded with the channel's lock held,
    ``coroutine.close()`` dropped it, and the next leftover's ``close()``
    hung on that lock for ever."""
    ch: gr.Chan[int] = gr.Chan()
    closed: list[str] = []

    async def sends_in_finally(started: gr.Chan[None]) -> None:
        try:
            await started.send(None)
            await gr.Chan[int]().recv()
        finally:
            closed.append("sender")
            await ch.send(1)  # nobody will ever receive: must not hang

    async def closes_in_finally(started: gr.Chan[None]) -> None:
        try:
            await started.send(None)
            await gr.Chan[int]().recv()
        finally:
            ch.close()
            closed.append("closer")

    async def main() -> None:
        started: gr.Chan[None] = gr.Chan()
        gr.go(sends_in_finally, started)
        await started.recv()
        gr.go(closes_in_finally, started)
        await started.recv()

    with pytest.raises(RuntimeError, match=r"tried to wait .*chan send.* while it was being"):
        grun(main, procs=procs)
    assert sorted(closed) == ["closer", "sender"]
    assert not ch.lock.locked()


def test_leftover_that_catches_generator_exit_and_waits_again(procs: int) -> None:
    mu = gr.Mutex()
    log: list[str] = []

    async def stubborn(started: gr.Chan[None]) -> None:
        await mu.lock()
        await started.send(None)
        while True:
            try:
                await gr.Chan[int]().recv()
            except GeneratorExit:
                log.append("exit")
            except RuntimeError:
                log.append("error")
                if len(log) > 3:
                    raise

    async def polite(started: gr.Chan[None]) -> None:
        try:
            await started.send(None)
            await gr.sleep(3600)
        finally:
            log.append("polite")

    async def main() -> None:
        started: gr.Chan[None] = gr.Chan()
        gr.go(stubborn, started)
        await started.recv()
        gr.go(polite, started)
        await started.recv()

    with pytest.raises(RuntimeError, match="tried to wait"):
        grun(main, procs=procs)
    assert log[0] == "exit" and log.count("error") == 3 and "polite" in log


def test_leftover_async_with_a_held_mutex_in_finally(procs: int) -> None:
    mu = gr.Mutex()
    log: list[str] = []

    async def holder(started: gr.Chan[None]) -> None:
        async with mu:
            await started.send(None)
            await gr.Chan[int]().recv()

    async def wants_it_in_finally(started: gr.Chan[None]) -> None:
        try:
            await started.send(None)
            await gr.Chan[int]().recv()
        finally:
            async with mu:
                log.append("got it")

    async def main() -> None:
        started: gr.Chan[None] = gr.Chan()
        gr.go(wants_it_in_finally, started)
        await started.recv()
        gr.go(holder, started)
        await started.recv()

    # The first leftover (lower id) is closed first, while the holder still
    # holds mu: it tries to wait, and gets the error.
    with pytest.raises(RuntimeError, match=r"sync\.Mutex\.Lock"):
        grun(main, procs=procs)
    assert log == []
    assert mu.try_lock()  # the holder's `async with` unlocked it when closed


def test_leftover_waiting_in_finally_does_not_hang_the_process() -> None:
    """On 3.11 the process also hung at interpreter exit (a lock left held)."""
    r = run_script(
        """
        import goroutines as gr

        ch = gr.Chan()

        async def leftover(started):
            try:
                await started.send(None)
                await gr.Chan().recv()
            except BaseException:
                await ch.send(1)

        async def second(started):
            try:
                await started.send(None)
                await gr.Chan().recv()
            finally:
                ch.close()

        async def main():
            started = gr.Chan()
            gr.go(leftover, started)
            await started.recv()
            gr.go(second, started)
            await started.recv()

        try:
            gr.run(main)
        except RuntimeError as e:
            print("error:", e)
        print("done")
        """
    )
    assert r.returncode == 0, r.stderr
    assert "tried to wait" in r.stdout and r.stdout.strip().endswith("done")


# ------------------------------------------------------------------ 6. Ctrl-C twice


_CTRL_C_TWICE = """
import signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import goroutines as gr

async def in_finally(started):
    try:
        await started.send(None)
        await gr.Chan().recv()
    finally:
        print("closing", flush=True)
        time.sleep(10)  # the second Ctrl-C interrupts this

async def computing(started):
    await started.send(None)
    print("closing", flush=True)
    time.sleep(10)  # blocks its M: run() waits for it, and is interrupted there

async def main():
    started = gr.Chan()
    gr.go(LEFTOVER, started)
    await started.recv()
    print("ready", flush=True)
    await gr.sleep(60)

try:
    gr.run(main, procs=2)
except KeyboardInterrupt:
    print("interrupted", flush=True)

async def again():
    return 42

print("second run:", gr.run(again), flush=True)
"""


@pytest.mark.parametrize("leftover", ["in_finally", "computing"])
def test_second_ctrl_c_during_shutdown_leaves_no_runtime_installed(leftover: str) -> None:
    """Ctrl-C, then Ctrl-C again while run() is closing a leftover goroutine
    (in its finally) or waiting for an M stuck in a goroutine: the runtime
    must still be uninstalled, so that a later run() works."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_TWICE.replace("LEFTOVER", leftover)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        out: list[str] = []

        def wait_for(*want: str) -> None:
            seen = set()
            while seen != set(want):
                line = proc.stdout.readline() if proc.stdout else ""
                assert line, (out, proc.communicate(timeout=10))
                out.append(line)
                seen.add(line.strip())

        if leftover == "in_finally":
            wait_for("ready")
            proc.send_signal(signal.SIGINT)
            wait_for("closing")  # in the leftover's finally, on the closing thread
        else:
            wait_for("ready", "closing")
            proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # (computing: run() is waiting for the stuck M)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "interrupted" in rest, err
    assert "second run: 42" in rest, err


# ------------------------------------------------------------------ 8. threads as wakers


def test_thread_timer_closing_a_channel_is_not_a_deadlock(procs: int) -> None:
    async def main() -> tuple[int | None, bool]:
        ch: gr.Chan[int] = gr.Chan()
        threading.Timer(0.3, ch.close).start()
        return await ch.recv_ok()

    assert grun(main, procs=procs) == (None, False)


def test_go_from_a_thread_started_in_the_run(procs: int) -> None:
    async def main() -> int | None:
        ch: gr.Chan[int] = gr.Chan()

        def later() -> None:
            time.sleep(0.2)
            gr.go(ch.send, 11)

        threading.Thread(target=later).start()
        return await ch.recv()

    assert grun(main, procs=procs) == 11


def test_cancel_from_a_thread_callback(procs: int) -> None:
    async def main() -> object:
        ctx, cancel = gr.with_cancel(gr.background())
        threading.Timer(0.2, cancel).start()
        await ctx.done().recv()
        return ctx.err()

    assert grun(main, procs=procs) is gr.Canceled


def test_a_thread_that_woke_a_goroutine_keeps_counting(procs: int) -> None:
    """A thread started before run() counts as a waker once it has readied a
    goroutine: its second wake-up is not lost to a false deadlock."""
    ch: gr.Chan[int] = gr.Chan()
    go_on = threading.Event()

    def feeder() -> None:
        go_on.wait()
        gr.go(ch.send, 1)
        time.sleep(0.3)
        gr.go(ch.send, 2)

    t = threading.Thread(target=feeder, daemon=True)
    t.start()

    async def main() -> list[int | None]:
        go_on.set()
        return [await ch.recv(), await ch.recv()]

    assert grun(main, procs=procs) == [1, 2]
    t.join()


def test_real_deadlock_beside_threads_that_cannot_wake(procs: int) -> None:
    """Threads that were running before run() and never touched the runtime
    (daemon or not) do not keep a real deadlock from being reported."""
    stop = threading.Event()
    before = [threading.Thread(target=stop.wait, daemon=d) for d in (False, True)]
    for t in before:
        t.start()
    try:

        async def main() -> None:
            await gr.Chan[int]().recv()

        t0 = time.monotonic()
        with pytest.raises(gr.Deadlock):
            grun(main, procs=procs)
        assert time.monotonic() - t0 < 2
    finally:
        stop.set()
        for t in before:
            t.join()


@pytest.mark.parametrize("daemon", [False, True])
def test_deadlock_reported_once_the_waker_thread_has_ended(procs: int, daemon: bool) -> None:
    """A thread started during the run may wake a goroutine (a goroutine's
    threads inherit daemon=True from its M, so that says nothing): the
    deadlock is reported once it has ended."""

    async def main() -> None:
        threading.Thread(target=time.sleep, args=(0.3,), daemon=daemon).start()
        await gr.Chan[int]().recv()

    t0 = time.monotonic()
    with pytest.raises(gr.Deadlock):
        grun(main, procs=procs)
    assert time.monotonic() - t0 >= 0.29


# ------------------------------------------------------------------ the yield protocol


@types.coroutine
def _yield(x: Any) -> Generator[Any, None, None]:
    yield x


def test_foreign_yield_of_a_callable_is_not_called(procs: int) -> None:
    called: list[int] = []

    async def main() -> list[str]:
        msgs = []
        for thing in (lambda: called.append(1), "syscall", "gosched", None):
            try:
                await _yield(thing)
            except TypeError as e:
                msgs.append(str(e))
        return msgs

    msgs = grun(main, procs=procs)
    assert called == []
    assert len(msgs) == 4 and all("only works inside its own event loop" in m for m in msgs)


# ------------------------------------------------------------------ 9. small ones


def test_exception_with_tuple_notes_is_raised_as_is(procs: int) -> None:
    class Boom(Exception):
        pass

    async def child() -> None:
        e = Boom("boom")
        e.__notes__ = ("a tuple note",)  # type: ignore[assignment]
        raise e

    async def main() -> None:
        gr.go(child)
        await gr.sleep(5)

    with pytest.raises(Boom) as ei:
        grun(main, procs=procs)
    assert "a tuple note" in notes(ei.value)
    assert "raised in goroutine" in notes(ei.value)


def test_go_and_run_take_any_keyword_for_the_function(procs: int) -> None:
    async def worker(out: gr.Chan[str], fn: str, main: str) -> None:
        await out.send(fn + main)

    async def main(fn: str) -> str | None:
        out: gr.Chan[str] = gr.Chan()
        gr.go(worker, out, fn="a", main="b")
        return (await out.recv() or "") + fn

    assert grun(main, "c", procs=procs) == "abc"


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux only")
def test_nothing_leaks_across_many_runs_with_leftovers() -> None:
    """Threads and fds come back to where they were after runs that closed
    leftovers waiting on channels, timers and sockets."""

    async def main() -> None:
        ln = await gr.net.listen("tcp", "127.0.0.1:0")
        gr.go(ln.accept)
        gr.go(gr.sleep, 3600)
        gr.go(gr.Chan[int]().recv)
        await gr.sleep(0.01)
        ln.close()

    gr.run(main, procs=2)
    time.sleep(0.1)
    fds = len(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    for _ in range(5):
        gr.run(main, procs=2)
    time.sleep(0.2)
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert threading.active_count() <= threads


def test_socket_deadline_too_large_for_a_float(procs: int) -> None:
    async def main() -> list[str]:
        ln = await gr.net.listen("tcp", "127.0.0.1:0")
        msgs = []
        try:
            for f in (ln.set_deadline,):
                with pytest.raises(ValueError, match="too large for a float") as ei:
                    f(10**400)
                msgs.append(str(ei.value))
        finally:
            ln.close()
        return msgs

    assert grun(main, procs=procs)[0].startswith("set_deadline: deadline ~1e+400")


def test_io_is_polled_while_the_only_busy_m_is_in_a_blocking_call(procs: int) -> None:
    """When the last running P is handed off from an M in a blocking call,
    an M must be left waiting in the poller: before, a socket that became
    ready then waited for sysmon, asleep while every P is idle (about 1 s),
    or for the blocking call to end."""

    async def main() -> float:
        ln = await gr.net.listen("tcp", "127.0.0.1:0")
        plain = socket.create_connection(ln.addr)
        conn = await ln.accept()
        done: gr.Chan[None] = gr.Chan()

        async def blocker() -> None:
            await gr.syscall(time.sleep, 2.0)
            await done.send(None)

        gr.go(blocker)  # runs once we park: its P is handed off in 10 ms
        t0 = time.monotonic()
        threading.Timer(0.2, plain.sendall, (b"x",)).start()
        await conn.read(1)
        latency = time.monotonic() - t0 - 0.2
        await done.recv()
        for c in (conn, ln):
            c.close()
        plain.close()
        return latency

    assert grun(main, procs=procs) < 0.5


def test_stack_dump_reads_no_frames_of_a_goroutine_that_starts_running(
    procs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a dump reads a parked or runnable G's frames, no M may start
    stepping that G (it could crash a free-threaded build, and shows a torn
    stack): the dump stops the world. White-box: each G's frames are read
    slowly (1 ms, the GIL released), and its status must not become RUNNING
    meanwhile, with ping-pong pairs running on every P."""
    from goroutines._runtime import _traceback
    from goroutines._runtime._goroutine import GStatus

    real = _traceback.format_g
    changed: list[str] = []

    def slow_format_g(g: Any, now: float, me: Any) -> str:
        before = g.status
        out = real(g, now, me)
        time.sleep(0.001)
        if before not in (GStatus.RUNNING, GStatus.SYSCALL) and g.status == GStatus.RUNNING:
            changed.append(f"G{g.id}")
        return out

    monkeypatch.setattr(_traceback, "format_g", slow_format_g)

    async def pinger(a: gr.Chan[int], b: gr.Chan[int], stop: gr.Chan[None]) -> None:
        while True:
            i, _ = await gr.select(stop.recv, (a.send, 1))
            if i == 0:
                return
            await b.recv()

    async def ponger(a: gr.Chan[int], b: gr.Chan[int]) -> None:
        async for _ in a:
            await b.send(1)

    async def main() -> None:
        stop: gr.Chan[None] = gr.Chan()
        pairs = []
        for _ in range(6):
            a: gr.Chan[int] = gr.Chan()
            b: gr.Chan[int] = gr.Chan()
            gr.go(pinger, a, b, stop)
            gr.go(ponger, a, b)
            pairs.append(a)
        for _ in range(10):
            await gr.syscall(time.sleep, 0.002)
            gr.stack_dump()
        stop.close()

    grun(main, procs=procs)
    assert changed == []


def test_goroutine_back_from_a_blocking_call_after_main_returned_is_not_resumed(
    procs: int,
) -> None:
    """Its M must not resume it once the runtime is stopping (before: the
    blocking call's fast path ignored ``stopping``, and the goroutine went on
    running its code after main had returned, while run() closed the rest):
    it is given back, and closed.

    The blocking call returns only once the runtime is stopping (before:
    it slept 8 ms while main slept 2 ms, which a loaded machine could
    reorder, making the test fail with the runtime right). Usually it is
    back well within sysmon's 10 ms retake of a P with nothing queued (at
    procs > 1): the M comes back to its own P, the fast path."""
    from goroutines._runtime._scheduler import require

    log: list[str] = []

    def until_stopping(sched: Any) -> None:
        while not sched.stopping:
            time.sleep(0.0002)

    async def blocker(started: gr.Chan[None]) -> None:
        try:
            sched = require()
            await started.send(None)
            await gr.syscall(until_stopping, sched)
            log.append("resumed")
        finally:
            log.append("closed")

    async def main() -> None:
        started: gr.Chan[None] = gr.Chan()
        gr.go(blocker, started)
        await started.recv()
        await gr.sleep(0.002)  # it is in the call now (or about to be)

    for _ in range(5):
        log.clear()
        grun(main, procs=procs)
        assert log == ["closed"]


def test_a_losing_select_case_keeps_nothing_alive(procs: int) -> None:
    """The waiters of a select's losing cases stay in their channels' queues
    until compaction; they must not keep the goroutine or a losing send's
    value alive meanwhile."""
    import gc
    import weakref

    class Value:
        pass

    async def main() -> tuple[bool, int]:
        slow: gr.Chan[Value] = gr.Chan()  # nobody ever receives
        fast: gr.Chan[int] = gr.Chan()
        v = Value()
        ref = weakref.ref(v)

        async def chooser(box: list[Value]) -> None:
            await gr.select((slow.send, box.pop()), fast.recv)

        gr.go(chooser, [v])
        del v
        await gr.testing.wait()  # chooser is parked on both
        await fast.send(1)  # chooser wins fast; its send on slow is dead
        await gr.testing.wait()  # ... and has ended
        gc.collect()
        return ref() is None, len(slow._sendq)

    gone, queued = grun(main, procs=procs)
    assert queued == 1  # still queued (compacted later) ...
    assert gone  # ... but it holds nothing


def test_no_m_thread_outlives_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by make stress: an M thread still alive after run() returned.
    An M leaves ``allm`` before its thread ends, and one just made is in it
    before its thread starts: joining ``allm``'s threads missed both.
    White-box: the first window is widened (the exiting M lingers 50 ms)."""
    from goroutines._runtime import _scheduler

    real_mexit = _scheduler.Sched.mexit

    def slow_mexit(self: _scheduler.Sched, m: Any) -> None:
        real_mexit(self, m)
        time.sleep(0.05)

    monkeypatch.setattr(_scheduler.Sched, "mexit", slow_mexit)

    async def main() -> None:
        for _ in range(4):
            await gr.syscall(time.sleep, 0.02)  # hands the P off: a second M

    before = threading.active_count()
    for _ in range(3):
        gr.run(main, procs=2)
        assert threading.active_count() <= before, threading.enumerate()
