"""``python -m goroutines bench`` (``goroutines._bench``): a smoke run and the bookkeeping.

The smoke run is the real suite at ``--quick`` sizes, one repetition, for
goroutines and asyncio (no optional peer needed): every workload's runner
must check its own answer and report its figures, and the three outputs
must be written. The other tests use fake runners, so they are quick and
can make a cell fail on purpose.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from goroutines._bench import WORKLOADS, Row, main


def test_quick_suite_goroutines_and_asyncio(tmp_path: Path) -> None:
    out = tmp_path / "results"
    rc = main(["--quick", "--repeat", "1", "--runtimes", "goroutines,asyncio", "--out", str(out)])
    assert rc == 0
    assert (out / "bench.md").is_file()
    doc = json.loads((out / "bench.json").read_text())
    cells = {(c["workload"], c["runtime"], c["procs"]): c for c in doc["cells"]}
    for w in WORKLOADS:
        procs_list = [1, 2] if w == "W9" else [None]
        for p in procs_list:
            c = cells[w, "goroutines", p]
            assert c["error"] is None, (w, c["error"])
            assert c["na"] is None, (w, c["na"])  # goroutines runs every workload
            assert len(c["samples"]) == 1
            for m in WORKLOADS[w].metrics:
                assert c["samples"][0][m.key] > 0, (w, m.key)
        if w != "W9":
            c = cells[w, "asyncio", None]
            assert c["error"] is None and c["samples"], (w, c)
    # W9 is goroutines (and threads) only: asyncio is N/A, not run, not an error.
    w9 = [r for r in doc["rows"] if r["workload"] == "W9"]
    assert [r["figure"] for r in w9] == ["s procs=1", "s procs=2", "speed-up procs 1->2"]
    assert all(r["status"]["asyncio"].startswith("N/A") for r in w9)
    md = (out / "bench.md").read_text()
    assert "| W1 | µs/round trip |" in md
    assert "W8 goroutines: server used" in md


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
print(json.dumps({"workload": w, "metrics": {"us_per_rt": 2.0 if "{rt}" == "goroutines" else 5.0}}))
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
    rows = {r["workload"]: r for r in doc["rows"]}
    assert rows["W1"]["values"] == {"goroutines": 2.0, "asyncio": 5.0}
    assert rows["W1"]["ratios"] == {"asyncio": 2.5}
    assert rows["W2"]["values"] == {}
    status = rows["W2"]["status"]["goroutines"]
    assert status == "error: AssertionError: wrong answer: sum of indices 41"
    assert rows["W3"]["status"]["asyncio"] == "N/A: not today"
    cells = {(c["workload"], c["runtime"]): c for c in doc["cells"]}
    assert len(cells["W1", "goroutines"]["samples"]) == 2
    assert cells["W2", "goroutines"]["samples"] == []  # a failed cell is not repeated


def test_bad_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--workloads", "W1,W10"])
    assert e.value.code == 2
    assert "unknown workload W10" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--runtimes", "tokio"])
    assert "unknown runtime tokio" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--repeat", "0"])
    assert "--repeat must be >= 1" in capsys.readouterr().err
    assert main(["--bench-dir", str(tmp_path)]) == 2
    assert "benchmark runners are not in" in capsys.readouterr().err
