"""Running goroutines: run, go, gomaxprocs, introspection, panics, deadlock (SPEC §1-§3).

Every runtime test runs at procs 1 and 4 (the ``procs`` fixture). ``grun`` is
``gr.run`` with a watchdog: a run that hangs (a lost wake-up, a crashed M) is
stopped after ``timeout`` seconds and the test fails with the goroutine dump,
instead of the whole session dying at the pytest-timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import goroutines as gr
from goroutines import _run
from helpers import grun, signal_when_ready

Blocked = Callable[..., Awaitable[None]]


def notes(e: BaseException) -> str:
    return "\n".join(getattr(e, "__notes__", []))


# ------------------------------------------------------------------ run


def test_run_returns_main_result(procs: int) -> None:
    async def main() -> int:
        return 42

    assert grun(main, procs=procs) == 42


def test_run_passes_args(procs: int) -> None:
    async def main(a: int, b: str) -> tuple[int, str]:
        return a, b

    assert grun(main, 7, "x", procs=procs) == (7, "x")


def test_run_accepts_coroutine_object(procs: int) -> None:
    async def main(a: int) -> int:
        return a * 2

    assert grun(main(21), procs=procs) == 42


def test_run_inside_runtime_raises_runtime_error(procs: int) -> None:
    async def inner() -> int:
        return 1

    async def main() -> str:
        with pytest.raises(RuntimeError, match="already running"):
            gr.run(inner)
        coro = inner()
        with pytest.raises(RuntimeError, match="already running"):
            gr.run(coro)
        # The rejected coroutine object is closed, not left to warn "never awaited".
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        return "ok"

    assert grun(main, procs=procs) == "ok"


def test_run_of_plain_function_is_type_error_and_does_not_call_it() -> None:
    called: list[int] = []

    def plain() -> int:
        called.append(1)
        return 1

    with pytest.raises(TypeError, match="async def"):
        gr.run(plain, procs=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async function or a coroutine object"):
        gr.run(42, procs=1)  # type: ignore[call-overload]
    assert called == []

    # The failed calls left no runtime installed.
    async def main() -> int:
        return 5

    assert grun(main, procs=1) == 5


def test_run_bad_procs() -> None:
    async def main() -> None:
        pass

    with pytest.raises(ValueError, match="procs must be >= 1"):
        gr.run(main, procs=0)
    with pytest.raises(ValueError, match="procs must be >= 1"):
        gr.run(main, procs=-3)
    with pytest.raises(TypeError, match="procs must be an int"):
        gr.run(main, procs=2.0)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="procs must be an int"):
        gr.run(main, procs=True)


# ------------------------------------------------------------------ go


def test_go_rejects_plain_function_without_calling_it(procs: int) -> None:
    called: list[int] = []

    def plain() -> None:
        called.append(1)

    async def main() -> None:
        with pytest.raises(TypeError, match="plain function") as ei:
            gr.go(plain)  # type: ignore[arg-type]
        assert "async def" in str(ei.value)
        with pytest.raises(TypeError, match="async function or a coroutine object, got 42"):
            gr.go(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="async function or a coroutine object"):
            gr.go(None)  # type: ignore[arg-type]

    grun(main, procs=procs)
    assert called == []


def test_go_with_args_and_kwargs(procs: int) -> None:
    async def worker(out: gr.Chan[tuple[int, int, str]], a: int, b: int, *, tag: str) -> None:
        await out.send((a, b, tag))

    async def main() -> list[tuple[int, int, str]]:
        out: gr.Chan[tuple[int, int, str]] = gr.Chan()
        gr.go(worker, out, 1, 2, tag="x")
        gr.go(worker(out, 3, 4, tag="y"))
        got = [await out.recv(), await out.recv()]
        return sorted(v for v in got if v is not None)

    assert grun(main, procs=procs) == [(1, 2, "x"), (3, 4, "y")]


def test_go_outside_run_is_runtime_error() -> None:
    async def worker() -> None:
        pass

    with pytest.raises(RuntimeError, match=r"inside gr\.run"):
        gr.go(worker)


def test_go_outside_run_closes_coroutine_object() -> None:
    async def worker() -> None:
        pass

    coro = worker()
    with pytest.raises(RuntimeError, match=r"inside gr\.run"):
        gr.go(coro)
    # As run() does for a rejected coroutine object: no "never awaited" warning later.
    was_closed = inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    coro.close()
    assert was_closed


# ------------------------------------------------------------------ panics


def test_exception_in_goroutine_stops_runtime_with_note(procs: int) -> None:
    ids: list[int] = []
    lines: list[int] = []

    async def child() -> None:
        ids.append(gr.goroutine_id())
        raise ValueError("boom")

    async def main() -> None:
        lines.append(sys._getframe().f_lineno + 1)
        gr.go(child)
        await gr.Chan[int]().recv()  # blocks forever: only the panic ends the run

    with pytest.raises(ValueError, match="boom") as ei:
        grun(main, procs=procs)
    text = notes(ei.value)
    assert f"goroutine {ids[0]}" in text
    assert "created by" in text
    assert f"{__file__}:{lines[0]}" in text


def test_exception_from_main_is_raised_as_is(procs: int) -> None:
    err = KeyError("main failed")

    async def main() -> None:
        raise err

    with pytest.raises(KeyError) as ei:
        grun(main, procs=procs)
    assert ei.value is err
    assert getattr(ei.value, "__notes__", []) == []


# ------------------------------------------------------------------ deadlock


def test_deadlock_raises_with_dump(procs: int) -> None:
    ids: list[int] = []
    lines: list[int] = []

    async def stuck_sender(c: gr.Chan[int]) -> None:
        ids.append(gr.goroutine_id())
        await c.send(1)

    async def main() -> None:
        nobody: gr.Chan[int] = gr.Chan()
        lines.append(sys._getframe().f_lineno + 1)
        gr.go(stuck_sender, gr.Chan[int]())
        await nobody.recv()

    with pytest.raises(gr.Deadlock) as ei:
        grun(main, procs=procs)
    text = str(ei.value)
    assert isinstance(ei.value, RuntimeError)
    assert "all goroutines are asleep - deadlock!" in text
    assert "goroutine 1 [chan receive" in text
    assert f"goroutine {ids[0]} [chan send" in text
    assert "stuck_sender" in text
    assert "created by" in text
    assert f"{__file__}:{lines[0]}" in text


def test_no_false_deadlock_while_sleeping(procs: int) -> None:
    async def sleeper(c: gr.Chan[str]) -> None:
        await gr.sleep(0.05)
        await c.send("woke")

    async def main() -> list[Any]:
        await gr.sleep(0.02)  # the only goroutine, asleep on a timer
        c: gr.Chan[str] = gr.Chan()
        gr.go(sleeper, c)
        got = await c.recv()  # main blocked, the other goroutine on a timer
        t = await gr.after(0.02).recv()  # main blocked on a timer's channel
        return [got, type(t)]

    assert grun(main, procs=procs) == ["woke", float]


# ------------------------------------------------------------------ main returns


def test_leftover_goroutines_closed_when_main_returns(procs: int) -> None:
    closed: list[str] = []

    async def in_recv(started: gr.Chan[None], block: gr.Chan[int]) -> None:
        try:
            await started.send(None)
            await block.recv()
        finally:
            closed.append("recv")

    async def in_sleep(started: gr.Chan[None]) -> None:
        try:
            await started.send(None)
            await gr.sleep(3600)
        finally:
            closed.append("sleep")

    async def in_select(started: gr.Chan[None], block: gr.Chan[int]) -> None:
        try:
            await started.send(None)
            await gr.select(block.recv, gr.Chan[int]().recv)
        finally:
            closed.append("select")

    async def spinning(started: gr.Chan[None]) -> None:
        try:
            await started.send(None)
            while True:
                await gr.gosched()
        finally:
            closed.append("gosched")

    async def main() -> None:
        started: gr.Chan[None] = gr.Chan()
        block: gr.Chan[int] = gr.Chan()
        gr.go(in_recv, started, block)
        gr.go(in_sleep, started)
        gr.go(in_select, started, block)
        gr.go(spinning, started)
        for _ in range(4):
            await started.recv()
        # Make sure the three blockers are really parked before main returns.
        deadline = time.monotonic() + 5
        while not all(s in gr.stack_dump() for s in ("[chan receive", "[sleep", "[select")):
            assert time.monotonic() < deadline, gr.stack_dump()
            await gr.gosched()
        assert closed == []

    grun(main, procs=procs)
    assert sorted(closed) == ["gosched", "recv", "select", "sleep"]


def test_leftover_finally_still_runs_as_its_goroutine(procs: int) -> None:
    """A leftover's finally block is goroutine code: goroutine_id() there is its own id."""
    seen: list[object] = []

    async def child(started: gr.Chan[int]) -> None:
        me = gr.goroutine_id()
        try:
            await started.send(me)
            await gr.Chan[int]().recv()
        finally:
            try:
                seen.append(gr.goroutine_id() == me)
            except RuntimeError as e:
                seen.append(e)

    async def main() -> None:
        started: gr.Chan[int] = gr.Chan()
        gr.go(child, started)
        await started.recv()

    grun(main, procs=procs)
    assert seen == [True]


