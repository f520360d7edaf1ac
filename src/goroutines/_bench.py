"""``python -m goroutines bench``: the benchmark suite, goroutines against its peers.

This module is the orchestrator; the measuring is done by the runners in the
source tree's ``benchmarks/`` directory (one script per runtime, see
``benchmarks/README.md``). Each *cell* (one workload, one runtime, one
repetition) is a fresh ``python benchmarks/run_<runtime>.py --workload W1
--size N`` process that prints one JSON line: its metrics, or ``na`` (the
pair makes no sense). A runner that exits non-zero (a wrong answer, a crash,
a timeout) is an error for that cell, never a time, and the cell is not
repeated.

The order is round-robin: for each workload, every repetition runs each
runtime once, the order rotated by one each time, so that a drift of the
machine (another process, thermal state) is spread over all runtimes. A
figure is the median over the repetitions.

Ratios are oriented so that > 1 always means goroutines is better: the
peer's figure over goroutines' where lower is better (times, memory), and
goroutines' over the peer's where higher is better (round trips per
second, speed-up).

Some workloads are also run at fixed ``procs`` (``SWEEPS``): W9 only at
procs 1 and P (goroutines; threads: a pool of 1 and P), with the speed-up
derived from the two medians; W1 (procs 1 and 4) and W4 (procs 1 and 2)
for goroutines besides their default-procs cells, with the cost ratio of
the two, which the issue bounds. These cells take their turn in the same
round-robin as the others, each a fresh process.

W8 (the TCP echo server) and W10 (an HTTP/1.1 server on h11, loaded by
``wrk``) are run pinned, where the machine lets it: the runner, which is
the server, on one CPU and the load client it starts on another
(``pin_cpus``; ``--no-pin`` to not). Unpinned on two cores the rate
measures how the scheduler happens to place the two processes as much as
the server. Their figures, side by side: round trips (requests) per second
and the server's CPU time per round trip (request): every thread of the
server process, over the client's measured window (W10: wrk's whole run,
from just before it starts). W10 is N/A when
``wrk`` is not installed (``make bench`` installs it with apt-get).

The issue's targets are data (``TARGETS``): each names a row and a bound,
on goroutines' own figure or on its ratio to one peer's, and is evaluated
on the run's medians as met, not met or not measured (a cell that did not
run or failed, a peer not installed).

Outputs (``--out``, by default ``benchmarks/results/``): ``bench.json``
(every sample, the medians, the rows, the targets), ``bench.md`` (the
table and the targets) and ``bench.png`` (a bar chart, log scale, one
group per figure that a peer has too; skipped without matplotlib).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import operator
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, final

__all__ = ["PINNED", "RUNTIMES", "SWEEPS", "TARGETS", "WORKLOADS", "main"]

#: src/goroutines/_bench.py -> the checkout's root holds benchmarks/.
_SRC: Final = Path(__file__).resolve().parents[1]
_DEFAULT_BENCH_DIR: Final = _SRC.parent / "benchmarks"


@final
@dataclass(frozen=True)
class Metric:
    """One figure a workload reports: the runner's JSON key, its unit, its direction."""

    key: str
    unit: str
    lower_is_better: bool = True


@final
@dataclass(frozen=True)
class Workload:
    id: str
    title: str
    size: int  # the size
    quick: int  # --quick's size
    size_unit: str
    metrics: tuple[Metric, ...]
    extra: tuple[str, ...] = ()  # metrics kept in the JSON, not in the table
    runs: int = 0  # repetitions at most (0: --repeat): W12's counts repeat to the instruction
    timeout: float = 0  # a cell's timeout, when longer than --timeout (W12's valgrind runs)


