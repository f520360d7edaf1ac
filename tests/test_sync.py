"""Tests for goroutines._sync: Mutex, RWMutex, WaitGroup, Once, Cond, Semaphore.

Events are ordered with channels, and with ``wait_parked``: it waits until
every other goroutine is blocked (``gr.testing.wait()``, Go's
``synctest.Wait``: no polling, no sleeping), then checks that the goroutine
dump shows exactly the expected number parked with a given wait reason.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

import goroutines as gr
from goroutines._sync import Cond, Mutex, Once, RWMutex, Semaphore, WaitGroup

PROCS = pytest.mark.parametrize("procs", [1, 4])


async def wait_parked(reason: str, n: int) -> None:
    """Wait until every other goroutine is blocked (``gr.testing.wait()``),
    then check that exactly ``n`` of them are parked with ``reason``."""
    await gr.testing.wait()
    got = gr.stack_dump().count(f"[{reason}")
    assert got == n, f"{got} goroutines parked on {reason}, expected {n}"


async def parked_count(reason: str) -> int:
    return gr.stack_dump().count(f"[{reason}")


# -- Mutex ------------------------------------------------------------------------


@PROCS
def test_mutex_mutual_exclusion(procs: int) -> None:
    n_g, n_iter = 20, 25

    async def main() -> tuple[int, int]:
        mu = Mutex()
        state = {"count": 0, "inside": 0, "max_inside": 0}
        done: gr.Chan[None] = gr.Chan()

        async def worker() -> None:
            for _ in range(n_iter):
                await mu.lock()
                state["inside"] += 1
                state["max_inside"] = max(state["max_inside"], state["inside"])
                v = state["count"]
                await gr.gosched()  # let others run inside the critical section
                state["count"] = v + 1
                state["inside"] -= 1
                mu.unlock()
            await done.send(None)

        for _ in range(n_g):
            gr.go(worker)
        for _ in range(n_g):
            await done.recv()
        return state["count"], state["max_inside"]

    assert gr.run(main, procs=procs) == (n_g * n_iter, 1)


@PROCS
def test_mutex_try_lock(procs: int) -> None:
    async def main() -> list[bool]:
        mu = Mutex()
        r = [mu.try_lock(), mu.try_lock()]
        mu.unlock()
        r.append(mu.try_lock())
        mu.unlock()
        await mu.lock()
        r.append(mu.try_lock())
        mu.unlock()
        return r

    assert gr.run(main, procs=procs) == [True, False, True, False]


@PROCS
def test_mutex_unlock_by_another_goroutine(procs: int) -> None:
    async def main() -> bool:
        mu = Mutex()
        await mu.lock()
        unlocked: gr.Chan[None] = gr.Chan()

        async def other() -> None:
            mu.unlock()
            await unlocked.send(None)

        gr.go(other)
        await unlocked.recv()
        ok = mu.try_lock()
        # and a parked locker is released by another goroutine's unlock
        got: gr.Chan[str] = gr.Chan()

        async def locker() -> None:
            await mu.lock()
            await got.send("locked")

        gr.go(locker)
        await wait_parked("sync.Mutex.Lock", 1)
        gr.go(other)
        assert await got.recv() == "locked"
        await unlocked.recv()
        return ok

    assert gr.run(main, procs=procs) is True


@PROCS
def test_mutex_unlock_of_unlocked(procs: int) -> None:
    async def main() -> None:
        mu = Mutex()
        with pytest.raises(RuntimeError, match="sync: unlock of unlocked mutex"):
            mu.unlock()
        await mu.lock()
        mu.unlock()
        with pytest.raises(RuntimeError, match="unlock of unlocked mutex"):
            mu.unlock()
        assert mu.try_lock()  # still usable

    gr.run(main, procs=procs)


@PROCS
def test_mutex_fifo_handoff(procs: int) -> None:
    n = 8

    async def main() -> tuple[list[int], bool]:
        mu = Mutex()
        order: list[int] = []
        done: gr.Chan[None] = gr.Chan(n)

        async def waiter(i: int) -> None:
            await mu.lock()
            order.append(i)
            mu.unlock()
            await done.send(None)

        await mu.lock()
        for i in range(n):
            gr.go(waiter, i)
            await wait_parked("sync.Mutex.Lock", i + 1)
        mu.unlock()
        # handed to waiter 0, not released: no barging by the unlocker
        barged = mu.try_lock()
        for _ in range(n):
            await done.recv()
        return order, barged

    order, barged = gr.run(main, procs=procs)
    assert order == list(range(n))
    assert barged is False


@PROCS
def test_mutex_async_with(procs: int) -> None:
    async def main() -> list[bool]:
        mu = Mutex()
        r = []
        async with mu:
            r.append(mu.try_lock())
        r.append(mu.try_lock())
        mu.unlock()
        with pytest.raises(KeyError):
            async with mu:
                raise KeyError("x")
        r.append(mu.try_lock())  # the exception unlocked it
        return r

    assert gr.run(main, procs=procs) == [False, True, True]


@PROCS
def test_mutex_deadlock_reported(procs: int) -> None:
    async def main() -> None:
        a, b = Mutex(), Mutex()
        both: gr.Chan[None] = gr.Chan()

        async def g1() -> None:
            await a.lock()
            await both.send(None)
            await b.lock()

        async def g2() -> None:
            await b.lock()
            await both.recv()
            await a.lock()

        gr.go(g1)
        gr.go(g2)
        await gr.Chan[None]().recv()

    with pytest.raises(gr.Deadlock) as ei:
        gr.run(main, procs=procs)
    msg = str(ei.value)
    assert "all goroutines are asleep" in msg
    assert msg.count("[sync.Mutex.Lock") == 2


@PROCS
def test_mutex_parks_goroutine_not_thread(procs: int) -> None:
    # At procs 1 there is one M: if a blocked lock() blocked the thread,
    # the holder could never run to unlock.
    async def main() -> str:
        mu = Mutex()
        go_on: gr.Chan[None] = gr.Chan()
        out: gr.Chan[str] = gr.Chan()

        async def holder() -> None:
            async with mu:
                await go_on.recv()

        async def blocked() -> None:
            async with mu:
                await out.send("got it")

        await mu.lock()
        gr.go(holder)
        mu.unlock()
        await wait_parked("chan receive", 1)
        gr.go(blocked)
        await wait_parked("sync.Mutex.Lock", 1)
        await go_on.send(None)
        return await out.recv() or ""

    assert gr.run(main, procs=procs) == "got it"


@pytest.mark.stress
@PROCS
def test_mutex_stress(procs: int) -> None:
    n_g, n_iter = 500, 20
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:

        async def main() -> int:
            mu = Mutex()
            wg = WaitGroup()
            count = [0]

            async def worker() -> None:
                for _ in range(n_iter):
                    async with mu:
                        v = count[0]
                        for _ in range(5):  # widen the window for a lost update
                            pass
                        count[0] = v + 1
                wg.done()

            wg.add(n_g)
            for _ in range(n_g):
                gr.go(worker)
            await wg.wait()
            return count[0]

        assert gr.run(main, procs=procs) == n_g * n_iter
    finally:
        sys.setswitchinterval(old)


# -- WaitGroup --------------------------------------------------------------------


@PROCS
def test_waitgroup_waits_for_all(procs: int) -> None:
    n = 50

    async def main() -> list[int]:
        wg = WaitGroup()
        results: list[int] = []
        res_mu = Mutex()

        async def worker(i: int) -> None:
            await gr.gosched()
            async with res_mu:
                results.append(i)
            wg.done()

        wg.add(n)
        for i in range(n):
            gr.go(worker, i)
        await wg.wait()
        return sorted(results)

    assert gr.run(main, procs=procs) == list(range(n))


@PROCS
def test_waitgroup_zero_returns_at_once(procs: int) -> None:
    # If wait() parked here, nothing could wake it: run() would raise Deadlock.
    async def main() -> str:
        wg = WaitGroup()
        await wg.wait()
        wg.add(2)
        wg.done()
        wg.add(-1)
        await wg.wait()
        return "ok"

    assert gr.run(main, procs=procs) == "ok"


@PROCS
def test_waitgroup_negative_counter(procs: int) -> None:
    async def main() -> None:
        wg = WaitGroup()
        with pytest.raises(RuntimeError, match="sync: negative WaitGroup counter"):
            wg.done()
        wg.add(1)
        with pytest.raises(RuntimeError, match="negative WaitGroup counter"):
            wg.add(-2)
        wg.done()  # the failed add left the counter at 1
        await wg.wait()
        with pytest.raises(TypeError, match="must be an int"):
            wg.add(1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be an int"):
            wg.add(True)

    gr.run(main, procs=procs)


@PROCS
def test_waitgroup_multiple_waiters(procs: int) -> None:
    n = 5

    async def main() -> int:
        wg = WaitGroup()
        wg.add(1)
        woke: gr.Chan[int] = gr.Chan()

        async def waiter(i: int) -> None:
            await wg.wait()
            await woke.send(i)

        for i in range(n):
            gr.go(waiter, i)
        await wait_parked("sync.WaitGroup.Wait", n)
        wg.done()
        got = {await woke.recv() for _ in range(n)}
        assert got == set(range(n))
        return await parked_count("sync.WaitGroup.Wait")

    assert gr.run(main, procs=procs) == 0


# -- RWMutex ----------------------------------------------------------------------


@PROCS
def test_rwmutex_readers_concurrent(procs: int) -> None:
    # R2 takes the read lock while R1 holds it, and R1 keeps holding it until
    # R2 says so: if readers excluded each other this would deadlock.
    async def main() -> list[str]:
        rw = RWMutex()
        r1_holds: gr.Chan[None] = gr.Chan()
        r2_holds: gr.Chan[None] = gr.Chan()
        done: gr.Chan[str] = gr.Chan()

        async def r1() -> None:
            await rw.rlock()
            await r1_holds.send(None)
            await r2_holds.recv()
            rw.runlock()
            await done.send("r1")

        async def r2() -> None:
            await r1_holds.recv()
            await rw.rlock()
            await r2_holds.send(None)
            rw.runlock()
            await done.send("r2")

        gr.go(r1)
        gr.go(r2)
        got = sorted([await done.recv() or "", await done.recv() or ""])
        assert rw.try_lock()  # all readers gone
        rw.unlock()
        return got

    assert gr.run(main, procs=procs) == ["r1", "r2"]


@PROCS
def test_rwmutex_writer_exclusive(procs: int) -> None:
    async def main() -> list[str]:
        rw = RWMutex()
        events: list[str] = []
        done: gr.Chan[None] = gr.Chan(2)

        async def reader() -> None:
            await rw.rlock()
            events.append("reader")
            rw.runlock()
            await done.send(None)

        async def writer() -> None:
            async with rw:
                events.append("writer2")
            await done.send(None)

        await rw.lock()
        assert not rw.try_lock()
        assert not rw.try_rlock()
        gr.go(reader)
        await wait_parked("sync.RWMutex.RLock", 1)
        gr.go(writer)
        await wait_parked("sync.RWMutex.Lock", 1)
        events.append("writer1")
        rw.unlock()
        await done.recv()
        await done.recv()
        return events

    # readers queued during a write go before the next writer (Go's policy)
    assert gr.run(main, procs=procs) == ["writer1", "reader", "writer2"]


@PROCS
def test_rwmutex_writers_counter(procs: int) -> None:
    n_w, n_r, n_iter = 8, 8, 20

    async def main() -> tuple[int, bool]:
        rw = RWMutex()
        state = {"count": 0, "writing": 0}
        torn = [False]
        wg = WaitGroup()

        async def writer() -> None:
            for _ in range(n_iter):
                await rw.lock()
                state["writing"] += 1
                v = state["count"]
                await gr.gosched()
                state["count"] = v + 1
                state["writing"] -= 1
                rw.unlock()
            wg.done()

        async def reader() -> None:
            for _ in range(n_iter):
                await rw.rlock()
                if state["writing"]:
                    torn[0] = True
                await gr.gosched()
                if state["writing"]:
                    torn[0] = True
                rw.runlock()
            wg.done()

        wg.add(n_w + n_r)
        for _ in range(n_w):
            gr.go(writer)
        for _ in range(n_r):
            gr.go(reader)
        await wg.wait()
        return state["count"], torn[0]

    assert gr.run(main, procs=procs) == (n_w * n_iter, False)


@PROCS
def test_rwmutex_waiting_writer_blocks_new_readers(procs: int) -> None:
    async def main() -> list[str]:
        rw = RWMutex()
        order: list[str] = []
        done: gr.Chan[None] = gr.Chan(2)

        async def writer() -> None:
            await rw.lock()
            order.append("writer")
            rw.unlock()
            await done.send(None)

        async def late_reader() -> None:
            await rw.rlock()
            order.append("late reader")
            rw.runlock()
            await done.send(None)

        await rw.rlock()  # main is the first reader
        gr.go(writer)
        await wait_parked("sync.RWMutex.Lock", 1)
        assert not rw.try_rlock()
        gr.go(late_reader)
        await wait_parked("sync.RWMutex.RLock", 1)
        order.append("first reader out")
        rw.runlock()
        await done.recv()
        await done.recv()
        return order

    assert gr.run(main, procs=procs) == ["first reader out", "writer", "late reader"]


@PROCS
def test_rwmutex_errors(procs: int) -> None:
    async def main() -> None:
        rw = RWMutex()
        with pytest.raises(RuntimeError, match="sync: RUnlock of unlocked RWMutex"):
            rw.runlock()
        with pytest.raises(RuntimeError, match="sync: Unlock of unlocked RWMutex"):
            rw.unlock()
        await rw.rlock()
        with pytest.raises(RuntimeError, match="Unlock of unlocked RWMutex"):
            rw.unlock()  # a reader holds it, not a writer
        rw.runlock()
        await rw.lock()
        with pytest.raises(RuntimeError, match="RUnlock of unlocked RWMutex"):
            rw.runlock()  # a writer holds it, not a reader
        rw.unlock()
        assert rw.try_rlock()
        assert rw.try_rlock()
        rw.runlock()
        rw.runlock()

    gr.run(main, procs=procs)


# -- Once -------------------------------------------------------------------------


@PROCS
def test_once_concurrent_callers_wait(procs: int) -> None:
    n = 6

    async def main() -> tuple[int, list[bool]]:
        once = Once()
        calls = [0]
        finished = [False]
        gate: gr.Chan[None] = gr.Chan()
        seen: gr.Chan[bool] = gr.Chan()

        async def init() -> None:
            calls[0] += 1
            await gate.recv()  # hold the first call open
            finished[0] = True

        async def caller() -> None:
            await once.do(init)
            await seen.send(finished[0])  # do returned only after init finished

        for _ in range(n):
            gr.go(caller)
        await wait_parked("chan receive", 1)  # the first caller, inside init
        await wait_parked("sync.Once.Do", n - 1)
        await gate.send(None)
        saw = [bool(await seen.recv()) for _ in range(n)]
        await once.do(init)  # done: returns at once
        return calls[0], saw

    calls, saw = gr.run(main, procs=procs)
    assert calls == 1
    assert saw == [True] * n


@PROCS
def test_once_sync_fn(procs: int) -> None:
    async def main() -> list[str]:
        once = Once()
        log: list[str] = []
        await once.do(lambda: log.append("first"))
        await once.do(lambda: log.append("second"))
        return log

    assert gr.run(main, procs=procs) == ["first"]


@PROCS
def test_once_exception(procs: int) -> None:
    async def main() -> list[str]:
        once = Once()
        log: list[str] = []
        gate: gr.Chan[None] = gr.Chan()
        waited: gr.Chan[str] = gr.Chan()

        async def bad() -> None:
            log.append("bad")
            await gate.recv()
            raise ValueError("boom")

        async def first() -> None:
            try:
                await once.do(bad)
            except ValueError as e:
                await waited.send(f"first: {e}")

        async def second() -> None:
            await once.do(bad)  # waits for the first call, then returns normally
            await waited.send("second returned")

        gr.go(first)
        await wait_parked("chan receive", 1)
        gr.go(second)
        await wait_parked("sync.Once.Do", 1)
        await gate.send(None)
        log.extend(sorted([await waited.recv() or "", await waited.recv() or ""]))
        await once.do(lambda: log.append("later"))  # done: not called
        return log

    assert gr.run(main, procs=procs) == ["bad", "first: boom", "second returned"]


# -- Cond -------------------------------------------------------------------------


@PROCS
def test_cond_signal_wakes_one_fifo_broadcast_wakes_all(procs: int) -> None:
    n = 5

    async def main() -> tuple[list[int], list[int]]:
        mu = Mutex()
        cond = Cond(mu)
        woke: gr.Chan[int] = gr.Chan()

        async def waiter(i: int) -> None:
            async with mu:
                await cond.wait()
            await woke.send(i)

        for i in range(n):
            gr.go(waiter, i)
            await wait_parked("sync.Cond.Wait", i + 1)
        signalled = []
        for k in range(2):
            cond.signal()
            signalled.append(await woke.recv() or 0)
            # exactly one woke: the rest are still parked
            assert await parked_count("sync.Cond.Wait") == n - 1 - k
        cond.broadcast()
        rest = sorted([await woke.recv() or 0 for _ in range(n - 2)])
        cond.signal()  # nobody waits: lost, harmless
        cond.broadcast()
        return signalled, rest

    signalled, rest = gr.run(main, procs=procs)
    assert signalled == [0, 1]
    assert rest == [2, 3, 4]


@PROCS
def test_cond_wait_unlocks_and_relocks(procs: int) -> None:
    async def main() -> list[str]:
        mu = Mutex()
        cond = Cond(mu)
        log: list[str] = []
        done: gr.Chan[None] = gr.Chan()

        async def waiter() -> None:
            await mu.lock()
            await cond.wait()
            log.append(f"waiter holds mu: {not mu.try_lock()}")
            mu.unlock()
            await done.send(None)

        gr.go(waiter)
        await wait_parked("sync.Cond.Wait", 1)
        log.append(f"wait released mu: {mu.try_lock()}")
        cond.signal()  # while main holds mu: the waiter must wait to relock
        await wait_parked("sync.Mutex.Lock", 1)
        log.append("main unlocks")
        mu.unlock()
        await done.recv()
        return log

    assert gr.run(main, procs=procs) == [
        "wait released mu: True",
        "main unlocks",
        "waiter holds mu: True",
    ]


@PROCS
def test_cond_predicate_loop(procs: int) -> None:
    # The classic use: consumers wait for items under the lock.
    n = 30

    async def main() -> list[int]:
        mu = Mutex()
        cond = Cond(mu)
        items: list[int] = []
        got: list[int] = []
        wg = WaitGroup()

        async def consumer() -> None:
            while True:
                async with mu:
                    while not items:
                        await cond.wait()
                    v = items.pop(0)
                    if v < 0:
                        wg.done()
                        return
                    got.append(v)

        wg.add(3)
        for _ in range(3):
            gr.go(consumer)
        for i in [*range(n), -1, -1, -1]:
            async with mu:
                items.append(i)
                cond.signal()
            await gr.gosched()
        await wg.wait()
        return sorted(got)

    assert gr.run(main, procs=procs) == list(range(n))


@PROCS
def test_cond_errors(procs: int) -> None:
    async def main() -> None:
        mu = Mutex()
        cond = Cond(mu)
        with pytest.raises(RuntimeError, match="unlock of unlocked mutex"):
            await cond.wait()  # mu not locked: nothing waits
        cond.signal()
        rw = RWMutex()
        cond2 = Cond(rw)  # any Locker
        await rw.lock()
        gr.go(_signal_later, cond2, rw)
        await cond2.wait()
        rw.unlock()

    with pytest.raises(TypeError, match="Locker"):
        Cond(object())  # type: ignore[arg-type]
    gr.run(main, procs=procs)


async def _signal_later(cond: Cond, rw: RWMutex) -> None:
    async with rw:  # waits for the main goroutine's cond.wait to release it
        cond.signal()


# -- Semaphore ----------------------------------------------------------------------


@PROCS
def test_semaphore_weights_and_try_acquire(procs: int) -> None:
    async def main() -> list[bool]:
        sem = Semaphore(5)
        await sem.acquire(3)
        r = [sem.try_acquire(3), sem.try_acquire(2), sem.try_acquire()]
        sem.release(5)
        r.append(sem.try_acquire(5))
        sem.release(2)
        await sem.acquire()
        await sem.acquire()
        r.append(sem.try_acquire())
        sem.release(5)
        return r

    assert gr.run(main, procs=procs) == [False, True, False, True, False]


@PROCS
def test_semaphore_fifo_head_blocks_smaller(procs: int) -> None:
    async def main() -> list[str]:
        sem = Semaphore(4)
        order: list[str] = []
        done: gr.Chan[None] = gr.Chan(2)

        async def taker(name: str, k: int) -> None:
            await sem.acquire(k)
            order.append(name)
            await done.send(None)

        await sem.acquire(4)
        gr.go(taker, "big", 3)
        await wait_parked("semacquire", 1)
        gr.go(taker, "small", 1)
        await wait_parked("semacquire", 2)
        sem.release(1)  # 1 free: small would fit, but big is first in line
        assert not sem.try_acquire(1)
        assert await parked_count("semacquire") == 2
        sem.release(2)  # 3 free: big gets them, small still waits
        await done.recv()
        assert order == ["big"]
        assert await parked_count("semacquire") == 1
        sem.release(1)  # main's last unit: small gets it
        await done.recv()
        sem.release(4)  # big's 3 and small's 1
        assert sem.try_acquire(4)
        return order

    assert gr.run(main, procs=procs) == ["big", "small"]


@PROCS
def test_semaphore_release_wakes_several(procs: int) -> None:
    async def main() -> int:
        sem = Semaphore(3)
        wg = WaitGroup()
        await sem.acquire(3)

        async def taker() -> None:
            await sem.acquire()
            wg.done()

        wg.add(3)
        for _ in range(3):
            gr.go(taker)
        await wait_parked("semacquire", 3)
        sem.release(3)  # one release hands a unit to each of the three
        await wg.wait()
        return await parked_count("semacquire")

    assert gr.run(main, procs=procs) == 0


@PROCS
def test_semaphore_bounds_concurrency(procs: int) -> None:
    async def main() -> tuple[int, int]:
        sem = Semaphore(3)
        wg = WaitGroup()
        mu = Mutex()
        state = {"active": 0, "max": 0}

        async def worker() -> None:
            await sem.acquire()
            async with mu:
                state["active"] += 1
                state["max"] = max(state["max"], state["active"])
            await gr.gosched()
            async with mu:
                state["active"] -= 1
            sem.release()
            wg.done()

        wg.add(40)
        for _ in range(40):
            gr.go(worker)
        await wg.wait()
        return state["max"], state["active"]

    top, active = gr.run(main, procs=procs)
    assert 1 <= top <= 3
    assert active == 0


@PROCS
def test_semaphore_errors(procs: int) -> None:
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        Semaphore(-1)
    with pytest.raises(TypeError, match="must be an int, got float"):
        Semaphore(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an int, got str"):
        Semaphore("2")  # type: ignore[arg-type]

    async def main() -> None:
        sem = Semaphore(2)
        with pytest.raises(ValueError, match="k must be >= 1, got 0"):
            await sem.acquire(0)
        with pytest.raises(ValueError, match="more than the semaphore's size 2"):
            await sem.acquire(3)
        with pytest.raises(ValueError, match="k must be >= 1"):
            sem.try_acquire(-1)
        with pytest.raises(ValueError, match="k must be >= 1"):
            sem.release(0)
        with pytest.raises(ValueError, match="more than the semaphore's size"):
            sem.release(3)
        with pytest.raises(TypeError, match="must be an int"):
            await sem.acquire(1.0)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="released more than held"):
            sem.release()
        await sem.acquire()
        with pytest.raises(RuntimeError, match="released more than held"):
            sem.release(2)
        sem.release()
        assert sem.try_acquire(2)

    gr.run(main, procs=procs)


# -- teardown ---------------------------------------------------------------------


@PROCS
def test_main_returns_while_goroutines_wait(procs: int) -> None:
    # Goroutines parked on sync primitives are closed when main returns.
    async def main() -> str:
        mu, rw, wg, sem = Mutex(), RWMutex(), WaitGroup(), Semaphore(1)
        cm = Mutex()
        cond = Cond(cm)
        await mu.lock()
        await rw.lock()
        wg.add(1)
        await sem.acquire()

        async def blocked(aw: Any) -> None:
            await aw

        async def cond_waiter() -> None:
            async with cm:
                await cond.wait()

        for aw in (mu.lock(), rw.rlock(), rw.lock(), wg.wait(), sem.acquire()):
            gr.go(blocked, aw)
        gr.go(cond_waiter)
        await wait_parked("sync.Cond.Wait", 1)
        return "ok"

    assert gr.run(main, procs=procs) == "ok"


@PROCS
def test_main_returns_while_holder_releases_in_finally(procs: int) -> None:
    # A goroutine closed at the end of the program unlocks in its `async with`
    # exit while another goroutine waits for the mutex. This used to fail:
    # readying a G while run() closed goroutines raised "no goroutines runtime
    # is running" (the same happened with Chan.close in a finally).
    async def main() -> str:
        mu = Mutex()
        hold: gr.Chan[None] = gr.Chan()

        async def holder() -> None:
            async with mu:
                await hold.recv()

        async def waiter() -> None:
            await mu.lock()

        gr.go(holder)
        await wait_parked("chan receive", 1)
        gr.go(waiter)
        await wait_parked("sync.Mutex.Lock", 1)
        return "ok"

    assert gr.run(main, procs=procs) == "ok"


@pytest.mark.goroutines
async def test_semaphore_async_with() -> None:
    sem = Semaphore(2)
    async with sem as s:
        assert s is sem
        assert sem.try_acquire() is True
        assert sem.try_acquire() is False
        sem.release()
    assert sem.try_acquire(2) is True
