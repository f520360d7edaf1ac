"""gr.Group: errgroup and task group in one (issue "The program around the goroutines")."""

from __future__ import annotations

import gc
import warnings

import pytest

import goroutines as gr


class Boom(Exception):
    pass


@pytest.mark.goroutines
async def test_wait_waits_for_every_member() -> None:
    g = gr.Group()
    out: list[int] = []

    async def member(i: int) -> None:
        await gr.gosched()
        out.append(i)

    for i in range(50):
        g.go(member, i)
    await g.wait()
    assert sorted(out) == list(range(50))
    assert g.ctx.err() is gr.Canceled  # cancelled once wait() returned


@pytest.mark.goroutines(fake_clock=True)
async def test_every_error_is_kept_in_the_order_they_happened() -> None:
    g = gr.Group()

    async def fails(d: float, msg: str) -> None:
        await gr.sleep(d)
        raise Boom(msg)

    async def ok() -> None:
        await gr.sleep(0.5)

    g.go(fails, 3, "third")
    g.go(fails, 1, "first")
    g.go(ok)
    g.go(fails, 2, "second")
    with pytest.raises(ExceptionGroup) as info:
        await g.wait()
    errs = info.value.exceptions
    assert [str(e) for e in errs] == ["first", "second", "third"]
    notes = getattr(errs[0], "__notes__", [])
    assert any("a member of a Group" in n and "fails" in n and "test_group.py" in n for n in notes)


@pytest.mark.goroutines(fake_clock=True)
async def test_except_star_works() -> None:
    g = gr.Group()

    async def fails(exc: Exception) -> None:
        raise exc

    g.go(fails, KeyError("k"))
    g.go(fails, Boom("b"))
    seen: list[str] = []
    try:
        await g.wait()
    except* KeyError as eg:
        seen.append(f"key {len(eg.exceptions)}")
    except* Boom as eg:
        seen.append(f"boom {len(eg.exceptions)}")
    assert sorted(seen) == ["boom 1", "key 1"]


@pytest.mark.goroutines(fake_clock=True)
async def test_first_error_cancels_ctx_so_members_stop_early() -> None:
    g = gr.Group()
    stopped: list[float] = []

    async def worker() -> None:
        t0 = gr.monotonic()
        i, _ = await gr.select(g.ctx.done().recv, gr.after(3600).recv)
        assert i == 0 and g.ctx.err() is gr.Canceled
        stopped.append(gr.monotonic() - t0)

    async def fails() -> None:
        await gr.sleep(5)
        raise Boom("early")

    for _ in range(3):
        g.go(worker)
    g.go(fails)
    with pytest.raises(ExceptionGroup):
        await g.wait()
    assert stopped == [5.0, 5.0, 5.0]


@pytest.mark.goroutines
async def test_ctx_derives_from_the_given_one() -> None:
    parent, cancel = gr.with_cancel(gr.background())
    g = gr.Group(ctx=parent)

    async def waits() -> None:
        await g.ctx.done().recv()

    g.go(waits)
    await gr.testing.wait()
    cancel()
    await g.wait()
    assert g.ctx.err() is gr.Canceled


