"""Instructions per operation under callgrind: what a change costs the hot paths.

::

    PYTHONHASHSEED=0 python benchmarks/cgops.py W1 2000 6000          # this tree
    PYTHONHASHSEED=0 PYTHONPATH=/tmp/base/src python benchmarks/cgops.py W1 2000 6000
    python benchmarks/cgops.py tracer 2000 6000 --json               # W12 of make bench

runs one ``gr.run`` (procs 1) of the workload for N1 and then N2
operations under ``valgrind --tool=callgrind`` and prints
(instructions(N2) - instructions(N1)) / (N2 - N1), counted on the Ms'
threads (see ``instructions``): the start-up, imports and the end of the
run cancel out. Wall time cannot show a change of 1 % on a shared VM;
these counts repeat to within a few instructions. ``GOROUTINES_PURE=1`` measures
the reference runtime. The tree measured is whichever ``goroutines`` the
interpreter imports: put a copy's ``src`` first on ``PYTHONPATH`` to
measure it (the script prints which).

Workloads: W1 an unbuffered ping-pong (a round trip), W4 a pool of 4
workers over channels of 128 (a job), SLEEP ``gr.sleep(1e-9)`` (a timer
armed and fired), W2 ``gr.go`` of a goroutine that sends once (a goroutine),
TRACE_ON and TRACE_OFF W1 with ``gr.trace`` recording or not (the tracer's
cost when on; the events are handed over at the end, in the count).

``tracer`` measures the execution tracer (issue 13), for ``make bench``'s
W12. Its cost when off is the runtime against the same runtime without
the tracer's sites: two copies of this checkout's ``src`` are built the
same way (``setup.py build_ext --inplace``), one as it is and one with
every off-test of a site replaced by a constant the compiler folds away
(``_tracer is not None`` -> ``False`` in the reference, ``trace_hook !=
NULL && trace_call(`` -> ``0 && trace_call(`` in the accelerator), and W1
and W4 are counted in both, with the accelerator and without. Its cost
when on is TRACE_ON over TRACE_OFF, in the reference (the accelerator's
is W11's time).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import goroutines as gr


async def _pong(ping: gr.Chan[int], pong: gr.Chan[int]) -> None:
    async for v in ping:
        await pong.send(v + 1)


async def w1(n: int) -> None:
    a, b = gr.Chan[int](), gr.Chan[int]()
    gr.go(_pong, a, b)
    v = 0
    for _ in range(n):
        await a.send(v)
        v = await b.recv() or 0
    a.close()


async def _worker(jobs: gr.Chan[int], res: gr.Chan[int]) -> None:
    async for j in jobs:
        await res.send(j * 2)


async def w4(n: int) -> None:
    jobs, res = gr.Chan[int](128), gr.Chan[int](128)
    for _ in range(4):
        gr.go(_worker, jobs, res)

    async def feed() -> None:
        for i in range(n):
            await jobs.send(i)
        jobs.close()

    gr.go(feed)
    for _ in range(n):
        await res.recv()


async def _one(ch: gr.Chan[int], i: int) -> None:
    await ch.send(i)


async def w2(n: int) -> None:
    ch = gr.Chan[int](n)
    for i in range(n):
        gr.go(_one, ch, i)
    for _ in range(n):
        await ch.recv()


async def sleep(n: int) -> None:
    for _ in range(n):
        await gr.sleep(1e-9)


async def _traced(n: int, on: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        if on:
            gr.trace.start(f"{d}/t.json", limit=10 * n + 100)
        await w1(n)
        if on:
            from goroutines._runtime import _trace

            _trace.stop()  # the events taken, not written: no JSON in the count


async def trace_on(n: int) -> None:
    await _traced(n, True)


async def trace_off(n: int) -> None:
    await _traced(n, False)


WORKLOADS: dict[str, Any] = {
    "W1": w1,
    "W2": w2,
    "W4": w4,
    "SLEEP": sleep,
    "TRACE_ON": trace_on,
    "TRACE_OFF": trace_off,
}


#: This checkout: benchmarks/cgops.py -> its root.
ROOT = Path(__file__).resolve().parents[1]

#: The tracer's off-tests, and what a stripped copy has instead: in Python
#: ``if False:`` is dropped by the compiler and ``if True: A else: B``
#: compiles to A; in C, ``0 && ...`` is folded away.
_PY_SITES = (
    (re.compile(r"\b_tracer is not None\b"), "False"),
    (re.compile(r"\b_tracer is None\b"), "True"),
)
_C_SITE = (re.compile(r"\btrace_hook != NULL && trace_call\("), "0 && trace_call(")


def copy_tree(dest: Path, strip_tracer: bool) -> dict[str, int]:
    """Copy this checkout's ``src`` (and its build files) to ``dest``, strip
    the tracer's sites if asked, and build the accelerator in place there.
    Returns how many sites were stripped, in Python and in C."""
    shutil.copytree(
        ROOT / "src",
        dest / "src",
        ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"),
    )
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    sites = {"py": 0, "c": 0}
    if strip_tracer:
        for f in sorted((dest / "src" / "goroutines").rglob("*.py")):
            text = f.read_text()
            for rx, constant in _PY_SITES:
                text, n = rx.subn(constant, text)
                sites["py"] += n
            f.write_text(text)
        c = dest / "src" / "goroutines" / "_speedups.c"
        text, sites["c"] = _C_SITE[0].subn(_C_SITE[1], c.read_text())
        c.write_text(text)
        if not sites["py"] or not sites["c"]:
            raise RuntimeError(f"no tracer sites found to strip ({sites}): cgops.py is out of date")
    r = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=dest,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 or not list((dest / "src" / "goroutines").glob("_speedups*.so")):
        raise RuntimeError(f"building the accelerator in {dest} failed:\n{r.stderr[-2000:]}")
    return sites


def instructions(workload: str, n: int, src: Path | None = None, pure: bool = False) -> int:
    """Callgrind's instruction count of a whole run of ``workload`` (``n`` ops)
    of the goroutines in ``src`` (a copy's) or the one this interpreter
    imports, on every thread but the main one: the Ms, and sysmon's if it
    started. The main thread imports, starts the run and waits for its end
    in ``gr.run``, waking on the wall clock, so its count varies with the
    machine's load (up to 1 % of W1's instructions per op on a busy
    machine); the others' repeat to within a few instructions."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    if pure:
        env["GOROUTINES_PURE"] = "1"
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(
            ["valgrind", "--tool=callgrind", "--separate-threads=yes",
             f"--callgrind-out-file={d}/cg.out",
             sys.executable, __file__, "--once", workload, str(n), "0"],
            capture_output=True,
            text=True,
            env=env,
        )  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"valgrind {workload} {n} failed:\n{r.stderr[-2000:]}")
        counts = {
            f.name: re.findall(r"^totals: (\d+)", f.read_text(), re.M)
            for f in Path(d).glob("cg.out-*")
        }
    if "cg.out-01" not in counts or not all(counts.values()):
        raise RuntimeError(f"no instruction count per thread in valgrind's output: {counts}")
    del counts["cg.out-01"]  # the main thread: start-up, then gr.run's wait
    if src is not None:  # the copy was measured, in the mode asked for
        want = f"{src / 'goroutines' / '__init__.py'} {'pure' if pure else 'c'}"
        if r.stdout.strip() != want:
            raise RuntimeError(f"measured {r.stdout.strip()!r}, not {want!r}")
    return sum(int(c[0]) for c in counts.values())


