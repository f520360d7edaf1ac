"""Tests for ``goroutines._context`` (Go's ``context`` package).

Deadline tests run in a bubble (the virtual clock: a context expires at
exactly its deadline, and a test that waits past one takes no real time);
``test_with_timeout_expires_in_real_time`` and the "timers do not keep the
program alive" tests stay on the real clock, which is what they are about.
Effects that no channel announces (a cancelled context leaves its parent's
set just after closing done; a watcher goroutine gives up) are awaited with
``gr.testing.wait()``: every other goroutine, and the timer's callback, is
done or blocked when it returns.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

import goroutines as gr
from goroutines._chan import Chan
from goroutines._context import (
    Context,
    _CancelCtx,
    background,
    todo,
    with_cancel,
    with_deadline,
    with_timeout,
    with_value,
    without_cancel,
)
from goroutines._errors import Canceled, DeadlineExceeded
from goroutines._runtime import _scheduler

PROCS = pytest.mark.parametrize("procs", [1, 4])


async def is_done(ctx: Context) -> bool:
    """Whether ``ctx.done()`` is closed, without blocking (a select with default)."""
    i, _ = await gr.select(ctx.done().recv, gr.default)
    return i == 0


def nchildren(ctx: Context) -> int:
    assert isinstance(ctx, _CancelCtx)
    kids = ctx._children
    return 0 if kids is None else len(kids)


def nactive_timers() -> int:
    return _scheduler.require().timers.nactive


# -- with_cancel ------------------------------------------------------------------


@PROCS
def test_cancel_closes_done_and_sets_err(procs: int) -> None:
    async def main() -> None:
        ctx, cancel = with_cancel(background())
        assert ctx.err() is None
        assert ctx.done() is ctx.done()
        assert not await is_done(ctx)
        woke: Chan[object] = Chan()

        async def waiter() -> None:
            await ctx.done().recv()
            await woke.send(ctx.err())

        for _ in range(3):
            gr.go(waiter)
        cancel()
        for _ in range(3):
            assert await woke.recv() is Canceled
        assert ctx.err() is Canceled
        assert isinstance(ctx.err(), type) and issubclass(Canceled, Exception)
        assert await ctx.done().recv_ok() == (None, False)
        cancel()  # idempotent
        assert ctx.err() is Canceled

    gr.run(main, procs=procs)


@PROCS
def test_done_asked_for_only_after_cancel(procs: int) -> None:
    async def main() -> None:
        ctx, cancel = with_cancel(background())
        cancel()
        assert await is_done(ctx)
        assert ctx.err() is Canceled

    gr.run(main, procs=procs)


@PROCS
def test_propagation_down_not_up_or_sideways(procs: int) -> None:
    async def main() -> None:
        root, cancel_root = with_cancel(background())
        a, cancel_a = with_cancel(root)
        b, cancel_b = with_cancel(root)
        a1, cancel_a1 = with_cancel(with_value(a, "k", 1))  # through a value context
        a1x, _ = with_timeout(a1, 100)
        a1v = with_value(a1x, "k", 2)
        b1, cancel_b1 = with_cancel(b)
        assert nchildren(root) == 2 and nchildren(a) == 1 and nchildren(a1) == 1

        cancel_a()
        for c in (a, a1, a1x, a1v):
            assert await is_done(c), c
            assert c.err() is Canceled, c
        for c in (root, b, b1):
            assert not await is_done(c), c
            assert c.err() is None, c
        assert nchildren(root) == 1  # a left; b is still there
        assert nactive_timers() == 0  # a1x's timer was stopped by the propagation

        cancel_root()
        assert b.err() is Canceled and b1.err() is Canceled
        assert await is_done(b1)
        for f in (cancel_root, cancel_a, cancel_a1, cancel_b, cancel_b1):
            f()

    gr.run(main, procs=procs)


@PROCS
def test_child_of_cancelled_parent_is_born_cancelled(procs: int) -> None:
    async def main() -> None:
        parent, cancel = with_cancel(background())
        cancel()
        child, _ = with_cancel(with_value(parent, "k", "v"))
        assert child.err() is Canceled
        assert await is_done(child)
        assert nchildren(parent) == 0
        tchild, _ = with_timeout(parent, 100)
        assert tchild.err() is Canceled
        assert nactive_timers() == 0

    gr.run(main, procs=procs)


@pytest.mark.goroutines(fake_clock=True)
async def test_first_cause_wins() -> None:
    parent, cancel_parent = with_cancel(background())
    t0 = gr.monotonic()
    ctx, cancel = with_timeout(parent, 0.02)
    await ctx.done().recv()
    assert gr.monotonic() == t0 + 0.02
    assert ctx.err() is DeadlineExceeded
    cancel()
    cancel_parent()
    assert ctx.err() is DeadlineExceeded
    assert parent.err() is Canceled

    ctx2, cancel2 = with_timeout(background(), 0.02)
    cancel2()
    assert ctx2.err() is Canceled
    assert nactive_timers() == 0  # so the deadline can never overwrite it
    t1 = gr.monotonic()
    await gr.sleep(1)  # well past its deadline
    assert gr.monotonic() == t1 + 1
    assert ctx2.err() is Canceled


# -- deadlines ---------------------------------------------------------------------


@pytest.mark.goroutines(fake_clock=True)
async def test_with_timeout_expires() -> None:
    parent, cancel_parent = with_cancel(background())
    t0 = gr.monotonic()
    ctx, cancel = with_timeout(parent, 0.02)
    assert ctx.deadline() == t0 + 0.02
    assert ctx.err() is None
    assert nchildren(parent) == 1
    await ctx.done().recv()
    assert gr.monotonic() == t0 + 0.02  # expired at its deadline: not before, not after
    assert ctx.err() is DeadlineExceeded
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert parent.err() is None
    await gr.testing.wait()  # the timer's callback leaves parent's set after closing done
    assert nchildren(parent) == 0
    assert nactive_timers() == 0
    cancel()
    assert ctx.err() is DeadlineExceeded
    cancel_parent()


@PROCS
def test_with_timeout_expires_in_real_time(procs: int) -> None:
    # real clock: a context's timer is a real wait outside a bubble
    async def main() -> None:
        t0 = time.monotonic()
        ctx, cancel = with_timeout(background(), 0.02)
        d = ctx.deadline()
        assert d is not None and t0 + 0.02 <= d <= time.monotonic() + 0.02
        await ctx.done().recv()
        assert time.monotonic() >= d
        assert ctx.err() is DeadlineExceeded
        cancel()

    gr.run(main, procs=procs)


@pytest.mark.goroutines(fake_clock=True)
async def test_expiry_propagates_to_descendants() -> None:
    t0 = gr.monotonic()
    ctx, cancel = with_timeout(background(), 30)
    child, cancel_child = with_cancel(ctx)
    grandchild = with_value(child, "k", 1)
    great, cancel_great = with_cancel(grandchild)
    await great.done().recv()
    assert gr.monotonic() == t0 + 30
    for c in (ctx, child, grandchild, great):
        assert c.err() is DeadlineExceeded, c
        assert c.deadline() == ctx.deadline()
    for f in (cancel, cancel_child, cancel_great):
        f()


@pytest.mark.goroutines(fake_clock=True)
async def test_with_deadline() -> None:
    d = gr.monotonic() + 0.02
    ctx, cancel = with_deadline(background(), d)
    assert ctx.deadline() == d
    await ctx.done().recv()
    assert gr.monotonic() == d
    assert ctx.err() is DeadlineExceeded
    cancel()


@PROCS
def test_deadline_in_the_past(procs: int) -> None:
    async def main() -> None:
        d = gr.monotonic() - 1.0
        parent, cancel_parent = with_cancel(background())
        for ctx, cancel in (
            with_deadline(parent, d),
            with_deadline(parent, -math.inf),
            with_timeout(parent, 0),
            with_timeout(parent, -5),
        ):
            assert ctx.err() is DeadlineExceeded
            assert await is_done(ctx)
            cancel()
            assert ctx.err() is DeadlineExceeded
        assert with_deadline(parent, d)[0].deadline() == d
        assert nchildren(parent) == 0
        assert nactive_timers() == 0
        assert parent.err() is None
        cancel_parent()

    gr.run(main, procs=procs)


@PROCS
def test_child_deadline_later_than_parents_uses_parents(procs: int) -> None:
    async def main() -> None:
        t0 = gr.monotonic()
        parent, cancel_parent = with_timeout(background(), 0.05)
        pd = parent.deadline()
        assert pd is not None
        child, cancel_child = with_deadline(with_value(parent, "k", 1), pd + 10)
        assert child.deadline() == pd
        assert nactive_timers() == 1  # only the parent's: the child has no timer of its own
        same, cancel_same = with_deadline(parent, pd)
        assert same.deadline() == pd
        assert nactive_timers() == 1
        later, cancel_later = with_timeout(parent, 100)
        assert later.deadline() == pd
        earlier, cancel_earlier = with_timeout(parent, 0.01)
        ed = earlier.deadline()
        assert ed is not None and ed < pd
        assert nactive_timers() == 2

        await earlier.done().recv()
        assert gr.monotonic() == ed
        assert earlier.err() is DeadlineExceeded
        assert parent.err() is None and child.err() is None
        await child.done().recv()
        assert gr.monotonic() == pd == t0 + 0.05  # the parent's timer, not the child's
        assert child.err() is DeadlineExceeded
        assert later.err() is DeadlineExceeded
        for f in (cancel_parent, cancel_child, cancel_same, cancel_later, cancel_earlier):
            f()

    gr.testing.run(main, procs=procs)


@PROCS
def test_infinite_deadline_arms_no_timer(procs: int) -> None:
    async def main() -> None:
        ctx, cancel = with_deadline(background(), math.inf)
        assert ctx.deadline() == math.inf
        assert nactive_timers() == 0
        ctx2, cancel2 = with_timeout(ctx, 100)  # earlier than inf: its own timer
        assert ctx2.deadline() != math.inf
        assert nactive_timers() == 1
        cancel()
        assert ctx2.err() is Canceled
        assert nactive_timers() == 0
        cancel2()

    gr.run(main, procs=procs)


# -- timers do not keep the program alive ---------------------------------------------


@PROCS
@pytest.mark.timeout(30)
def test_cancel_before_expiry_stops_the_timer(procs: int) -> None:
    # real clock: how long run() takes to return, in real time
    async def main() -> float:
        base = nactive_timers()
        ctx, cancel = with_timeout(background(), 100)
        assert nactive_timers() == base + 1
        cancel()
        assert nactive_timers() == base
        assert ctx.err() is Canceled
        return time.monotonic()

    t = gr.run(main, procs=procs)
    assert time.monotonic() - t < 2.0


@PROCS
@pytest.mark.timeout(30)
def test_cancelled_timeout_does_not_hide_a_deadlock(procs: int) -> None:
    # real clock: if cancel left the 100 s timer armed, checkdead would think
    # the program could still make progress, and run() would hang for 100 s
    # (in a bubble that timer would just fire at once and hide nothing).
    async def main() -> None:
        _, cancel = with_timeout(background(), 100)
        parent, cancel_parent = with_cancel(background())
        with_timeout(parent, 100)  # cancelled through its parent only
        cancel()
        cancel_parent()
        assert nactive_timers() == 0  # fail here rather than hang below
        await Chan[None]().recv()  # blocks forever

    t0 = time.monotonic()
    with pytest.raises(gr.Deadlock):
        gr.run(main, procs=procs)
    assert time.monotonic() - t0 < 5.0


# -- select ------------------------------------------------------------------------


@PROCS
def test_select_between_work_and_done(procs: int) -> None:
    async def main() -> None:
        ctx, cancel = with_cancel(background())
        work: Chan[int] = Chan()
        result: Chan[tuple[int, object]] = Chan()

        async def worker() -> None:
            total = 0
            while True:
                i, v = await gr.select(work.recv, ctx.done().recv)
                if i == 1:
                    await result.send((total, ctx.err()))
                    return
                total += v

        gr.go(worker)
        for n in range(1, 11):
            await work.send(n)
        cancel()
        assert await result.recv() == (55, Canceled)

    gr.run(main, procs=procs)


@pytest.mark.goroutines(fake_clock=True)
async def test_timeout_unblocks_a_stuck_sender() -> None:
    t0 = gr.monotonic()
    ctx, cancel = with_timeout(background(), 0.02)
    nobody: Chan[int] = Chan()  # nobody ever receives
    i, _ = await gr.select((nobody.send, 1), ctx.done().recv)
    assert i == 1
    assert gr.monotonic() == t0 + 0.02
    assert ctx.err() is DeadlineExceeded
    cancel()


@PROCS
def test_background_is_never_done(procs: int) -> None:
    async def main() -> None:
        for ctx in (background(), todo(), without_cancel(with_cancel(background())[0])):
            i, _ = await gr.select(ctx.done().recv, gr.default)
            assert i == 1
            assert ctx.err() is None
            assert ctx.deadline() is None
            assert ctx.value("anything") is None
        assert background() is background()
        assert background().done() is background().done()
        assert todo() is not background()

    gr.run(main, procs=procs)


@PROCS
def test_waiting_on_background_alone_is_a_deadlock(procs: int) -> None:
    async def main() -> None:
        await background().done().recv()

    with pytest.raises(gr.Deadlock):
        gr.run(main, procs=procs)


# -- values ------------------------------------------------------------------------


@PROCS
def test_with_value_lookup_and_shadowing(procs: int) -> None:
    async def main() -> None:
        class Key:
            pass

        k = Key()
        bg = background()
        a = with_value(bg, "user", "alice")
        b, cancel = with_cancel(a)
        c = with_value(b, k, 42)
        d = with_value(c, "user", "bob")
        e, cancel_e = with_timeout(d, 100)
        assert e.value("user") == "bob"
        assert e.value(k) == 42
        assert e.value("missing") is None
        assert c.value("user") == "alice"
        assert b.value(k) is None  # a parent does not see its children's values
        assert bg.value("user") is None
        assert e.value(Key()) is None  # keys compare by ==, and a fresh object is not k
        assert e.value("us" + "er") == "bob"  # an equal key that is not the same object
        assert d.deadline() is None and e.deadline() is not None
        assert d.err() is None
        cancel()
        assert d.err() is Canceled and e.err() is Canceled
        assert await is_done(d)
        assert e.value("user") == "bob"  # values outlive cancellation
        wc = without_cancel(e)
        assert wc.value("user") == "bob" and wc.err() is None and wc.deadline() is None
        cancel_e()

    gr.run(main, procs=procs)


def test_values_and_cancel_outside_a_goroutine() -> None:
    ctx, cancel = with_cancel(with_value(background(), "k", "v"))
    child, cancel_child = with_cancel(ctx)
    assert child.value("k") == "v"
    cancel()
    assert child.err() is Canceled
    cancel_child()


# -- many and deep -------------------------------------------------------------------


@PROCS
def test_many_children_cancelled_do_not_leak(procs: int) -> None:
    async def main() -> None:
        parent, cancel_parent = with_cancel(background())
        for i in range(10_000):
            if i % 2:
                _, cancel = with_cancel(parent)
            else:
                _, cancel = with_timeout(with_value(parent, "i", i), 100)
            cancel()
        assert nchildren(parent) == 0
        assert nactive_timers() == 0
        assert parent.err() is None

        kids = [with_cancel(parent) for _ in range(10_000)]
        assert nchildren(parent) == 10_000
        cancel_parent()
        assert all(k.err() is Canceled for k, _ in kids)
        assert nchildren(parent) == 0
        for _, cancel in kids:
            cancel()

    gr.run(main, procs=procs)


@PROCS
def test_deep_chain(procs: int) -> None:
    # Cancel and lookup walk the chain without recursion.
    async def main() -> None:
        root, cancel = with_cancel(with_value(background(), "root", 1))
        ctx: Context = root
        for i in range(5_000):
            ctx = with_cancel(ctx)[0] if i % 2 else with_value(ctx, i, i)
        assert ctx.value("root") == 1
        assert ctx.deadline() is None
        cancel()
        assert ctx.err() is Canceled
        assert await is_done(ctx)

    gr.run(main, procs=procs)


@PROCS
def test_concurrent_children_and_cancel(procs: int) -> None:
    async def main() -> None:
        parent, cancel_parent = with_cancel(background())
        n_workers, n_each = 8, 200
        done: Chan[list[Context]] = Chan(n_workers)
        start: Chan[None] = Chan()

        async def worker() -> None:
            await start.recv()
            made = []
            for j in range(n_each):
                ctx, cancel = with_cancel(parent) if j % 2 else with_timeout(parent, 100)
                made.append(ctx)
                if j % 3 == 0:
                    cancel()
                await gr.gosched()
            await done.send(made)

        for _ in range(n_workers):
            gr.go(worker)
        start.close()
        await gr.gosched()
        cancel_parent()  # races with the workers' with_cancel / cancel
        made: list[Context] = []
        for _ in range(n_workers):
            batch = await done.recv()
            assert batch is not None
            made += batch
        assert len(made) == n_workers * n_each
        assert all(c.err() is Canceled for c in made)
        assert nchildren(parent) == 0
        assert nactive_timers() == 0

    gr.run(main, procs=procs)


# -- user-defined contexts -------------------------------------------------------------


class Manual(Context):
    """A user-defined context, cancelled by closing its own channel."""

    def __init__(self) -> None:
        self.ch: Chan[None] = Chan()
        self.cancelled = False

    def done(self) -> Chan[None]:
        return self.ch

    def err(self) -> type[Canceled] | None:
        return Canceled if self.cancelled else None

    def value(self, key: Any) -> Any:
        return "manual" if key == "who" else None

    def deadline(self) -> float | None:
        return None

    def cancel(self) -> None:
        self.cancelled = True
        self.ch.close()


class Wrapper(Context):
    """A user-defined context that delegates everything to its parent."""

    def __init__(self, parent: Context) -> None:
        self.parent = parent

    def done(self) -> Chan[None]:
        return self.parent.done()

    def err(self) -> type[Canceled] | type[DeadlineExceeded] | None:
        return self.parent.err()

    def value(self, key: Any) -> Any:
        return self.parent.value(key)

    def deadline(self) -> float | None:
        return self.parent.deadline()


@PROCS
def test_user_defined_parent(procs: int) -> None:
    async def main() -> None:
        m = Manual()
        child, cancel_child = with_cancel(m)
        assert child.value("who") == "manual"
        m.cancel()
        await child.done().recv()
        assert child.err() is Canceled
        cancel_child()

        # A child cancelled first: the watcher goroutine gives up.
        m2 = Manual()
        child2, cancel2 = with_cancel(m2)
        cancel2()
        assert child2.err() is Canceled
        await gr.testing.wait()
        assert gr.num_goroutine() == 1  # the watcher gave up and returned
        assert m2.err() is None

    gr.run(main, procs=procs)


@PROCS
def test_user_defined_wrapper_registers_with_the_cancel_ctx_behind_it(procs: int) -> None:
    async def main() -> None:
        inner, cancel = with_cancel(background())
        w = Wrapper(with_value(inner, "k", 1))
        child, cancel_child = with_cancel(w)
        assert nchildren(inner) == 1  # no watcher goroutine needed
        assert gr.num_goroutine() == 1
        assert child.value("k") == 1
        cancel()
        assert child.err() is Canceled
        cancel_child()
        assert without_cancel(Wrapper(background())).value("k") is None
        assert with_cancel(Wrapper(background()))[0].err() is None
        assert gr.num_goroutine() == 1  # a parent that is never done needs no watcher

    gr.run(main, procs=procs)


def test_user_defined_parent_outside_the_runtime() -> None:
    with pytest.raises(RuntimeError, match=r"gr\.run\(\)"):
        with_cancel(Manual())


# -- bad input ----------------------------------------------------------------------


def test_context_is_abstract() -> None:
    with pytest.raises(TypeError):
        Context()  # type: ignore[abstract]
    assert isinstance(background(), Context)
    assert isinstance(with_cancel(background())[0], Context)
    assert isinstance(with_value(background(), "k", 1), Context)


@PROCS
def test_bad_input(procs: int) -> None:
    async def main() -> None:
        bg = background()
        makers: tuple[tuple[Any, tuple[Any, ...]], ...] = (
            (with_cancel, ()),
            (with_timeout, (1.0,)),
            (with_deadline, (gr.monotonic() + 1,)),
            (with_value, ("k", "v")),
            (without_cancel, ()),
        )
        for fn, args in makers:
            with pytest.raises(TypeError, match=r"parent must be a Context, got NoneType"):
                fn(None, *args)
            with pytest.raises(TypeError, match=r"parent must be a Context, got Chan"):
                fn(bg.done(), *args)
        with pytest.raises(ValueError, match=r"with_timeout: seconds is NaN"):
            with_timeout(bg, math.nan)
        with pytest.raises(ValueError, match=r"with_deadline: deadline is NaN"):
            with_deadline(bg, math.nan)
        for bad in ("1", None, True, 1j):
            with pytest.raises(TypeError, match=r"with_timeout: seconds must be a number"):
                with_timeout(bg, bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"with_deadline: deadline must be a number"):
                with_deadline(bg, bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"with_value: key is None"):
            with_value(bg, None, 1)
        with pytest.raises(TypeError, match=r"with_value: key must be hashable.*list"):
            with_value(bg, [], 1)
        assert nactive_timers() == 0

    gr.run(main, procs=procs)


def test_timer_contexts_need_a_runtime() -> None:
    with pytest.raises(RuntimeError, match=r"with_timeout needs a running goroutines runtime"):
        with_timeout(background(), 1)
    with pytest.raises(RuntimeError, match=r"with_deadline needs a running goroutines runtime"):
        with_deadline(background(), time.monotonic() + 1)


def test_repr() -> None:
    ctx, cancel = with_cancel(background())
    assert repr(background()) == "<context background>"
    assert repr(ctx) == "<context with_cancel>"
    cancel()
    assert repr(ctx) == "<context with_cancel err=Canceled>"
    assert repr(with_value(ctx, "k", 1)) == "<context with_value('k')>"
