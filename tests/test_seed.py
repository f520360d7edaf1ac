"""Seeded scheduling and the shuffle debug mode (finding the next bugs).

One seed (``run(seed=)`` or ``GOROUTINES_SEED``) drives every random choice
of the runtime; with ``GOROUTINES_DEBUG=shuffle=1`` the order in which Gs are
picked is perturbed too. At ``procs=1`` a program that does not depend on
real time then replays exactly under its seed.
"""

from __future__ import annotations

import pytest

import goroutines as gr
from helpers import grun


async def _selects(n: int) -> list[int]:
    """n selects over four ready channels: the list of cases taken."""
    chans: list[gr.Chan[int]] = [gr.Chan(n) for _ in range(4)]
    for c in chans:
        for i in range(n):
            await c.send(i)
    picks = []
    for _ in range(n):
        i, _v = await gr.select(*(c.recv for c in chans))
        picks.append(i)
    return picks


async def _order(n: int) -> list[int]:
    """n goroutines that each yield and ping through channels: the order in
    which they finish."""
    done: gr.Chan[int] = gr.Chan(n)
    relay: gr.Chan[int] = gr.Chan()

    async def worker(k: int) -> None:
        await gr.gosched()
        if k % 3 == 0:
            await relay.send(k)
        elif k % 3 == 1:
            await relay.recv()
        await done.send(k)

    for k in range(n):
        gr.go(worker, k)
    out = []
    for _ in range(n):
        v = await done.recv()
        assert v is not None
        out.append(v)
    return out


def test_same_seed_same_select_choices() -> None:
    a = grun(_selects, 200, procs=1, seed=7)
    b = grun(_selects, 200, procs=1, seed=7)
    c = grun(_selects, 200, procs=1, seed=8)
    assert a == b
    assert a != c
    assert sorted(set(a)) == [0, 1, 2, 3]


def test_seed_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOROUTINES_SEED", "0x2a")
    a = grun(_selects, 100, procs=1)
    assert a == grun(_selects, 100, procs=1, seed=42)


def test_shuffle_mode_perturbs_and_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = grun(_order, 60, procs=1, seed=1)
    assert plain == grun(_order, 60, procs=1, seed=2)  # Go's order: no choice in it
    monkeypatch.setenv("GOROUTINES_DEBUG", "shuffle=1")
    a = grun(_order, 60, procs=1, seed=1)
    assert sorted(a) == list(range(60))  # every goroutine finished: nothing lost
    assert a == grun(_order, 60, procs=1, seed=1)  # replays under its seed
    assert a != plain  # the order was perturbed
    assert a != grun(_order, 60, procs=1, seed=3)  # and differs by seed


def test_shuffle_mode_keeps_programs_correct(procs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOROUTINES_DEBUG", "shuffle=1")
    assert sorted(grun(_order, 90, procs=procs)) == list(range(90))


def test_failure_says_how_to_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        await gr.Chan[int]().recv()

    with pytest.raises(gr.Deadlock) as ei:
        gr.run(main, procs=1, seed=1234)
    assert "GOROUTINES_SEED=1234" in "\n".join(ei.value.__notes__)
    monkeypatch.setenv("GOROUTINES_DEBUG", "shuffle=1")
    with pytest.raises(gr.Deadlock) as ei:
        gr.run(main, procs=1)
    assert "in shuffle mode; replay with GOROUTINES_SEED=" in "\n".join(ei.value.__notes__)


def test_bad_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        pass

    with pytest.raises(TypeError, match="seed must be an int"):
        gr.run(main, seed="1")  # type: ignore[call-overload]
    monkeypatch.setenv("GOROUTINES_SEED", "abc")
    with pytest.raises(ValueError, match="GOROUTINES_SEED must be an integer"):
        gr.run(main)
