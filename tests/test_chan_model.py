"""Channels and select against a sequential model of Go's channel semantics (hypothesis).

Each example is a generated program run inside one ``gr.run()``: a few
channels (buffered and unbuffered) and a list of operations. Blocking
operations (send, recv, recv_ok, ``async for``'s ``__anext__``, select without
default) each start in their
own goroutine; close and non-blocking selects (with default) run in main.
After every operation main waits until every other goroutine is parked
(``wait_blocked``), so the runtime is quiescent, and compares it with the
model: which operations completed and with what result, how many goroutines
are still parked, ``len()`` of each channel. At the end the buffers are
drained (FIFO) and every channel closed, which must release every waiter.

The model is Go's ``chan.go``: a buffer, a FIFO of waiting receivers and one
of waiting senders per channel, and a select parked on several queues that
fires on exactly one (its other entries are dead and skipped). The only
choice the runtime makes is which of several ready select cases to take; the
model checks that the one it took was ready (and that default is taken
exactly when none is) and follows it.

Sends carry unique values, so a lost or duplicated value shows up as a wrong
result. A select never has the same channel twice in the same direction
(which of the two cases fires is then the runtime's choice, made after
parking; tests/test_select.py covers it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import goroutines as gr
from goroutines._runtime import _scheduler

NCHAN = 3

# A case: (kind, channel index); ops: ("send"|"recv"|"recv_ok"|"anext"|"close", c),
# ("select", cases) or ("try_select", cases, default position).
Case = tuple[str, int] | None


# -- the model ----------------------------------------------------------------------------


@dataclass(eq=False)
class Waiter:
    wid: int
    select: bool
    done: bool = False


@dataclass(eq=False)
class Entry:
    """One waiter's place in one queue: (case index, kind, value to send)."""

    w: Waiter
    idx: int
    kind: str
    value: Any = None


@dataclass
class MChan:
    cap: int
    buf: deque[Any] = field(default_factory=deque)
    closed: bool = False
    recvq: deque[Entry] = field(default_factory=deque)
    sendq: deque[Entry] = field(default_factory=deque)


def _live(q: deque[Entry]) -> Entry | None:
    """Drop dead entries from the head of ``q``; return the first live one (not popped)."""
    while q and q[0].w.done:
        q.popleft()
    return q[0] if q else None


def _result(select: bool, idx: int, kind: str, value: Any, ok: bool) -> Any:
    if kind == "send":
        if not ok:
            return "closed"
        return (idx, None) if select else "ok"
    r = value if kind == "recv" else (value, ok)
    return (idx, r) if select else r


class Model:
    def __init__(self, caps: list[int]) -> None:
        self.chans = [MChan(c) for c in caps]
        self.results: dict[int, Any] = {}
        self.parked: list[Waiter] = []

    def _complete(self, e: Entry, value: Any, ok: bool) -> None:
        e.w.done = True
        self.results[e.w.wid] = _result(e.w.select, e.idx, e.kind, value, ok)

    def ready(self, kind: str, c: int) -> bool:
        ch = self.chans[c]
        if kind == "send":
            return ch.closed or _live(ch.recvq) is not None or len(ch.buf) < ch.cap
        return bool(ch.buf) or _live(ch.sendq) is not None or ch.closed

    def do(self, kind: str, c: int, value: Any) -> tuple[Any, bool]:
        """Perform a ready operation; return (received value, ok); for a send, ok
        False means it panicked (closed channel)."""
        ch = self.chans[c]
        if kind == "send":
            if ch.closed:
                return None, False
            e = _live(ch.recvq)
            if e is not None:
                ch.recvq.popleft()
                self._complete(e, value, True)
            else:
                assert len(ch.buf) < ch.cap
                ch.buf.append(value)
            return None, True
        if ch.buf:
            v = ch.buf.popleft()
            e = _live(ch.sendq)
            if e is not None:  # the buffer was full: the first sender's value moves in
                ch.sendq.popleft()
                ch.buf.append(e.value)
                self._complete(e, None, True)
            return v, True
        e = _live(ch.sendq)
        if e is not None:
            ch.sendq.popleft()
            self._complete(e, None, True)
            return e.value, True
        assert ch.closed
        return None, False

    def park(self, w: Waiter, entries: list[tuple[int, str, int, Any]]) -> None:
        for idx, kind, c, value in entries:
            ch = self.chans[c]
            (ch.sendq if kind == "send" else ch.recvq).append(Entry(w, idx, kind, value))
        self.parked.append(w)

    def close(self, c: int) -> bool:
        """Close channel ``c``; False if it was already closed (ChanClosed)."""
        ch = self.chans[c]
        if ch.closed:
            return False
        ch.closed = True
        for q, ok_value in ((ch.recvq, None), (ch.sendq, None)):
            while (e := _live(q)) is not None:
                q.popleft()
                self._complete(e, ok_value, False)
        return True

    def nparked(self) -> int:
        self.parked = [w for w in self.parked if not w.done]
        return len(self.parked)


