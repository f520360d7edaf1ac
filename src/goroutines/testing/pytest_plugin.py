"""The pytest plugin: ``async def`` tests run as the main goroutine.

Registered through the ``pytest11`` entry point (``goroutines``), so it is
active wherever goroutines is installed; it touches only tests marked
``@pytest.mark.goroutines``, or every ``async def`` test with the ini
option ``goroutines_mode = auto``.

Each such test gets a runtime of its own (``goroutines.testing.run``) in
which, in order: its async fixtures are set up (in the order pytest
resolved them), the body runs, the async fixtures are torn down (in
reverse), and the leak check runs (``goroutines.testing.check_leaks``).
Sync fixtures are set up before and torn down after, as usual.

Options (``procs``, ``timeout``, ``seed``, ``fake_clock``, ``leaks``): the
marker's keyword, else the ``goroutines_procs`` fixture for ``procs`` (None
unless overridden: override it, parametrized, to run every goroutines test
at several), else the command line's ``--goroutines-OPTION`` (``_`` as
``-``), else the ini file's ``goroutines_OPTION``, else
the default: procs 1, timeout 60, a fresh seed, fake_clock false, leaks
"fail".

``timeout`` is in wall-clock seconds, also under the fake clock: a test
that runs over is stopped and fails with the goroutine dump (it does not
hang the session). A failing test's report has a "goroutines" section with
its seed; ``--goroutines-seed=N`` replays it.

Async fixtures (``async def``, returning or yielding once) are function
scoped and only for goroutines tests, and a sync fixture cannot depend on
an async one (the async one is set up later, in the runtime): each of
these is an error naming the fixture.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Generator
from typing import Any, NoReturn

import pytest

from .._runtime import _scheduler
from . import check_leaks, dump, run_bubble

__all__ = [
    "AsyncFixture",
    "goroutines_procs",
    "options",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_fixture_setup",
    "pytest_pycollect_makeitem",
    "pytest_pyfunc_call",
    "pytest_runtest_makereport",
    "run_with_timeout",
]

MARK = "goroutines"
_OPTIONS = ("procs", "timeout", "seed", "fake_clock", "leaks")
#: The defaults of the options, below the command line and the ini file.
DEFAULTS: dict[str, Any] = {
    "procs": 1,
    "timeout": 60.0,
    "seed": None,
    "fake_clock": False,
    "leaks": "fail",
}

_seed_key = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("goroutines", "goroutines: async def tests as goroutines")
    group.addoption(
        "--goroutines-procs", type=int, default=None, help="Ps of each goroutines test (1)"
    )
    group.addoption(
        "--goroutines-timeout",
        type=float,
        default=None,
        help="wall-clock seconds before a goroutines test fails with the goroutine dump (60)",
    )
    group.addoption(
        "--goroutines-seed",
        type=int,
        default=None,
        help="seed of every goroutines test (replays a failure's schedule)",
    )
    group.addoption(
        "--goroutines-fake-clock",
        choices=("true", "false"),
        default=None,
        help="run goroutines tests on a virtual clock (false)",
    )
    group.addoption(
        "--goroutines-leaks",
        choices=("fail", "ignore"),
        default=None,
        help="what goroutines left alive at the end of a test do (fail)",
    )
    parser.addini(
        "goroutines_mode",
        "auto: run every async def test as a goroutines test; strict (default): only marked ones",
        default="strict",
    )
    parser.addini("goroutines_procs", "Ps of each goroutines test", default="")
    parser.addini("goroutines_timeout", "wall-clock timeout of a goroutines test", default="")
    parser.addini("goroutines_fake_clock", "run goroutines tests on a virtual clock", default="")
    parser.addini("goroutines_leaks", "fail or ignore leaked goroutines", default="")
    parser.addini("goroutines_seed", "seed of every goroutines test (default: fresh)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARK}(procs=1, timeout=60, seed=None, fake_clock=False, leaks='fail'): "
        "run this async def test as the main goroutine of a goroutines runtime",
    )
    mode = config.getini("goroutines_mode")
    if mode not in ("auto", "strict"):
        raise pytest.UsageError(f"goroutines_mode must be 'auto' or 'strict', got {mode!r}")


def _fail(msg: str) -> NoReturn:
    """A test's bad options fail that test, with the message only."""
    pytest.fail(msg, pytrace=False)


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