WORKLOADS: Final[dict[str, Workload]] = {
    w.id: w
    for w in (
        Workload(
            "W1",
            "ping-pong over two unbuffered channels",
            100_000,
            2_000,
            "round trips",
            (Metric("us_per_rt", "µs/round trip"),),
        ),
        Workload(
            "W2",
            "spawn, each sends its index to one buffered channel",
            100_000,
            2_000,
            "goroutines",
            (Metric("us_per_g", "µs/goroutine"),),
        ),
        Workload("W3", "concurrent prime sieve", 1_000, 100, "primes", (Metric("s", "s"),)),
        Workload(
            "W4",
            "worker pool: 8 workers, channels of cap 100",
            200_000,
            4_000,
            "jobs",
            (Metric("us_per_job", "µs/job"),),
        ),
        Workload(
            "W5",
            "parked on one channel, then close and join",
            100_000,
            2_000,
            "goroutines",
            (
                Metric("kib_per_g", "KiB RSS/parked"),
                Metric("wake_ms", "ms wake+join"),
                Metric("idle_cpu_pct", "% of a core, all parked"),
            ),
        ),
        Workload(
            "W6",
            "sleep a seeded random 0-100 ms, then signal",
            100_000,
            2_000,
            "goroutines",
            (Metric("s", "s (ideal 0.1)"),),
        ),
        Workload(
            "W7",
            "blocking time.sleep(0.01) offloaded",
            1_000,
            100,
            "calls",
            (Metric("s", "s (ideal 0.01)"),),
        ),
        Workload(
            "W8",
            "TCP echo, 64 connections, 64-byte round trips; server and load client each "
            "pinned to a CPU",
            5,
            1,
            "seconds",
            (
                Metric("rt_per_s", "round trips/s", lower_is_better=False),
                Metric("server_us_per_rt", "server CPU µs/round trip"),
            ),
            extra=("server_cpu", "client_cpu", "client_us_per_rt", "pinned"),
        ),
        Workload(
            "W9",
            "8 x sha256 of a buffer, offloaded, procs 1 vs P",
            32,
            1,
            "MiB per hasher",
            (Metric("s", "s"),),
            extra=("serial_s",),
        ),
        Workload(
            "W10",
            "HTTP/1.1 keep-alive hello world on h11, wrk -t1 -c50; server and wrk each "
            "pinned to a CPU",
            5,
            1,
            "seconds",
            (
                Metric("req_per_s", "requests/s", lower_is_better=False),
                Metric("server_us_per_req", "server CPU µs/request"),
            ),
            extra=("server_cpu", "client_cpu", "p50_ms", "p99_ms", "pinned"),
        ),
        Workload(
            "W11",
            "the execution tracer: W1 with gr.trace recording, against W1 untraced in the "
            "same process",
            100_000,
            2_000,
            "round trips",
            (
                Metric("us_per_rt", "µs/round trip traced"),
                Metric("off_us_per_rt", "µs/round trip untraced"),
                Metric("on_off", "traced / untraced"),
            ),
            extra=("events", "write_s"),
        ),
        Workload(
            "W12",
            "the execution tracer in callgrind instructions at procs 1: off, this runtime "
            "against a copy of it built without the tracer's sites; on, W1 traced / untraced",
            6_000,
            1_500,
            "operations",
            (
                Metric("off_w1_c", "% more W1 instructions, off (C)"),
                Metric("off_w4_c", "% more W4 instructions, off (C)"),
                Metric("off_w1_pure", "% more W1 instructions, off (pure)"),
                Metric("off_w4_pure", "% more W4 instructions, off (pure)"),
                Metric("on_w1_pure", "W1 instructions, traced / untraced (pure)"),
            ),
            extra=(
                *(
                    f"ins_{w}_{mode}{without}"
                    for w in ("w1", "w4")
                    for mode in ("c", "pure")
                    for without in ("", "_without")
                ),
                "ins_on_pure",
                "ins_off_pure",
            ),
            runs=1,
            timeout=1200,
        ),
    )
}


@final
@dataclass(frozen=True)
class Runtime:
    name: str
    script: str  # in benchmarks/
    needs: str | None = None  # the module that must be importable
    args: tuple[str, ...] = ()


RUNTIMES: Final[dict[str, Runtime]] = {
    r.name: r
    for r in (
        Runtime("goroutines", "run_goroutines.py"),
        Runtime("asyncio", "run_asyncio.py", None, ("--runtime", "asyncio")),
        Runtime("uvloop", "run_asyncio.py", "uvloop", ("--runtime", "uvloop")),
        Runtime("trio", "run_trio.py", "trio"),
        Runtime("gevent", "run_gevent.py", "gevent"),
        Runtime("threads", "run_threads.py"),
    )
}

#: Pairs not run at all (a runner would only say N/A, so do not pay its start-up).
_NA: Final[dict[tuple[str, str], str]] = {
    **{
        ("W9", rt): "W9 compares goroutines and threads at procs 1 and P"
        for rt in ("asyncio", "uvloop", "trio", "gevent")
    },
    ("W5", "threads"): "an OS thread per parked goroutine: not what threads are for",
    ("W6", "threads"): "an OS thread per sleeping goroutine: not what threads are for",
    **{
        ("W10", rt): "W10 compares examples/http_server.py with the same h11 server on "
        "asyncio streams (and uvloop)"
        for rt in ("trio", "gevent", "threads")
    },
    **{
        (w, rt): f"{w} measures goroutines' own tracer"
        for w in ("W11", "W12")
        for rt in ("asyncio", "uvloop", "trio", "gevent", "threads")
    },
}

#: The workloads run pinned (server and load client on a CPU each), and what
#: their load client is called.
PINNED: Final[dict[str, str]] = {"W8": "load client", "W10": "wrk"}


def missing_http_tools() -> str | None:
    """Why W10 cannot run here (its cells are then N/A), or None if it can."""
    if shutil.which("wrk") is None:
        return "wrk not installed"
    if importlib.util.find_spec("h11") is None:
        return "h11 not installed (pip install -e '.[bench]')"
    return None


def pin_cpus(
    workload: str, allowed: set[int] | None, no_pin: bool
) -> tuple[tuple[int, int] | None, str]:
    """A pinned workload's CPUs, ``(server, load client)``, or None (unpinned),
    and a line saying which.

    ``allowed``: the CPUs this process may run on (None: unknown, no
    ``os.sched_getaffinity``). The server takes the first, the client the
    second: each has a CPU to itself (but for what else the machine runs),
    so the rate is the server's, not the luck of two processes sharing cores.
    """
    client = PINNED[workload]
    if no_pin:
        return None, f"{workload} not pinned (--no-pin): server and {client} share the CPUs"
    if allowed is None:
        return None, (
            f"{workload} not pinned: this platform has no CPU affinity (os.sched_setaffinity)"
        )
    if len(allowed) < 2:
        return None, (
            f"{workload} not pinned: only CPU {sorted(allowed)} is available; server and "
            f"{client} share it, so the rate is not the server's alone"
        )
    server, other = sorted(allowed)[:2]
    return (server, other), f"{workload} pinned: server on CPU {server}, {client} on CPU {other}"