def test_leftover_parked_inside_an_async_generator(procs: int, blocked: Blocked) -> None:
    """A goroutine parked in an ``async for`` over an async generator is
    taken off its wait queue before it is closed, like any other, and dumps
    show the generator's frames: the await chain goes through the
    generator's ``asend`` step. (Before, the chain stopped there; the
    goroutine's finally, closing the channel it waited on, readied itself
    and the run ended with an AssertionError in ``ready``.)"""
    closed: list[bool] = []
    dumps: list[str] = []

    async def items(ch: gr.Chan[int]) -> Any:
        while True:
            yield await ch.recv()

    async def consumer(ch: gr.Chan[int]) -> None:
        try:
            async for _ in items(ch):
                pass
        finally:
            ch.close()  # wakes the goroutines parked on ch: not this one
            closed.append(True)

    async def main() -> None:
        ch = gr.Chan[int]()
        gr.go(consumer, ch)
        await blocked(1)
        dumps.append(gr.stack_dump())

    grun(main, procs=procs)
    assert closed == [True]
    assert "test_leftover_parked_inside_an_async_generator.<locals>.items" in dumps[0]


# ------------------------------------------------------------------ introspection


def test_num_goroutine(procs: int, blocked: Blocked) -> None:
    async def parked(block: gr.Chan[int], done: gr.Chan[int]) -> None:
        await block.recv()
        await done.send(1)

    async def main() -> list[int]:
        counts = [gr.num_goroutine()]
        block: gr.Chan[int] = gr.Chan()
        done: gr.Chan[int] = gr.Chan(10)
        for _ in range(10):
            gr.go(parked, block, done)
        counts.append(gr.num_goroutine())
        await blocked(10)
        counts.append(gr.num_goroutine())
        block.close()
        for _ in range(10):
            await done.recv()
        deadline = time.monotonic() + 5
        while gr.num_goroutine() != 1:
            assert time.monotonic() < deadline, gr.stack_dump()
            await gr.gosched()
        counts.append(gr.num_goroutine())
        return counts

    assert grun(main, procs=procs) == [1, 11, 11, 1]


