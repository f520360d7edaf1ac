"""Async generators dropped half-way (``_runtime._asyncgen``): their
``aclose()`` runs as a goroutine, so a ``finally`` in them may wait."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest

import goroutines as gr
from helpers import grun


def test_break_out_of_async_for_closes_the_generator_in_a_goroutine(procs: int) -> None:
    """The generator's finally waits (a sleep, then an unbuffered send that
    main receives): it runs to the end, in a goroutine of its own, and the
    runtime does not call it a deadlock while main waits for it. (Before,
    CPython threw GeneratorExit into it on the spot: "async generator
    ignored GeneratorExit", and main waited for ever.)"""

    async def main() -> list[Any]:
        done = gr.Chan[str]()
        seen: list[Any] = []

        async def numbers() -> Any:
            try:
                for i in range(10):
                    yield i
            finally:
                await gr.sleep(0.01)
                seen.append(gr.goroutine_id())
                await done.send("closed")

        async for i in numbers():
            if i == 2:
                break
        gc.collect()  # no cycle holds it, but be sure on any interpreter
        seen.append(await done.recv())
        return seen

    gid, msg = grun(main, procs=procs)
    assert msg == "closed"
    assert gid != 1  # not main's goroutine: its own


def test_a_failing_finally_is_logged_not_raised(
    procs: int, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> str:
        async def gen() -> Any:
            try:
                yield 1
                yield 2
            finally:
                await gr.sleep(0)
                raise ValueError("cleanup failed")

        async for _ in gen():
            break
        gc.collect()
        await gr.sleep(0.05)
        return "main went on"

    with caplog.at_level(logging.ERROR, logger="goroutines.asyncgen"):
        assert grun(main, procs=procs) == "main went on"
    [rec] = [r for r in caplog.records if r.name == "goroutines.asyncgen"]
    assert "Exception ignored while finalizing" in rec.getMessage()
    assert "aclosing" in rec.getMessage()
    assert rec.exc_info is not None and isinstance(rec.exc_info[1], ValueError)


def test_dropped_at_the_end_of_the_run_is_closed_as_a_leftover(procs: int) -> None:
    """Dropped by a goroutine's finally while the run closes: its aclose
    goroutine is closed with the rest (a finally that does not wait runs)."""
    closed: list[str] = []

    async def main() -> None:
        async def gen() -> Any:
            try:
                yield 1
                yield 2
            finally:
                closed.append("gen")

        async def holder(started: gr.Chan[None]) -> None:
            agen = gen()
            await agen.__anext__()
            await started.send(None)
            try:
                await gr.Chan[None]().recv()  # until the run closes us
            finally:
                del agen
                gc.collect()

        started = gr.Chan[None]()
        gr.go(holder, started)
        await started.recv()

    grun(main, procs=procs)
    assert closed == ["gen"]


def test_dropped_after_the_run_is_closed_on_the_spot(caplog: pytest.LogCaptureFixture) -> None:
    kept: list[Any] = []
    closed: list[str] = []

    async def gen(wait: bool) -> Any:
        try:
            yield 1
            yield 2
        finally:
            closed.append(f"gen wait={wait}")
            if wait:
                await gr.sleep(1)

    async def main() -> None:
        for wait in (False, True):
            agen = gen(wait)
            await agen.__anext__()
            kept.append(agen)

    grun(main)
    with caplog.at_level(logging.ERROR, logger="goroutines.asyncgen"):
        kept.clear()
        gc.collect()
    assert sorted(closed) == ["gen wait=False", "gen wait=True"]
    [rec] = [r for r in caplog.records if r.name == "goroutines.asyncgen"]
    assert rec.exc_info is not None and isinstance(rec.exc_info[1], RuntimeError)


def test_dropped_while_every_m_stays_busy(procs: int) -> None:
    """No M parks (main spins with gosched): sysmon starts the aclose goroutine."""

    async def main() -> float:
        closed: list[bool] = []

        async def gen() -> Any:
            try:
                yield 1
                yield 2
            finally:
                closed.append(True)

        async for _ in gen():
            break
        gc.collect()
        t0 = gr.monotonic()
        while not closed:
            assert gr.monotonic() - t0 < 5, "the generator was never closed"
            await gr.gosched()
        return gr.monotonic() - t0

    assert grun(main, procs=procs) < 5
