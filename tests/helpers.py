"""Helpers shared by the runtime tests (imported as ``helpers``: pytest puts
``tests/`` on ``sys.path``).

``grun`` is ``gr.run`` with a watchdog: a run that hangs (a lost wake-up, a
crashed M) is stopped after ``timeout`` seconds and the test fails with the
goroutine dump, instead of the whole session dying at the pytest-timeout.
``grun_bubble`` is the same in a bubble (``gr.testing.run``: the virtual
clock). Both are the goroutines pytest plugin's ``run_with_timeout``.

``signal_when_ready`` runs a script in a fresh process and sends it a signal
once it prints "ready".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from goroutines.testing.pytest_plugin import run_with_timeout

__all__ = ["grun", "grun_bubble", "signal_when_ready"]


def grun(
    main: Any,
    *args: Any,
    procs: int | None = None,
    timeout: float = 10.0,
    seed: int | None = None,
) -> Any:
    """``gr.run(main, *args, procs=procs, seed=seed)``, failing the test with
    the goroutine dump if it runs over ``timeout`` wall-clock seconds (the
    pytest plugin's watchdog, on the real clock)."""
    return run_with_timeout(main, *args, procs=procs, seed=seed, fake_clock=False, timeout=timeout)


def grun_bubble(
    main: Any, *args: Any, procs: int = 1, timeout: float = 10.0, seed: int | None = None
) -> Any:
    """``gr.testing.run(main, *args, procs=procs, seed=seed)`` (a bubble: the
    virtual clock), failing the test with the goroutine dump if it runs over
    ``timeout`` wall-clock seconds."""
    return run_with_timeout(main, *args, procs=procs, seed=seed, fake_clock=True, timeout=timeout)


def signal_when_ready(script: str, signum: int) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``script`` with this Python; once it prints a line "ready", send it
    ``signum``. Return the finished process (its stdout includes what came
    before "ready") and the seconds from the signal to its exit.

    A shell starts background jobs with SIGINT and SIGQUIT ignored, and a
    Python process keeps an ignored signal: the script first gets the
    handler a program run from a terminal has, or a test would hang whenever
    pytest runs in the background.
    """
    handler = "default_int_handler" if signum == signal.SIGINT else "SIG_DFL"
    script = f"import signal\nsignal.signal({int(signum)}, signal.{handler})\n" + script
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        before = ""
        while (line := proc.stdout.readline()) and line.strip() != "ready":
            before += line
        assert line.strip() == "ready", proc.communicate(timeout=10)
        proc.send_signal(signum)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, before + out, err), elapsed
