"""Bridges: gr.wait_future (futures of pools, processes, other event loops)
and gr.from_thread (plain threads calling into the runtime)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import threading
import time
from typing import Any

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from helpers import grun


class Boom(Exception):
    pass


def slow_square(x: int, delay: float = 0.05) -> int:
    time.sleep(delay)
    return x * x


def cpu_bound(n: int) -> int:
    """Pure-Python work: only processes run it in parallel."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


# ---------------------------------------------------------------- wait_future


def test_wait_future_results_and_errors(procs: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:

        async def main() -> list[Any]:
            out: list[Any] = []
            assert await gr.wait_future(pool.submit(slow_square, 7)) == 49
            with pytest.raises(Boom, match="far side"):
                await gr.wait_future(pool.submit(_raise, Boom("far side")))
            done = pool.submit(slow_square, 3, 0)
            done.result()
            out.append(await gr.wait_future(done))  # already done: no park
            cancelled: concurrent.futures.Future[int] = concurrent.futures.Future()
            cancelled.cancel()
            with pytest.raises(concurrent.futures.CancelledError):
                await gr.wait_future(cancelled)
            with pytest.raises(TypeError, match=r"needs a concurrent\.futures\.Future"):
                await gr.wait_future(42)  # type: ignore[arg-type]
            return out

        assert grun(main, procs=procs) == [9]


def _raise(e: BaseException) -> None:
    raise e


def test_many_goroutines_wait_without_holding_threads(procs: int) -> None:
    n = 200
    with concurrent.futures.ThreadPoolExecutor(8) as pool:

        async def main() -> tuple[int, int]:
            results: gr.Chan[int] = gr.Chan(n)

            async def waiter(i: int) -> None:
                await results.send(await gr.wait_future(pool.submit(slow_square, i, 0.02)))

            for i in range(n):
                gr.go(waiter, i)
            await gr.sleep(0.01)
            ms = _scheduler.require().mcount  # Ms while 200 goroutines wait
            total = sum([await results.recv() for _ in range(n)])  # type: ignore[misc]
            return total, ms

        total, ms = grun(main, procs=procs)
    assert total == sum(i * i for i in range(n))
    assert ms <= procs + 2  # the waits hold no M (Go's netpoll idea), only the pool's threads


def test_a_goroutine_waiting_on_a_future_is_not_a_deadlock(procs: int) -> None:
    # The pool's threads were started before run(): only the count of
    # goroutines waiting on futures keeps checkdead quiet.
    pool = concurrent.futures.ThreadPoolExecutor(1)
    gate = threading.Event()
    fut = pool.submit(gate.wait)
    try:

        async def main() -> bool:
            threading.Timer(0.3, gate.set).start()
            return await gr.wait_future(fut)

        assert grun(main, procs=procs) is True
    finally:
        gate.set()
        pool.shutdown()


def test_wait_future_of_an_asyncio_loop_in_another_thread(procs: int) -> None:
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:

        async def work(x: int) -> int:
            await asyncio.sleep(0.01)
            if x < 0:
                raise Boom("asyncio side")
            return x + 1

        async def main() -> list[int]:
            out = []
            for x in range(5):
                fut = asyncio.run_coroutine_threadsafe(work(x), loop)
                out.append(await gr.wait_future(fut))  # a concurrent future
            task = asyncio.run_coroutine_threadsafe(_make_task(work(10)), loop).result()
            out.append(await gr.wait_future(task))  # an asyncio Task of that loop
            bad = asyncio.run_coroutine_threadsafe(_make_task(work(-1)), loop).result()
            with pytest.raises(Boom, match="asyncio side"):
                await gr.wait_future(bad)
            return out

        assert grun(main, procs=procs) == [1, 2, 3, 4, 5, 11]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


async def _make_task(coro: Any) -> asyncio.Task[Any]:
    return asyncio.ensure_future(coro)


def test_future_wait_holds_the_virtual_clock() -> None:
    # A future is finished by real time: in a bubble the clock may not jump
    # past a sleeper while a goroutine waits on one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        async def main() -> list[str]:
            log: list[str] = []

            async def sleeper() -> None:
                await gr.sleep(1)
                log.append("sleeper")

            gr.go(sleeper)
            await gr.wait_future(pool.submit(time.sleep, 0.05))
            log.append("future")
            await gr.sleep(2)
            return log

        assert gr.testing.run(main) == ["future", "sleeper"]


def test_closed_while_waiting_leaves_no_trace(procs: int, caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(gate.wait)

        async def main() -> None:
            gr.go(gr.wait_future, fut)
            await gr.sleep(0.05)  # it parks (a future is not durably blocking: no wait())

        with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
            grun(main, procs=procs)  # main returns: the waiter is closed
            assert _scheduler.current is None
            gate.set()
            fut.result(5)
            time.sleep(0.05)
        assert caplog.records == []  # the late callback found nobody to wake


def test_processes_from_many_goroutines(procs: int) -> None:
    # CPU-bound Python on every core: goroutines wait, processes compute.
    # Not fork: the process has threads (the Ms), which fork() does not copy.
    ctx = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:

        async def main() -> list[int]:
            async with gr.Group() as g:
                results = [0] * 8

                async def one(i: int) -> None:
                    results[i] = await gr.wait_future(pool.submit(cpu_bound, 20_000 + i))

                for i in range(8):
                    g.go(one, i)
            return results

        assert grun(main, procs=procs, timeout=60) == [cpu_bound(20_000 + i) for i in range(8)]


# ---------------------------------------------------------------- from_thread


def test_from_thread_sends_and_receives(procs: int) -> None:
    async def main() -> list[Any]:
        ch: gr.Chan[int] = gr.Chan()
        out: gr.Chan[Any] = gr.Chan(10)

        def worker() -> None:
            for i in range(3):
                gr.from_thread(ch.send, i)
            got = gr.from_thread(ch.recv)
            gr.from_thread(out.send, ("thread got", got))

        t = threading.Thread(target=worker)
        t.start()
        got = [await ch.recv() for _ in range(3)]
        await ch.send(42)
        reply = await out.recv()
        await gr.syscall(t.join)
        return [got, reply]

    assert grun(main, procs=procs) == [[0, 1, 2], ("thread got", 42)]


def test_from_thread_raises_the_goroutines_exception(procs: int) -> None:
    async def fails(x: int) -> None:
        await gr.sleep(0.001)
        raise Boom(f"x={x}")

    async def main() -> str:
        box: list[BaseException] = []

        def worker() -> None:
            try:
                gr.from_thread(fails, 5)
            except Boom as e:
                box.append(e)

        await gr.syscall(_run_thread, worker)
        return str(box[0])

    assert grun(main, procs=procs) == "x=5"  # and the runtime did not stop


def _run_thread(fn: Any) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def test_from_thread_timeout(procs: int) -> None:
    async def main() -> float:
        never: gr.Chan[int] = gr.Chan()
        box: list[float] = []

        def worker() -> None:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match=r"no result within 0\.05 s"):
                gr.from_thread(never.recv, timeout=0.05)
            box.append(time.monotonic() - t0)

        await gr.syscall(_run_thread, worker)
        never.close()  # the goroutine went on: it ends now
        return box[0]

    assert 0.05 <= grun(main, procs=procs) < 2


def test_from_thread_misuse() -> None:
    async def noop() -> None:
        pass

    with pytest.raises(RuntimeError, match="no goroutines runtime is running"):
        gr.from_thread(noop)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="from a goroutine's thread"):
            gr.from_thread(noop)

        def worker() -> None:
            with pytest.raises(TypeError, match="needs an async function"):
                gr.from_thread(print)  # type: ignore[arg-type]

        await gr.syscall(_run_thread, worker)

    grun(main)


