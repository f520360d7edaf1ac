"""goroutines.testing: the bubble (virtual clock), ``wait``, the leak check,
and the pytest plugin, the last run through pytest's own ``pytester``.

Each pytester test writes a test file, runs pytest on it in this process,
and checks the outcomes and the report's text; the procs-dependent ones run
at procs 1 and 4 (``--goroutines-procs``).
"""

from __future__ import annotations

import re
import threading
import time

import pytest

import goroutines as gr
from goroutines._runtime import _clock, _scheduler

# ---------------------------------------------------------------- the bubble


def test_sleep_an_hour_on_the_virtual_clock(procs: int) -> None:
    async def main() -> tuple[float, float]:
        t0, r0 = gr.monotonic(), time.monotonic()
        await gr.sleep(3600)
        return gr.monotonic() - t0, time.monotonic() - r0

    virtual, real = gr.testing.run(main, procs=procs)
    assert virtual == 3600.0
    assert real < 60  # a sanity bound: an hour did not really pass


def test_clock_starts_at_the_epoch_and_is_real_outside() -> None:
    async def main() -> float:
        return gr.monotonic()

    assert gr.testing.run(main) == _clock.EPOCH
    assert _clock.virtual is None
    before = time.monotonic()
    assert before <= gr.monotonic() <= time.monotonic()  # outside any runtime: real time
    # gr.run is on the real clock
    got = gr.run(main, procs=1)
    assert abs(got - time.monotonic()) < 60


def test_the_real_clock_is_back_after_a_bubble_that_raised() -> None:
    async def boom() -> None:
        await gr.sleep(100)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        gr.testing.run(boom)
    assert _clock.virtual is None and _clock.now is time.monotonic

    async def main() -> tuple[float, float]:
        r0, g0 = time.monotonic(), gr.monotonic()
        await gr.sleep(0.05)  # on the real clock again (the accelerator's too)
        return time.monotonic() - r0, gr.monotonic() - g0

    real, runtime = gr.run(main, procs=1)
    assert real >= 0.05 and runtime >= 0.05
    assert abs(real - runtime) < 0.01


def test_every_timer_kind_is_virtual(procs: int) -> None:
    async def main() -> list[float]:
        t0 = gr.monotonic()
        seen = []
        k = gr.Ticker(1.0)
        for _ in range(100):
            seen.append(await k.c.recv())
        k.stop()
        assert seen[-1] == t0 + 100.0
        v = await gr.after(5).recv()
        assert v == t0 + 105.0
        c = gr.tick(2)
        await c.recv()
        t = gr.Timer(3)
        await t.c.recv()
        ctx, cancel = gr.with_timeout(gr.background(), 30)
        await ctx.done().recv()
        assert ctx.err() is gr.DeadlineExceeded
        cancel()
        ctx, cancel = gr.with_deadline(gr.background(), gr.monotonic() + 7)
        await ctx.done().recv()
        cancel()
        return [gr.monotonic() - t0]

    assert gr.testing.run(main, procs=procs) == [100.0 + 5 + 2 + 3 + 30 + 7]


def test_timers_fire_in_time_order() -> None:
    async def main() -> list[tuple[int, float]]:
        out: gr.Chan[tuple[int, float]] = gr.Chan(100)

        async def sleeper(i: int, d: float) -> None:
            await gr.sleep(d)
            await out.send((i, gr.monotonic() - _clock.EPOCH))

        for i, d in enumerate([5, 1, 3, 1, 2, 5, 4]):
            gr.go(sleeper, i, d)
        await gr.testing.wait()
        return [await out.recv() for _ in range(7)]

    got = gr.testing.run(main)
    assert sorted(got) == [(0, 5), (1, 1), (2, 3), (3, 1), (4, 2), (5, 5), (6, 4)]
    times = [t for _, t in got]
    assert times == sorted(times)


def test_socket_deadline_is_on_the_virtual_clock() -> None:
    async def main() -> None:
        ln = await gr.net.listen("tcp", "127.0.0.1:0")
        conn = await gr.net.dial("tcp", f"127.0.0.1:{ln.addr[1]}")
        peer = await ln.accept()
        conn.set_deadline(gr.monotonic() + 10)
        await gr.sleep(11)  # virtual seconds: the deadline is now past
        with pytest.raises(TimeoutError):
            await conn.read(10)
        conn.set_deadline(None)
        await peer.write(b"hi")
        assert await conn.read(10) == b"hi"
        for c in (conn, peer, ln):
            c.close()

    gr.testing.run(main)