def test_goroutine_id_unique_main_is_1(procs: int) -> None:
    async def report(out: gr.Chan[int]) -> None:
        await out.send(gr.goroutine_id())

    async def main() -> tuple[int, list[int]]:
        out: gr.Chan[int] = gr.Chan()
        for _ in range(100):
            gr.go(report, out)
        ids = [await out.recv() for _ in range(100)]
        return gr.goroutine_id(), [i for i in ids if i is not None]

    me, ids = grun(main, procs=procs)
    assert me == 1
    assert len(ids) == 100
    assert len(set(ids)) == 100
    assert all(isinstance(i, int) and i > 1 for i in ids)


def test_goroutine_id_outside_goroutine() -> None:
    with pytest.raises(RuntimeError, match="not inside a goroutine"):
        gr.goroutine_id()


def test_gosched_lets_another_goroutine_run(procs: int) -> None:
    """Two goroutines take turns on a shared counter, yielding with gosched only."""
    turn = [0]
    rounds = 50
    limit = 200_000  # total gosched calls allowed before we call it starvation

    async def player(me: int, spins: list[int]) -> None:
        for r in range(rounds):
            while turn[0] != 2 * r + me:
                spins[0] += 1
                assert spins[0] < limit, "the other goroutine never ran"
                await gr.gosched()
            turn[0] += 1

    async def main() -> int:
        spins = [0]
        done: gr.Chan[None] = gr.Chan()

        async def other() -> None:
            await player(1, spins)
            await done.send(None)

        gr.go(other)
        await player(0, spins)
        await done.recv()
        return turn[0]

    assert grun(main, procs=procs) == 2 * rounds


