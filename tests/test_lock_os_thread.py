"""gr.lock_os_thread / gr.unlock_os_thread: a locked goroutine never changes thread."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from helpers import grun


@pytest.mark.parametrize("procs", [1, 4])
def test_sqlite_connection_used_across_awaits_from_a_locked_goroutine(procs: int) -> None:
    async def main() -> tuple[int, int]:
        idents: set[int] = set()
        done: gr.Chan[int] = gr.Chan()

        async def locked() -> None:
            gr.lock_os_thread()
            db = sqlite3.connect(":memory:")  # check_same_thread=True by default
            db.execute("create table t (x)")
            for i in range(300):
                idents.add(threading.get_ident())
                db.execute("insert into t values (?)", (i,))
                if i % 3 == 0:
                    await gr.sleep(0.0002)
                elif i % 3 == 1:
                    await gr.gosched()
                else:
                    await gr.syscall(time.sleep, 0.0001)
            n = db.execute("select count(*) from t").fetchone()[0]
            db.close()
            await done.send(n)

        async def churn() -> None:
            for _ in range(1000):
                await gr.gosched()

        for _ in range(8):
            gr.go(churn)
        gr.go(locked)
        return await done.recv(), len(idents)

    assert gr.run(main, procs=procs) == (300, 1)


@pytest.mark.parametrize("procs", [1, 4])
def test_locked_thread_runs_nothing_else(procs: int) -> None:
    async def main() -> bool:
        locked_ident: list[int] = []
        others: set[int] = set()
        ready: gr.Chan[None] = gr.Chan()
        stop: gr.Chan[None] = gr.Chan()

        async def locked() -> None:
            gr.lock_os_thread()
            locked_ident.append(threading.get_ident())
            await ready.send(None)
            for _ in range(200):
                assert threading.get_ident() == locked_ident[0]
                await gr.gosched()
            await stop.recv()

        async def other() -> None:
            for _ in range(200):
                others.add(threading.get_ident())
                await gr.gosched()

        gr.go(locked)
        await ready.recv()
        wg = gr.WaitGroup()
        for _ in range(6):
            wg.add()

            async def run_other() -> None:
                try:
                    await other()
                finally:
                    wg.done()

            gr.go(run_other)
        await wg.wait()
        others.add(threading.get_ident())  # main itself
        await stop.send(None)
        return locked_ident[0] not in others

    assert gr.run(main, procs=procs)


def test_unlock_lets_the_thread_run_others_and_nesting_counts() -> None:
    async def main() -> tuple[bool, bool, bool]:
        gr.lock_os_thread()
        gr.lock_os_thread()
        m = _scheduler.current_g().locked_m
        gr.unlock_os_thread()
        still = _scheduler.current_g().locked_m is m and m is not None
        gr.unlock_os_thread()
        gr.unlock_os_thread()  # extra unlock: a no-op, as in Go
        g = _scheduler.current_g()
        return still, g.locked_m is None, m.lockedg is None

    assert gr.run(main, procs=2) == (True, True, True)


def test_a_locked_goroutine_blocked_forever_is_a_deadlock() -> None:
    async def main() -> None:
        gr.lock_os_thread()
        await gr.Chan[int]().recv()

    with pytest.raises(gr.Deadlock, match="chan receive"):
        gr.run(main, procs=2)


def test_lock_outside_a_goroutine_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not inside a goroutine"):
        gr.lock_os_thread()


def test_no_lost_wakeup_over_many_runs_at_procs_1() -> None:
    """Regression: an M that parked while still counted as spinning leaked
    ``sched.nmspinning``, after which no M was ever woken for a due timer
    (about 1 run in 50 of the sqlite scenario hung at procs=1)."""

    async def main() -> int:
        done: gr.Chan[int] = gr.Chan()

        async def locked() -> None:
            gr.lock_os_thread()
            for i in range(60):
                if i % 3 == 0:
                    await gr.sleep(0.0002)
                elif i % 3 == 1:
                    await gr.gosched()
                else:
                    await gr.syscall(time.sleep, 0.0001)
            await done.send(1)

        async def churn() -> None:
            for _ in range(200):
                await gr.gosched()

        for _ in range(4):
            gr.go(churn)
        gr.go(locked)
        n = await done.recv()
        sched = _scheduler.require()
        with sched.lock:
            spinning = sum(1 for m in sched.allm if m.spinning)
            assert sched.nmspinning == spinning, (sched.nmspinning, spinning)
        return n

    for _ in range(40):
        assert grun(main, procs=1, timeout=10.0) == 1
