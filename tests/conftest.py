"""Shared fixtures: the ``procs`` parametrization and ``wait_blocked``.

``wait_blocked`` (the ``blocked`` fixture) is ``gr.testing.wait()`` with a
count: it returns once every goroutine but the caller is durably blocked,
so a test can order "the receivers are parked" before "close" without a
real sleep, and checks how many there are. ``goroutines_procs`` ties the
goroutines plugin's procs to the ``procs`` parametrization.

Environment (set by ``tools/stress.py``, usable by hand):

- ``GOROUTINES_TEST_PROCS=N``: run every procs-parametrized test at procs N
  only: the ``procs`` fixture, and any ``@pytest.mark.parametrize("procs", ...)``
  (its values are replaced by ``[N]``).
- ``GOROUTINES_TEST_SWITCHINTERVAL=S``: ``sys.setswitchinterval(S)`` for the
  whole session (put back at the end). A test's own setting still wins
  while that test runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable

import pytest

import goroutines as gr

# ``pytester``: tests/test_testing.py runs the goroutines pytest plugin on
# test files it writes.
pytest_plugins = ["pytester"]


def _env_procs() -> int | None:
    """``GOROUTINES_TEST_PROCS`` as an int, None when unset or empty."""
    raw = os.environ.get("GOROUTINES_TEST_PROCS", "").strip()
    if not raw:
        return None
    n = int(raw)
    if n < 1:
        raise ValueError(f"GOROUTINES_TEST_PROCS must be >= 1, got {raw!r}")
    return n


TEST_PROCS = _env_procs()


@pytest.fixture(params=[1, 4] if TEST_PROCS is None else [TEST_PROCS], ids=lambda n: f"procs{n}")
def procs(request: pytest.FixtureRequest) -> int:
    """Run the test once on one P and once on four (or on GOROUTINES_TEST_PROCS only)."""
    n: int = request.param
    return n


@pytest.fixture
def goroutines_procs(procs: int) -> int:
    """The goroutines plugin's procs for our ``@pytest.mark.goroutines``
    tests: the ``procs`` parametrization, so they too run at 1 and 4."""
    return procs


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With GOROUTINES_TEST_PROCS=N, a ``parametrize("procs", [...])`` mark
    (on the test, its class or module) becomes ``parametrize("procs", [N])``.
    Runs before pytest's own hook, which then reads the replaced mark."""
    if TEST_PROCS is None or "procs" not in metafunc.fixturenames:
        return
    only = pytest.mark.parametrize("procs", [TEST_PROCS], ids=[f"procs{TEST_PROCS}"]).mark
    for node in metafunc.definition.listchain():
        node.own_markers[:] = [
            only
            if m.name == "parametrize" and m.args and m.args[0] in ("procs", ["procs"], ("procs",))
            else m
            for m in node.own_markers
        ]


#: The switch interval GOROUTINES_TEST_SWITCHINTERVAL replaced, to put back.
_old_switch = pytest.StashKey[float]()


def pytest_report_header(config: pytest.Config) -> str:
    from goroutines import _accel

    why = f" ({_accel.WHY_PURE})" if _accel.WHY_PURE else ""
    return f"goroutines hot paths: {_accel.MODE}{why}"


def pytest_configure(config: pytest.Config) -> None:
    # ``make test`` says which mode each run is for: a C accelerator that did
    # not build must not pass for a run of it.
    want = os.environ.get("GOROUTINES_TEST_MODE", "").strip()
    if want:
        from goroutines import _accel

        if want != _accel.MODE:
            raise pytest.UsageError(
                f"GOROUTINES_TEST_MODE={want}, but the hot paths in use are {_accel.MODE!r}"
                + (f": {_accel.WHY_PURE}" if _accel.WHY_PURE else "")
            )
    raw = os.environ.get("GOROUTINES_TEST_SWITCHINTERVAL", "").strip()
    if raw:
        config.stash[_old_switch] = sys.getswitchinterval()
        sys.setswitchinterval(float(raw))


def pytest_unconfigure(config: pytest.Config) -> None:
    old = config.stash.get(_old_switch, None)
    if old is not None:
        sys.setswitchinterval(old)


async def wait_blocked(n: int | None = None) -> None:
    """Wait until every other goroutine is durably blocked
    (``gr.testing.wait()``, Go's ``synctest.Wait``) and, if ``n`` is given,
    check that there are exactly ``n`` of them."""
    await gr.testing.wait()
    if n is not None:
        others = gr.num_goroutine() - 1
        assert others == n, f"{others} other goroutines blocked, want {n}:\n{gr.stack_dump()}"


@pytest.fixture(scope="session")
def blocked() -> Callable[..., Awaitable[None]]:
    """``await blocked(n=None)``: see ``wait_blocked``."""
    return wait_blocked
