"""``python -m goroutines bench`` (``goroutines._bench``): a smoke run and the bookkeeping.

The smoke run is the real suite at ``--quick`` sizes, one repetition, for
goroutines and asyncio (no optional peer needed): every workload's runner
must check its own answer and report its figures, and the three outputs
must be written. W12 is left out of it (40 runs under valgrind, five
minutes): its stripped copy of the runtime is built and run here, its
figures and note checked from a synthetic result. The other tests use
fake runners or synthetic results, so they are quick and can make a cell
fail on purpose: the planning of the procs cells, the rows built from
them, and the targets' verdicts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from goroutines._bench import (
    _DEFAULT_BENCH_DIR,
    NOT_MEASURED,
    SWEEPS,
    TARGETS,
    WORKLOADS,
    Cell,
    CellResult,
    Row,
    _plan,
    build_rows,
    evaluate_targets,
    main,
    pin_cpus,
    targets_caveat,
    w8_pin,
)

#: The procs each workload's goroutines cells run at (None: the default), per the issue:
#: W1 procs=4 vs 1, W4 procs=2 vs 1 (besides the default), W9 procs 1 and 2 only.
GOROUTINES_PROCS = {"W1": [None, 1, 4], "W4": [None, 1, 2], "W9": [1, 2]}

#: W10 needs wrk (a Debian package; ``make bench`` installs it): N/A without it.
HAVE_WRK = shutil.which("wrk") is not None


def test_quick_suite_goroutines_and_asyncio(tmp_path: Path) -> None:
    out = tmp_path / "results"
    smoke = [w for w in WORKLOADS if w != "W12"]
    args = ["--quick", "--repeat", "1", "--runtimes", "goroutines,asyncio", "--out", str(out)]
    rc = main([*args, "--workloads", ",".join(smoke)])
    assert rc == 0
    assert (out / "bench.md").is_file()
    doc = json.loads((out / "bench.json").read_text())
    cells = {(c["workload"], c["runtime"], c["procs"]): c for c in doc["cells"]}
    for w in smoke:
        if w == "W10" and not HAVE_WRK:
            assert cells.get(("W10", "goroutines", None)) is None  # not run
            continue
        for p in GOROUTINES_PROCS.get(w, [None]):
            c = cells[w, "goroutines", p]
            assert c["error"] is None, (w, c["error"])
            assert c["na"] is None, (w, c["na"])  # goroutines runs every workload
            assert len(c["samples"]) == 1
            for m in WORKLOADS[w].metrics:
                assert c["samples"][0][m.key] > 0, (w, m.key)
        if w not in ("W9", "W11"):
            c = cells[w, "asyncio", None]
            assert c["error"] is None and c["samples"], (w, c)
    # W11 (the tracer) is goroutines only: traced / untraced W1, over 1 (tracing costs).
    [c11] = [c for c in doc["cells"] if c["workload"] == "W11" and c["runtime"] == "goroutines"]
    # Whether tracing costs more is W11's figure in make bench, not a timed
    # assertion here: a quick single run under load has come out 0.956.
    assert 0 < c11["samples"][0]["on_off"] < float("inf")
    assert c11["samples"][0]["events"] >= 4 * c11["size"]
    # W9 is goroutines (and threads) only: asyncio is N/A, not run, not an error.
    w9 = [r for r in doc["rows"] if r["workload"] == "W9"]
    assert [r["figure"] for r in w9] == ["s procs=1", "s procs=2", "speed-up procs 1->2"]
    assert all(r["status"]["asyncio"].startswith("N/A") for r in w9)
    # W1 and W4: the default row for everyone, then goroutines' procs rows and their ratio.
    for w, unit, hi in (("W1", "µs/round trip", 4), ("W4", "µs/job", 2)):
        rows = [r for r in doc["rows"] if r["workload"] == w]
        figures = [unit, f"{unit} procs=1", f"{unit} procs={hi}", f"procs={hi} / procs=1"]
        assert [r["figure"] for r in rows] == figures
        assert "asyncio" in rows[0]["values"]
        for r in rows[1:]:
            assert set(r["values"]) == {"goroutines"}
            assert r["status"]["asyncio"].startswith("N/A")
        assert rows[3]["values"]["goroutines"] == pytest.approx(
            rows[2]["values"]["goroutines"] / rows[1]["values"]["goroutines"]
        )
    # Every target of the issue is listed; uvloop and gevent did not run.
    targets = doc["targets"]
    assert len(targets) == len([t for t in TARGETS if t.workload in smoke])
    for t in targets:
        if t["peer"] in ("uvloop", "gevent"):
            assert t["result"] == NOT_MEASURED, t
        else:
            assert t["result"] in ("met", "not met"), t
    md = (out / "bench.md").read_text()
    assert "| W1 | µs/round trip |" in md
    assert "| W1 | procs=4 / procs=1 |" in md
    assert "## Targets" in md
    assert "| W9 | speed-up procs 1->2 | ≥ 1.7 |" in md
    assert "W8 goroutines: server used" in md
    assert "| W8 | server CPU µs/round trip | ≤ 1x asyncio |" in md
    # W8 runs pinned where there are two CPUs: server on one, load client on another.
    w8 = cells["W8", "goroutines", None]["samples"][0]
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(allowed) >= 2:
        assert w8["pinned"] == 1.0
        assert doc["meta"]["w8_pin"] == {"server_cpu": allowed[0], "client_cpu": allowed[1]}
        assert f"W8 pinned: server on CPU {allowed[0]}" in md
    else:
        assert w8["pinned"] == 0.0
        assert doc["meta"]["w8_pin"] is None
    # W10: requests/s and server CPU per request, pinned as W8 is; N/A without wrk.
    w10 = [r for r in doc["rows"] if r["workload"] == "W10"]
    assert [r["figure"] for r in w10] == ["requests/s", "server CPU µs/request"]
    if HAVE_WRK:
        assert set(w10[0]["values"]) == {"goroutines", "asyncio"}
        sample = cells["W10", "goroutines", None]["samples"][0]
        assert sample["pinned"] == (1.0 if len(allowed) >= 2 else 0.0)
        assert sample["server_cpu"] > 0 and sample["p99_ms"] >= sample["p50_ms"] > 0
        assert "W10 goroutines: server used" in md
    else:
        assert w10[0]["status"]["goroutines"] == "N/A: wrk not installed"


def test_ratio_direction() -> None:
    # Lower is better: the peer's figure over goroutines'.
    row = Row("W1", "µs/round trip", True, {"goroutines": 2.0, "asyncio": 6.0}, {})
    assert row.ratio("asyncio") == pytest.approx(3.0)
    # Higher is better: goroutines' over the peer's; > 1 still means goroutines wins.
    row = Row("W8", "round trips/s", False, {"goroutines": 100.0, "uvloop": 200.0}, {})
    assert row.ratio("uvloop") == pytest.approx(0.5)
    assert row.ratio("trio") is None


FAKE_RUNNER = """\
import json, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
w = args["--workload"]
if w == "W2":
    sys.exit("AssertionError: wrong answer: sum of indices 41")
