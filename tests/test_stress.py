"""Stress: 10 000 goroutines through chains of channels and selects (SPEC §1, §3).

Run at procs 1, 2, 4 and 8 with ``sys.setswitchinterval(1e-6)``, so the GIL
changes hands between Ms as often as CPython allows and every unguarded
read-modify-write in the runtime gets its chance to race. Each test checks
that no value is lost or duplicated and that every goroutine ends
(``num_goroutine()`` is back to 1 before main returns). ``grun`` is
``gr.run`` with a watchdog that turns a hang into a failure with a dump.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import goroutines as gr
import helpers

pytestmark = pytest.mark.stress

PROCS = [1, 2, 4, 8]


def grun(main: Any, *args: Any, procs: int | None = None, timeout: float = 30.0) -> Any:
    return helpers.grun(main, *args, procs=procs, timeout=timeout)


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


async def all_goroutines_ended(timeout: float = 10.0) -> None:
    """Wait until main is the only goroutine left (others may be finishing their last step)."""
    deadline = time.monotonic() + timeout
    while gr.num_goroutine() != 1:
        if time.monotonic() > deadline:
            raise AssertionError(f"{gr.num_goroutine() - 1} goroutines never ended")
        await gr.gosched()


# ------------------------------------------------------------------ chains


async def stage_range(left: gr.Chan[Any], right: gr.Chan[Any]) -> None:
    """Plain receive / send."""
    async for v in left:
        await right.send(v)
    right.close()


async def stage_select(left: gr.Chan[Any], right: gr.Chan[Any], never: gr.Chan[Any]) -> None:
    """Receive and send through selects over two channels (one never ready)."""
    while True:
        i, r = await gr.select(never.recv, left.recv_ok)
        assert i == 1
        v, ok = r
        if not ok:
            break
        i, _ = await gr.select((right.send, v), never.recv, None)
        assert i == 0
    right.close()


async def stage_default(left: gr.Chan[Any], right: gr.Chan[Any]) -> None:
    """Try without blocking first (select with default), block only if that fails."""
    while True:
        i, r = await gr.select(left.recv_ok, gr.default)
        if i == 1:
            i, r = await gr.select(left.recv_ok)
        v, ok = r
        if not ok:
            break
        i, _ = await gr.select((right.send, v), gr.default)
        if i == 1:
            await right.send(v)
    right.close()


def build_chain(length: int, first: gr.Chan[Any], out: gr.Chan[Any], never: gr.Chan[Any]) -> None:
    """``length`` stages from ``first`` to ``out``, mixing stage kinds and capacities."""
    left = first
    for k in range(length):
        right: gr.Chan[Any] = out if k == length - 1 else gr.Chan((0, 0, 1, 3)[k % 4])
        kind = k % 3
        if kind == 0:
            gr.go(stage_range, left, right)
        elif kind == 1:
            gr.go(stage_select, left, right, never)
        else:
            gr.go(stage_default, left, right)
        left = right


@pytest.mark.parametrize("procs", PROCS)
def test_chains(procs: int) -> None:
    """100 chains of 100 stages (10 000 goroutines); each value crosses one chain."""
    nchains, length, nvalues = 100, 100, 10

    async def feed(c: gr.Chan[Any], chain: int) -> None:
        for s in range(nvalues):
            await c.send((chain, s))
        c.close()

    async def main() -> dict[int, list[int]]:
        never: gr.Chan[Any] = gr.Chan()
        outs: list[gr.Chan[Any]] = []
        for ch in range(nchains):
            first: gr.Chan[Any] = gr.Chan()
            out: gr.Chan[Any] = gr.Chan(ch % 2)
            build_chain(length, first, out, never)
            outs.append(out)
            gr.go(feed, first, ch)
        got: dict[int, list[int]] = {}
        # Drain every chain's output through one select over four chains at a time.
        for base in range(0, nchains, 4):
            group = outs[base : base + 4]
            live = set(range(len(group)))
            while live:
                i, (v, ok) = await gr.select(
                    *[g.recv_ok if j in live else None for j, g in enumerate(group)]
                )
                if not ok:
                    live.discard(i)
                    continue
                chain, seq = v
                assert chain == base + i
                got.setdefault(chain, []).append(seq)
        await all_goroutines_ended()
        return got

    got = grun(main, procs=procs)
    assert sorted(got) == list(range(nchains))
    for chain, seqs in got.items():
        assert seqs == list(range(nvalues)), f"chain {chain}: {seqs}"  # FIFO, none lost


@pytest.mark.parametrize("procs", PROCS)
def test_one_long_chain(procs: int) -> None:
    """One chain of 10 000 stages: a deep pipeline, values strictly in order."""
    length, nvalues = 10_000, 5

    async def main() -> list[Any]:
        first: gr.Chan[Any] = gr.Chan()
        out: gr.Chan[Any] = gr.Chan()
        build_chain(length, first, out, gr.Chan())
        got: list[Any] = []
        for v in range(nvalues):
            # Keep a value in flight while feeding the next one.
            i, r = await gr.select((first.send, v), out.recv)
            while i == 1:
                got.append(r)
                i, r = await gr.select((first.send, v), out.recv)
        first.close()
        async for r in out:
            got.append(r)
        await all_goroutines_ended()
        return got

    assert grun(main, procs=procs) == list(range(nvalues))


# ------------------------------------------------------------------ fan-in / fan-out


@pytest.mark.parametrize("procs", PROCS)
def test_fan_in_fan_out_selects(procs: int) -> None:
    """10 000 senders race into two channels (one buffered) through selects,
    some with default; 8 receivers take from both with selects. Every id
    arrives exactly once."""
    nsenders, nreceivers = 10_000, 8

    async def sender(i: int, a: gr.Chan[int], b: gr.Chan[int]) -> None:
        if i % 3 == 0:
            k, _ = await gr.select((a.send, i), (b.send, i), gr.default)
            if k != 2:
                return
        await gr.select((a.send, i), None, (b.send, i))

    async def receiver(a: gr.Chan[int], b: gr.Chan[int], out: gr.Chan[list[int]]) -> None:
        got: list[int] = []
        closed = 0
        cases: list[Any] = [a.recv_ok, b.recv_ok]
        while closed < 2:
            if len(got) % 2:
                k, r = await gr.select(*cases, gr.default)
                if k == 2:
                    k, r = await gr.select(*cases)
            else:
                k, r = await gr.select(*cases)
            v, ok = r
            if not ok:
                cases[k] = None  # Go's nil channel: disable the drained case
                closed += 1
                continue
            got.append(v)
        await out.send(got)

    async def closer(a: gr.Chan[int], b: gr.Chan[int], done: gr.Chan[None]) -> None:
        for _ in range(nsenders):
            await done.recv()
        a.close()
        b.close()

    async def main() -> Counter[int]:
        a: gr.Chan[int] = gr.Chan()
        b: gr.Chan[int] = gr.Chan(64)
        done: gr.Chan[None] = gr.Chan(128)
        out: gr.Chan[list[int]] = gr.Chan()

        async def tracked(i: int) -> None:
            await sender(i, a, b)
            await done.send(None)

        for r in range(nreceivers):
            gr.go(receiver, a, b, out)
            for i in range(r, nsenders, nreceivers):
                gr.go(tracked, i)
        gr.go(closer, a, b, done)
        counts: Counter[int] = Counter()
        for _ in range(nreceivers):
            got = await out.recv()
            assert got is not None
            counts.update(got)
        await all_goroutines_ended()
        return counts

    for _ in range(2):
        counts = grun(main, procs=procs)
        assert sorted(counts) == list(range(nsenders)), "values lost"
        dups = [v for v, n in counts.items() if n != 1]
        assert dups == [], f"values delivered more than once: {dups[:10]}"


# ------------------------------------------------------------------ the bubble


@pytest.mark.parametrize("procs", PROCS)
def test_virtual_clock_under_load(procs: int) -> None:
    """2000 goroutines each sleep a seeded random series of virtual
    durations, handing a token around a ring between sleeps, while main
    alternates testing.wait() with its own sleeps: every wake-up must read
    exactly the time its sleep was due (the clock never runs ahead of a
    timer, nor stands still past one), and nothing is lost."""
    import random

    n, rounds = 2000, 10

    async def main() -> int:
        rng = random.Random(procs)
        plans = [[rng.randint(1, 50) / 4 for _ in range(rounds)] for _ in range(n)]
        wrong: list[str] = []
        done: gr.Chan[int] = gr.Chan(n)
        ring: list[gr.Chan[int]] = [gr.Chan(1) for _ in range(n)]

        async def sleeper(i: int, plan: list[float]) -> None:
            for d in plan:
                t = gr.monotonic() + d
                await gr.sleep(d)
                if gr.monotonic() != t:
                    wrong.append(f"g{i}: woke at {gr.monotonic() - t:+} from its time")
                await ring[(i + 1) % n].send(i)  # cap 1: someone takes it below
                await ring[i].recv()
            await done.send(i)

        for i in range(n):
            gr.go(sleeper, i, plans[i])
        for _ in range(20):
            await gr.testing.wait()
            await gr.sleep(3.0)
        got = {await done.recv() for _ in range(n)}
        assert got == set(range(n))
        assert wrong == [], wrong[:5]
        await all_goroutines_ended()
        return len(got)

    assert helpers.grun_bubble(main, procs=procs, timeout=60.0) == n