@pytest.fixture
def goroutines_procs() -> int | None:
    """The Ps of the goroutines test that uses it; None: the options say.
    Override it to run tests at several (as anyio's ``anyio_backend``):
    ``@pytest.fixture(params=[1, 4]) def goroutines_procs(request): return
    request.param``. Every goroutines test uses it."""
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> None:
    # A goroutines test uses ``goroutines_procs``, so that overriding it
    # (parametrized) multiplies the tests, as anyio's plugin does.
    if not isinstance(collector, (pytest.Module, pytest.Class)):
        return
    if not inspect.iscoroutinefunction(obj) or not collector.istestfunction(obj, name):
        return
    auto = collector.config.getini("goroutines_mode") == "auto"
    marked = collector.get_closest_marker(MARK) is not None or any(
        m.name == MARK for m in getattr(obj, "pytestmark", ())
    )
    if auto or marked:
        pytest.mark.usefixtures("goroutines_procs")(obj)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    auto = config.getini("goroutines_mode") == "auto"
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if auto and item.get_closest_marker(MARK) is None and inspect.iscoroutinefunction(item.obj):
            item.add_marker(MARK)


def _bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    s = str(raw).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    _fail(f"{where}: expected true or false, got {raw!r}")


def options(item: pytest.Item) -> dict[str, Any]:
    """The test's options: the marker's, else the command line's, else the ini's."""
    config = item.config
    marker = item.get_closest_marker(MARK)
    if marker is not None and marker.args:
        _fail(
            f"{item.nodeid}: @pytest.mark.{MARK} takes keyword arguments only "
            f"({', '.join(_OPTIONS)}), got {marker.args!r}"
        )
    given = dict(marker.kwargs) if marker is not None else {}
    unknown = set(given) - set(_OPTIONS)
    if unknown:
        _fail(
            f"{item.nodeid}: unknown @pytest.mark.{MARK} option(s) {sorted(unknown)}; "
            f"the options are {', '.join(_OPTIONS)}"
        )
    opts: dict[str, Any] = {}
    fixture_procs = getattr(item, "funcargs", {}).get("goroutines_procs")
    if fixture_procs is not None and "procs" not in given:
        given["procs"] = fixture_procs
    for name in _OPTIONS:
        if name in given:
            opts[name] = given[name]
            continue
        cli = config.getoption(f"--goroutines-{name.replace('_', '-')}")
        if cli is not None:
            opts[name] = cli
            continue
        ini = config.getini(f"goroutines_{name}")
        opts[name] = ini if ini != "" else DEFAULTS[name]
    where = f"{item.nodeid}: goroutines option"
    try:
        opts["procs"] = int(opts["procs"])
        opts["timeout"] = float(opts["timeout"])
    except (TypeError, ValueError) as e:
        _fail(f"{where}s procs/timeout: {e}")
    if opts["procs"] < 1:
        _fail(f"{where} procs must be >= 1, got {opts['procs']}")
    if not opts["timeout"] > 0:
        _fail(f"{where} timeout must be > 0, got {opts['timeout']}")
    opts["fake_clock"] = _bool(opts["fake_clock"], f"{where} fake_clock")
    if opts["leaks"] not in ("fail", "ignore"):
        _fail(f"{where} leaks must be 'fail' or 'ignore', got {opts['leaks']!r}")
    seed = opts["seed"]
    if seed is None:
        opts["seed"] = int.from_bytes(os.urandom(6), "big")
    elif isinstance(seed, str):  # from the ini file
        try:
            opts["seed"] = int(seed, 0)
        except ValueError:
            _fail(f"{where} seed must be an int, got {seed!r}")
    elif isinstance(seed, bool) or not isinstance(seed, int):
        _fail(f"{where} seed must be an int, got {seed!r}")
    return opts


class AsyncFixture:
    """What pytest holds for an async fixture of a goroutines test until the
    test's runtime sets it up (``_setup``); pytest-trio's approach."""

    def __init__(self, name: str, func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.name = name
        self.func = func
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"<async fixture {self.name!r}, set up only inside a goroutines test>"


def _fixture_error(fixturedef: pytest.FixtureDef[Any], request: Any, msg: str) -> NoReturn:
    """Fail the setup of ``fixturedef``, caching the failure as pytest's own
    setup does (its teardown then clears what the setup registered)."""
    try:
        pytest.fail(msg, pytrace=False)
    except pytest.fail.Exception as e:
        key = fixturedef.cache_key(request)
        fixturedef.cached_result = (None, key, (e, e.__traceback__))
        raise


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    func = fixturedef.func
    if not _is_async(func):
        for name in fixturedef.argnames:
            if isinstance(request.getfixturevalue(name), AsyncFixture):
                _fixture_error(
                    fixturedef,
                    request,
                    f"fixture {fixturedef.argname!r} uses async fixture {name!r}: a sync "
                    "fixture runs before the test's runtime exists, so it cannot use an "
                    "async one (make it async too)",
                )
        return None
    if fixturedef.scope != "function":
        _fixture_error(
            fixturedef,
            request,
            f"async fixture {fixturedef.argname!r} has scope {fixturedef.scope!r}: async "
            "fixtures run in the test's own runtime, so they must be function-scoped",
        )
    node = request.node
    if not isinstance(node, pytest.Function) or node.get_closest_marker(MARK) is None:
        _fixture_error(
            fixturedef,
            request,
            f"{request.node.nodeid}: async fixture {fixturedef.argname!r} is used by a test "
            f"that does not run in goroutines: mark it @pytest.mark.{MARK} (an async def "
            "test), or set goroutines_mode = auto",
        )
    kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}
    try:  # a fixture defined in a class is bound to the test's instance
        from _pytest.fixtures import resolve_fixture_function

        func = resolve_fixture_function(fixturedef, request)
    except Exception:
        pass
    value = AsyncFixture(fixturedef.argname, func, kwargs)
    fixturedef.cached_result = (value, fixturedef.cache_key(request), None)  # type: ignore[arg-type]
    return value