@pytest.mark.goroutines(fake_clock=True)
async def test_limit_runs_at_most_n_and_go_never_blocks() -> None:
    g = gr.Group(limit=3)
    running = peak = 0
    order: list[int] = []

    async def member(i: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        order.append(i)
        await gr.sleep(1)
        running -= 1

    t0 = gr.monotonic()
    for i in range(10):
        g.go(member, i)  # never blocks, even past the limit
    assert gr.monotonic() == t0
    await g.wait()
    assert peak == 3
    # The first three start at once (the last one started runs first, as a
    # new goroutine does: runnext); the others start in order as slots free.
    assert sorted(order[:3]) == [0, 1, 2]
    assert order[3:] == list(range(3, 10))
    assert gr.monotonic() == t0 + 4  # ceil(10 / 3) rounds of 1 s


@pytest.mark.goroutines(fake_clock=True)
async def test_async_with_waits_at_the_end_of_the_block() -> None:
    done: list[int] = []

    async def member(i: int) -> None:
        await gr.sleep(i)
        done.append(i)

    async with gr.Group() as g:
        for i in range(3):
            g.go(member, i)
    assert sorted(done) == [0, 1, 2]


@pytest.mark.goroutines(fake_clock=True)
async def test_async_with_body_error_cancels_and_joins_the_group() -> None:
    stopped = False

    async def worker(ctx: gr.Context) -> None:
        nonlocal stopped
        await ctx.done().recv()
        stopped = True

    with pytest.raises(ExceptionGroup) as info:
        async with gr.Group() as g:
            g.go(worker, g.ctx)
            await gr.testing.wait()
            raise Boom("body")
    assert stopped
    assert [str(e) for e in info.value.exceptions] == ["body"]


@pytest.mark.goroutines(fake_clock=True)
async def test_a_member_error_does_not_stop_the_runtime() -> None:
    g = gr.Group()

    async def fails() -> None:
        raise Boom("mine")

    g.go(fails)
    await gr.sleep(10)  # the runtime goes on: the error belongs to the group
    with pytest.raises(ExceptionGroup):
        await g.wait()


@pytest.mark.goroutines
async def test_go_after_wait_is_an_error() -> None:
    g = gr.Group()
    await g.wait()

    async def member() -> None:
        pass

    with pytest.raises(RuntimeError, match=r"after the group's wait\(\) returned"):
        g.go(member)


@pytest.mark.goroutines
async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        gr.Group(limit=0)
    with pytest.raises(TypeError, match="limit must be an int"):
        gr.Group(limit=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ctx must be a Context"):
        gr.Group(ctx="x")  # type: ignore[arg-type]

    def not_async() -> None:
        pass

    with pytest.raises(TypeError, match=r"Group.go\(\) needs an async function"):
        gr.Group().go(not_async)  # type: ignore[arg-type]


def test_unretrieved_errors_are_never_silent() -> None:
    async def fails() -> None:
        raise Boom("forgotten")

    async def dropped() -> None:
        g = gr.Group()
        g.go(fails)
        await gr.testing.wait()
        del g
        gc.collect()  # the group is gone with its error: a warning says so

    with pytest.warns(RuntimeWarning, match=r"never retrieved.*\n  Boom: forgotten"):
        gr.testing.run(dropped)

    kept: list[gr.Group] = []

    async def outlives() -> None:
        g = gr.Group()
        kept.append(g)
        g.go(fails)
        await gr.testing.wait()

    with pytest.warns(RuntimeWarning, match=r"never retrieved.*\n  Boom: forgotten"):
        gr.testing.run(outlives)  # reported when the run ends
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del kept[:]
        gc.collect()  # reported once, not again


def test_members_left_at_the_end_of_the_run_are_closed() -> None:
    closed: list[str] = []

    async def member(i: int) -> None:
        try:
            await gr.Chan[None]().recv()
        finally:
            closed.append(f"m{i}")

    async def main() -> None:
        g = gr.Group(limit=2)
        for i in range(4):
            g.go(member, i)
        await gr.testing.wait()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited" for m2, m3
        gr.testing.run(main)
        gc.collect()
    assert sorted(closed) == ["m0", "m1"]


def test_many_groups_with_errors_do_not_grow_the_run() -> None:
    # A server that uses a Group per request, some of them failing, must
    # not keep a record per group for the end of the run.
    async def fails() -> None:
        raise Boom("x")

    async def main() -> int:
        for _ in range(200):
            g = gr.Group()
            g.go(fails)
            with pytest.raises(ExceptionGroup):
                await g.wait()
        from goroutines._runtime import _scheduler

        return len(_scheduler.require().at_exit)

    assert gr.testing.run(main) <= 1