def per_op(
    workload: str, n1: int, n2: int, src: Path | None = None, pure: bool = False, runs: int = 1
) -> float:
    """Instructions per operation: the difference of two runs' counts, each
    the least of ``runs`` runs (a busy machine only ever adds)."""
    a = min(instructions(workload, n1, src, pure) for _ in range(runs))
    b = min(instructions(workload, n2, src, pure) for _ in range(runs))
    return (b - a) / (n2 - n1)


def tracer_costs(n1: int, n2: int) -> dict[str, Any]:
    """The tracer's cost off (``off_*``: % more instructions per operation
    than its copy without the sites) and on (``on_*``: TRACE_ON / TRACE_OFF)."""
    if shutil.which("valgrind") is None:
        raise FileNotFoundError("valgrind not installed (make bench installs it with apt-get)")
    with tempfile.TemporaryDirectory() as d:
        tree, bare = Path(d, "as-is"), Path(d, "without-tracer")
        copy_tree(tree, strip_tracer=False)
        sites = copy_tree(bare, strip_tracer=True)
        jobs: dict[str, tuple[str, Path, bool]] = {}
        for mode, pure in (("c", False), ("pure", True)):
            for wl in ("W1", "W4"):
                jobs[f"{wl}_{mode}"] = (wl, tree / "src", pure)
                jobs[f"{wl}_{mode}_without"] = (wl, bare / "src", pure)
        # The accelerator's cost when on is W11's time: its recorder's
        # instructions (2.7x W1's, most of them handing the events over as
        # tuples at the end) say little about it.
        jobs["on_pure"] = ("TRACE_ON", tree / "src", True)
        jobs["off_pure"] = ("TRACE_OFF", tree / "src", True)
        # One at a time, each count the least of two runs: on a quiet
        # machine two runs agree to a few instructions; one slowed by
        # another process has more of the GIL's wall-clock hand-overs (up to
        # +0.9 % on W1 seen with both cores busy).
        ops = {k: per_op(wl, n1, n2, src, pure, runs=2) for k, (wl, src, pure) in jobs.items()}
    out: dict[str, Any] = {"sites": sites, "instructions": {k: round(v) for k, v in ops.items()}}
    for mode in ("c", "pure"):
        for wl in ("W1", "W4"):
            extra = ops[f"{wl}_{mode}"] / ops[f"{wl}_{mode}_without"] - 1
            out[f"off_{wl.lower()}_{mode}"] = 100 * extra  # % more instructions
    out["on_w1_pure"] = ops["on_pure"] / ops["off_pure"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("workload", choices=[*sorted(WORKLOADS), "tracer"])
    ap.add_argument("n1", type=int)
    ap.add_argument("n2", type=int)
    ap.add_argument("--json", action="store_true", help="tracer: one JSON line")
    ap.add_argument("--once", action="store_true", help="(internal) one run, no valgrind")
    args = ap.parse_args()
    if args.once:
        print(gr.__file__, gr.__speedups__)
        gr.run(WORKLOADS[args.workload], args.n1, procs=1)
        return 0
    if not 0 < args.n1 < args.n2:
        ap.error("needs 0 < N1 < N2")
    if args.workload == "tracer":
        costs = tracer_costs(args.n1, args.n2)
        if args.json:
            print(json.dumps(costs))
        else:
            for k, v in costs.items():
                print(k, v if isinstance(v, dict) else f"{v:.3f}")
        return 0
    print(f"goroutines from {gr.__file__} ({gr.__speedups__})", file=sys.stderr)
    print(f"{args.workload} {per_op(args.workload, args.n1, args.n2):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
