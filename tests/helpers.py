"""Helpers shared by the runtime tests (imported as ``helpers``: pytest puts
``tests/`` on ``sys.path``).

``grun`` is ``gr.run`` with a watchdog: a run that hangs (a lost wake-up, a
crashed M) is stopped after ``timeout`` seconds and the test fails with the
goroutine dump, instead of the whole session dying at the pytest-timeout.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from goroutines._runtime._traceback import stack_dump as _dump_gs

__all__ = ["grun"]


def grun(main: Any, *args: Any, procs: int | None = None, timeout: float = 10.0) -> Any:
    """``gr.run(main, *args, procs=procs)``, failing the test if it runs over ``timeout``."""
    fired: list[str] = []

    def watchdog() -> None:
        sched = _scheduler.current
        if sched is None:
            return
        fired.append(_dump_gs(list(sched.allgs.copy().values()))[:20000])
        sched.stop()

    t = threading.Timer(timeout, watchdog)
    t.daemon = True
    t.start()
    try:
        result = gr.run(main, *args, procs=procs)
    except BaseException:
        if not fired:
            raise
        result = None
    finally:
        t.cancel()
        t.join()
    if fired:
        pytest.fail(f"gr.run() did not finish within {timeout}s; goroutines:\n{fired[0]}")
    return result