def test_stack_dump(procs: int, blocked: Blocked) -> None:
    lines: list[int] = []
    ids: list[int] = []

    async def waits_in_recv(c: gr.Chan[int]) -> None:
        ids.append(gr.goroutine_id())
        await c.recv()

    async def main() -> str:
        c: gr.Chan[int] = gr.Chan()
        lines.append(sys._getframe().f_lineno + 1)
        gr.go(waits_in_recv, c)
        await blocked(1)
        dump = gr.stack_dump()
        await c.send(1)
        return dump

    dump = grun(main, procs=procs)
    blocks = dump.strip().split("\n\n")
    assert len(blocks) == 2, dump
    me, other = blocks
    # The caller itself: running, with its own frame.
    assert me.startswith("goroutine 1 [running]:"), dump
    assert "test_stack_dump.<locals>.main" in me
    assert f"{__file__}:" in me
    # The parked goroutine: wait reason, its stack down to the recv, where it was created.
    assert other.startswith(f"goroutine {ids[0]} [chan receive"), dump
    assert "waits_in_recv" in other
    assert "recv" in other
    assert "created by" in other
    assert f"{__file__}:{lines[0]}" in other


def test_stack_dump_of_generator_goroutines(procs: int, blocked: Blocked) -> None:
    """A goroutine started on a ``types.coroutine`` generator (``gr.go(ch.recv)``)
    runs inside a wrapper coroutine; dumps show the generator's frames, not
    the wrapper's, before and after it has started."""

    async def main() -> tuple[str, str]:
        c: gr.Chan[int] = gr.Chan()
        gr.go(c.recv)
        before = gr.stack_dump()  # goroutine 2 has not run yet
        await blocked(1)
        after = gr.stack_dump()
        await c.send(1)
        return before, after

    for dump in grun(main, procs=procs):
        blocks = dump.strip().split("\n\n")
        assert len(blocks) == 2, dump
        assert "  _generator_goroutine(...)" not in dump, dump
        assert "  Chan.recv(...)" in blocks[1], dump


def test_stack_dump_outside_run() -> None:
    with pytest.raises(RuntimeError, match="no goroutines runtime"):
        gr.stack_dump()


