"""The two implementations of the hot paths: the C accelerator and the reference.

The whole suite runs in both modes (``make test``); these tests are about
the switch itself and about what must not depend on it: which mode runs and
why, dumps, error messages, ``gr.go(ch.recv)``, and the warning and type of
an operation that is never awaited.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import goroutines as gr
from goroutines import _accel, _chan
from goroutines._runtime import _timers

ROOT = Path(__file__).resolve().parent.parent
BUILT = importlib.util.find_spec("goroutines._speedups") is not None
needs_c = pytest.mark.skipif(not BUILT, reason="the C accelerator is not built")


def _python(code: str, *, pure: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GOROUTINES_PURE"}
    if pure:
        env["GOROUTINES_PURE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def test_the_mode_in_use_is_public_and_explained() -> None:
    assert gr.__speedups__ == _accel.MODE
    assert gr.__speedups__ in ("c", "pure")
    # the reference runs only for a reason, and says which
    assert (gr.__speedups__ == "pure") == bool(_accel.WHY_PURE)
    base = gr.Chan.__mro__[2]
    assert base.__module__ == (
        "goroutines._speedups" if gr.__speedups__ == "c" else "goroutines._chan"
    )


def test_goroutines_pure_forces_the_reference() -> None:
    code = "import goroutines, goroutines._accel as a; print(goroutines.__speedups__, a.WHY_PURE)"
    assert _python(code, pure=True).split(" ", 1) == ["pure", "GOROUTINES_PURE is set\n"]
    if BUILT:
        assert _python(code, pure=False).strip() == "c"


_DUMP = """
    import goroutines as gr

    async def parked(ch, how):
        if how == "send":
            await ch.send(1)
        elif how == "recv":
            await ch.recv()
        elif how == "recv_ok":
            await ch.recv_ok()
        else:
            async for _ in ch:
                pass

    async def sleeper():
        await gr.sleep(30.0)

    async def main():
        chans = [gr.Chan() for _ in range(4)]
        for ch, how in zip(chans, ("send", "recv", "recv_ok", "for")):
            gr.go(parked, ch, how)
        gr.go(chans[1].recv)  # a goroutine that is the operation itself
        gr.go(sleeper)
        gr.go(gr.sleep, 30.0)
        for _ in range(20):
            await gr.sleep(0.001)
        print(gr.stack_dump().replace(gr.__file__.rsplit("/", 1)[0], "PKG"))
        for ch in chans:
            ch.close()

    gr.run(main, procs=1)
"""


@needs_c
def test_dumps_are_the_same_in_both_modes() -> None:
    """A G parked in the accelerator's channel operation (a C object, no
    frame) is shown as the reference's frame at the same wait."""
    c, pure = _python(_DUMP, pure=False), _python(_DUMP, pure=True)
    assert c == pure
    assert c.count("Chan.send(...)") == 1
    assert c.count("Chan.recv(...)") == 2
    assert c.count("Chan.recv_ok(...)") == 1
    assert c.count("Chan.__anext__(...)") == 1
    assert c.count("  sleep(...)") == 2
    assert "PKG/_chan.py:" in c
    assert "PKG/_time.py:" in c


@pytest.mark.parametrize(
    ("arg", "exc", "msg"),
    [
        (-1, ValueError, "Chan capacity must be >= 0, got -1"),
        (-(10**30), ValueError, f"Chan capacity must be >= 0, got {-(10**30)}"),
        (1.5, TypeError, "Chan capacity must be an int, got float"),
        (True, TypeError, "Chan capacity must be an int, got bool"),
        ("3", TypeError, "Chan capacity must be an int, got str"),
    ],
)
def test_bad_capacity_same_error_in_both_modes(arg: object, exc: type, msg: str) -> None:
    with pytest.raises(exc) as info:
        gr.Chan(arg)  # type: ignore[arg-type]
    assert str(info.value) == msg


def test_huge_capacity_is_kept() -> None:
    ch: gr.Chan[int] = gr.Chan(10**30)
    assert ch.cap == 10**30

    async def main() -> int | None:
        for i in range(3):
            await ch.send(i)
        return await ch.recv()

    assert gr.run(main) == 0
    assert len(ch) == 2


