"""Instructions per operation under callgrind: what a change costs the hot paths.

::

    PYTHONHASHSEED=0 python tools/cgops.py W1 2000 6000          # this tree
    PYTHONHASHSEED=0 PYTHONPATH=/tmp/base/src python tools/cgops.py W1 2000 6000

runs one ``gr.run`` (procs 1) of the workload for N1 and then N2
operations under ``valgrind --tool=callgrind`` and prints
(instructions(N2) - instructions(N1)) / (N2 - N1): the start-up, imports
and the end of the run cancel out. Wall time cannot show a change of 1 %
on a shared VM; instruction counts can (runs still vary by about ±0.5 %:
sysmon's thread and the garbage collector run at times that depend on
the clock, so compare means of a few runs). ``GOROUTINES_PURE=1`` measures
the reference runtime. The tree measured is whichever ``goroutines`` the
interpreter imports: put a copy's ``src`` first on ``PYTHONPATH`` to
measure it (the script prints which).

Workloads: W1 an unbuffered ping-pong (a round trip), W4 a pool of 4
workers over channels of 128 (a job), SLEEP ``gr.sleep(1e-9)`` (a timer
armed and fired), W2 ``gr.go`` of a goroutine that sends once (a goroutine),
TRACE_ON and TRACE_OFF W1 with ``gr.trace`` recording or not (the tracer's
cost when on; the events are handed over at the end, in the count).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
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


def instructions(workload: str, n: int) -> int:
    """Callgrind's instruction count of a whole run of ``workload`` (``n`` ops)."""
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--once", workload, str(n), "0"],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    m = re.search(r"Collected : (\d+)", r.stderr)
    if m is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{r.stderr[-2000:]}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("n1", type=int)
    ap.add_argument("n2", type=int)
    ap.add_argument("--once", action="store_true", help="(internal) one run, no valgrind")
    args = ap.parse_args()
    if args.once:
        gr.run(WORKLOADS[args.workload], args.n1, procs=1)
        return 0
    if not 0 < args.n1 < args.n2:
        ap.error("needs 0 < N1 < N2")
    print(f"goroutines from {gr.__file__} ({gr.__speedups__})", file=sys.stderr)
    a = instructions(args.workload, args.n1)
    b = instructions(args.workload, args.n2)
    print(f"{args.workload} {(b - a) // (args.n2 - args.n1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