async def _setup(
    value: Any, done: dict[int, Any], teardowns: list[tuple[str, Any]], caller: str
) -> Any:
    """``value``, with every async fixture in it set up (once each)."""
    if not isinstance(value, AsyncFixture):
        return value
    if id(value) in done:
        return done[id(value)]
    kwargs = {k: await _setup(v, done, teardowns, value.name) for k, v in value.kwargs.items()}
    if inspect.isasyncgenfunction(value.func):
        agen = value.func(**kwargs)
        try:
            result = await agen.__anext__()
        except StopAsyncIteration:
            raise RuntimeError(f"async fixture {value.name!r} did not yield a value") from None
        teardowns.append((value.name, agen))
    else:
        result = await value.func(**kwargs)
    done[id(value)] = result
    return result


async def _teardown(name: str, agen: Any) -> None:
    try:
        await agen.__anext__()
    except StopAsyncIteration:
        return
    await agen.aclose()
    raise RuntimeError(f"async fixture {name!r} yielded more than once")


async def _test_main(item: pytest.Function, funcargs: dict[str, Any], leaks: str) -> None:
    """The main goroutine of a test: fixtures, body, teardowns, leak check."""
    __tracebackhide__ = True
    done: dict[int, Any] = {}
    teardowns: list[tuple[str, Any]] = []
    errors: list[BaseException] = []
    try:
        kwargs = {k: await _setup(v, done, teardowns, item.name) for k, v in funcargs.items()}
        await item.obj(**kwargs)
    except BaseException as e:
        errors.append(e)
    for name, agen in reversed(teardowns):
        try:
            await _teardown(name, agen)
        except BaseException as e:
            e.add_note(f"in the teardown of async fixture {name!r}")
            errors.append(e)
    if not errors and leaks == "fail":
        await check_leaks()
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup(f"{item.name}: the test and its async fixtures failed", errors)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    __tracebackhide__ = True
    if pyfuncitem.get_closest_marker(MARK) is None:
        return None
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        _fail(f"{pyfuncitem.nodeid}: @pytest.mark.{MARK} is for async def tests")
    opts = options(pyfuncitem)
    pyfuncitem.stash[_seed_key] = opts["seed"]
    funcargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_with_timeout(
        _test_main,
        pyfuncitem,
        funcargs,
        opts["leaks"],
        procs=opts["procs"],
        seed=opts["seed"],
        fake_clock=opts["fake_clock"],
        timeout=opts["timeout"],
    )
    return True


def run_with_timeout(
    main: Any,
    *args: Any,
    procs: int | None,
    seed: int | None,
    fake_clock: bool,
    timeout: float,
) -> Any:
    """``testing.run(main, *args, ...)``, failing the test with the goroutine
    dump if it runs more than ``timeout`` wall-clock seconds: a watchdog
    thread takes the dump, then stops the runtime. ``procs`` None: the
    default of ``gr.run``; ``seed`` None: ``GOROUTINES_SEED``, else fresh."""
    __tracebackhide__ = True
    fired: list[str] = []

    def watchdog() -> None:
        if _scheduler.current is None:
            return
        fired.append(dump())
        _scheduler.current.stop()

    t = threading.Timer(timeout, watchdog)
    t.daemon = True
    t.start()
    try:
        result = run_bubble(main, args, procs, seed, fake_clock)
    except BaseException:
        if not fired:
            raise
        result = None
    finally:
        t.cancel()
        t.join()
    if fired:
        pytest.fail(
            f"the test did not finish within its timeout of {timeout:g} s (wall clock); "
            f"goroutines:\n\n{fired[0]}",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seed = item.stash.get(_seed_key, None)
    if seed is not None and report.failed:
        report.sections.append(
            (
                "goroutines",
                f"seed {seed}; replay with --goroutines-seed={seed}",
            )
        )
    return report
