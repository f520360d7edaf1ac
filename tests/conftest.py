"""Shared fixtures: the ``procs`` parametrization and ``wait_blocked``.

``wait_blocked`` is the test-side version of trio's
``wait_all_tasks_blocked``: it returns once every goroutine except the caller
is parked (WAITING), so a test can order "the receivers are parked" before
"close" without a real sleep. It reads the scheduler's ``allgs``; a G readied
by anyone is RUNNABLE before the readier returns, so "all others WAITING",
seen from the only running G, means nothing can move until the caller acts
(timers aside: a sleeping G also counts as WAITING).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from goroutines._runtime._goroutine import GStatus


@pytest.fixture(params=[1, 4], ids=lambda n: f"procs{n}")
def procs(request: pytest.FixtureRequest) -> int:
    """Run the test once on one P and once on four."""
    n: int = request.param
    return n


async def wait_blocked(n: int | None = None, timeout: float = 5.0) -> None:
    """Wait until every other goroutine is parked (and, if given, there are ``n`` of them).

    Raises AssertionError, with a goroutine dump, if that does not happen
    within ``timeout`` seconds.
    """
    sched = _scheduler.require()
    me = gr.goroutine_id()
    deadline = time.monotonic() + timeout
    while True:
        # Twice in a row: a G between "enqueued on a waiter queue" and
        # "readied" cannot exist (readiers set RUNNABLE before returning),
        # but a second look costs nothing and guards against a torn read.
        for _ in range(2):
            others = [g for gid, g in sched.allgs.copy().items() if gid != me]
            if not all(g.status == GStatus.WAITING for g in others):
                break
            if n is not None and len(others) != n:
                break
            await gr.gosched()
        else:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"goroutines did not all block (want {n} others):\n{gr.stack_dump()}"
            )
        await gr.gosched()


@pytest.fixture(scope="session")
def blocked() -> Callable[..., Awaitable[None]]:
    """``await blocked(n=None)``: see ``wait_blocked``."""
    return wait_blocked