if w == "W3":
    print(json.dumps({"workload": w, "na": "not today"}))
    sys.exit(0)
v = 2.0 if "{rt}" == "goroutines" else 5.0
v *= 1.1 if args.get("--procs") == "4" else 1.0
print(json.dumps({"workload": w, "metrics": {"us_per_rt": v}}))
"""


def _fake_bench_dir(tmp_path: Path) -> Path:
    d = tmp_path / "fake"
    d.mkdir()
    for rt, script in (("goroutines", "run_goroutines.py"), ("asyncio", "run_asyncio.py")):
        (d / script).write_text(textwrap.dedent(FAKE_RUNNER).replace("{rt}", rt))
    return d


def test_wrong_answer_is_an_error_not_a_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake = str(_fake_bench_dir(tmp_path))
    args = ["--workloads", "W1,W2,W3", "--runtimes", "goroutines,asyncio", "--repeat", "2"]
    rc = main([*args, "--bench-dir", fake, "--out", str(out)])
    assert rc == 1  # a failed cell fails the run
    doc = json.loads((out / "bench.json").read_text())
    rows: dict[str, dict[str, Any]] = {}
    for r in doc["rows"]:
        rows.setdefault(r["workload"], r)  # the default-procs row
    assert rows["W1"]["values"] == {"goroutines": 2.0, "asyncio": 5.0}
    assert rows["W1"]["ratios"] == {"asyncio": 2.5}
    assert rows["W2"]["values"] == {}
    status = rows["W2"]["status"]["goroutines"]
    assert status == "error: AssertionError: wrong answer: sum of indices 41"
    assert rows["W3"]["status"]["asyncio"] == "N/A: not today"
    cells = {(c["workload"], c["runtime"], c["procs"]): c for c in doc["cells"]}
    for p in (None, 1, 4):
        assert len(cells["W1", "goroutines", p]["samples"]) == 2
    assert cells["W2", "goroutines", None]["samples"] == []  # a failed cell is not repeated
    ratio = [r for r in doc["rows"] if r["figure"] == "procs=4 / procs=1"]
    assert ratio[0]["values"] == {"goroutines": pytest.approx(1.1)}
    # The targets from those medians: one of each verdict.
    verdicts = {(t["workload"], t["row"], t["peer"]): t for t in doc["targets"]}
    assert [t["workload"] for t in doc["targets"]] == ["W1"] * 4 + ["W2", "W3"]
    t = verdicts["W1", "us_per_rt", "asyncio"]
    assert (t["value"], t["result"]) == (pytest.approx(0.4), "not met")
    t = verdicts["W1", "procs_ratio", None]
    assert (t["value"], t["result"]) == (pytest.approx(1.1), "met")
    t = verdicts["W1", "us_per_rt", "uvloop"]
    assert (t["result"], t["why"]) == ("not measured", "uvloop did not run")
    t = verdicts["W2", "us_per_g", "asyncio"]
    assert t["result"] == "not measured"
    assert t["why"] == "goroutines: error: AssertionError: wrong answer: sum of indices 41"
    assert verdicts["W3", "s", "asyncio"]["why"] == "goroutines: N/A: not today"
    md = (out / "bench.md").read_text()
    assert "| W1 | µs/round trip | ≤ 0.12x asyncio | 0.40x asyncio (2.50x better) | not met |" in md
    assert "Targets: 1 met, 1 not met, 4 not measured." in md


def test_bad_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--workloads", "W1,W99"])
    assert e.value.code == 2
    assert "unknown workload W99" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--runtimes", "tokio"])
    assert "unknown runtime tokio" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--repeat", "0"])
    assert "--repeat must be >= 1" in capsys.readouterr().err
    assert main(["--bench-dir", str(tmp_path)]) == 2
    assert "benchmark runners are not in" in capsys.readouterr().err


def test_plan_procs_cells() -> None:
    rts = ["goroutines", "asyncio", "threads"]
    plan = {cells[0].workload: cells for cells in _plan(["W1", "W2", "W4", "W9"], rts, 0)}
    g = "goroutines"
    assert plan["W1"] == [
        Cell("W1", g, 0),
        Cell("W1", g, 1),
        Cell("W1", g, 4),
        Cell("W1", "asyncio", 0),
        Cell("W1", "threads", 0),
    ]
    assert plan["W2"] == [Cell("W2", rt, 0) for rt in rts]
    assert [c for c in plan["W4"] if c.runtime == g] == [Cell("W4", g, p) for p in (0, 1, 2)]
    # W9 replaces the default cell: procs 1 and 2, goroutines and threads only.
    assert plan["W9"] == [Cell("W9", rt, p) for rt in (g, "threads") for p in (1, 2)]
    # A --procs equal to a sweep's procs: that cell is run once, for both rows.
    plan = {cells[0].workload: cells for cells in _plan(["W1", "W4", "W9"], [g], 4)}
    assert plan["W1"] == [Cell("W1", g, 4), Cell("W1", g, 1)]
    assert plan["W4"] == [Cell("W4", g, p) for p in (4, 1, 2)]
    assert plan["W9"] == [Cell("W9", g, 1), Cell("W9", g, 4)]
    # The procs cells are named by their procs; the default ones are not.
    assert Cell("W1", g, 4).key == "W1/goroutines@procs=4"
    assert Cell("W1", g, 0).key == "W1/goroutines"


def _res(**metrics: float) -> CellResult:
    return CellResult(samples=[metrics], size=1)


def test_rows_and_targets_from_synthetic_results() -> None:
    g = "goroutines"
    results = {
        # W1: 0.10x asyncio (met), slower than uvloop (not met); procs=4 / procs=1 = 1.3.
        Cell("W1", g, 0): _res(us_per_rt=1.5),
        Cell("W1", g, 1): _res(us_per_rt=1.0),
        Cell("W1", g, 4): _res(us_per_rt=1.3),
        Cell("W1", "asyncio", 0): _res(us_per_rt=15.0),
        Cell("W1", "uvloop", 0): _res(us_per_rt=1.4),
        # W4: procs=2 failed, so its ratio is not measured; asyncio: 0.5x (met).
        Cell("W4", g, 0): _res(us_per_job=0.6),
        Cell("W4", g, 1): _res(us_per_job=0.6),
        Cell("W4", g, 2): CellResult(error="boom"),
        Cell("W4", "asyncio", 0): _res(us_per_job=1.2),
        Cell("W5", g, 0): _res(kib_per_g=0.71, wake_ms=100.0, idle_cpu_pct=0.2),
        # W7: 0.12 s (met) but only 8x faster than asyncio (not met).
        Cell("W7", g, 0): _res(s=0.12),
        Cell("W7", "asyncio", 0): _res(s=0.96),
        # W8: higher is better: more round trips than asyncio (met).
        # Server CPU per round trip, lower is better: 12 µs against asyncio's 10 (not met).
        Cell("W8", g, 0): _res(rt_per_s=90_000.0, server_us_per_rt=12.0),
        Cell("W8", "asyncio", 0): _res(rt_per_s=40_000.0, server_us_per_rt=10.0),
        Cell("W9", g, 1): _res(s=0.2),
        Cell("W9", g, 2): _res(s=0.1),
    }
    workloads = ["W1", "W4", "W5", "W7", "W8", "W9"]
    runtimes = [g, "asyncio", "uvloop"]
    skipped = {("W9", "asyncio"): "no", ("W9", "uvloop"): "no"}
    rows = build_rows(workloads, runtimes, results, skipped, 0)
    by = {(r.id, r.figure): r for r in rows}
    assert [r.figure for r in rows if r.id == "W1"] == [
        "µs/round trip",
        "µs/round trip procs=1",
        "µs/round trip procs=4",
        "procs=4 / procs=1",
    ]
    assert by["W1", "procs=4 / procs=1"].values == {g: pytest.approx(1.3)}
    assert by["W1", "procs=4 / procs=1"].status["asyncio"].startswith("N/A: the procs rows")
    assert by["W4", "procs=2 / procs=1"].values == {}
    assert by["W4", "procs=2 / procs=1"].status[g] == "error: boom"
    assert by["W9", "speed-up procs 1->2"].values == {g: pytest.approx(2.0)}

    got = {(t["workload"], t["row"], t["peer"]): t for t in evaluate_targets(rows, workloads)}
    assert {k: t["result"] for k, t in got.items()} == {
        ("W1", "us_per_rt", "asyncio"): "met",
        ("W1", "us_per_rt", "uvloop"): "not met",
        ("W1", "us_per_rt", "gevent"): "not measured",
        ("W1", "procs_ratio", None): "not met",
        ("W4", "us_per_job", "asyncio"): "met",
        ("W4", "us_per_job", "gevent"): "not measured",
        ("W4", "procs_ratio", None): "not measured",
        ("W5", "kib_per_g", None): "not met",
        ("W5", "idle_cpu_pct", None): "met",
        ("W7", "s", None): "met",
        ("W7", "s", "asyncio"): "not met",
        ("W8", "rt_per_s", "asyncio"): "met",
        ("W8", "server_us_per_rt", "asyncio"): "not met",
        ("W8", "rt_per_s", "uvloop"): "not measured",
        ("W9", "speedup", None): "met",
    }
    assert got["W1", "us_per_rt", "asyncio"]["value"] == pytest.approx(0.1)
    assert got["W1", "us_per_rt", "asyncio"]["measured"] == "0.10x asyncio (10.0x better)"
    assert got["W1", "us_per_rt", "gevent"]["why"] == "gevent did not run"
    assert got["W4", "procs_ratio", None]["why"] == "goroutines: error: boom"
    want = "≤ 0.1x asyncio (at least 10x faster than asyncio)"
    assert got["W7", "s", "asyncio"]["target"] == want
    assert got["W8", "rt_per_s", "asyncio"]["value"] == pytest.approx(2.25)
    assert got["W8", "server_us_per_rt", "asyncio"]["value"] == pytest.approx(1.2)
    assert got["W8", "server_us_per_rt", "asyncio"]["measured"] == "1.20x asyncio (0.83x better)"
    assert [r.figure for r in rows if r.id == "W8"] == [
        "round trips/s",
        "server CPU µs/round trip",
    ]
    # Workloads not selected have no targets listed.
    assert evaluate_targets(rows, ["W5"]) == [
        got["W5", "kib_per_g", None],
        got["W5", "idle_cpu_pct", None],
    ]


def test_targets_cover_the_issue() -> None:
    # Each target names a row the table has, for its workload (a typo would only
    # ever show as "not measured").
    for t in TARGETS:
        keys = {m.key for m in WORKLOADS[t.workload].metrics}
        sweep = SWEEPS.get(t.workload)
        if sweep is not None:
            keys.add(sweep.derived_key)
        assert t.row in keys, t
    assert len({(t.workload, t.row, t.peer, t.bound) for t in TARGETS}) == len(TARGETS)


def test_w8_pin() -> None:
    # Two CPUs or more: the server on the first allowed, the load client on the next.
    assert w8_pin({0, 1}, no_pin=False) == (
        (0, 1),
        "W8 pinned: server on CPU 0, load client on CPU 1",
    )
    assert w8_pin({5, 3, 7}, no_pin=False)[0] == (3, 5)
    # One CPU, no affinity, or --no-pin: unpinned, and the line says why.
    pin, line = w8_pin({2}, no_pin=False)
    assert pin is None and "only CPU [2] is available" in line
    assert w8_pin(None, no_pin=False)[0] is None
    pin, line = w8_pin({0, 1}, no_pin=True)
    assert pin is None and "--no-pin" in line
    # An unpinned W8 makes the verdicts indicative, as --quick does.
    meta: dict[str, Any] = {"python": "3.11.7", "sizes": {"W8": 5}, "w8_pin": None}
    assert "W8 not pinned" in (targets_caveat(meta) or "")
    meta["w8_pin"] = {"server_cpu": 0, "client_cpu": 1}
    assert targets_caveat(meta) is None


def test_pin_cpus_w10() -> None:
    assert pin_cpus("W10", {0, 1}, no_pin=False) == (
        (0, 1),
        "W10 pinned: server on CPU 0, wrk on CPU 1",
    )
    pin, line = pin_cpus("W10", {3}, no_pin=False)
    assert pin is None and line.startswith("W10 not pinned: only CPU [3] is available")


def test_w10_without_wrk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No wrk on PATH: every W10 cell is N/A with the reason, none is run, and
    # the run does not fail; the runner itself says the same when run alone.
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "out"
    rc = main(["--workloads", "W10", "--runtimes", "goroutines,asyncio", "--out", str(out)])
    assert rc == 0
    assert "W10 is N/A: wrk not installed" in capsys.readouterr().out
    doc = json.loads((out / "bench.json").read_text())
    assert doc["cells"] == []
    for r in doc["rows"]:
        assert r["values"] == {}
        assert r["status"] == {rt: "N/A: wrk not installed" for rt in ("goroutines", "asyncio")}
    runner = [sys.executable, str(_DEFAULT_BENCH_DIR / "run_goroutines.py")]
    r = subprocess.run(
        [*runner, "--workload", "W10", "--size", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=_DEFAULT_BENCH_DIR,
        env={**os.environ, "PYTHONPATH": str(_DEFAULT_BENCH_DIR.parent / "src")},
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["na"] == "wrk not installed"


def _common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_common", _DEFAULT_BENCH_DIR / "_common.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


WRK_OUT = """\
Running 5s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.71ms  830.17us  18.00ms   93.02%
    Req/Sec    13.56k   512.22    14.13k    86.00%
  Latency Distribution
     50%    3.55ms
     75%    3.80ms
     90%    4.06ms
     99%    1.02s
  67474 requests in 5.00s, 4.96MB read