def test_run_ending_during_a_from_thread_call_unblocks_the_thread(procs: int) -> None:
    errors: list[BaseException] = []
    started = threading.Event()

    def worker() -> None:
        async def forever() -> None:
            started.set()
            await gr.Chan[None]().recv()

        try:
            gr.from_thread(forever)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=worker)

    async def main() -> None:
        t.start()
        await gr.syscall(started.wait, 5)
        # main returns: the run ends with the thread's goroutine in flight

    before = threading.active_count()
    grun(main, procs=procs)
    t.join(2)
    assert not t.is_alive(), "the thread was left blocked"
    assert "the run ended" in str(errors[0])
    assert threading.active_count() <= before


def test_calls_a_plain_thread_may_make_directly(procs: int) -> None:
    """README: from a thread, gr.go, ch.close(), cancel(), Mutex.unlock()
    and WaitGroup.done() are safe to call directly (they never block)."""

    async def main() -> list[str]:
        log: gr.Chan[str] = gr.Chan(10)
        mu = gr.Mutex()
        await mu.lock()
        wg = gr.WaitGroup()
        wg.add(1)
        ch: gr.Chan[int] = gr.Chan()
        ctx, cancel = gr.with_cancel(gr.background())

        async def started_by_thread() -> None:
            await log.send("go")

        def thread() -> None:
            gr.go(started_by_thread)
            ch.close()
            cancel()
            mu.unlock()
            wg.done()

        threading.Timer(0.05, thread).start()
        assert await ch.recv() is None
        await ctx.done().recv()
        await mu.lock()
        await wg.wait()
        return [await log.recv()]

    assert grun(main, procs=procs) == ["go"]