def w8_pin(allowed: set[int] | None, no_pin: bool) -> tuple[tuple[int, int] | None, str]:
    """W8's CPUs and line (``pin_cpus``)."""
    return pin_cpus("W8", allowed, no_pin)


@final
@dataclass(frozen=True)
class Sweep:
    """A workload also measured at two fixed ``procs``, ``lo`` and ``hi``, and the two related.

    Its rows: the workload's figure at procs ``lo``, at ``hi``, and a derived
    row: ``lo / hi`` as a speed-up (higher is better) if ``speedup``, else
    ``hi / lo``, what ``hi`` costs relative to ``lo`` (lower is better).
    """

    workload: str
    lo: int
    hi: int  # 0: --procs, at least 2
    runtimes: tuple[str, ...]  # the others are N/A on these rows
    na: str  # why the others are N/A
    replaces_default: bool  # True: only these cells run (no default-procs row)
    speedup: bool

    def procs(self, procs: int) -> tuple[int, int]:
        """``(lo, hi)`` for a run at ``--procs procs`` (0 = the default)."""
        return self.lo, self.hi or max(procs, 2)

    def derived_figure(self, procs: int) -> str:
        lo, hi = self.procs(procs)
        return f"speed-up procs {lo}->{hi}" if self.speedup else f"procs={hi} / procs={lo}"

    @property
    def derived_key(self) -> str:
        return "speedup" if self.speedup else "procs_ratio"


_GOROUTINES_PROCS: Final = (
    "the procs rows measure goroutines' procs (GOMAXPROCS), a knob the peers lack"
)

SWEEPS: Final[dict[str, Sweep]] = {
    s.workload: s
    for s in (
        Sweep("W1", 1, 4, ("goroutines",), _GOROUTINES_PROCS, False, False),
        Sweep("W4", 1, 2, ("goroutines",), _GOROUTINES_PROCS, False, False),
        Sweep("W9", 1, 0, ("goroutines", "threads"), _NA["W9", "asyncio"], True, True),
    )
}


@final
@dataclass(frozen=True)
class Cell:
    """One (workload, runtime, procs) combination, run ``repeat`` times."""

    workload: str
    runtime: str
    procs: int  # 0 = the runtime's default

    @property
    def key(self) -> str:
        """How the cell is named in the JSON and the progress lines."""
        sweep = SWEEPS.get(self.workload)
        swept = sweep is not None and self.runtime in sweep.runtimes and self.procs
        return f"{self.workload}/{self.runtime}" + (f"@procs={self.procs}" if swept else "")


@final
@dataclass
class CellResult:
    samples: list[dict[str, float]] = field(default_factory=list)
    size: int = 0
    error: str | None = None
    na: str | None = None


@final
@dataclass
class Row:
    """One line of the table: one figure of one workload, for every runtime."""

    id: str
    figure: str
    lower_is_better: bool
    values: dict[str, float]
    status: dict[str, str]  # runtime -> "N/A: why" or "error: why" (no value)
    key: str = ""  # what targets name it by: the metric's key, "@procs=N", or the derived row's

    def ratio(self, runtime: str) -> float | None:
        """How many times better goroutines is than ``runtime`` on this row (> 1: better)."""
        g = self.values.get("goroutines")
        v = self.values.get(runtime)
        if g is None or v is None or g <= 0 or v <= 0:
            return None
        return v / g if self.lower_is_better else g / v


# -- running the cells -------------------------------------------------------------


def _plan(workloads: list[str], runtimes: list[str], procs: int) -> list[list[Cell]]:
    """Per workload, the cells to run: each runtime at ``procs``, plus the sweeps' cells.

    A sweep's cells follow their runtime's default cell; one equal to it
    (``--procs`` set to a sweep's procs) is run once, for both rows.
    """
    plan = []
    for w in workloads:
        sweep = SWEEPS.get(w)
        cells: list[Cell] = []
        for rt in runtimes:
            if sweep is None or not sweep.replaces_default:
                cells.append(Cell(w, rt, procs))
            if sweep is not None and rt in sweep.runtimes:
                cells += [Cell(w, rt, p) for p in sweep.procs(procs)]
        plan.append(list(dict.fromkeys(cells)))
    return plan


def _run_cell(
    cell: Cell,
    size: int,
    bench_dir: Path,
    seed: int,
    timeout: float,
    extra_args: tuple[str, ...] = (),
) -> tuple[dict[str, Any] | None, str | None]:
    """Run one cell in a fresh interpreter: ``(its JSON line, None)`` or ``(None, error)``."""
    rt = RUNTIMES[cell.runtime]
    cmd = [sys.executable, str(bench_dir / rt.script), *rt.args]
    cmd += ["--workload", cell.workload, "--size", str(size), "--seed", str(seed)]
    if cell.procs:
        cmd += ["--procs", str(cell.procs)]
    cmd += extra_args
    env = dict(os.environ)
    # The runners must import this very goroutines, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=bench_dir
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        return None, why
    try:
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None, f"no JSON line on stdout: {proc.stdout[-200:]!r}"
    return out, None


