"""``python -m goroutines``: the command line, the demo, and the demo's counters (``Probe``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import goroutines as gr
from goroutines.__main__ import main as cli
from goroutines._demo import Probe, sieve

ROOT = Path(__file__).resolve().parent.parent


def run_module(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goroutines", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def test_demo_runs_and_prints_its_results() -> None:
    t0 = time.monotonic()
    r = run_module("demo")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # 1. the sieve
    assert "last prime: 7919, sum: 3682913" in out
    assert "goroutines created: 1002," in out  # main + generator + 1000 filters
    # 2. the worker pool stopped by its deadline, without leaking goroutines
    assert "ctx.err(): DeadlineExceeded" in out
    assert "goroutines left: 1 (no leak)" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("jobs done before"))
    done = int(line.split(": ")[1].split(" of ")[0])
    assert 0 < done < 2000, line
    # 3. the deadlock, with the goroutine dump
    assert "gr.run() raised gr.Deadlock" in out
    assert "all goroutines are asleep - deadlock!" in out
    assert "goroutine 1 [sync.WaitGroup.Wait]:" in out
    assert out.count("[chan receive]:") == 2
    assert "created by deadlocked" in out
    # 4. the ping-pong
    assert "procs=1: " in out and "µs per round trip" in out
    # the counters after every run, and the summary
    npingpong = len({1, os.cpu_count() or 1})
    # 5. blocking calls
    assert "another ticked " in out
    line = next(ln for ln in out.splitlines() if ln.startswith("while one goroutine sat"))
    assert int(line.split("ticked ")[1].split(" times")[0]) >= 5, line
    assert "1000 goroutines each in gr.syscall(time.sleep, 0.01): all done in" in out
    assert out.count("Ms started: ") == 4 + npingpong
    assert "demo finished in" in out
    assert r.stderr == ""
    assert elapsed < 45, f"the demo took {elapsed:.1f} s"


def test_cli_usage_without_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m goroutines <command>")
    assert "demo" in err and "bench" in err


@pytest.mark.parametrize("flag", ["-h", "--help", "help"])
def test_cli_help(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([flag]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m goroutines <command>")


def test_cli_bench_rejects_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli(["bench", "--no-such-option"])
    assert e.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_cli_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "usage:" in err


def test_cli_extra_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["demo", "--fast"]) == 2
    assert "unexpected arguments: --fast" in capsys.readouterr().err


def test_module_entry_point() -> None:
    r = run_module()
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("usage: python -m goroutines")
    r = run_module("bench", "--help")
    assert r.returncode == 0
    assert "--workloads" in r.stdout


@pytest.mark.parametrize("procs", [1, 4])
def test_probe_counts_goroutines(procs: int) -> None:
    n = 50

    async def child(done: gr.Chan[int], i: int) -> None:
        await done.send(i)

    async def main() -> int:
        done: gr.Chan[int] = gr.Chan()
        for i in range(n):
            gr.go(child, done, i)
        total = 0
        for _ in range(n):
            v = await done.recv()
            assert v is not None
            total += v
        return total

    probe = Probe()
    assert probe.run(main, procs=procs) == sum(range(n))
    st = probe.stats
    assert st.procs == procs
    assert st.goroutines == n + 1
    assert 1 <= st.ms_started <= procs
    assert st.steps >= n + 1
    assert st.parks >= 0 and st.steals >= 0
    assert str(st).startswith(f"goroutines created: {n + 1}, Ms started: {st.ms_started},")


@pytest.mark.parametrize("procs", [1, 4])
def test_probe_sieve(procs: int) -> None:
    probe = Probe()
    primes = probe.run(sieve, 30, procs=procs)
    assert primes[:10] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert primes[-1] == 113
    assert probe.stats.goroutines == 32  # main + generator + 30 filters


@pytest.mark.parametrize("procs", [1, 4])
def test_probe_stats_survive_a_deadlock(procs: int) -> None:
    async def main() -> None:
        await gr.Chan[int]().recv()

    probe = Probe()
    with pytest.raises(gr.Deadlock, match="all goroutines are asleep - deadlock!"):
        probe.run(main, procs=procs)
    assert probe.stats.goroutines == 1
    assert probe.stats.steps >= 1


def test_probe_stats_before_run() -> None:
    with pytest.raises(RuntimeError, match="has not run"):
        Probe().stats
