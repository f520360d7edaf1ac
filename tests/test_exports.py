"""The public surface of ``goroutines`` matches SPEC §2 (trio's ``test_exports.py``).

``PENDING`` lists the SPEC names not exported yet; their tests are
``xfail(strict=True)``, so each one fails loudly the day its name lands and
must then be removed from ``PENDING``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import pkgutil
import typing
from pathlib import Path
from types import ModuleType

import pytest

import goroutines as gr

#: Every name SPEC §2 gives as ``gr.<name>``.
SPEC_NAMES = frozenset(
    {
        # running
        "run",
        "go",
        "gomaxprocs",
        "num_goroutine",
        "gosched",
        "goroutine_id",
        "stack_dump",
        # channels and select
        "Chan",
        "select",
        "default",
        # time
        "sleep",
        "after",
        "tick",
        "Timer",
        "Ticker",
        # sync
        "WaitGroup",
        "Mutex",
        "RWMutex",
        "Once",
        "Cond",
        "Semaphore",
        # context
        "background",
        "with_cancel",
        "with_timeout",
        "with_deadline",
        "with_value",
        # blocking calls, network
        "syscall",
        "net",
        # errors
        "ChanClosed",
        "Deadlock",
        "Canceled",
        "DeadlineExceeded",
    }
)

#: SPEC names not wired into ``goroutines/__init__.py`` yet. Remove a name
#: when it lands (its test then XPASSes, which strict xfail reports as a failure).
PENDING: frozenset[str] = frozenset()

#: Public names beyond SPEC §2, each a deliberate addition (Go's names, or the
#: types of SPEC values). A new public name must be added here on purpose;
#: ``annotations`` would come from ``from __future__ import annotations``.
BEYOND_SPEC = frozenset(
    {
        "Context",  # the type of background() / with_*() results
        "CancelFunc",  # the type of the cancel functions
        "todo",  # Go's context.TODO
        "without_cancel",  # Go's context.WithoutCancel
        "Locker",  # Go's sync.Locker, the protocol Cond takes
        "blocking",  # decorator form of syscall
        "lock_os_thread",  # Go's runtime.LockOSThread (issue "Blocking calls and I/O")
        "unlock_os_thread",  # Go's runtime.UnlockOSThread
        "signal_notify",  # Go's os/signal.Notify
        "signal_stop",  # Go's os/signal.Stop
        "monotonic",  # the runtime's clock, virtual in a bubble (issue "Testing goroutine code")
        "Group",  # errgroup + task group (issue "The program around the goroutines")
        "wait_future",  # a goroutine waits for a concurrent/asyncio future (same issue)
        "from_thread",  # a plain thread calls into the runtime (same issue)
        "after_func",  # Go's time.AfterFunc (same issue)
        "from_asyncio",  # asyncio from goroutines (same issue)
        "asyncio_loop",  # the runtime's asyncio loop, where from_asyncio runs (same issue)
        "annotations",
    }
)


def _spec_params() -> list[object]:
    return [
        pytest.param(
            name,
            marks=pytest.mark.xfail(strict=True, reason="not exported yet")
            if name in PENDING
            else (),
        )
        for name in sorted(SPEC_NAMES)
    ]


def test_pending_is_part_of_spec() -> None:
    assert PENDING <= SPEC_NAMES


@pytest.mark.parametrize("name", _spec_params())
def test_spec_name_exported(name: str) -> None:
    assert hasattr(gr, name), f"goroutines.{name} is missing"
    assert getattr(gr, name) is not None


def test_no_public_names_beyond_spec() -> None:
    public = {
        n
        for n in vars(gr)
        if not n.startswith(("_", "@")) and not isinstance(getattr(gr, n), ModuleType)
    }
    extra = public - SPEC_NAMES - BEYOND_SPEC
    assert extra == set(), f"public names not in SPEC §2: {sorted(extra)}"
    # A public submodule is only allowed where the SPEC has one (gr.net), or
    # an issue asked for one (gr.testing).
    # (Names starting with "@" are pytest's: the pytest11 entry point makes
    # pytest rewrite the asserts of the whole package, as anyio's does.)
    modules = {n for n in vars(gr) if isinstance(getattr(gr, n), ModuleType)}
    allowed = {"bufio", "exec", "net", "testing", "trace"}
    assert {m for m in modules if not m.startswith(("_", "@"))} <= allowed


def _submodules() -> list[str]:
    # Importing ``goroutines.__main__`` is harmless: it guards its entry point.
    return sorted(info.name for info in pkgutil.walk_packages(gr.__path__, "goroutines."))


@pytest.mark.parametrize("modname", _submodules())
def test_every_module_has_all(modname: str) -> None:
    mod = importlib.import_module(modname)
    all_ = getattr(mod, "__all__", None)
    assert all_ is not None, f"{modname} has no __all__"
    assert isinstance(all_, (list, tuple))
    assert len(set(all_)) == len(all_), f"{modname}.__all__ has duplicates"
    missing = [n for n in all_ if not hasattr(mod, n)]
    assert missing == [], f"{modname}.__all__ names what it does not define: {missing}"


def test_ships_py_typed() -> None:
    assert importlib.resources.files("goroutines").joinpath("py.typed").is_file()
    # ... and the packaging config puts it in the wheel.
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())
    assert "py.typed" in data["tool"]["setuptools"]["package-data"]["goroutines"]


def test_chan_is_generic() -> None:
    alias = gr.Chan[int]
    assert typing.get_origin(alias) is gr.Chan
    assert typing.get_args(alias) == (int,)
    c = gr.Chan[int](2)
    assert isinstance(c, gr.Chan)
    assert c.cap == 2


def test_errors_are_exceptions() -> None:
    for name in ("ChanClosed", "Deadlock", "Canceled", "DeadlineExceeded"):
        err = getattr(gr, name)
        assert isinstance(err, type) and issubclass(err, Exception), name


def test_package_all_is_the_public_api() -> None:
    public = {n for n in vars(gr) if not n.startswith(("_", "@"))}
    assert set(gr.__all__) == public
    assert len(gr.__all__) == len(set(gr.__all__))