# ---------------------------------------------------------------- asyncio


def test_from_asyncio_result_and_error(procs: int) -> None:
    async def on_loop(x: int) -> int:
        assert asyncio.get_running_loop() is gr.asyncio_loop()
        await asyncio.sleep(0.001)
        if x < 0:
            raise Boom("asyncio side")
        return x * 2

    async def main() -> list[int]:
        out = [await gr.from_asyncio(on_loop(21))]
        with pytest.raises(Boom, match="asyncio side"):
            await gr.from_asyncio(on_loop(-1))
        task = asyncio.run_coroutine_threadsafe(_make_task(on_loop(5)), gr.asyncio_loop()).result()
        out.append(await gr.from_asyncio(task))  # a task of the runtime's loop
        with pytest.raises(TypeError, match="needs an awaitable"):
            await gr.from_asyncio(42)  # type: ignore[arg-type]
        return out

    assert grun(main, procs=procs) == [42, 10]


def test_many_goroutines_in_flight_on_one_loop(procs: int) -> None:
    n = 100
    arrived = 0
    everyone: list[asyncio.Event] = []

    async def on_loop() -> int:
        # A barrier on the asyncio side: it opens only once all n calls are
        # in flight at the same time (a 10 s timeout fails rather than hangs).
        nonlocal arrived
        if not everyone:
            everyone.append(asyncio.Event())
        arrived += 1
        if arrived == n:
            everyone[0].set()
        await asyncio.wait_for(everyone[0].wait(), 10)
        return 1

    async def main() -> int:
        async with gr.Group() as g:
            got: list[int] = []

            async def one() -> None:
                got.append(await gr.from_asyncio(on_loop()))

            for _ in range(n):
                g.go(one)
        return sum(got)

    assert grun(main, procs=procs, timeout=30) == n


def test_uvloop_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")  # a dev extra: there under make test

    async def kind() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    async def main() -> str:
        return await gr.from_asyncio(kind())

    monkeypatch.setenv("GOROUTINES_ASYNCIO", "uvloop")
    assert grun(main) == type(uvloop.new_event_loop()).__module__
    monkeypatch.setenv("GOROUTINES_ASYNCIO", "asyncio")
    assert grun(main).startswith("asyncio")
    monkeypatch.setenv("GOROUTINES_ASYNCIO", "tokio")

    async def bad() -> None:
        with pytest.raises(ValueError, match="GOROUTINES_ASYNCIO must be asyncio or uvloop"):
            await gr.from_asyncio(kind())

    grun(bad)


def test_ctx_cancels_the_asyncio_task(procs: int) -> None:
    seen: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled on the loop")
            raise

    async def main() -> None:
        ctx, cancel = gr.with_timeout(gr.background(), 0.05)
        with pytest.raises(gr.DeadlineExceeded, match="asyncio task was cancelled"):
            await gr.from_asyncio(slow(), ctx=ctx)
        cancel()
        ctx2, cancel2 = gr.with_cancel(gr.background())
        assert await gr.from_asyncio(asyncio.sleep(0.001, "fine"), ctx=ctx2) == "fine"
        cancel2()

    grun(main, procs=procs)
    assert seen == ["cancelled on the loop"]


def test_run_ending_with_asyncio_work_in_flight(procs: int) -> None:
    seen: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            seen.append("unwound")

    async def main() -> None:
        gr.go(gr.from_asyncio, forever())
        await gr.sleep(0.05)  # it is in flight; main returns

    before = {t.name for t in threading.enumerate()}
    grun(main, procs=procs)
    assert seen == ["unwound"]  # the task was cancelled with the loop
    after = {t.name for t in threading.enumerate()} - before
    assert not any(n.startswith("goroutines-asyncio") for n in after)


def test_asyncio_awaited_directly_says_what_to_do() -> None:
    async def main() -> None:
        await asyncio.sleep(0.01)

    with pytest.raises(RuntimeError, match="no running event loop") as info:
        grun(main)
    assert any("gr.from_asyncio" in n for n in getattr(info.value, "__notes__", []))

    loop = asyncio.new_event_loop()
    try:

        async def main2() -> None:
            await loop.create_future()

        with pytest.raises(TypeError, match=r"gr\.from_asyncio"):
            grun(main2)
    finally:
        loop.close()