def _format_metric(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _format_ratio(r: float) -> str:
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def _progress_summary(wl: Workload, out: dict[str, Any]) -> str:
    if "na" in out:
        return f"N/A ({out['na']})"
    metrics: dict[str, float] = out["metrics"]
    return ", ".join(
        f"{_format_metric(metrics[m.key])} {m.unit}" for m in wl.metrics if m.key in metrics
    )


def run_suite(
    plan: list[list[Cell]],
    sizes: dict[str, int],
    repeat: int,
    bench_dir: Path,
    seed: int,
    timeout: float,
    extra_args: dict[str, tuple[str, ...]] | None = None,
) -> dict[Cell, CellResult]:
    """Run every cell ``repeat`` times, round-robin, printing a line per run.

    ``extra_args``: more runner options for a workload's cells (W8's ``--pin``).
    """
    extra_args = extra_args or {}
    results: dict[Cell, CellResult] = {}

    def reps(wl: Workload) -> int:
        return min(repeat, wl.runs) if wl.runs else repeat

    total = sum(len(cells) * reps(WORKLOADS[cells[0].workload]) for cells in plan)
    done = 0
    t_start = time.perf_counter()
    for cells in plan:
        wl = WORKLOADS[cells[0].workload]
        for rep in range(reps(wl)):
            k = rep % len(cells)
            for cell in cells[k:] + cells[:k]:
                done += 1
                res = results.setdefault(cell, CellResult())
                if res.error is not None or res.na is not None:
                    continue  # neither is repeated
                t0 = time.perf_counter()
                out, err = _run_cell(
                    cell,
                    sizes[cell.workload],
                    bench_dir,
                    seed,
                    max(timeout, wl.timeout),
                    extra_args.get(cell.workload, ()),
                )
                dt = time.perf_counter() - t0
                if out is None:
                    res.error = err
                    summary = f"ERROR: {err}"
                elif "na" in out:
                    res.na = str(out["na"])
                    summary = _progress_summary(wl, out)
                else:
                    res.samples.append({k2: float(v) for k2, v in out["metrics"].items()})
                    res.size = int(out.get("size", sizes[cell.workload]))
                    summary = _progress_summary(wl, out)
                elapsed = time.perf_counter() - t_start
                print(
                    f"[{done:3d}/{total}] {cell.key:<24} rep {rep + 1}/{reps(wl)}  "
                    f"{summary}  ({dt:.1f} s; {elapsed / 60:.1f} min so far)",
                    flush=True,
                )
    return results


# -- the table -------------------------------------------------------------------


def _median(samples: list[dict[str, float]], key: str) -> float | None:
    vals = [s[key] for s in samples if key in s]
    return statistics.median(vals) if vals else None


def _row(
    w: str,
    m: Metric,
    procs: int,
    sweep: Sweep | None,
    runtimes: list[str],
    results: dict[Cell, CellResult],
    skipped: dict[tuple[str, str], str],
) -> Row:
    """Metric ``m`` of workload ``w`` at ``procs``: a sweep's row if ``sweep`` is given."""
    suffix = f"@procs={procs}" if sweep is not None else ""
    row = Row(w, m.unit + suffix.replace("@", " "), m.lower_is_better, {}, {}, m.key + suffix)
    for rt in runtimes:
        if (w, rt) in skipped:
            row.status[rt] = "N/A: " + skipped[w, rt]
            continue
        if sweep is not None and rt not in sweep.runtimes:
            row.status[rt] = "N/A: " + sweep.na
            continue
        res = results.get(Cell(w, rt, procs))
        if res is None:
            continue
        v = _median(res.samples, m.key)
        if res.error is not None:
            row.status[rt] = "error: " + res.error
        elif res.na is not None:
            row.status[rt] = "N/A: " + res.na
        elif v is not None:
            row.values[rt] = v
    return row


def build_rows(
    workloads: list[str],
    runtimes: list[str],
    results: dict[Cell, CellResult],
    skipped: dict[tuple[str, str], str],
    procs: int,
) -> list[Row]:
    """The table: per workload, a row per figure; a sweep adds its procs rows and their ratio."""
    rows: list[Row] = []
    for w in workloads:
        wl = WORKLOADS[w]
        sweep = SWEEPS.get(w)
        if sweep is None or not sweep.replaces_default:
            rows += [_row(w, m, procs, None, runtimes, results, skipped) for m in wl.metrics]
        if sweep is None:
            continue
        # Swept workloads have one figure; the derived row relates its two procs.
        m = wl.metrics[0]
        lo, hi = (_row(w, m, p, sweep, runtimes, results, skipped) for p in sweep.procs(procs))
        d = Row(w, sweep.derived_figure(procs), not sweep.speedup, {}, {}, sweep.derived_key)
        for rt in runtimes:
            a, b = lo.values.get(rt), hi.values.get(rt)
            if a is not None and b is not None and a > 0 and b > 0:
                d.values[rt] = a / b if sweep.speedup else b / a
            elif rt in lo.status or rt in hi.status:
                d.status[rt] = lo.status.get(rt) or hi.status.get(rt, "")
        rows += [lo, hi, d]
    return rows


def _cell_text(row: Row, rt: str) -> str:
    if rt in row.values:
        text = _format_metric(row.values[rt])
        r = row.ratio(rt)
        if rt != "goroutines" and r is not None:
            text += f" ({_format_ratio(r)})"
        return text
    status = row.status.get(rt, "")
    if status.startswith("error"):
        return "ERROR"
    return "N/A" if status else "-"


def _grid(header: list[str], body: list[list[str]], markdown: bool, left: int) -> list[str]:
    """A table, Markdown or aligned text (the first ``left`` columns flush left)."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return lines
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i < left else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*b) for b in body]
    return [ln.rstrip() for ln in lines]


def table_lines(rows: list[Row], runtimes: list[str], markdown: bool) -> list[str]:
    header = ["", "figure", *runtimes]
    body = [[r.id, r.figure, *(_cell_text(r, rt) for rt in runtimes)] for r in rows]
    return _grid(header, body, markdown, left=2)


LEGEND: Final = (
    "(Nx) after a peer's figure: how many times better goroutines is than that peer "
    "on that figure, i.e. peer / goroutines where lower is better (µs, s, KiB, ms) and "
    "goroutines / peer where higher is better (round trips/s, requests/s, speed-up). "
    "> 1x: goroutines wins; < 1x: the peer wins. Medians of the repetitions."
)


def _w12_pair(ins: dict[str, float], key: str) -> str:
    """A W12 count per operation, and the same without the tracer's sites."""
    return f"{ins[f'ins_{key}']:,.0f} (without the sites {ins[f'ins_{key}_without']:,.0f})"


def _notes(
    rows: list[Row], runtimes: list[str], results: dict[Cell, CellResult], sizes: dict[str, int]
) -> list[str]:
    # One note per workload and status, naming every runtime it applies to.
    by_status: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for rt in runtimes:
            s = row.status.get(rt)
            if s:
                named = by_status.setdefault((row.id, s), [])
                if rt not in named:
                    named.append(rt)
    notes = [f"{w} {', '.join(rts)}: {s}" for (w, s), rts in by_status.items()]
    for cell, res in results.items():
        if res.samples and res.size and res.size != sizes[cell.workload]:
            notes.append(
                f"{cell.workload} {cell.runtime}: ran at size {res.size:,} "
                f"(not {sizes[cell.workload]:,}); its figure is per unit, so comparable"
            )
        if cell.workload == "W9" and res.samples:
            t = _median(res.samples, "s")
            serial = _median(res.samples, "serial_s")
            if t and serial:
                notes.append(
                    f"W9 {cell.runtime} procs={cell.procs}: {serial / t:.2f}x as fast as "
                    f"the same hashes one after the other on one thread ({serial:.3f} s)"
                )
        if cell.workload == "W8" and res.samples:
            sc = _median(res.samples, "server_cpu")
            cc = _median(res.samples, "client_cpu")
            cu = _median(res.samples, "client_us_per_rt")
            if sc is not None and cc is not None:
                notes.append(
                    f"W8 {cell.runtime}: server used {sc:.2f} cores, load client {cc:.2f} cores"
                    + (f" ({cu:.1f} µs/round trip)" if cu is not None else "")
                )
        if cell.workload == "W10" and res.samples:
            sc = _median(res.samples, "server_cpu")
            cc = _median(res.samples, "client_cpu")
            p50 = _median(res.samples, "p50_ms")
            p99 = _median(res.samples, "p99_ms")
            if sc is not None and cc is not None:
                notes.append(
                    f"W10 {cell.runtime}: server used {sc:.2f} cores, wrk {cc:.2f} cores"
                    + (f"; latency p50 {p50:.2f} ms, p99 {p99:.2f} ms" if p50 and p99 else "")
                )
        if cell.workload == "W12" and res.samples:
            ins = res.samples[0]
            c, pure = (
                f"W1 {_w12_pair(ins, f'w1_{m}')}, W4 {_w12_pair(ins, f'w4_{m}')}"
                for m in ("c", "pure")
            )
            notes.append(
                f"W12: callgrind instructions per operation, on the Ms' threads, each count "
                f"the least of two runs: C {c}; pure {pure}; W1 traced / untraced, pure: "
                f"{ins['ins_on_pure']:,.0f} / {ins['ins_off_pure']:,.0f} (with the "
                "accelerator, the cost when on is W11's time)"
            )
    return notes


# -- the targets -----------------------------------------------------------------


@final
@dataclass(frozen=True)
class Target:
    """One of the issue's targets: a bound on one row's figure for goroutines.

    Without ``peer`` the bound is on goroutines' figure itself (W5's KiB,
    W7's seconds, a sweep's derived row). With ``peer`` it is on goroutines'
    figure over the peer's, as the issue states them ("≤ 0.3x asyncio"):
    below 1 goroutines takes less (time, memory), above 1 it does more
    (round trips per second).
    """

    workload: str
    row: str  # a Row.key: a metric's key, or a sweep's "procs_ratio" / "speedup"
    op: str  # a key of _OPS
    bound: float
    peer: str | None = None
    says: str = ""  # the words, where the bound alone does not say it

    @property
    def text(self) -> str:
        b = f"{self.bound:g}x {self.peer}" if self.peer else f"{self.bound:g}"
        return f"{_OPS[self.op][1]} {b}" + (f" ({self.says})" if self.says else "")


_OPS: Final[dict[str, tuple[Callable[[float, float], bool], str]]] = {
    "<=": (operator.le, "≤"),
    "<": (operator.lt, "<"),
    ">=": (operator.ge, "≥"),
}

#: The issue's targets (its section "Targets"), in its order. "Idle burns
#: < 1 % of a core" is measured in W5, while its goroutines are parked.
TARGETS: Final[tuple[Target, ...]] = (
    # Issue 9 ("a compiled fast path that beats every peer") tightened these.
    Target("W1", "us_per_rt", "<=", 0.12, "asyncio"),
    Target("W1", "us_per_rt", "<", 1, "uvloop", "faster than uvloop"),
    Target("W1", "us_per_rt", "<", 1, "gevent", "faster than gevent"),
    Target("W1", "procs_ratio", "<=", 1.2),
    Target("W2", "us_per_g", "<=", 0.35, "asyncio"),
    Target("W3", "s", "<=", 0.3, "asyncio"),
    Target("W4", "us_per_job", "<=", 0.6, "asyncio"),
    Target("W4", "us_per_job", "<", 1, "gevent", "faster than gevent"),
    Target("W4", "procs_ratio", "<=", 1.2),
    Target("W5", "kib_per_g", "<=", 0.7),
    Target("W5", "idle_cpu_pct", "<", 1.0, says="idle: all goroutines parked"),
    Target("W6", "s", "<=", 0.35, "asyncio"),
    Target("W7", "s", "<=", 0.15),
    Target("W7", "s", "<=", 0.1, "asyncio", "at least 10x faster than asyncio"),
    Target("W8", "rt_per_s", ">=", 1, "asyncio"),
    Target("W8", "server_us_per_rt", "<=", 1, "asyncio"),
    Target("W8", "rt_per_s", ">=", 1, "uvloop", "an aim, not a target"),
    Target("W9", "speedup", ">=", 1.7),
    Target("W11", "on_off", "<=", 2.0, says="tracing on costs at most 2x (issue 13)"),
    *(
        Target("W12", key, "<=", 1.0, says="tracing off: instructions within 1 % (issue 13)")
        for key in ("off_w1_c", "off_w4_c", "off_w1_pure", "off_w4_pure")
    ),
    Target("W12", "on_w1_pure", "<=", 2.0, says="tracing on costs at most 2x, pure (issue 13)"),
)

MET: Final = "met"
NOT_MET: Final = "not met"
NOT_MEASURED: Final = "not measured"


def _missing(row: Row, rt: str) -> str:
    """Why ``row`` has no figure for ``rt``."""
    return f"{rt}: {row.status[rt]}" if rt in row.status else f"{rt} did not run"


def evaluate_targets(rows: list[Row], workloads: list[str]) -> list[dict[str, Any]]:
    """Each target of the selected workloads against the run's medians.

    ``result`` is met, not met, or not measured (``why``: a cell failed, was
    N/A, or did not run, e.g. its peer is not installed).
    """
    by_key = {(r.id, r.key): r for r in rows}
    out: list[dict[str, Any]] = []
    for t in TARGETS:
        if t.workload not in workloads:
            continue
        row = by_key.get((t.workload, t.row))
        entry: dict[str, Any] = {
            "workload": t.workload,
            "row": t.row,
            "figure": row.figure if row else t.row,
            "target": t.text,
            "peer": t.peer,
            "op": t.op,
            "bound": t.bound,
            "value": None,
            "measured": "",
            "result": NOT_MEASURED,
            "why": None,
        }
        out.append(entry)
        if row is None:
            entry["why"] = f"no row {t.row}"
            continue
        g = row.values.get("goroutines")
        if g is None:
            entry["why"] = _missing(row, "goroutines")
            continue
        if t.peer is None:
            value = g
            entry["measured"] = _format_metric(g)
        else:
            v = row.values.get(t.peer)
            if v is None or v <= 0 or g <= 0:
                entry["why"] = _missing(row, t.peer)
                continue
            value = g / v
            entry["measured"] = f"{_format_ratio(value)} {t.peer}"
            if row.lower_is_better:  # the table's figure: how many times better goroutines is
                entry["measured"] += f" ({_format_ratio(v / g)} better)"
        entry["value"] = value
        entry["result"] = MET if _OPS[t.op][0](value, t.bound) else NOT_MET
    return out


def targets_summary(targets: list[dict[str, Any]]) -> str:
    counts = {r: sum(t["result"] == r for t in targets) for r in (MET, NOT_MET, NOT_MEASURED)}
    return "Targets: " + ", ".join(f"{n} {r}" for r, n in counts.items()) + "."


def targets_caveat(meta: dict[str, Any]) -> str | None:
    """What in this run differs from the conditions the issue states its targets for."""
    diffs = []
    if meta.get("quick"):
        diffs.append("--quick sizes")
    if meta.get("procs"):
        diffs.append(f"procs={meta['procs']}")
    if not str(meta.get("python", "")).startswith("3.11."):
        diffs.append(f"CPython {meta.get('python')}")
    if "W8" in meta.get("sizes", {}) and meta.get("w8_pin") is None:
        diffs.append("W8 not pinned")
    if not diffs:
        return None
    return (
        "The issue states its targets for full sizes, the default procs and CPython 3.11 "
        f"(and W8 pinned); this run differs ({', '.join(diffs)}): the verdicts are indicative only."
    )


def targets_lines(targets: list[dict[str, Any]], markdown: bool) -> list[str]:
    header = ["", "figure", "target", "measured", "result"]
    body = [
        [
            t["workload"],
            t["figure"],
            t["target"],
            t["measured"] or "-",
            t["result"] + (f" ({t['why']})" if t["why"] else ""),
        ]
        for t in targets
    ]
    return _grid(header, body, markdown, left=len(header))


# -- the outputs -----------------------------------------------------------------


def _meta(args: argparse.Namespace, sizes: dict[str, int], runtimes: list[str]) -> dict[str, Any]:
    versions: dict[str, str] = {}
    for name in ("goroutines", "trio", "gevent", "uvloop", "h11"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=_SRC.parent,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "commit": commit,
        "versions": versions,
        "repeat": args.repeat,
        "procs": args.procs or None,
        "quick": args.quick,
        "sizes": sizes,
        "runtimes": runtimes,
    }


def _pin_meta(workload: str, pin: tuple[int, int] | None, line: str) -> dict[str, Any]:
    w = workload.lower()
    return {
        f"{w}_pin": None if pin is None else {"server_cpu": pin[0], "client_cpu": pin[1]},
        f"{w}_pin_note": line,
    }


def write_outputs(
    out_dir: Path,
    meta: dict[str, Any],
    rows: list[Row],
    runtimes: list[str],
    results: dict[Cell, CellResult],
    notes: list[str],
    targets: list[dict[str, Any]],
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    doc = {
        "meta": meta,
        "legend": LEGEND,
        "rows": [
            {
                "workload": r.id,
                "title": WORKLOADS[r.id].title,
                "figure": r.figure,
                "key": r.key,
                "lower_is_better": r.lower_is_better,
                "values": r.values,
                "ratios": {rt: r.ratio(rt) for rt in runtimes if rt != "goroutines"},
                "status": r.status,
            }
            for r in rows
        ],
        "cells": [
            {
                "workload": c.workload,
                "runtime": c.runtime,
                "procs": c.procs or None,
                "size": res.size or None,
                "samples": res.samples,
                "medians": {
                    k: _median(res.samples, k) for k in (res.samples[0] if res.samples else {})
                },
                "error": res.error,
                "na": res.na,
            }
            for c, res in results.items()
        ],
        "targets": targets,
        "notes": notes,
    }
    path = out_dir / "bench.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    written.append(path)

    md = [
        "# goroutines benchmark results",
        "",
        f"{meta['date']}, CPython {meta['python']}, {meta['cpu_count']} CPUs, "
        f"commit {meta['commit'] or '?'}, {meta['repeat']} repetitions, "
        f"procs={meta['procs'] or 'default'}{', --quick' if meta['quick'] else ''}; "
        f"load average at start: {meta['loadavg_at_start']}.",
        "",
        *table_lines(rows, runtimes, markdown=True),
        "",
        LEGEND,
        "",
        "Workloads: "
        + "; ".join(
            f"{w.id} {w.title} ({meta['sizes'][w.id]:,} {w.size_unit})"
            for w in WORKLOADS.values()
            if w.id in meta["sizes"]
        )
        + ".",
        "",
    ]
    if targets:
        caveat = targets_caveat(meta)
        md += [
            "## Targets",
            "",
            "The issue's targets, from this run's medians (a ratio to a peer is goroutines' "
            "figure over the peer's, as the issue states them).",
            "",
            *targets_lines(targets, markdown=True),
            "",
            targets_summary(targets) + (f" {caveat}" if caveat else ""),
            "",
        ]
    if notes:
        md += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    path = out_dir / "bench.md"
    path.write_text("\n".join(md))
    written.append(path)

    png = _chart(out_dir / "bench.png", rows, runtimes, meta)
    if png is not None:
        written.append(png)
    return written


def _chart(path: Path, rows: list[Row], runtimes: list[str], meta: dict[str, Any]) -> Path | None:
    """A bar chart: per row, each runtime's cost relative to goroutines (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install -e '.[bench]')")
        return None
    peers = [rt for rt in runtimes if rt != "goroutines"]
    # A row only goroutines has (a sweep's procs rows) would be an empty group.
    groups = [r for r in rows if any(r.ratio(rt) is not None for rt in peers)]
    if not groups or not peers:
        return None
    fig, ax = plt.subplots(figsize=(max(8.0, 1.0 * len(groups) + 3), 5.5))
    width = 0.8 / len(peers)
    all_ys = [1.0]
    for i, rt in enumerate(peers):
        xs, ys = [], []
        for j, row in enumerate(groups):
            r = row.ratio(rt)
            if r is not None:
                xs.append(j + (i - (len(peers) - 1) / 2) * width)
                ys.append(r)
        all_ys += ys
        # Bars grow from goroutines' line at 1: up where goroutines wins, down where it loses.
        ax.bar(xs, [y - 1 for y in ys], width, bottom=1.0, label=rt, color=f"C{i + 1}")
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(
                _format_ratio(y),
                (x, y),
                ha="center",
                va="bottom" if y >= 1 else "top",
                fontsize=6,
                rotation=90,
                xytext=(0, 2 if y >= 1 else -2),
                textcoords="offset points",
            )
    ax.set_yscale("log")
    ax.set_ylim(min(all_ys) / 1.8, max(all_ys) * 2.2)  # room for the labels
    ax.axhline(1.0, color="C0", linewidth=1.5, label="goroutines (= 1)")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{r.id}\n{r.figure}" for r in groups], fontsize=7)
    ax.set_ylabel("peer's cost relative to goroutines (log)\n> 1: goroutines better")
    ax.set_title(
        f"goroutines vs peers (CPython {meta['python']}, {meta['cpu_count']} CPUs, "
        f"medians of {meta['repeat']}; goroutines = 1)",
        fontsize=10,
    )
    ax.legend(fontsize=8, ncols=len(runtimes), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- the command line ------------------------------------------------------------


def _split(value: str, known: dict[str, Any], what: str) -> list[str]:
    names = [x.strip() for x in value.split(",") if x.strip()]
    unknown = [x for x in names if x not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {','.join(known)}"
        )
    return [k for k in known if k in names]  # the suite's order


def main(argv: list[str] | None = None) -> int:
    """``python -m goroutines bench [options]``; returns the exit status."""
    ap = argparse.ArgumentParser(
        prog="python -m goroutines bench",
        description="Run the benchmark suite (issue 'Performance'): goroutines against "
        "asyncio, uvloop, trio, gevent and threads, each cell in a fresh process.",
    )
    ap.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        type=lambda v: _split(v, WORKLOADS, "workload"),
        help="comma-separated, e.g. W1,W4 (default: all)",
    )
    ap.add_argument(
        "--runtimes",
        default=",".join(RUNTIMES),
        type=lambda v: _split(v, RUNTIMES, "runtime"),
        help="comma-separated (default: every one installed)",
    )
    # 3, not more: the whole suite then takes about 7 minutes on 2 cores.
    ap.add_argument("--repeat", type=int, default=3, help="repetitions per cell (default 3)")
    ap.add_argument(
        "--procs",
        type=int,
        default=0,
        help="goroutines' procs (default: os.cpu_count()); W1 also runs at procs 1 and 4, "
        "W4 at 1 and 2, W9 only at 1 and this (at least 2)",
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    ap.add_argument(
        "--out",
        type=Path,
        default=_DEFAULT_BENCH_DIR / "results",
        help="where bench.json, bench.md and bench.png go",
    )
    ap.add_argument(
        "--bench-dir",
        type=Path,
        default=_DEFAULT_BENCH_DIR,
        help="the benchmarks/ directory with the runners",
    )
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="W8 and W10 unpinned: server and load client wherever the OS puts them (by "
        "default each is pinned to a CPU of its own, as taskset -c would, if there are two)",
    )
    ap.add_argument("--seed", type=int, default=1, help="W6's random sleeps")
    ap.add_argument("--timeout", type=float, default=300.0, help="per cell, seconds")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat must be >= 1, got {args.repeat}")
    if args.procs < 0:
        ap.error(f"--procs must be >= 1, got {args.procs}")
    bench_dir: Path = args.bench_dir
    if not (bench_dir / "run_goroutines.py").is_file():
        print(
            f"error: the benchmark runners are not in {bench_dir}: the suite runs from a "
            "source checkout (pip install -e .), or pass --bench-dir",
            file=sys.stderr,
        )
        return 2

    workloads: list[str] = args.workloads
    runtimes: list[str] = []
    for rt in args.runtimes:
        need = RUNTIMES[rt].needs
        if need is not None and importlib.util.find_spec(need) is None:
            print(f"skipping {rt}: {need} is not installed (pip install -e '.[bench]')")
        else:
            runtimes.append(rt)
    sizes = {w: (WORKLOADS[w].quick if args.quick else WORKLOADS[w].size) for w in workloads}
    skipped = {(w, rt): why for (w, rt), why in _NA.items() if w in workloads and rt in runtimes}
    no_http = missing_http_tools() if "W10" in workloads else None
    if no_http is not None:
        print(f"W10 is N/A: {no_http} (make bench installs wrk with apt-get)")
        skipped.update({("W10", rt): no_http for rt in runtimes if ("W10", rt) not in skipped})
    plan = [
        [c for c in cells if (c.workload, c.runtime) not in skipped]
        for cells in _plan(workloads, runtimes, args.procs)
    ]
    plan = [cells for cells in plan if cells]
    ncells = sum(len(cells) for cells in plan)
    once = [w for w in workloads if WORKLOADS[w].runs and WORKLOADS[w].runs < args.repeat]
    print(
        f"benchmarks: {', '.join(workloads)} x {', '.join(runtimes)}; "
        f"{ncells} cells x {args.repeat} repetitions, each a fresh process"
        + (f" ({', '.join(once)}: fewer, see its notes)" if once else "")
    )
    meta = _meta(args, sizes, runtimes)
    extra_args: dict[str, tuple[str, ...]] = {}
    pin_notes: list[str] = []
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    for w in PINNED:
        if w in workloads and any(c.workload == w for cells in plan for c in cells):
            pin, pin_line = pin_cpus(w, allowed, args.no_pin)
            print(pin_line)
            meta.update(_pin_meta(w, pin, pin_line))
            pin_notes.append(pin_line)
            if pin is not None:
                extra_args[w] = ("--pin", f"{pin[0]},{pin[1]}")
    t0 = time.perf_counter()
    results = run_suite(plan, sizes, args.repeat, bench_dir, args.seed, args.timeout, extra_args)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    meta["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    rows = build_rows(workloads, runtimes, results, skipped, args.procs)
    notes = pin_notes + _notes(rows, runtimes, results, sizes)
    targets = evaluate_targets(rows, workloads)
    print()
    for line in table_lines(rows, runtimes, markdown=False):
        print(line)
    print()
    print(LEGEND)
    if targets:
        print()
        for line in targets_lines(targets, markdown=False):
            print(line)
        print(targets_summary(targets))
        caveat = targets_caveat(meta)
        if caveat:
            print(caveat)
    print()
    for n in notes:
        print("  " + n)
    written = write_outputs(args.out, meta, rows, runtimes, results, notes, targets)
    print(f"\nwritten: {', '.join(str(p) for p in written)} ({meta['seconds']:.0f} s)")
    errors = [c.key for c, r in results.items() if r.error is not None]
    if errors:
        print(f"{len(errors)} cell(s) failed: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
