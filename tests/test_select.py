"""select (SPEC §2 select, §3): cases, results, fairness, one winner, errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import goroutines as gr

Blocked = Callable[..., Awaitable[None]]


# -- each kind of case -------------------------------------------------------------


def test_recv_case_returns_index_and_value(procs: int) -> None:
    async def main() -> tuple[int, Any]:
        a: gr.Chan[int] = gr.Chan(1)
        b: gr.Chan[int] = gr.Chan(1)
        await b.send(7)
        return await gr.select(a.recv, b.recv)

    assert gr.run(main, procs=procs) == (1, 7)


def test_recv_ok_case_returns_value_and_ok(procs: int) -> None:
    async def main() -> list[tuple[int, Any]]:
        a: gr.Chan[int] = gr.Chan(1)
        await a.send(3)
        first = await gr.select(None, a.recv_ok)
        a.close()
        return [first, await gr.select(None, a.recv_ok)]

    assert gr.run(main, procs=procs) == [(1, (3, True)), (1, (None, False))]


def test_send_case_returns_none_and_delivers(procs: int) -> None:
    async def main() -> tuple[tuple[int, Any], int | None]:
        a: gr.Chan[int] = gr.Chan(1)
        r = await gr.select(gr.default, (a.send, 5))
        return r, await a.recv()

    assert gr.run(main, procs=procs) == ((1, None), 5)


def test_send_case_to_parked_receiver(procs: int, blocked: Blocked) -> None:
    async def main() -> tuple[tuple[int, Any], int | None]:
        a: gr.Chan[int] = gr.Chan()
        out: gr.Chan[int | None] = gr.Chan(1)

        async def rx() -> None:
            await out.send(await a.recv())

        gr.go(rx)
        await blocked(1)
        r = await gr.select((a.send, 9), gr.default)
        return r, await out.recv()

    assert gr.run(main, procs=procs) == ((0, None), 9)


def test_default_taken_when_nothing_ready(procs: int) -> None:
    async def main() -> list[tuple[int, Any]]:
        a: gr.Chan[int] = gr.Chan()
        b: gr.Chan[int] = gr.Chan(1)
        await b.send(0)  # b full: a send to it would block
        return [
            await gr.select(a.recv, (b.send, 1), gr.default),
            await gr.select(gr.default, a.recv_ok),
            await gr.select(gr.default),
            await gr.select(None, None, gr.default),
        ]

    assert gr.run(main, procs=procs) == [(2, None), (0, None), (0, None), (2, None)]


def test_default_not_taken_when_a_case_is_ready(procs: int) -> None:
    async def main() -> None:
        a: gr.Chan[int] = gr.Chan(1)
        for i in range(200):
            await a.send(i)
            assert await gr.select(gr.default, a.recv) == (1, i)

    gr.run(main, procs=procs)


def test_none_cases_are_skipped(procs: int) -> None:
    async def main() -> tuple[int, Any]:
        a: gr.Chan[int] = gr.Chan(1)
        await a.send(4)
        return await gr.select(None, None, a.recv, None)

    assert gr.run(main, procs=procs) == (2, 4)


def test_blocking_select_woken_by_later_send(procs: int, blocked: Blocked) -> None:
    async def main() -> Any:
        a: gr.Chan[int] = gr.Chan()
        b: gr.Chan[int] = gr.Chan()
        out: gr.Chan[tuple[int, Any]] = gr.Chan(1)

        async def sel() -> None:
            await out.send(await gr.select(a.recv, None, b.recv_ok))

        gr.go(sel)
        await blocked(1)
        await b.send(11)
        return await out.recv()

    assert gr.run(main, procs=procs) == (2, (11, True))


def test_blocking_select_send_taken_by_later_receiver(procs: int, blocked: Blocked) -> None:
    async def main() -> tuple[Any, Any]:
        a: gr.Chan[int] = gr.Chan()
        b: gr.Chan[int] = gr.Chan()
        out: gr.Chan[tuple[int, Any]] = gr.Chan(1)

        async def sel() -> None:
            await out.send(await gr.select((a.send, 1), (b.send, 2)))

        gr.go(sel)
        await blocked(1)
        v = await b.recv()
        return v, await out.recv()

    assert gr.run(main, procs=procs) == (2, (1, None))


# -- closed channels ------------------------------------------------------------------


@pytest.mark.parametrize("cap", [0, 1])
def test_recv_on_closed_channel(procs: int, cap: int) -> None:
    async def main() -> list[tuple[int, Any]]:
        a: gr.Chan[int] = gr.Chan(cap)
        a.close()
        return [await gr.select(a.recv), await gr.select(None, a.recv_ok, gr.default)]

    assert gr.run(main, procs=procs) == [(0, None), (1, (None, False))]


def test_parked_select_woken_by_close(procs: int, blocked: Blocked) -> None:
    async def main() -> Counter[Any]:
        a: gr.Chan[int] = gr.Chan()
        b: gr.Chan[int] = gr.Chan()
        out: gr.Chan[Any] = gr.Chan(4)

        async def sel(case: Any) -> None:
            await out.send(await gr.select(b.recv, case))

        gr.go(sel, a.recv)
        gr.go(sel, a.recv_ok)
        await blocked(2)
        a.close()
        return Counter([await out.recv(), await out.recv()])

    assert gr.run(main, procs=procs) == Counter({(1, None): 1, (1, (None, False)): 1})


@pytest.mark.parametrize("cap", [0, 1])
def test_send_case_on_closed_channel_raises(procs: int, cap: int) -> None:
    async def main() -> None:
        a: gr.Chan[int] = gr.Chan(cap)
        b: gr.Chan[int] = gr.Chan()
        a.close()
        for _ in range(20):  # whatever the poll order, the send case is ready: it panics
            with pytest.raises(gr.ChanClosed, match="send on closed channel"):
                await gr.select(b.recv, (a.send, 1), gr.default)
        # The locks were released: both channels still work.
        assert await gr.select(a.recv_ok) == (0, (None, False))
        assert await gr.select(b.recv, gr.default) == (1, None)

    gr.run(main, procs=procs)


def test_parked_send_case_raises_when_closed(procs: int, blocked: Blocked) -> None:
    async def main() -> str | None:
        a: gr.Chan[int] = gr.Chan()
        b: gr.Chan[int] = gr.Chan()
        out: gr.Chan[str] = gr.Chan(1)

        async def sel() -> None:
            try:
                await gr.select(b.recv, (a.send, 1))
            except gr.ChanClosed as e:
                await out.send(f"ChanClosed: {e}")
            else:
                await out.send("no error")

        gr.go(sel)
        await blocked(1)
        a.close()
        return await out.recv()

    assert gr.run(main, procs=procs) == "ChanClosed: send on closed channel"


# -- blocking forever -------------------------------------------------------------------


def test_select_with_no_cases_deadlocks(procs: int) -> None:
    async def main() -> None:
        await gr.select()

    with pytest.raises(gr.Deadlock, match="all goroutines are asleep") as info:
        gr.run(main, procs=procs)
    assert "select (no cases)" in str(info.value)


def test_select_with_only_none_cases_deadlocks(procs: int) -> None:
    async def main() -> None:
        await gr.select(None, None)

    with pytest.raises(gr.Deadlock, match="all goroutines are asleep"):
        gr.run(main, procs=procs)


def test_blocked_select_with_nobody_else_deadlocks(procs: int) -> None:
    async def main() -> None:
        a: gr.Chan[int] = gr.Chan()
        await gr.select(a.recv, (a.send, 1))

    with pytest.raises(gr.Deadlock, match="all goroutines are asleep") as info:
        gr.run(main, procs=procs)
    assert "select" in str(info.value)


# -- malformed cases -------------------------------------------------------------------


def _bad_cases(ch: gr.Chan[int]) -> list[tuple[tuple[Any, ...], str]]:
    return [
        ((ch.recv, lambda: None), r"case 1.*expected ch.recv"),
        ((print,), r"case 0.*expected ch.recv"),
        ((ch.recv(),), r"case 0"),
        (((ch.send, 1, 2),), r"case 0.*3-tuple"),
        (((ch.send,),), r"case 0.*1-tuple"),
        (((ch.recv, 1),), r"case 0.*ch.send"),
        (((ch.recv_ok, 1),), r"case 0.*ch.send"),
        ((gr.default, None, gr.default), r"more than one default"),
        ((None, ch.send), r"case 1.*needs its value"),
        ((ch,), r"case 0"),
        (([].append,), r"case 0"),
        ((1,), r"case 0"),
    ]


@pytest.mark.parametrize("k", range(12))
def test_malformed_case_is_type_error_naming_the_problem(procs: int, k: int) -> None:
    async def main() -> None:
        ch: gr.Chan[int] = gr.Chan(1)
        every = _bad_cases(ch)
        cases, pattern = every[k]
        with pytest.raises(TypeError, match=pattern):
            await gr.select(*cases)
        for others, _ in every:  # a stray awaitable in a case ("never awaited" otherwise)
            for c in others:
                if hasattr(c, "close") and not isinstance(c, gr.Chan):
                    c.close()
        # Nothing was locked or enqueued: the channel still works.
        await ch.send(1)
        assert await ch.recv() == 1

    gr.run(main, procs=procs)


# -- the same channel twice ----------------------------------------------------------------


def test_same_channel_in_two_recv_cases(procs: int) -> None:
    async def main() -> Counter[int]:
        a: gr.Chan[int] = gr.Chan(1)
        seen: Counter[int] = Counter()
        for i in range(200):
            await a.send(i)
            idx, v = await gr.select(a.recv, a.recv_ok)
            assert v == (i if idx == 0 else (i, True))
            seen[idx] += 1
        return seen

    seen = gr.run(main, procs=procs)
    assert seen[0] > 0 and seen[1] > 0


def test_same_channel_send_and_recv_cases(procs: int, blocked: Blocked) -> None:
    async def main() -> None:
        a: gr.Chan[int] = gr.Chan(1)
        # Empty buffer: only the send can proceed.
        assert await gr.select(a.recv, (a.send, 1)) == (1, None)
        # Full buffer: only the receive can proceed.
        assert await gr.select(a.recv, (a.send, 2)) == (0, 1)

        u: gr.Chan[int] = gr.Chan()
        out: gr.Chan[tuple[int, Any]] = gr.Chan(1)

        async def sel() -> None:
            await out.send(await gr.select(u.recv, (u.send, 5)))

        gr.go(sel)
        await blocked(1)  # parked on both queues of u; it cannot match itself
        assert await u.recv() == 5
        assert await out.recv() == (1, None)
        # Its dead recv waiter must not take a later value.
        assert await gr.select((u.send, 6), gr.default) == (1, None)

    gr.run(main, procs=procs)


def test_parked_select_with_same_channel_twice_fires_once(procs: int, blocked: Blocked) -> None:
    async def main() -> None:
        a: gr.Chan[int] = gr.Chan()
        out: gr.Chan[tuple[int, Any]] = gr.Chan(2)

        async def sel() -> None:
            await out.send(await gr.select(a.recv, a.recv))

        gr.go(sel)
        await blocked(1)
        await a.send(1)
        assert await out.recv() in ((0, 1), (1, 1))
        # The second sudog of that select is dead: nobody receives 2.
        assert await gr.select((a.send, 2), gr.default) == (1, None)
        assert len(out) == 0

    gr.run(main, procs=procs)


# -- fairness --------------------------------------------------------------------------


def test_ready_recv_cases_chosen_uniformly(procs: int) -> None:
    n = 2000

    async def main() -> Counter[int]:
        a: gr.Chan[int] = gr.Chan(1)
        b: gr.Chan[int] = gr.Chan(1)
        await a.send(0)
        await b.send(0)
        seen: Counter[int] = Counter()
        for _ in range(n):
            i, _v = await gr.select(a.recv, b.recv)
            seen[i] += 1
            await (a if i == 0 else b).send(0)  # refill: both stay ready
        return seen

    seen = gr.run(main, procs=procs)
    assert 0.35 * n < seen[0] < 0.65 * n, seen
    assert seen[0] + seen[1] == n


def test_ready_cases_of_all_kinds_chosen_uniformly(procs: int) -> None:
    n = 3000

    async def main() -> Counter[int]:
        a: gr.Chan[int] = gr.Chan(1)
        b: gr.Chan[int] = gr.Chan(n + 1)  # always room
        c: gr.Chan[int] = gr.Chan()
        c.close()  # always ready
        await a.send(0)
        seen: Counter[int] = Counter()
        for _ in range(n):
            i, _v = await gr.select(a.recv, (b.send, 1), c.recv_ok, gr.default)
            seen[i] += 1
            if i == 0:
                await a.send(0)
        return seen

    seen = gr.run(main, procs=procs)
    assert seen[3] == 0  # default never taken while a case is ready
    for i in range(3):
        assert 0.23 * n < seen[i] < 0.43 * n, seen


# -- woken by exactly one case -------------------------------------------------------------


def test_parked_select_woken_by_exactly_one_racing_sender(procs: int, blocked: Blocked) -> None:
    rounds = 60

    async def main() -> Counter[int]:
        winners: Counter[int] = Counter()
        for _ in range(rounds):
            a: gr.Chan[int] = gr.Chan()
            b: gr.Chan[int] = gr.Chan()
            out: gr.Chan[tuple[int, Any]] = gr.Chan(1)
            sent: gr.Chan[int] = gr.Chan(2)

            async def sel() -> None:
                await out.send(await gr.select(a.recv, b.recv))  # noqa: B023

            async def tx(ch: gr.Chan[int], v: int) -> None:
                await ch.send(v)
                await sent.send(v)  # noqa: B023

            gr.go(sel)
            await blocked(1)
            gr.go(tx, a, 1)
            gr.go(tx, b, 2)
            # One sender wins the select; the other stays parked in send.
            await blocked(1)
            got = await out.recv()
            assert got in ((0, 1), (1, 2))
            assert got is not None
            _, v = got
            assert len(sent) == 1 and await sent.recv() == v
            winners[v] += 1
            # The loser's value is still there, exactly once.
            other = b if v == 1 else a
            j, w = await gr.select(a.recv, b.recv, gr.default)
            assert (j, w) == ((1, 2) if v == 1 else (0, 1)), (v, j, w)
            assert await sent.recv() == w
            assert await gr.select(other.recv, gr.default) == (1, None)
        return winners

    winners = gr.run(main, procs=procs)
    assert sum(winners.values()) == rounds


def test_parked_send_select_taken_by_exactly_one_racing_receiver(
    procs: int, blocked: Blocked
) -> None:
    async def main() -> None:
        for _ in range(60):
            a: gr.Chan[int] = gr.Chan()
            b: gr.Chan[int] = gr.Chan()
            out: gr.Chan[Any] = gr.Chan(3)

            async def sel() -> None:
                await out.send(("sel", await gr.select((a.send, 1), (b.send, 2))))  # noqa: B023

            async def rx(ch: gr.Chan[int]) -> None:
                await out.send(("rx", await ch.recv()))  # noqa: B023

            gr.go(sel)
            await blocked(1)
            gr.go(rx, a)
            gr.go(rx, b)
            await blocked(1)  # the losing receiver stays parked
            got = sorted([await out.recv(), await out.recv()], key=repr)
            assert got in ([("rx", 1), ("sel", (0, None))], [("rx", 2), ("sel", (1, None))]), got
            v = got[0][1]
            # Feed the loser so it can finish; it must get our value, not the select's.
            await (b if v == 1 else a).send(99)
            assert await out.recv() == ("rx", 99)

    gr.run(main, procs=procs)


def test_many_selects_many_senders_no_loss_no_dup(procs: int) -> None:
    nsel, per = 6, 200

    async def main() -> Counter[int]:
        a: gr.Chan[int] = gr.Chan()
        b: gr.Chan[int] = gr.Chan(3)
        out: gr.Chan[list[int]] = gr.Chan()
        quit: gr.Chan[None] = gr.Chan()

        async def selector() -> None:
            got: list[int] = []
            while True:
                i, v = await gr.select(a.recv, b.recv, quit.recv)
                if i == 2:
                    break
                got.append(v)
            await out.send(got)

        async def sender(ch: gr.Chan[int], base: int) -> None:
            for k in range(per):
                await ch.send(base + k)

        for _ in range(nsel):
            gr.go(selector)
        done: gr.Chan[None] = gr.Chan()

        async def run_sender(ch: gr.Chan[int], base: int) -> None:
            await sender(ch, base)
            await done.send(None)

        gr.go(run_sender, a, 0)
        gr.go(run_sender, b, 10_000)
        gr.go(run_sender, a, 20_000)
        gr.go(run_sender, b, 30_000)
        for _ in range(4):
            await done.recv()
        quit.close()
        total: Counter[int] = Counter()
        for _ in range(nsel):
            total.update(await out.recv())
        return total

    total = gr.run(main, procs=procs)
    expected = Counter(base + k for base in (0, 10_000, 20_000, 30_000) for k in range(per))
    assert total == expected


# -- wait queues stay bounded ------------------------------------------------------------------


def test_select_loop_does_not_grow_idle_channel_queue(procs: int) -> None:
    iters = 10_000

    async def main() -> tuple[int, int]:
        idle: gr.Chan[int] = gr.Chan()
        busy: gr.Chan[int] = gr.Chan()
        parked = 0

        async def feeder() -> None:
            nonlocal parked
            for i in range(iters):
                if busy._recvq:  # the select is parked: this send wakes it
                    parked += 1
                await busy.send(i)

        gr.go(feeder)
        longest = 0
        for i in range(iters):
            assert await gr.select(idle.recv, busy.recv) == (1, i)
            longest = max(longest, len(idle._recvq))
        return longest, parked

    longest, parked = gr.run(main, procs=procs)
    assert parked > iters // 10, "the test did not make the select park often enough"
    assert longest < 100, f"idle channel's recvq grew to {longest}"