# -- programs -------------------------------------------------------------------------------

chan_idx = st.integers(0, NCHAN - 1)
case_st: st.SearchStrategy[tuple[str, int]] = st.tuples(
    st.sampled_from(["send", "recv", "recv_ok"]), chan_idx
)


@st.composite
def cases_st(draw: st.DrawFn) -> list[Case]:
    drawn = draw(st.lists(case_st, max_size=3, unique_by=lambda c: (c[1], c[0] == "send")))
    cases: list[Case] = list(drawn)
    if draw(st.booleans()):
        cases.insert(draw(st.integers(0, len(cases))), None)
    return cases


@st.composite
def op_st(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(
        st.sampled_from(
            [
                "send",
                "recv",
                "select",
                "try_select",
                "send",
                "recv_ok",
                "anext",
                "select",
                "close",
            ]
        )
    )
    if kind in ("send", "recv", "recv_ok", "anext", "close"):
        return (kind, draw(chan_idx))
    cases = draw(cases_st())
    if kind == "select":
        return (kind, cases)
    return (kind, cases, draw(st.integers(0, len(cases))))


program_st = st.tuples(
    st.lists(st.sampled_from([0, 0, 1, 2]), min_size=NCHAN, max_size=NCHAN),
    st.lists(op_st(), min_size=6, max_size=40),
)


# -- running a program -------------------------------------------------------------------------


async def _anext_ok(ch: gr.Chan[Any]) -> tuple[Any, bool]:
    """One step of ``async for v in ch``, as ``recv_ok`` would report it."""
    try:
        return await ch.__anext__(), True
    except StopAsyncIteration:
        return None, False


def _case_obj(chans: list[gr.Chan[Any]], case: Case, value: Any) -> Any:
    if case is None:
        return None
    kind, c = case
    ch = chans[c]
    if kind == "send":
        return (ch.send, value)
    return ch.recv if kind == "recv" else ch.recv_ok


async def _execute(
    caps: list[int], ops: list[tuple[Any, ...]], blocked: Callable[..., Awaitable[None]]
) -> None:
    chans: list[gr.Chan[Any]] = [gr.Chan(c) for c in caps]
    model = Model(caps)
    observed: dict[int, Any] = {}
    sched = _scheduler.require()

    async def run_op(wid: int, coro: Awaitable[Any], send: bool = False) -> None:
        try:
            r = await coro
            if send:
                r = "ok"
        except gr.ChanClosed:
            r = "closed"
        observed[wid] = r

    def check_select(wid: int, cases: list[Case], values: list[Any], got: Any) -> bool:
        """Validate the runtime's pick among ready cases and follow it in the model.
        Return False if no case was ready (the select parks, or takes default)."""
        ready = [
            i for i, case in enumerate(cases) if case is not None and model.ready(case[0], case[1])
        ]
        if not ready:
            return False
        assert got is not None, f"op {wid}: select did not proceed though cases {ready} are ready"
        if got == "closed":
            assert any(
                cases[i][0] == "send" and model.chans[cases[i][1]].closed  # type: ignore[index]
                for i in ready
            ), f"op {wid}: select raised ChanClosed without a ready send on a closed channel"
            model.results[wid] = "closed"
            return True
        idx = got[0]
        assert idx in ready, f"op {wid}: select took case {idx}, ready were {ready}"
        case = cases[idx]
        assert case is not None
        kind, c = case
        v, ok = model.do(kind, c, values[idx])
        assert kind != "send" or ok, f"op {wid}: send case on closed channel did not raise"
        model.results[wid] = _result(True, idx, kind, v, ok)
        return True

    async def settle(step: int, what: Any) -> None:
        await blocked()
        assert observed == model.results, f"after step {step} {what}"
        nothers = len(sched.allgs) - 1
        assert nothers == model.nparked(), f"after step {step} {what}: parked goroutines"
        lens = [len(ch) for ch in chans]
        assert lens == [len(m.buf) for m in model.chans], f"after step {step} {what}: len()"

    for wid, op in enumerate(ops):
        kind = op[0]
        if kind == "close":
            c = op[1]
            try:
                chans[c].close()
                closed_ok = True
            except gr.ChanClosed:
                closed_ok = False
            assert closed_ok == model.close(c), f"step {wid}: close({c})"
        elif kind in ("send", "recv", "recv_ok", "anext"):
            c = op[1]
            value = 1000 + wid
            ch = chans[c]
            if kind == "send":
                coro: Awaitable[Any] = ch.send(value)
            elif kind == "anext":
                coro = _anext_ok(ch)
            else:
                coro = getattr(ch, kind)()
            gr.go(run_op, wid, coro, kind == "send")
            await blocked()
            w = Waiter(wid, select=False)
            if model.ready(kind, c):
                v, ok = model.do(kind, c, value)
                model.results[wid] = _result(False, 0, kind, v, ok)
            else:
                model.park(w, [(0, kind, c, value)])
        else:
            cases: list[Case] = op[1]
            values: list[int | None] = [1000 + 10 * wid + i for i in range(len(cases))]
            objs = [_case_obj(chans, case, v) for case, v in zip(cases, values, strict=True)]
            if kind == "select":
                gr.go(run_op, wid, gr.select(*objs))
                await blocked()
                if not check_select(wid, cases, values, observed.get(wid)):
                    entries = [
                        (i, case[0], case[1], values[i])
                        for i, case in enumerate(cases)
                        if case is not None
                    ]
                    model.park(Waiter(wid, select=True), entries)
            else:
                dpos = op[2]
                objs.insert(dpos, gr.default)
                cases = [*cases[:dpos], None, *cases[dpos:]]
                values = [*values[:dpos], None, *values[dpos:]]
                try:
                    got: Any = await gr.select(*objs)
                except gr.ChanClosed:
                    got = "closed"
                if check_select(wid, cases, values, got):
                    observed[wid] = got
                else:
                    assert got == (dpos, None), f"step {wid}: default not taken: {got}"
        await settle(wid, op)

    # Drain the buffers (FIFO) and close everything: every waiter must be released.
    for c, ch in enumerate(chans):
        m = model.chans[c]
        while m.buf:
            want, _ = model.do("recv", c, None)
            got_v, got_ok = await ch.recv_ok()
            assert (got_v, got_ok) == (want, True), f"draining channel {c}"
            await settle(len(ops), f"drain {c}")
        if not m.closed:
            ch.close()
            model.close(c)
    await settle(len(ops), "close all")


@pytest.mark.stress
@pytest.mark.parametrize("procs", [1, 4])
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(program=program_st)
def test_channels_match_model(
    procs: int, program: tuple[list[int], list[tuple[Any, ...]]], blocked: Any
) -> None:
    caps, ops = program
    gr.run(_execute, caps, ops, blocked, procs=procs)