Requests/sec:  13490.09
Transfer/sec:      1.00MB
"""


def test_parse_wrk() -> None:
    c = _common()
    m = c.parse_wrk(WRK_OUT)
    assert m == {
        "requests": 67474.0,
        "seconds": pytest.approx(5.0),
        "req_per_s": 13490.09,
        "p50_ms": pytest.approx(3.55),
        "p99_ms": pytest.approx(1020.0),
    }
    # A wrong answer fails the cell: non-2xx responses, socket errors, nothing answered.
    lines = WRK_OUT.splitlines(keepends=True)
    for extra, why in (
        ("  Non-2xx or 3xx responses: 67474\n", "not 2xx or 3xx"),
        ("  Socket errors: connect 0, read 3, write 0, timeout 0\n", "socket errors"),
    ):
        with pytest.raises(AssertionError, match=why):
            c.parse_wrk("".join([*lines[:11], extra, *lines[11:]]))
    with pytest.raises(AssertionError, match="no request"):
        c.parse_wrk(WRK_OUT.replace("67474 requests", "0 requests"))
    with pytest.raises(AssertionError, match="not understood"):
        c.parse_wrk("wrk: connection refused\n")


def _cgops() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cgops", _DEFAULT_BENCH_DIR / "cgops.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_w12_copy_without_the_tracer_sites(tmp_path: Path) -> None:
    """W12's baseline: a copy of the runtime whose tracer sites are folded
    away, built the same way as the copy as it is. Both run W1, and the
    stripped one has none of the sites' tests left."""
    cgops = _cgops()
    sites = cgops.copy_tree(tmp_path / "bare", strip_tracer=True)
    assert sites["c"] >= 6 and sites["py"] >= 10, sites  # every hot site the tracer has
    assert cgops.copy_tree(tmp_path / "as-is", strip_tracer=False) == {"py": 0, "c": 0}
    bare = tmp_path / "bare" / "src" / "goroutines"
    assert "trace_hook != NULL && trace_call(" not in (bare / "_speedups.c").read_text()
    for f in bare.rglob("*.py"):
        assert "_tracer is" not in f.read_text(), f
    for name in ("bare", "as-is"):
        src = tmp_path / name / "src"
        for pure in ("0", "1"):
            env = dict(os.environ, PYTHONPATH=str(src), GOROUTINES_PURE=pure)
            r = subprocess.run(
                [sys.executable, str(_DEFAULT_BENCH_DIR / "cgops.py"), "--once", "W1", "200", "0"],
                capture_output=True,
                text=True,
                env=env,
            )
            assert r.returncode == 0, r.stderr
            mode = "pure" if pure == "1" else "c"
            assert r.stdout.split() == [str(src / "goroutines" / "__init__.py"), mode]


