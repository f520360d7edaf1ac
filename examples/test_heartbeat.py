"""Testing goroutine code with goroutines' pytest plugin (README: "Testing").

    python -m pytest examples/test_heartbeat.py

The code under test is ``heartbeat``: a Ticker-driven loop that sends a
beat every ``period`` seconds until its context is cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import goroutines as gr


async def heartbeat(ctx: gr.Context, period: float, out: gr.Chan[float]) -> None:
    """Send the time on ``out`` every ``period`` seconds until ``ctx`` is done."""
    k = gr.Ticker(period)
    try:
        while True:
            i, now = await gr.select(ctx.done().recv, k.c.recv)
            if i == 0:
                return
            j, _ = await gr.select(ctx.done().recv, (out.send, now))
            if j == 0:
                return
    finally:
        k.stop()


@pytest.fixture
async def ctx() -> AsyncIterator[gr.Context]:
    """An async fixture: set up and torn down inside the test's runtime."""
    ctx, cancel = gr.with_cancel(gr.background())
    yield ctx
    cancel()  # ends the heartbeat before the leak check runs


# A fake-clock test of a Ticker-driven loop: a thousand beats a minute
# apart (almost 17 hours) take a few milliseconds, and the times are exact.
@pytest.mark.goroutines(fake_clock=True)
async def test_a_beat_every_minute(ctx: gr.Context) -> None:
    out: gr.Chan[float] = gr.Chan()
    gr.go(heartbeat, ctx, 60.0, out)
    t0 = gr.monotonic()
    beats = [await out.recv() for _ in range(1000)]
    assert beats[0] == t0 + 60
    assert beats[-1] == t0 + 60_000


# A leak caught: a goroutine still alive when the test is done fails the
# test, listing it (the plugin does this after every test; here it is
# called by hand to show it, then the leak is fixed).
@pytest.mark.goroutines(fake_clock=True)
async def test_forgetting_to_cancel_is_a_leak() -> None:
    ctx, cancel = gr.with_cancel(gr.background())
    gr.go(heartbeat, ctx, 1.0, gr.Chan[float]())
    with pytest.raises(gr.testing.LeakError, match=r"heartbeat"):
        await gr.testing.check_leaks(grace=0.1)
    cancel()  # without this line, the plugin fails the test with that list


# No sleeping "long enough": wait() returns once every other goroutine is
# blocked, so the test knows the heartbeat is parked before it cancels.
@pytest.mark.goroutines(fake_clock=True)
async def test_cancel_stops_a_parked_heartbeat(ctx: gr.Context) -> None:
    ctx2, cancel = gr.with_cancel(ctx)
    out: gr.Chan[float] = gr.Chan()
    done = gr.WaitGroup()
    done.add()

    async def run() -> None:
        await heartbeat(ctx2, 5.0, out)
        done.done()

    gr.go(run)
    await gr.testing.wait()
    t0 = gr.monotonic()
    cancel()
    await done.wait()
    assert gr.monotonic() == t0  # it stopped at once, no beat in between


# A seed replayed: select picks among ready cases at random, from the run's
# seeded generator, so with the seed (and procs=1) the choices are the same
# in every run. A failing test prints its seed; ``--goroutines-seed=N`` (or
# ``seed=N`` on the marker, as here) replays it.
@pytest.mark.goroutines(seed=20261205)
async def test_a_seed_replays_the_same_choices() -> None:
    a: gr.Chan[str] = gr.Chan(1)
    b: gr.Chan[str] = gr.Chan(1)
    picks = ""
    for _ in range(12):
        await a.send("a")
        await b.send("b")
        _, v = await gr.select(a.recv, b.recv)
        picks += v
        await (b if v == "a" else a).recv()
    assert picks == "babbaabbbabb"


# A timeout: a test that waits for a reply that never comes (a socket read:
# not a deadlock, real time would have to bring it) fails after ``timeout``
# wall-clock seconds with every goroutine's stack, instead of hanging.
@pytest.mark.xfail(reason="shows the timeout's report", strict=True, raises=pytest.fail.Exception)
@pytest.mark.goroutines(timeout=0.5)
async def test_a_server_that_never_answers() -> None:
    ln = await gr.net.listen("tcp", "127.0.0.1:0")
    conn = await gr.net.dial("tcp", f"127.0.0.1:{ln.addr[1]}")
    try:
        await conn.read(1)  # the listener never accepts, nobody writes
    finally:
        conn.close()
        ln.close()