# ------------------------------------------------------------------ contextvars


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_contextvars_copied_at_go(procs: int) -> None:
    async def child(name: str, start: gr.Chan[None], out: gr.Chan[tuple[str, str, str]]) -> None:
        at_start = VAR.get()
        await start.recv()  # the parent changes its value meanwhile
        after_parent_set = VAR.get()
        VAR.set(name)
        await out.send((name, at_start, after_parent_set))

    async def main() -> dict[str, Any]:
        seen_in_main = VAR.get()  # run()'s caller's value
        VAR.set("parent")
        s1: gr.Chan[None] = gr.Chan()
        s2: gr.Chan[None] = gr.Chan()
        out: gr.Chan[tuple[str, str, str]] = gr.Chan()
        gr.go(child, "c1", s1, out)
        VAR.set("parent-later")
        gr.go(child, "c2", s2, out)
        VAR.set("parent-last")
        await s1.send(None)
        r1 = await out.recv()  # c1 has set its own value by now
        await s2.send(None)
        r2 = await out.recv()
        return {"caller": seen_in_main, "r1": r1, "r2": r2, "main_after": VAR.get()}

    token = VAR.set("caller")
    try:
        got = grun(main, procs=procs)
        assert VAR.get() == "caller"  # main's set did not leak to run()'s caller
    finally:
        VAR.reset(token)
    assert got["caller"] == "caller"
    # each child saw the parent's value at go() time, not later changes
    assert got["r1"] == ("c1", "parent", "parent")
    # c1's set did not leak into its sibling or its parent
    assert got["r2"] == ("c2", "parent-later", "parent-later")
    assert got["main_after"] == "parent-last"


# ------------------------------------------------------------------ threading.local


def test_threading_local_is_per_m_not_per_goroutine(procs: int) -> None:
    """SPEC: threading.local is per M. Within one step of a goroutine (no await)
    it is stable; a goroutine stepped next on the same M sees what the last one
    left there; the thread that called run() is not an M."""
    tl = threading.local()
    tl.who = "caller"

    async def b(c: gr.Chan[int], out: gr.Chan[tuple[int, str | None]]) -> None:
        await c.recv()
        await out.send((threading.get_ident(), getattr(tl, "who", None)))

    async def main() -> dict[str, Any]:
        res: dict[str, Any] = {"seen_caller": getattr(tl, "who", None)}
        tl.who = "main"
        ident = threading.get_ident()
        res["stable"] = tl.who == "main" and threading.get_ident() == ident
        c: gr.Chan[int] = gr.Chan()
        out: gr.Chan[tuple[int, str | None]] = gr.Chan()
        gr.go(b, c, out)
        tl.who = "main"
        ident = threading.get_ident()
        await c.send(1)  # hand-off: b runs next on this M (runnext)
        got = await out.recv()
        assert got is not None
        res["same_m"] = got[0] == ident
        res["b_saw"] = got[1]
        return res

    res = grun(main, procs=procs)
    assert tl.who == "caller"
    assert res["seen_caller"] is None  # Ms are other threads
    assert res["stable"]
    if procs == 1 or res["same_m"]:
        # Same M: b sees main's value, because the local belongs to the thread.
        assert res["same_m"]
        assert res["b_saw"] == "main"


# ------------------------------------------------------------------ foreign awaitables


def test_awaiting_asyncio_future_raises_type_error_in_goroutine(procs: int) -> None:
    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()

        async def main() -> list[str]:
            msgs = []
            try:
                await fut
            except TypeError as e:
                msgs.append(str(e))
            try:
                await asyncio.sleep(0)
            except TypeError as e:
                msgs.append(str(e))
            # The goroutine goes on working afterwards.
            c: gr.Chan[int] = gr.Chan(1)
            await c.send(3)
            msgs.append(str(await c.recv()))
            return msgs

        msgs = grun(main, procs=procs)
    finally:
        loop.close()
    assert len(msgs) == 3
    for m in msgs[:2]:
        assert "goroutine 1 awaited" in m
        assert "event loop" in m
    assert msgs[2] == "3"


# ------------------------------------------------------------------ gomaxprocs


@pytest.fixture
def restore_default_procs() -> Iterator[None]:
    saved = _run._default_procs
    try:
        yield
    finally:
        _run._default_procs = saved


def test_gomaxprocs_outside_run_sets_default(restore_default_procs: None) -> None:
    async def main() -> int:
        return gr.gomaxprocs()

    first = gr.gomaxprocs(3)
    assert isinstance(first, int) and first >= 1
    assert gr.gomaxprocs() == 3
    assert gr.gomaxprocs(2) == 3
    assert grun(main) == 2  # the default for the next run
    assert grun(main, procs=4) == 4  # an explicit procs wins
    assert gr.gomaxprocs() == 2  # and does not change the default