def test_httpx_from_100_goroutines(procs: int) -> None:
    """A real asyncio library (httpx.AsyncClient) from goroutines: 100
    requests in flight at once against a local HTTP server."""
    import http.server

    httpx = pytest.importorskip("httpx")  # a dev extra: always there under make test
    hits = 0
    lock = threading.Lock()
    # Every request waits until all 100 have arrived: they are in flight
    # together, or the barrier breaks (10 s) and the requests fail.
    barrier = threading.Barrier(100, timeout=10)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            nonlocal hits
            with lock:
                hits += 1
            barrier.wait()
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 256  # listen backlog: 100 connections arrive at once
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    st = threading.Thread(target=server.serve_forever, daemon=True)
    st.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:

        async def main() -> list[str]:
            limits = httpx.Limits(max_connections=100)
            client = await gr.from_asyncio(_make_client(httpx, limits))
            bodies = [""] * 100
            try:
                async with gr.Group() as g:

                    async def get(i: int) -> None:
                        r = await gr.from_asyncio(client.get(f"{url}/item/{i}"))
                        r.raise_for_status()
                        bodies[i] = r.text

                    for i in range(100):
                        g.go(get, i)
            finally:
                await gr.from_asyncio(client.aclose())
            return bodies

        bodies = grun(main, procs=procs, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
        st.join(5)
    assert bodies == [f"/item/{i}" for i in range(100)]
    assert hits == 100


async def _make_client(httpx: Any, limits: Any) -> Any:
    return httpx.AsyncClient(limits=limits)


def test_dask_cluster_from_many_goroutines() -> None:
    """The same road beyond one process pool: a real Dask cluster (worker
    processes) through ``client.get_executor()``, whose futures are
    ``concurrent.futures`` ones (dask[distributed] is a dev extra)."""
    distributed = pytest.importorskip("distributed")

    def collatz(n: int) -> int:  # nested: cloudpickle ships it by value
        steps = 0
        while n != 1:
            n, steps = (n // 2 if n % 2 == 0 else 3 * n + 1), steps + 1
        return steps

    def boom() -> None:
        raise Boom("on a worker")

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ex = client.get_executor()

        async def main() -> list[int]:
            out = [0] * 30
            async with gr.Group(limit=10) as g:

                async def one(i: int) -> None:
                    out[i] = await gr.wait_future(ex.submit(collatz, 1000 + i))

                for i in range(30):
                    g.go(one, i)
            with pytest.raises(Boom, match="on a worker"):
                await gr.wait_future(ex.submit(boom))
            return out

        assert grun(main, procs=2, timeout=60) == [collatz(1000 + i) for i in range(30)]


def test_asyncio_loop_stops_when_main_raises() -> None:
    async def main() -> None:
        await gr.from_asyncio(asyncio.sleep(0))
        raise Boom("main failed")

    with pytest.raises(Boom):
        grun(main)
    assert not any(t.name == "goroutines-asyncio" for t in threading.enumerate())


def test_a_thread_that_will_call_from_thread_is_not_a_deadlock(procs: int) -> None:
    # The deadlock rule for threads holds for from_thread too: a thread
    # started during the run may still wake a goroutine through it.
    async def main() -> int:
        ch: gr.Chan[int] = gr.Chan()

        def later() -> None:
            time.sleep(0.2)
            gr.from_thread(ch.send, 7)

        threading.Thread(target=later).start()
        v = await ch.recv()  # every goroutine blocked, for 0.2 s
        assert v is not None
        return v

    assert grun(main, procs=procs) == 7


def test_wait_future_with_a_context(procs: int) -> None:
    gate = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(gate.wait)  # the only worker is busy: the next one stays pending

        async def main() -> None:
            pending = pool.submit(slow_square, 3)
            ctx, cancel = gr.with_timeout(gr.background(), 0.05)
            t0 = time.monotonic()
            with pytest.raises(gr.DeadlineExceeded, match="the future was cancelled"):
                await gr.wait_future(pending, ctx=ctx)
            assert time.monotonic() - t0 >= 0.05
            assert pending.cancelled()  # it had not started: cancelled
            cancel()
            done, cancel2 = gr.with_cancel(gr.background())
            cancel2()  # already done: no wait at all
            with pytest.raises(gr.Canceled):
                await gr.wait_future(pool.submit(slow_square, 4), ctx=done)
            ok, cancel3 = gr.with_cancel(gr.background())
            gate.set()
            assert await gr.wait_future(pool.submit(slow_square, 5, 0), ctx=ok) == 25
            cancel3()
            for _ in range(100):  # the context watchers have ended
                if gr.num_goroutine() == 1:
                    break
                await gr.sleep(0.01)
            assert gr.num_goroutine() == 1

        grun(main, procs=procs)
        busy.result(5)
