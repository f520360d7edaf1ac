"""The execution tracer (issue "See what the scheduler did"): a program that
makes every kind of event, traced and checked against the trace-event
format's rules (``_tracetool.validate``: slices nest on each track, flows
start and end in slices, every park is followed by its wake-up), in C and
pure mode (the suite runs in both); the API, the limit, and the tools."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import goroutines as gr
from goroutines import _tracetool
from goroutines._runtime import _trace
from helpers import grun


async def _everything() -> None:
    """Channels, a contended Mutex, sleeps, a socket read, a blocking call
    long enough for sysmon to hand off the P, a garbage collection."""
    ping, pong = gr.Chan[int](), gr.Chan[int]()

    async def echo() -> None:
        async for v in ping:
            await pong.send(v + 1)

    gr.go(echo)
    for i in range(20):
        await ping.send(i)
        assert await pong.recv() == i + 1
    ping.close()

    mu = gr.Mutex()
    wg = gr.WaitGroup()

    async def locker() -> None:
        try:
            for _ in range(5):
                async with mu:
                    await gr.sleep(0.001)
        finally:
            wg.done()

    wg.add(3)
    for _ in range(3):
        gr.go(locker)
    await wg.wait()

    ln = await gr.net.listen("tcp", "127.0.0.1:0")

    async def serve() -> None:
        c = await ln.accept()
        await gr.sleep(0.01)
        await c.write(b"hi")
        c.close()

    gr.go(serve)
    conn = await gr.net.dial("tcp", f"127.0.0.1:{ln.addr[1]}")
    assert await conn.read() == b"hi"  # parks on the poller, woken by it
    conn.close()
    ln.close()

    # A blocking call while another goroutine wants the P: sysmon retakes it
    # (at procs 1 always: the spinner is queued on the P in the call).
    spinning = [True]

    async def spinner() -> None:
        while spinning[0]:
            sum(range(20_000))  # ~0.5 ms: not thousands of events to write
            await gr.gosched()

    gr.go(spinner)
    await gr.syscall(time.sleep, 0.05)
    spinning[0] = False

    gc.collect()


def _trace_of(tmp_path: Path, main: Any, procs: int, **env: str) -> dict[str, Any]:
    out = tmp_path / "out.json"
    old = dict(os.environ)
    os.environ["GOROUTINES_TRACE"] = str(out)
    os.environ.update(env)
    try:
        grun(main, procs=procs)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert _trace.active is None  # stopped at the end of the run
    return json.loads(out.read_text())


def test_every_event_kind_and_the_format(tmp_path: Path, procs: int) -> None:
    data = _trace_of(tmp_path, _everything, procs)
    assert _tracetool.validate(data) == []
    evs = data["traceEvents"]
    kinds = Counter((e["ph"], e.get("cat", e["name"] if e["ph"] in "CM" else "")) for e in evs)
    assert kinds["X", "goroutine"] > 40  # the goroutines' runs
    assert kinds["i", "goroutine"] >= 5  # their creations: echo, 3 lockers, serve
    assert kinds["i", "unpark"] > 20 and kinds["s", "unpark"] == kinds["f", "unpark"] > 20
    assert kinds["X", "syscall"] >= 1
    assert kinds["X", "gc"] >= 1
    assert kinds["C", "goroutines"] >= 1 and kinds["C", "run queues"] >= 1
    runtime = Counter(e["name"] for e in evs if e.get("cat") == "runtime")
    assert runtime["timers"] >= 1 and runtime["netpoll"] >= 1 and runtime["retake"] >= 1
    # The retaken P's hand-off, on its P's track and on sysmon's.
    handoffs = [e for e in evs if e.get("cat") == "runtime" and e["name"].startswith("handoff")]
    assert {e["pid"] for e in handoffs} == {1, 2}
    assert all(e["args"]["to"] for e in handoffs)
    wakers = Counter(
        str(e["args"]["waker"]) for e in evs if e.get("cat") == "unpark" and e["ph"] == "i"
    )
    assert "timer" in wakers  # the sleeps
    assert any(w.isdigit() for w in wakers)  # a goroutine readied another
    created = {e["args"]["function"] for e in evs if e["ph"] == "i" and e["cat"] == "goroutine"}
    assert {"_everything.<locals>.echo", "_everything.<locals>.locker"} <= created
    parks = Counter(e["args"]["until"] for e in evs if e["ph"] == "X" and e["cat"] == "goroutine")
    # (At procs=1 the ping-pong's parks are all sends: each side finds the
    # other's value waiting when it receives.)
    assert parks["chan send"] + parks["chan receive"] and parks["sync.Mutex.Lock"]
    assert parks["sleep"] and parks["IO wait"] and parks["syscall"] and parks["end"]
    # A park's slice names the kind of object waited on.
    parked_on = Counter(
        e["args"].get("parked_on")
        for e in evs
        if e["ph"] == "X" and e["cat"] == "goroutine" and e["pid"] == 1
    )
    assert parked_on["chan"] and parked_on["mutex"] and parked_on["timer"] and parked_on["netpoll"]
    assert parked_on[None] >= parks["syscall"] + parks["end"]  # not parks: no kind
    names = {e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    assert "M0" in names and "P0" in names
    assert data["otherData"]["dropped"] == 0


def test_start_and_stop_inside_a_run(tmp_path: Path) -> None:
    out = tmp_path / "part.json"

    async def main() -> str | None:
        ch = gr.Chan[int]()
        gr.go(ch.send, 1)
        await ch.recv()  # before the trace: not in it
        gr.trace.start(out)
        with pytest.raises(RuntimeError, match="already being recorded"):
            gr.trace.start(tmp_path / "other.json")

        async def traced_child() -> None:
            await gr.sleep(0.001)

        gr.go(traced_child)
        await gr.sleep(0.01)
        return gr.trace.stop()

    assert grun(main) == str(out)
    data = json.loads(out.read_text())
    assert _tracetool.validate(data) == []
    functions = {e["args"]["function"] for e in data["traceEvents"] if e.get("cat") == "goroutine"}
    assert "test_start_and_stop_inside_a_run.<locals>.main.<locals>.traced_child" in functions
    # main was made before the trace started: named at its first event all the same.
    assert "test_start_and_stop_inside_a_run.<locals>.main" in functions
    assert gr.trace.stop() is None  # nothing recording


def test_bad_calls_are_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no goroutines runtime is running"):
        gr.trace.start(tmp_path / "x.json")

    async def main() -> None:
        with pytest.raises(ValueError, match="limit must be a positive int"):
            gr.trace.start(tmp_path / "x.json", limit=0)
        with pytest.raises(ValueError, match="non-empty path"):
            gr.trace.start("")

    grun(main)


def test_written_when_main_raises(tmp_path: Path) -> None:
    out = tmp_path / "err.json"

    async def main() -> None:
        gr.trace.start(out)
        await gr.sleep(0.001)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        grun(main)
    assert _tracetool.validate(json.loads(out.read_text())) == []


def test_the_limit_bounds_each_thread(tmp_path: Path) -> None:
    async def busy() -> None:
        ch = gr.Chan[int]()

        async def drain() -> None:
            async for _ in ch:
                pass

        gr.go(drain)
        for i in range(2000):
            await ch.send(i)
        ch.close()

    data = _trace_of(tmp_path, busy, 1, GOROUTINES_TRACE_LIMIT="500")
    other = data["otherData"]
    assert other["limit_per_thread"] == 500
    assert other["dropped"] > 3000  # 2000 round trips make ~8000 events
    assert other["events"] <= 500 * 4  # a few threads at most
    assert _tracetool.validate(data) == []


def test_the_tracer_off_leaves_no_hook(tmp_path: Path) -> None:
    from goroutines._runtime import _goroutine, _machine, _netpoll, _scheduler, _sysmon

    async def traced_then_not(path: Path) -> None:
        gr.trace.start(path)
        await _everything()
        gr.trace.stop()
        await _everything()

    grun(traced_then_not, tmp_path / "t.json")
    for mod in (_machine, _scheduler, _netpoll, _sysmon):
        assert mod._tracer is None  # type: ignore[attr-defined]
    # The reference's swapped sites are back: its step loop tests nothing.
    assert _machine._coro_send is types.CoroutineType.send
    assert _goroutine.goready is _scheduler.ready or gr.__speedups__ == "c"
    assert gr.Chan  # and the runtime works: the run above passed


def test_summary_and_check_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In process, through ``python -m goroutines``'s dispatch (a subprocess
    each would cost a second of the suite; ``test_demo_trace`` runs one,
    and the plot)."""
    from goroutines.__main__ import main as cli

    data = _trace_of(tmp_path, _everything, 2)
    path = tmp_path / "out.json"
    path.write_text(json.dumps(data))
    assert cli(["trace", "summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "_everything.<locals>.locker" in out
    assert "sync.Mutex.Lock" in out or "sleep" in out
    assert "scheduler latency (runnable -> running)" in out
    assert cli(["trace", "check", str(path)]) == 0
    assert capsys.readouterr().out.startswith("0 problems")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"traceEvents": [{"ph": "X", "name": "a", "pid": 1, "tid": 1,
                                                "ts": 0, "dur": 5},
                                               {"ph": "X", "name": "b", "pid": 1, "tid": 1,
                                                "ts": 3, "dur": 5}]}))  # fmt: skip
    assert cli(["trace", "check", str(bad)]) == 1
    assert "not nested" in capsys.readouterr().out
    assert cli(["trace", "summary", str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err
    assert cli(["trace", "plot", str(path)]) == 2  # no -o
    assert "needs OUT.json -o TIMELINE.png" in capsys.readouterr().err


def test_demo_trace(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    r = subprocess.run(
        [sys.executable, "-m", "goroutines", "demo", "--trace", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert f"execution trace of section 2 written to {out}" in r.stdout
    data = json.loads(out.read_text())
    assert _tracetool.validate(data) == []
    # The tools on the demo's trace: the pool's workers, their waits, a PNG.
    summary = _tracetool.summary(data)
    assert "work" in summary and "select" in summary and "scheduler latency" in summary
    pytest.importorskip("matplotlib")
    from goroutines.__main__ import main as cli

    png = tmp_path / "demo.png"
    assert cli(["trace", "plot", str(out), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threads_waking_goroutines_are_named(tmp_path: Path) -> None:
    async def main() -> None:
        ch = gr.Chan[int](1)
        threading.Timer(0.01, lambda: ch.close()).start()
        async for _ in ch:
            pass

    data = _trace_of(tmp_path, main, 1)
    assert _tracetool.validate(data) == []
    wakers = {
        e["args"]["waker"]
        for e in data["traceEvents"]
        if e.get("cat") == "unpark" and e["ph"] == "i"
    }
    assert any(str(w).startswith("Thread") for w in wakers), wakers


def test_run_command_trace_flag(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(
        "import goroutines as gr\n"
        "async def main():\n"
        "    ch = gr.Chan()\n"
        "    async def w():\n"
        "        for i in range(5):\n"
        "            await ch.send(i)\n"
        "        ch.close()\n"
        "    gr.go(w)\n"
        "    print(sum([v async for v in ch]))\n"
    )
    out = tmp_path / "run.json"
    r = subprocess.run(
        [sys.executable, "-m", "goroutines", "run", "--trace", str(out), str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout == "10\n", r.stderr
    data = json.loads(out.read_text())
    assert _tracetool.validate(data) == []
    assert any(e.get("args", {}).get("function") == "main.<locals>.w" for e in data["traceEvents"])


def test_steals_are_recorded(tmp_path: Path) -> None:
    """Goroutines queued behind one that computes: an idle M steals them,
    and the trace says so. The first computes until another has started
    (so taken from its P's queue by another M), not for a fixed time: 30 ms
    was too short under three CPU hogs (18 of 40 runs: M0 ran all four)."""
    started: list[int] = []  # list.append: atomic

    async def main() -> None:
        done = gr.WaitGroup()

        async def compute() -> None:
            started.append(1)
            t = time.perf_counter()
            while len(started) < 2 and time.perf_counter() - t < 20:
                pass
            done.done()

        for _ in range(4):
            done.add(1)
            gr.go(compute)
        await done.wait()

    data = _trace_of(tmp_path, main, 4)
    assert len(started) == 4
    assert _tracetool.validate(data) == []
    steals = [e for e in data["traceEvents"] if e.get("cat") == "runtime" and e["name"] == "steal"]
    assert steals, "no steal recorded"
    victim, thief, n = steals[0]["args"]["args"]
    assert victim != thief and n >= 1
    ms = {e["tid"] for e in data["traceEvents"] if e["ph"] == "X" and e.get("cat") == "goroutine"}
    assert len(ms) >= 2  # the stolen goroutines ran on other Ms


def test_traces_one_after_another_on_several_ms(tmp_path: Path) -> None:
    """Several traces in one run, each with goroutines on several Ms: each
    file holds its own events only, on the right tracks (the accelerator
    keeps a thread's buffer from one trace to the next), and a written
    trace is not kept alive (the accelerator holds its hook for ever)."""
    import weakref

    refs: list[weakref.ref[_trace.Tracer]] = []

    async def main() -> None:
        for k in range(3):
            gr.trace.start(tmp_path / f"t{k}.json")
            assert _trace.active is not None
            refs.append(weakref.ref(_trace.active))
            done = gr.WaitGroup()

            async def compute(done: gr.WaitGroup) -> None:
                for _ in range(3):
                    t = time.perf_counter()
                    while time.perf_counter() - t < 0.004:
                        pass
                    await gr.gosched()
                done.done()

            for _ in range(4):
                done.add(1)
                gr.go(compute, done)
            await done.wait()
            gr.trace.stop()

    grun(main, procs=3)
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    for k in range(3):
        data = json.loads((tmp_path / f"t{k}.json").read_text())
        assert _tracetool.validate(data) == []
        creates = [e for e in data["traceEvents"] if e["name"].startswith("create")]
        assert len(creates) == 4  # this trace's goroutines only


def test_plot_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from goroutines.__main__ import main as cli

    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": []}))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    assert cli(["trace", "plot", str(path), "-o", str(tmp_path / "t.png")]) == 1
    assert "trace plot needs matplotlib" in capsys.readouterr().err