def test_a_blocking_call_holds_the_virtual_clock() -> None:
    async def main() -> list[str]:
        log: list[str] = []

        async def sleeper() -> None:
            await gr.sleep(0.001)  # virtual
            log.append("woke")

        gr.go(sleeper)
        await gr.syscall(time.sleep, 0.05)  # real time: the clock may not jump meanwhile
        log.append("syscall done")
        await gr.sleep(1)
        return log

    assert gr.testing.run(main) == ["syscall done", "woke"]


def test_deadlock_in_a_bubble() -> None:
    async def main() -> None:
        await gr.sleep(10)
        await gr.Chan[int]().recv()

    with pytest.raises(gr.Deadlock) as info:
        gr.testing.run(main, seed=1234)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "seed 1234" in notes or "seed=1234" in notes


def test_locked_goroutine_parking_last_still_moves_the_clock(procs: int) -> None:
    async def main() -> float:
        gr.lock_os_thread()
        try:
            t0 = gr.monotonic()
            await gr.sleep(50)
            return gr.monotonic() - t0
        finally:
            gr.unlock_os_thread()

    assert gr.testing.run(main, procs=procs) == 50.0


def test_run_arguments_are_checked() -> None:
    async def main() -> None:
        pass

    with pytest.raises(TypeError, match="fake_clock must be a bool"):
        gr.testing.run(main, fake_clock="yes")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"testing.run\(\): procs must be >= 1"):
        gr.testing.run(main, procs=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        gr.testing.run(main, seed="x")  # type: ignore[call-overload]

    async def nested() -> None:
        gr.testing.run(main)

    with pytest.raises(RuntimeError, match="already running"):
        gr.testing.run(nested)


def test_real_clock_bubble() -> None:
    async def main() -> float:
        t0 = time.monotonic()
        await gr.sleep(0.05)
        return time.monotonic() - t0

    assert gr.testing.run(main, fake_clock=False) >= 0.05


# ---------------------------------------------------------------- determinism


async def _interleaving() -> list[object]:
    """A log of select's picks among ready cases and of the run order of
    goroutines woken together: what a seed decides at procs=1."""
    log: list[object] = []
    a: gr.Chan[int] = gr.Chan(1)
    b: gr.Chan[int] = gr.Chan(1)

    wg = gr.WaitGroup()

    async def worker(k: int) -> None:
        for i in range(10):
            await gr.sleep(0.5 * (1 + (i + k) % 3))
            log.append(f"w{k}")
        wg.done()

    for k in range(3):
        wg.add()
        gr.go(worker, k)
    for _ in range(40):
        await a.send(0)
        await b.send(1)
        i, _ = await gr.select(a.recv, b.recv)
        log.append(i)
        await (b if i == 0 else a).recv()
        await gr.sleep(0.25)
    await wg.wait()
    return log


def test_same_seed_same_schedule() -> None:
    runs = [gr.testing.run(_interleaving, seed=42) for _ in range(5)]
    assert all(r == runs[0] for r in runs)
    assert len(runs[0]) == 70


def test_different_seeds_explore_different_schedules() -> None:
    logs = {tuple(gr.testing.run(_interleaving, seed=s)) for s in range(12)}
    assert len(logs) > 1


# ---------------------------------------------------------------- wait


def test_wait_returns_once_the_others_are_durably_blocked(procs: int) -> None:
    async def main() -> list[str]:
        log: list[str] = []
        ch: gr.Chan[int] = gr.Chan()
        mu = gr.Mutex()
        await mu.lock()

        async def recv() -> None:
            log.append("recv parks")
            await ch.recv()
            log.append("recv woke")

        async def locker() -> None:
            log.append("lock parks")
            await mu.lock()
            mu.unlock()

        gr.go(recv)
        gr.go(locker)
        await gr.testing.wait()
        assert sorted(log) == ["lock parks", "recv parks"]
        await ch.send(1)
        mu.unlock()
        await gr.testing.wait()
        assert log[-1] == "recv woke"
        assert gr.num_goroutine() == 1
        return log

    gr.testing.run(main, procs=procs)


def test_wait_does_not_let_the_clock_move_first() -> None:
    async def main() -> float:
        async def sleeper() -> None:
            await gr.sleep(100)

        gr.go(sleeper)
        t0 = gr.monotonic()
        await gr.testing.wait()  # the sleeper is durably blocked: no time passes
        return gr.monotonic() - t0

    assert gr.testing.run(main) == 0.0


def test_wait_waits_for_a_blocking_call(procs: int) -> None:
    async def main() -> bool:
        done = threading.Event()

        async def blocker() -> None:
            await gr.syscall(time.sleep, 0.05)
            done.set()

        gr.go(blocker)
        await gr.testing.wait()
        return done.is_set()

    assert gr.testing.run(main, procs=procs, fake_clock=False)


def test_wait_works_in_a_plain_run() -> None:
    async def main() -> int:
        ch: gr.Chan[int] = gr.Chan()
        for _ in range(10):
            gr.go(ch.recv)
        await gr.testing.wait()
        gs = _scheduler.require().allgs.values()
        n = sum(1 for g in gs if g.wait_reason.value == "chan receive")
        ch.close()
        return n

    assert gr.run(main, procs=2) == 10


def test_only_one_goroutine_may_wait() -> None:
    async def main() -> None:
        errs: gr.Chan[BaseException] = gr.Chan(1)

        async def second() -> None:
            try:
                await gr.testing.wait()
            except RuntimeError as e:
                await errs.send(e)

        async def first() -> None:
            await gr.testing.wait()

        gr.go(first)
        await gr.gosched()
        gr.go(second)
        e = await errs.recv()
        assert "already waiting" in str(e)

    gr.testing.run(main)


def test_wait_outside_a_goroutine() -> None:
    coro = gr.testing.wait()
    with pytest.raises(RuntimeError, match="not inside a goroutine"):
        coro.send(None)


def test_a_waiter_left_at_the_end_is_closed() -> None:
    async def main() -> None:
        gr.go(gr.testing.wait)
        await gr.gosched()

    gr.testing.run(main)
    gr.testing.run(main)  # the slot was freed


# ---------------------------------------------------------------- leaks


def test_leaked_lists_the_others() -> None:
    async def main() -> str:
        ch: gr.Chan[int] = gr.Chan()

        async def stuck_worker() -> None:
            await ch.recv()

        async def quick() -> None:
            await gr.gosched()

        gr.go(stuck_worker)
        gr.go(quick)  # on its way out: not a leak
        with pytest.raises(gr.testing.LeakError) as info:
            await gr.testing.check_leaks(grace=0.05)
        ch.close()
        await gr.testing.check_leaks()
        return str(info.value)

    msg = gr.testing.run(main)
    assert msg.startswith("1 goroutine leaked")
    assert "stuck_worker" in msg and "[chan receive]" in msg
    assert "created by main" in msg and "test_testing.py" in msg


# ---------------------------------------------------------------- the plugin


@pytest.fixture
def tester(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # Without hypothesis's plugin, unrelated here: pytester drops the modules
    # each inner run imports, and importing hypothesis again costs ~0.7 s.
    return pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args
    )


PASSING = """
import pytest
import goroutines as gr

order = []

@pytest.fixture
def sync_fix():
    order.append("sync setup")
    yield "s"
    order.append("sync teardown")

@pytest.fixture
async def chan():
    order.append("chan setup " + str(gr.goroutine_id()))
    ch = gr.Chan(1)
    yield ch
    order.append("chan teardown")
    ch.close()

@pytest.fixture
async def primed(chan):
    await chan.send(5)
    order.append("primed")
    return 5

@pytest.mark.goroutines
async def test_body(sync_fix, chan, primed):
    order.append("body")
    assert sync_fix == "s"
    assert await chan.recv() == primed

def test_order():
    assert order == ["sync setup", "chan setup 1", "primed", "body", "chan teardown",
                     "sync teardown"]
"""


def test_plugin_passing_test_with_fixtures(tester: pytest.Pytester, procs: int) -> None:
    tester.makepyfile(PASSING)
    r = _run(tester, f"--goroutines-procs={procs}")
    r.assert_outcomes(passed=2)


def test_plugin_failing_test_prints_its_seed(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        import pytest

        @pytest.mark.goroutines
        async def test_fails():
            assert 1 + 1 == 3
        """
    )
    r = _run(tester)
    r.assert_outcomes(failed=1)
    r.stdout.re_match_lines([r".*goroutines.*", r"seed \d+; replay with --goroutines-seed=\d+"])
    r.stdout.fnmatch_lines(["*assert (1 + 1) == 3*"])


def test_plugin_hung_test_fails_with_the_dump(tester: pytest.Pytester, procs: int) -> None:
    tester.makepyfile(
        """
        import time
        import pytest
        import goroutines as gr

        @pytest.mark.goroutines(timeout=0.5)
        async def test_hangs():
            ch = gr.Chan()
            async def blocked_sender():
                await gr.syscall(time.sleep, 0.8)
            gr.go(blocked_sender)
            await ch.recv()

        @pytest.mark.goroutines(timeout=0.5, fake_clock=True)
        async def test_hangs_on_the_fake_clock():
            async def spin():
                await gr.syscall(time.sleep, 0.8)
            gr.go(spin)
            await gr.sleep(10)
        """
    )
    t0 = time.monotonic()
    r = _run(tester, f"--goroutines-procs={procs}", "-W", "ignore::RuntimeWarning")
    assert time.monotonic() - t0 < 25  # the hung tests did not hang the session
    r.assert_outcomes(failed=2)
    r.stdout.fnmatch_lines(
        [
            "*did not finish within its timeout of 0.5 s (wall clock); goroutines:*",
            "goroutine 1 [[]chan receive*",
            "*test_hangs*",
            "goroutine 2 [[]syscall*",
            "created by test_hangs",
        ]
    )
    r.stdout.fnmatch_lines(["goroutine 1 [[]sleep*", "*test_hangs_on_the_fake_clock*"])


def test_plugin_leak_check(tester: pytest.Pytester, procs: int) -> None:
    tester.makepyfile(
        """
        import pytest
        import goroutines as gr

        async def forgotten(ch):
            await ch.recv()

        @pytest.mark.goroutines
        async def test_leaks():
            gr.go(forgotten, gr.Chan())

        @pytest.mark.goroutines(leaks="ignore")
        async def test_leaks_ignored():
            gr.go(forgotten, gr.Chan())

        @pytest.mark.goroutines
        async def test_on_its_way_out_is_no_leak():
            ch = gr.Chan(1)
            async def finishing():
                await ch.send(1)
            gr.go(finishing)

        @pytest.fixture
        async def server():
            ch = gr.Chan()
            gr.go(forgotten, ch)
            yield ch
            ch.close()  # the fixture's teardown ends it: no leak

        @pytest.mark.goroutines
        async def test_fixture_teardown_comes_first(server):
            pass
        """
    )
    r = _run(tester, f"--goroutines-procs={procs}")
    r.assert_outcomes(passed=3, failed=1)
    r.stdout.fnmatch_lines(
        [
            "*LeakError: 1 goroutine leaked (still alive when the test was done):*",
            "*goroutine 2 [[]chan receive]:",
            "*forgotten*",
            "*created by test_leaks",
        ]
    )


def test_plugin_fake_clock_ticker(tester: pytest.Pytester, procs: int) -> None:
    tester.makepyfile(
        """
        import time
        import pytest
        import goroutines as gr

        @pytest.mark.goroutines(fake_clock=True)
        async def test_ticker_loop():
            t0, r0 = gr.monotonic(), time.monotonic()
            k = gr.Ticker(1.0)
            n = 0
            async for _ in k.c:
                n += 1
                if n == 100:
                    break
            k.stop()
            assert gr.monotonic() - t0 == 100.0
            assert time.monotonic() - r0 < 10

        async def test_not_marked_is_left_alone():
            pass
        """
    )
    r = _run(tester, f"--goroutines-procs={procs}")
    outcomes = r.parseoutcomes()
    assert outcomes.get("passed") == 1
    # the unmarked async test is pytest's to refuse (strict mode)
    assert outcomes.get("failed", 0) + outcomes.get("skipped", 0) == 1


def test_plugin_auto_mode_and_ini_defaults(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\ngoroutines_mode = auto\ngoroutines_fake_clock = true\n"
        "goroutines_procs = 3\ngoroutines_seed = 77\n"
    )
    pytester.makepyfile(
        """
        import goroutines as gr
        from goroutines._runtime import _scheduler

        async def test_auto():
            assert gr.gomaxprocs() == 3
            assert _scheduler.require().seed == 77
            t0 = gr.monotonic()
            await gr.sleep(1000)
            assert gr.monotonic() - t0 == 1000
        """
    )
    _run(pytester).assert_outcomes(passed=1)


def test_plugin_replays_a_seed(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        import pytest
        import goroutines as gr

        @pytest.mark.goroutines(fake_clock=True)
        async def test_choices():
            a, b = gr.Chan(1), gr.Chan(1)
            picks = []
            for _ in range(40):
                await a.send(0)
                await b.send(1)
                i, _ = await gr.select(a.recv, b.recv)
                picks.append(i)
                await (b if i == 0 else a).recv()
            assert False, "picks " + "".join(map(str, picks))
        """
    )
    first = _run(tester)
    first.assert_outcomes(failed=1)
    text = first.stdout.str()
    seed = re.search(r"replay with --goroutines-seed=(\d+)", text)
    picks = re.search(r"picks ([01]{40})", text)
    assert seed and picks
    again = _run(tester, f"--goroutines-seed={seed.group(1)}")
    again.assert_outcomes(failed=1)
    assert f"picks {picks.group(1)}" in again.stdout.str()
    other = _run(tester, f"--goroutines-seed={int(seed.group(1)) + 1}")
    assert f"picks {picks.group(1)}" not in other.stdout.str()


def test_plugin_usage_errors(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        import pytest

        @pytest.fixture
        async def afix():
            return 1

        def test_sync_uses_async_fixture(afix):
            pass

        @pytest.mark.goroutines
        def test_marked_but_sync():
            pass

        @pytest.mark.goroutines(proc=2)
        async def test_bad_option():
            pass

        @pytest.fixture(scope="module")
        async def wide():
            return 1

        @pytest.mark.goroutines
        async def test_module_scoped_async_fixture(wide):
            pass

        @pytest.fixture
        def sync_on_async(afix):
            return afix

        @pytest.mark.goroutines
        async def test_sync_fixture_on_async_one(sync_on_async):
            pass
        """
    )
    r = _run(tester)
    out = r.stdout.str()
    assert "async fixture 'afix' is used by a test that does not run in goroutines" in out
    assert "@pytest.mark.goroutines is for async def tests" in out
    assert "unknown @pytest.mark.goroutines option(s) ['proc']" in out
    assert "must be function-scoped" in out
    assert "fixture 'sync_on_async' uses async fixture 'afix'" in out
    r.assert_outcomes(failed=2, errors=3)


@pytest.mark.goroutines(fake_clock=True)
async def test_our_suite_runs_plugin_tests_at_each_procs(procs: int) -> None:
    # conftest's ``goroutines_procs`` fixture is ``procs``: this test runs
    # at 1 and 4 Ps, as the others of the suite do.
    assert gr.gomaxprocs() == procs
    t0 = gr.monotonic()
    await gr.sleep(5)
    assert gr.monotonic() - t0 == 5


def test_plugin_goroutines_procs_fixture_parametrizes(tester: pytest.Pytester) -> None:
    tester.makeconftest(
        """
        import pytest

        @pytest.fixture(params=[1, 3])
        def goroutines_procs(request):
            return request.param
        """
    )
    tester.makepyfile(
        """
        import pytest
        import goroutines as gr

        seen = []

        @pytest.mark.goroutines
        async def test_procs():
            seen.append(gr.gomaxprocs())

        @pytest.mark.goroutines(procs=2)
        async def test_marker_wins():
            assert gr.gomaxprocs() == 2

        def test_seen():
            assert seen == [1, 3]
        """
    )
    _run(tester).assert_outcomes(passed=5)