def test_w12_rows_targets_and_note() -> None:
    from goroutines._bench import _notes

    ins = {f"ins_{w}_{m}{x}": 1000.0 for w in ("w1", "w4") for m in ("c", "pure")
           for x in ("", "_without")}  # fmt: skip
    ins.update(ins_on_pure=1900.0, ins_off_pure=1000.0)
    sample = {"off_w1_c": 0.3, "off_w4_c": -0.4, "off_w1_pure": 1.5, "off_w4_pure": 0.1,
              "on_w1_pure": 1.9, **ins}  # fmt: skip
    results = {Cell("W12", "goroutines", 0): CellResult(samples=[sample], size=6000)}
    rows = build_rows(["W12"], ["goroutines"], results, {}, 0)
    got = {t["row"]: t["result"] for t in evaluate_targets(rows, ["W12"])}
    assert got == {"off_w1_c": "met", "off_w4_c": "met", "off_w1_pure": "not met",
                   "off_w4_pure": "met", "on_w1_pure": "met"}  # fmt: skip
    [note] = _notes(rows, ["goroutines"], results, {"W12": 6000})
    assert note.startswith("W12: callgrind instructions per operation, on the Ms' threads")
    assert "C W1 1,000 (without the sites 1,000)" in note and "pure: 1,900 / 1,000" in note
    assert WORKLOADS["W12"].runs == 1  # deterministic counts: run once, whatever --repeat
