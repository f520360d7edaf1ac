"""Channels (SPEC §2 channels, §3 channel semantics): rendezvous, buffering, FIFO, close."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import goroutines as gr

Blocked = Callable[..., Awaitable[None]]


async def _gather(done: gr.Chan[Any], n: int) -> list[Any]:
    return [await done.recv() for _ in range(n)]


# -- construction ---------------------------------------------------------------


def test_len_and_cap() -> None:
    assert gr.Chan().cap == 0
    assert len(gr.Chan()) == 0
    assert gr.Chan(3).cap == 3


@pytest.mark.parametrize("bad", [-1, -100])
def test_negative_capacity_is_value_error(bad: int) -> None:
    with pytest.raises(ValueError, match=rf"capacity.*{bad}"):
        gr.Chan(bad)


@pytest.mark.parametrize("bad", ["x", 1.5, None, True])
def test_non_int_capacity_is_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match=rf"capacity.*{type(bad).__name__}"):
        gr.Chan(bad)


def test_chan_is_generic() -> None:
    c: gr.Chan[int] = gr.Chan[int](1)
    assert c.cap == 1


# -- unbuffered -------------------------------------------------------------------


def test_unbuffered_send_blocks_until_received(procs: int, blocked: Blocked) -> None:
    async def main() -> list[str]:
        ch: gr.Chan[int] = gr.Chan()
        done: gr.Chan[None] = gr.Chan()
        events: list[str] = []

        async def sender() -> None:
            await ch.send(1)
            events.append("sent")
            await done.send(None)

        gr.go(sender)
        await blocked(1)  # the sender is parked in send: nobody has received
        events.append("receiving")
        assert await ch.recv() == 1
        await done.recv()
        return events

    assert gr.run(main, procs=procs) == ["receiving", "sent"]


def test_unbuffered_recv_blocks_until_sent(procs: int) -> None:
    # Ordering by channel only: the receiver can only report after main sent,
    # and main reports "sending" before it sends.
    async def main() -> list[str]:
        ch: gr.Chan[str] = gr.Chan()
        done: gr.Chan[None] = gr.Chan()
        events: list[str] = []

        async def receiver() -> None:
            events.append("got " + str(await ch.recv()))
            await done.send(None)

        gr.go(receiver)
        for _ in range(20):
            await gr.gosched()  # give the receiver every chance to (wrongly) return
        events.append("sending")
        await ch.send("x")
        await done.recv()
        return events

    assert gr.run(main, procs=procs) == ["sending", "got x"]


def test_unbuffered_rendezvous_ping_pong(procs: int) -> None:
    # Each send completes only when the other side is there: the two logs
    # interleave strictly.
    async def main() -> list[int]:
        ping: gr.Chan[int] = gr.Chan()
        pong: gr.Chan[int] = gr.Chan()
        log: list[int] = []

        async def player() -> None:
            while (v := await ping.recv()) is not None:
                log.append(v)
                await pong.send(v + 1)

        gr.go(player)
        v = 0
        for _ in range(200):
            await ping.send(v)
            w = await pong.recv()
            assert w is not None
            log.append(w)
            v = w + 1
        ping.close()
        return log

    log = gr.run(main, procs=procs)
    assert log == list(range(400))


@pytest.mark.parametrize("cap", [0, 1, 4])
def test_send_hands_value_directly_to_parked_receiver(
    procs: int, blocked: Blocked, cap: int
) -> None:
    async def main() -> None:
        ch: gr.Chan[object] = gr.Chan(cap)
        out: gr.Chan[object] = gr.Chan(1)
        obj = object()

        async def receiver() -> None:
            await out.send(await ch.recv())

        gr.go(receiver)
        await blocked(1)
        await ch.send(obj)
        # Handed to the waiter, not parked in the buffer.
        assert len(ch) == 0
        assert await out.recv() is obj

    gr.run(main, procs=procs)


# -- buffered ---------------------------------------------------------------------


def test_buffered_fifo_and_len(procs: int) -> None:
    async def main() -> None:
        ch: gr.Chan[int] = gr.Chan(5)
        for i in range(5):
            await ch.send(i)  # never blocks: there is room
            assert len(ch) == i + 1
        assert ch.cap == 5
        assert [await ch.recv() for _ in range(5)] == [0, 1, 2, 3, 4]
        assert len(ch) == 0

    gr.run(main, procs=procs)


def test_buffered_send_blocks_when_full(procs: int, blocked: Blocked) -> None:
    async def main() -> list[str]:
        ch: gr.Chan[int] = gr.Chan(2)
        done: gr.Chan[None] = gr.Chan()
        events: list[str] = []

        async def sender() -> None:
            for i in range(3):
                await ch.send(i)
                events.append(f"sent {i}")
            await done.send(None)

        gr.go(sender)
        await blocked(1)
        events.append("full")
        assert len(ch) == 2
        assert await ch.recv() == 0
        # The parked sender's value moved into the buffer behind 1.
        await done.recv()
        assert len(ch) == 2
        assert [await ch.recv(), await ch.recv()] == [1, 2]
        return events

    assert gr.run(main, procs=procs) == ["sent 0", "sent 1", "full", "sent 2"]


# -- FIFO of waiters ----------------------------------------------------------------


@pytest.mark.parametrize("cap", [0, 2])
def test_waiting_senders_are_served_in_arrival_order(
    procs: int, blocked: Blocked, cap: int
) -> None:
    async def main() -> list[int | None]:
        ch: gr.Chan[int] = gr.Chan(cap)
        for i in range(cap):
            await ch.send(i)
        for k in range(6):
            gr.go(ch.send, cap + k)
            await blocked(k + 1)  # sender k is parked before sender k+1 starts
        return [await ch.recv() for _ in range(cap + 6)]

    assert gr.run(main, procs=procs) == list(range(cap + 6))


@pytest.mark.parametrize("cap", [0, 2])
def test_waiting_receivers_are_served_in_arrival_order(
    procs: int, blocked: Blocked, cap: int
) -> None:
    async def main() -> list[tuple[int, int]]:
        ch: gr.Chan[int] = gr.Chan(cap)
        out: gr.Chan[tuple[int, int]] = gr.Chan(6)

        async def receiver(k: int) -> None:
            v = await ch.recv()
            assert v is not None
            await out.send((k, v))

        for k in range(6):
            gr.go(receiver, k)
            await blocked(k + 1)
        for v in range(6):
            await ch.send(v)
        return sorted(await _gather(out, 6))

    assert gr.run(main, procs=procs) == [(k, k) for k in range(6)]


# -- close ------------------------------------------------------------------------


def test_close_wakes_every_waiting_receiver(procs: int, blocked: Blocked) -> None:
    async def main() -> Counter[Any]:
        ch: gr.Chan[int] = gr.Chan()
        out: gr.Chan[Any] = gr.Chan(10)

        async def rx() -> None:
            await out.send(("recv", await ch.recv()))

        async def rx_ok() -> None:
            await out.send(("recv_ok", await ch.recv_ok()))

        for _ in range(5):
            gr.go(rx)
            gr.go(rx_ok)
        await blocked(10)
        ch.close()
        return Counter(await _gather(out, 10))

    got = gr.run(main, procs=procs)
    assert got == Counter({("recv", None): 5, ("recv_ok", (None, False)): 5})


@pytest.mark.parametrize("cap", [0, 3])
def test_close_wakes_every_waiting_sender_with_chan_closed(
    procs: int, blocked: Blocked, cap: int
) -> None:
    async def main() -> tuple[list[str], list[int | None]]:
        ch: gr.Chan[int] = gr.Chan(cap)
        out: gr.Chan[str] = gr.Chan(5)
        for i in range(cap):
            await ch.send(i)

        async def tx(v: int) -> None:
            try:
                await ch.send(v)
            except gr.ChanClosed as e:
                await out.send(str(e))
            else:
                await out.send("sent")

        for k in range(5):
            gr.go(tx, 100 + k)
        await blocked(5)
        ch.close()
        msgs = await _gather(out, 5)
        # Values buffered before close are still delivered, then None.
        rest = [await ch.recv() for _ in range(cap + 2)]
        return msgs, rest

    msgs, rest = gr.run(main, procs=procs)
    assert msgs == ["send on closed channel"] * 5
    assert rest == [*range(cap), None, None]


def test_buffered_values_delivered_after_close(procs: int) -> None:
    async def main() -> list[Any]:
        ch: gr.Chan[int] = gr.Chan(3)
        await ch.send(1)
        await ch.send(2)
        ch.close()
        assert len(ch) == 2
        return [await ch.recv(), await ch.recv_ok(), await ch.recv(), await ch.recv_ok()]

    assert gr.run(main, procs=procs) == [1, (2, True), None, (None, False)]


@pytest.mark.parametrize("cap", [0, 1])
def test_send_on_closed_raises(procs: int, cap: int) -> None:
    async def main() -> None:
        ch: gr.Chan[int] = gr.Chan(cap)
        ch.close()
        with pytest.raises(gr.ChanClosed, match="send on closed channel"):
            await ch.send(1)
        assert len(ch) == 0

    gr.run(main, procs=procs)


def test_close_of_closed_raises(procs: int) -> None:
    async def main() -> None:
        ch: gr.Chan[int] = gr.Chan()
        ch.close()
        with pytest.raises(gr.ChanClosed, match="close of closed channel"):
            ch.close()

    gr.run(main, procs=procs)


def test_chan_closed_escaping_a_goroutine_reaches_run(procs: int) -> None:
    async def main() -> None:
        ch: gr.Chan[int] = gr.Chan()
        ch.close()
        gr.go(ch.send, 1)
        await gr.sleep(10)

    with pytest.raises(gr.ChanClosed, match="send on closed channel"):
        gr.run(main, procs=procs)


@pytest.mark.parametrize("cap", [0, 2])
def test_recv_on_closed_drained_returns_at_once(procs: int, cap: int) -> None:
    # If recv on a closed channel blocked, main would deadlock (nobody else runs).
    async def main() -> list[Any]:
        ch: gr.Chan[int] = gr.Chan(cap)
        ch.close()
        got: list[Any] = []
        for _ in range(100):
            got.append(await ch.recv())
            got.append(await ch.recv_ok())
        return got

    assert gr.run(main, procs=procs) == [None, (None, False)] * 100


def test_none_is_a_value_recv_ok_tells_apart(procs: int) -> None:
    async def main() -> list[Any]:
        ch: gr.Chan[None] = gr.Chan(1)
        await ch.send(None)
        ch.close()
        return [await ch.recv_ok(), await ch.recv_ok()]

    assert gr.run(main, procs=procs) == [(None, True), (None, False)]


# -- iteration ----------------------------------------------------------------------


@pytest.mark.parametrize("cap", [0, 7])
def test_async_for_ends_at_close(procs: int, cap: int) -> None:
    async def main() -> list[int]:
        ch: gr.Chan[int] = gr.Chan(cap)

        async def producer() -> None:
            for i in range(100):
                await ch.send(i)
            ch.close()

        gr.go(producer)
        return [v async for v in ch]

    assert gr.run(main, procs=procs) == list(range(100))


def test_async_for_yields_none_values(procs: int) -> None:
    async def main() -> list[Any]:
        ch: gr.Chan[Any] = gr.Chan(3)
        for v in (None, 0, None):
            await ch.send(v)
        ch.close()
        return [v async for v in ch]

    assert gr.run(main, procs=procs) == [None, 0, None]


# -- many goroutines ------------------------------------------------------------------


@pytest.mark.parametrize("cap", [0, 1, 16])
def test_many_producers_and_consumers_no_loss_no_dup(procs: int, cap: int) -> None:
    nprod, ncons, per = 8, 8, 300

    async def main() -> list[list[tuple[int, int]]]:
        ch: gr.Chan[tuple[int, int]] = gr.Chan(cap)
        finished: gr.Chan[None] = gr.Chan()
        out: gr.Chan[list[tuple[int, int]]] = gr.Chan()

        async def producer(p: int) -> None:
            for i in range(per):
                await ch.send((p, i))
            await finished.send(None)

        async def consumer() -> None:
            await out.send([v async for v in ch])

        for p in range(nprod):
            gr.go(producer, p)
        for _ in range(ncons):
            gr.go(consumer)
        for _ in range(nprod):
            await finished.recv()
        ch.close()
        return await _gather(out, ncons)

    seen = gr.run(main, procs=procs)
    flat = [v for part in seen for v in part]
    assert sorted(flat) == [(p, i) for p in range(nprod) for i in range(per)]
    # FIFO: each consumer sees any one producer's values in order.
    for part in seen:
        for p in range(nprod):
            mine = [i for q, i in part if q == p]
            assert mine == sorted(mine)
