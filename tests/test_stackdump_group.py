"""``gr.stack_dump(group=True)``: goroutines with the same wait reason, stack
and creation site shown once, under their count (pprof's goroutine profile,
``debug=1``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from goroutines._runtime._goroutine import WaitReason
from helpers import grun

Blocked = Callable[..., Awaitable[None]]


def headers(dump: str) -> list[str]:
    """The first line of each block of a dump."""
    return [block.split("\n", 1)[0] for block in dump.strip().split("\n\n")]


async def parked_recv(c: gr.Chan[int]) -> None:
    await c.recv()


async def sleeper() -> None:
    await gr.sleep(30)


def test_grouped_dump(procs: int, blocked: Blocked) -> None:
    here = __file__

    async def main() -> tuple[str, str, str, str, str]:
        c: gr.Chan[int] = gr.Chan()
        for _ in range(100):
            gr.go(parked_recv, c)
        line = sys._getframe().f_lineno + 2
        for _ in range(3):
            gr.go(sleeper)
        await blocked(103)
        first, again = [gr.stack_dump(group=True) for _ in range(2)]  # from the same line
        # White-box: long waits do not split a group, another wait reason does.
        sched = _scheduler.current
        assert sched is not None
        gs = sorted((g for g in sched.allgs.values() if g.id != 1), key=lambda g: g.id)
        for g in gs[:50]:
            g.wait_since -= 600
        g50 = gs[50]
        g50.wait_reason = WaitReason.SELECT
        try:
            plain = gr.stack_dump()
            regrouped = gr.stack_dump(group=True)
        finally:
            g50.wait_reason = WaitReason.CHAN_RECEIVE
        c.close()
        return first, again, plain, regrouped, f"{here}:{line}"

    first, again, plain, regrouped, sleeper_site = grun(main, procs=procs)
    assert first == again
    blocks = first.strip().split("\n\n")
    assert headers(first) == [
        "goroutine profile: total 104",
        "100 goroutines: [chan receive]",
        "3 goroutines: [sleep]",
        "1 goroutine: [running]",
    ], first
    recv, sleep, me = blocks[1:]
    assert "  parked_recv(...)\n" in recv and "recv(...)" in recv
    assert f"created by main\n      {__file__}:" in recv
    assert "  sleeper(...)\n" in sleep and f"      {sleeper_site}" in sleep
    assert "  test_grouped_dump.<locals>.main(...)\n" in me
    # The plain dump shows each goroutine, with its wait time.
    assert plain.count("\n\ngoroutine ") == 103
    assert plain.count(", 10 minutes]:") == 50
    # Equal counts keep the order of the lowest goroutine id: main (1) first.
    assert headers(regrouped) == [
        "goroutine profile: total 104",
        "99 goroutines: [chan receive]",
        "3 goroutines: [sleep]",
        "1 goroutine: [running]",
        "1 goroutine: [select]",
    ], regrouped


def test_group_false_is_the_plain_dump(blocked: Blocked) -> None:
    async def main() -> tuple[str, str]:
        c: gr.Chan[int] = gr.Chan()
        gr.go(parked_recv, c)
        await blocked(1)
        dumps = gr.stack_dump(), gr.stack_dump(group=False)
        c.close()
        return dumps

    plain, explicit = grun(main, procs=1)
    assert plain == explicit
    assert plain.startswith("goroutine 1 [running]:\n")


def test_group_must_be_a_bool() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="group must be a bool"):
            gr.stack_dump(group=1)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            gr.stack_dump(True)  # type: ignore[misc]

    grun(main, procs=1)


def test_grouped_dump_is_fast() -> None:
    """A thousand goroutines: one pass, a dict of stacks."""

    async def main() -> float:
        c: gr.Chan[int] = gr.Chan()
        for _ in range(1000):
            gr.go(parked_recv, c)
        await gr.testing.wait()
        t0 = time.perf_counter()
        dump = gr.stack_dump(group=True)
        took = time.perf_counter() - t0
        assert "1000 goroutines: [chan receive]" in dump
        c.close()
        return took

    assert grun(main, procs=1) < 1.0