def test_gomaxprocs_inside_run_returns_previous(procs: int, restore_default_procs: None) -> None:
    async def main() -> list[int]:
        return [gr.gomaxprocs(), gr.gomaxprocs(2), gr.gomaxprocs(), gr.gomaxprocs(procs)]

    before = gr.gomaxprocs()
    assert grun(main, procs=procs) == [procs, procs, 2, 2]
    assert gr.gomaxprocs() == before  # changes inside a run are the run's own


def test_gomaxprocs_bad_values(restore_default_procs: None) -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="procs must be >= 1"):
            gr.gomaxprocs(bad)
    for wrong in (1.5, "2", True):
        with pytest.raises(TypeError, match="procs must be an int"):
            gr.gomaxprocs(wrong)  # type: ignore[arg-type]

    async def main() -> int:
        with pytest.raises(ValueError, match="procs must be >= 1"):
            gr.gomaxprocs(0)
        with pytest.raises(TypeError, match="procs must be an int"):
            gr.gomaxprocs(2.0)  # type: ignore[arg-type]
        return gr.gomaxprocs()

    assert grun(main, procs=2) == 2


def test_gomaxprocs_live_resize_under_load(procs: int) -> None:
    """Shrink and grow the Ps while 100 goroutines keep exchanging values."""
    other = 1 if procs == 4 else 4
    pairs, n, every = 50, 200, 20

    async def sender(c: gr.Chan[int]) -> None:
        for i in range(n):
            await c.send(i)

    async def receiver(c: gr.Chan[int], progress: gr.Chan[None], out: gr.Chan[int]) -> None:
        total = 0
        for i in range(n):
            v = await c.recv()
            assert v == i
            total += v
            if i % every == every - 1:
                await progress.send(None)
        await out.send(total)

    async def main() -> list[Any]:
        progress: gr.Chan[None] = gr.Chan()
        out: gr.Chan[int] = gr.Chan()
        for j in range(pairs):
            c: gr.Chan[int] = gr.Chan(j % 3)  # unbuffered and buffered
            gr.go(sender, c)
            gr.go(receiver, c, progress, out)
        steps = pairs * n // every
        olds = []
        for k in range(steps):
            if k == steps // 3:
                olds.append(gr.gomaxprocs(other))
            elif k == 2 * steps // 3:
                olds.append(gr.gomaxprocs(procs))
            await progress.recv()
        totals = [await out.recv() for _ in range(pairs)]
        return [olds, totals, gr.gomaxprocs()]

    olds, totals, final = grun(main, procs=procs)
    assert olds == [procs, other]
    assert totals == [n * (n - 1) // 2] * pairs
    assert final == procs


# ------------------------------------------------------------------ Ctrl-C


_OTHERS = {
    # keeps the runtime from being a deadlock
    "sleeper": "async def other():\n    await gr.sleep(3600)\n",
    # an M that never comes back to its schedule loop
    "busy": "async def other():\n    while True:\n        pass\n",
}


@pytest.mark.parametrize("other", sorted(_OTHERS))
def test_ctrl_c_raises_keyboard_interrupt(procs: int, other: str) -> None:
    """SIGINT reaches run() while main is blocked on a channel forever."""
    script = (
        "import goroutines as gr\n"
        + _OTHERS[other]
        + textwrap.dedent(
            f"""
            async def main():
                gr.go(other)
                print("ready", flush=True)
                await gr.Chan().recv()

            gr.run(main, procs={procs})
            """
        )
    )
    proc, elapsed = signal_when_ready(script, signal.SIGINT)
    err = proc.stderr
    assert "KeyboardInterrupt" in err
    assert "Traceback" in err
    assert proc.returncode != 0
    assert elapsed < 5