def test_an_operation_is_awaitable_and_closable() -> None:
    import inspect

    ch: gr.Chan[int] = gr.Chan(1)
    for op in (ch.send(1), ch.recv(), ch.recv_ok(), ch.__anext__()):
        assert inspect.isawaitable(op)
        op.close()


@pytest.mark.skipif(gr.__speedups__ != "c", reason="C mode only: see the test's docstring")
def test_an_operation_never_awaited_warns() -> None:
    """``ch.send(1)`` without ``await`` does nothing: the accelerator's
    operation says so when it is collected, as a coroutine does. The
    reference's operations are generators, and CPython does not warn for a
    generator that never ran: in pure mode only the type checkers catch it
    (``test_mypy_flags_an_operation_never_awaited``)."""
    ch: gr.Chan[int] = gr.Chan(1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ch.send(1)  # type: ignore[unused-coroutine]
        ch.recv()  # type: ignore[unused-coroutine]
        import gc

        gc.collect()
    msgs = sorted(str(x.message) for x in w if x.category is RuntimeWarning)
    assert msgs == ["Chan.recv was never awaited", "Chan.send was never awaited"]
    assert len(ch) == 0  # and nothing was sent


def test_mypy_flags_an_operation_never_awaited(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    src = tmp_path / "unawaited.py"
    src.write_text(
        textwrap.dedent(
            """
            import goroutines as gr

            async def f(ch: gr.Chan[int]) -> None:
                ch.send(1)
                ch.recv()
                await ch.send(2)
                v: int | None = await ch.recv()
                ok: tuple[int | None, bool] = await ch.recv_ok()
            """
        )
    )
    out, err, status = api.run(
        [
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            "",
            str(src),
        ]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 2, out + err
    assert all("[unused-coroutine]" in e for e in errors), out
    assert status == 1


def test_an_operation_given_to_go_that_never_runs_does_not_warn() -> None:
    code = """
        import goroutines as gr

        async def main():
            gr.go(gr.sleep, 0.5)
            gr.go(gr.Chan().recv)
            gr.go(gr.Chan(1).send, 1)

        gr.run(main, procs=1)
        print("done")
    """
    for pure in (False, True):
        out = subprocess.run(
            [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
            env={**os.environ, "GOROUTINES_PURE": "1" if pure else ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and out.stdout == "done\n", out.stderr
        assert "never awaited" not in out.stderr


def test_go_of_an_operation(procs: int) -> None:
    async def main() -> list[int | None]:
        ch: gr.Chan[int] = gr.Chan()
        out: gr.Chan[int] = gr.Chan(2)
        gr.go(ch.send, 5)
        gr.go(out.send, 6)
        return [await ch.recv(), await out.recv()]

    assert gr.run(main, procs=procs) == [5, 6]


def test_the_runtime_lock_behaves_as_threading_lock() -> None:
    """Every ranked lock is ``_lockrank._Lock``: ``threading.Lock``, or the
    accelerator's ``Lock``, which must behave the same to the Python code."""
    import threading
    import time

    from goroutines._runtime._lockrank import _Lock

    lk = _Lock()
    assert not lk.locked()
    assert lk.acquire() is True
    assert lk.locked()
    assert lk.acquire(False) is False
    assert lk.acquire(blocking=False) is False
    t0 = time.monotonic()
    assert lk.acquire(timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.04
    with pytest.raises(ValueError):
        lk.acquire(False, 1.0)
    # released by another thread (as _thread.lock allows)
    th = threading.Thread(target=lk.release)
    th.start()
    th.join()
    assert not lk.locked()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lk.release()
    with lk:
        assert lk.locked()
    assert not lk.locked()
    # a waiter blocks (with the GIL released) until the holder lets go
    lk.acquire()
    got: list[float] = []

    def waiter() -> None:
        with lk:
            got.append(time.monotonic())

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.05)
    assert got == []
    released = time.monotonic()
    lk.release()
    th.join(5)
    assert got and got[0] >= released


def test_an_operation_driven_by_hand() -> None:
    """``send(None)``/``next()`` on an operation, as an event loop's task
    would: a completed one raises StopIteration carrying its value."""
    ch: gr.Chan[int] = gr.Chan(2)

    async def main() -> None:
        op = ch.send(7)
        with pytest.raises(StopIteration) as info:
            op.send(None)
        assert info.value.value is None
        op = ch.recv_ok()
        with pytest.raises(StopIteration) as info:
            op.send(None)
        assert info.value.value == (7, True)
        await ch.send(8)
        op = ch.recv()
        with pytest.raises(StopIteration) as info:
            next(op)  # type: ignore[call-overload]
        assert info.value.value == 8

    gr.run(main)


def _timers_c_bind() -> Any:
    if _timers._bind is not None:
        return _timers._bind
    from goroutines import _speedups  # type: ignore[attr-defined]  # the reference runs: bind by hand

    return _speedups.init_timers(Timers=_timers.Timers, Timer=_timers.Timer)


@needs_c
@pytest.mark.parametrize("seed", range(20))
def test_the_timer_heap_is_the_same_in_both_modes(seed: int) -> None:
    """``Timers.run_due`` in C and in Python, on twin heaps built by the same
    seeded steps (equal times, periodic timers, stopped and reset ones, a
    heap rebuilt when half stale): the same callbacks in the same order,
    the same heap entry by entry, the same counters."""
    rng = random.Random(seed)
    bind = _timers_c_bind()
    ref = _timers.Timers(lambda: None)
    acc = _timers.Timers(lambda: None)
    ref.arm_sleep, ref.run_due = ref._arm_sleep, ref._run_due
    acc.arm_sleep, acc.run_due = bind(acc)
    fired: dict[int, list[str]] = {id(ref): [], id(acc): []}
    timers: dict[int, list[_timers.Timer]] = {id(ref): [], id(acc): []}
    now = time.monotonic()
    for i in range(rng.randrange(50, 400)):
        op = rng.random()
        when = now + rng.choice([-1.0, -0.5, -0.5, 0.0, 100.0, 100.0, rng.uniform(-1, 100)])
        period = rng.choice([0.0, 0.0, 0.0, 0.25, 1e-300])
        pick = rng.randrange(1 << 30)
        for ts in (ref, acc):
            mine = timers[id(ts)]
            if op < 0.6 or not mine:
                t = _timers.Timer(fired[id(ts)].append, f"t{i}", period)
                mine.append(t)
                ts.add(t, when)
            elif op < 0.8:
                ts.stop(mine[pick % len(mine)])
            else:
                ts.reset(mine[pick % len(mine)], when)
    for ts in (ref, acc):
        assert ts.run_due() == len(fired[id(ts)])
    assert fired[id(ref)] == fired[id(acc)]
    assert fired[id(ref)], "nothing was due: the test tests nothing"

    # A periodic timer's next time counts from the clock at the call, so
    # the two calls differ by the microseconds between them there.
    def shape(ts: _timers.Timers) -> list[tuple[int, int]]:
        index = {id(t): k for k, t in enumerate(timers[id(ts)])}
        return [(s, index[id(t)]) for _, s, t in ts.heap]

    assert shape(ref) == shape(acc)
    for (wr, _, _), (wa, _, _) in zip(ref.heap, acc.heap, strict=True):
        assert wr == pytest.approx(wa, abs=0.01)
    for f in ("nactive", "nstale", "seq"):
        assert getattr(ref, f) == getattr(acc, f), f
    assert ref.next_when == pytest.approx(acc.next_when, abs=0.01)
    for a, b in zip(timers[id(ref)], timers[id(acc)], strict=True):
        assert (a.active, a.seq) == (b.active, b.seq)
        assert a.when == pytest.approx(b.when, abs=0.01)


@needs_c
def test_a_timer_callback_that_raises_propagates_in_both_modes() -> None:
    """As the reference: the exception leaves ``run_due``, the lock is free
    again and the heap is consistent."""
    bind = _timers_c_bind()
    for c_mode in (False, True):
        ts = _timers.Timers(lambda: None)
        ts.arm_sleep, ts.run_due = bind(ts) if c_mode else (ts._arm_sleep, ts._run_due)

        def boom(arg: object) -> None:
            raise ValueError(arg)

        ts.add(_timers.Timer(boom, "bad"), time.monotonic() - 1)
        later = _timers.Timer(lambda a: None, None)
        ts.add(later, time.monotonic() + 100)
        with pytest.raises(ValueError, match="bad"):
            ts.run_due()
        assert ts.lock.acquire(blocking=False)
        ts.lock.release()
        assert ts.nactive == 1 and len(ts.heap) == 1 and ts.next_when == later.when


def test_close_is_the_cores_in_both_modes() -> None:
    """``close`` is the reference's or the accelerator's, with one doc."""
    base = gr.Chan.__mro__[2]
    assert gr.Chan.close is base.close
    ref = _chan._ChanCore.close
    assert inspect.getdoc(gr.Chan.close) == inspect.getdoc(ref)


class _Sleeper:
    """What ``arm_sleep`` needs of a G: ``elem``, the time to wake it."""

    def __init__(self, when: float) -> None:
        self.elem = when


@pytest.mark.parametrize("c_mode", [False, True])
def test_the_heap_is_read_under_the_timers_lock(c_mode: bool) -> None:
    """``run_due`` and ``arm_sleep`` must read ``Timers.heap`` after taking
    ``Timers.lock``: ``stop``'s rebuild (``_unarm``) replaces the list, and
    a call that read it before waiting for the lock worked on the old one
    (the soak found it: a sleeping goroutine readied twice, the second time
    dead; and a sleep pushed onto a dropped list never fires). The window
    is held open: the lock is taken here, the call started on a thread
    waits for it, the heap is replaced, the lock released."""
    if c_mode and not BUILT:
        pytest.skip("the C accelerator is not built")
    ts = _timers.Timers(lambda: None)
    if c_mode:
        ts.arm_sleep, ts.run_due = _timers_c_bind()(ts)
    else:
        ts.arm_sleep, ts.run_due = ts._arm_sleep, ts._run_due
    fired: list[object] = []
    ts.add(_timers.Timer(fired.append, "due"), time.monotonic() - 1)
    later = _Sleeper(time.monotonic() + 100)

    def racing(call: Callable[[], object]) -> None:
        ts.lock.acquire()
        th = threading.Thread(target=call)
        th.start()
        time.sleep(0.1)  # the call is waiting for the lock (a bug read the heap already)
        ts.heap = list(ts.heap)  # what _unarm's rebuild does
        ts.lock.release()
        th.join(5)
        assert not th.is_alive()

    racing(ts.run_due)
    assert fired == ["due"]
    assert ts.heap == [] and ts.nactive == 0
    assert ts.run_due() == 0 and fired == ["due"]  # not again
    racing(lambda: ts.arm_sleep(later))  # type: ignore[arg-type]
    assert [x for _, _, x in ts.heap] == [later] and ts.nactive == 1


def test_mypy_checks_the_arguments_of_go_group_go_and_syscall(tmp_path: Path) -> None:
    # ParamSpec: the arguments given to gr.go, Group.go and gr.syscall are
    # checked against the function's, as asyncio.create_task(fn(...)) is.
    api = pytest.importorskip("mypy.api")
    src = tmp_path / "spawn.py"
    src.write_text(
        textwrap.dedent(
            """
            import goroutines as gr

            async def f(x: int, y: str = "") -> None: ...

            async def main() -> None:
                gr.go(f, 1)
                gr.go(f, 1, y="a")
                gr.go(f(2))
                gr.go(f, "one")
                gr.go(f, 1, z=2)
                g = gr.Group()
                g.go(f, 1)
                g.go(f, [1])
                n: int = await gr.syscall(len, "abc")
                await gr.syscall(len, 5)
            """
        )
    )
    out, err, status = api.run(
        ["--no-incremental", "--cache-dir", str(tmp_path / "cache"), "--config-file", "", str(src)]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    lines = sorted(int(e.split(":")[1]) for e in errors)
    assert lines == [10, 11, 14, 16], out + err
    assert status == 1
