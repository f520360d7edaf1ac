"""What every benchmark runner shares: its command line, the answer checks, RSS, output.

A runner (``run_<runtime>.py``) measures one cell, one workload at one size
in a fresh interpreter, and prints exactly one JSON line on stdout:

    {"workload": "W1", "runtime": "asyncio", "size": 100000, "metrics": {"us_per_rt": 6.0}}

or ``{"workload": ..., "na": "why"}`` when the pair makes no sense. A wrong
answer raises (``check``), so the runner exits non-zero: the orchestrator
(``goroutines._bench``) records an error for that cell, never a time.

The workloads are described in README.md; each ``w*`` function of a runner
returns its metrics dict. Figures are computed by the runner (per unit of
work), so a runner that must run a smaller size (threads on W2) stays
comparable, and reports the size it used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "ECHO_CONNS",
    "ECHO_MSG",
    "HERE",
    "NA",
    "PIN",
    "W9_HASHERS",
    "check",
    "echo_client",
    "hash_buffer",
    "main",
    "pin_process",
    "rss_bytes",
    "set_nodelay",
    "sieve_sum",
    "sleep_delays",
]

HERE = Path(__file__).resolve().parent

#: W8: connections and message size (fixed: the size option is the duration).
ECHO_CONNS = 64
ECHO_MSG = 64
#: W9: goroutines (threads, ...) hashing at once.
W9_HASHERS = 8

Metrics = dict[str, float]


class NA(Exception):
    """This runtime cannot run this workload meaningfully: report N/A, not an error."""


def check(ok: bool, what: str) -> None:
    """A workload's self-check: a wrong answer is an error, not a time."""
    if not ok:
        raise AssertionError(f"wrong answer: {what}")


def rss_bytes() -> int:
    """The resident set size of this process, now (not the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best there is (it only grows here)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


#: W5 also measures how much CPU the runtime burns while every goroutine is
#: parked (and main sleeps): the issue's "idle" target, < 1 % of a core.
IDLE_S = 0.5


def idle_pct(cpu0: float, t0: float) -> float:
    """Percent of one core this process used since ``process_time()`` was
    ``cpu0`` and ``perf_counter()`` was ``t0``."""
    return (time.process_time() - cpu0) / (time.perf_counter() - t0) * 100


def sieve_sum(n: int) -> int:
    """The sum of the first ``n`` primes, the W3 answer (computed plainly)."""
    primes: list[int] = []
    k = 2
    while len(primes) < n:
        if all(k % p for p in primes if p * p <= k):
            primes.append(k)
        k += 1
    return sum(primes)


def sleep_delays(n: int, seed: int) -> list[float]:
    """W6: the seeded random sleeps, 0-100 ms, the same for every runtime."""
    rng = random.Random(seed)
    return [rng.random() * 0.1 for _ in range(n)]


def hash_buffer(mib: int) -> tuple[bytes, str, float]:
    """W9: the buffer every hasher hashes, its sha256, and the serial time.

    The serial time is ``W9_HASHERS`` hashes one after the other on this
    thread, no runtime: the baseline a speed-up is best read against.
    """
    buf = bytes(range(256)) * (mib * 4096)
    t0 = time.perf_counter()
    for _ in range(W9_HASHERS):
        want = hashlib.sha256(buf).hexdigest()
    return buf, want, time.perf_counter() - t0


#: W8: ``(server CPU, load client CPU)`` when the runner is given ``--pin``
#: (``main`` has then pinned this process, the server, to the first).
PIN: tuple[int, int] | None = None


def pin_process(cpu: int) -> None:
    """Pin every thread of this process to ``cpu``, as ``taskset -a -p -c CPU PID`` would.

    Threads started afterwards inherit it from the thread that starts them,
    and so do child processes.
    """
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]  # no /proc: this thread, the only one a runner has at start
    for tid in tids:
        os.sched_setaffinity(tid, {cpu})


def echo_client(port: int, seconds: float) -> Metrics:
    """W8: run the load client (echo_client.py, the same for every server) to the end.

    Blocking: a runner calls it through its runtime's way of offloading a
    blocking call, so its server keeps serving meanwhile. With ``PIN`` set
    the client runs pinned to its CPU, this process staying on the other.

    The server's CPU is this process's (every thread, ``getrusage``) over the
    client's measured window: the client says when it begins (``--sync``:
    a line ``start``) and its result line comes as it ends. Connecting, the
    client's start-up and the server's own set-up are not part of it.
    """
    cmd = [
        sys.executable,
        str(HERE / "echo_client.py"),
        "--port",
        str(port),
        "--conns",
        str(ECHO_CONNS),
        "--size",
        str(ECHO_MSG),
        "--seconds",
        str(seconds),
        "--sync",
    ]
    if PIN is not None:
        cmd += ["--cpu", str(PIN[1])]
        here = os.sched_getaffinity(0)  # the thread that serves this call
        check(here == {PIN[0]}, f"server pinned to CPU {PIN[0]}, runs on {sorted(here)}")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    watchdog = threading.Timer(seconds + 60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        start = proc.stdout.readline()
        cpu0 = _cpu()
        last = proc.stdout.readline()
        cpu1 = _cpu()
        _, err = proc.communicate()
    finally:
        watchdog.cancel()
    if proc.returncode != 0 or start != "start\n":
        why = err.strip()[-2000:] or f"exit status {proc.returncode}"
        raise RuntimeError(f"echo client failed: {why}")
    out = json.loads(last)
    check(out["errors"] == 0, f"echo client saw {out['errors']} bad echoes")
    check(out["idle_conns"] == 0, f"{out['idle_conns']} connections made no round trip")
    if PIN is not None:
        check(out["cpus"] == [PIN[1]], f"client pinned to CPU {PIN[1]}, ran on {out['cpus']}")
    rts, elapsed = out["round_trips"], out["elapsed"]
    server_s = cpu1 - cpu0
    return {
        "rt_per_s": rts / elapsed,
        "server_us_per_rt": server_s / rts * 1e6,
        # CPU used in cores over the measured window, server and client: on
        # separate CPUs, either near 1 says which one the rate is bounded by.
        "server_cpu": server_s / elapsed,
        "client_cpu": out["cpu"],
        "client_us_per_rt": out["cpu_s"] / rts * 1e6,
        "pinned": float(PIN is not None),
    }


def _cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def set_nodelay(sock: socket.socket) -> None:
    """As Go, asyncio, uvloop and trio do for every TCP connection."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main(runtime: str, workloads: dict[str, Callable[[argparse.Namespace], Metrics]]) -> int:
    """A runner's entry point: parse the cell, run it, print its one JSON line."""
    ap = argparse.ArgumentParser(description=f"one benchmark cell for {runtime}")
    ap.add_argument("--workload", required=True, help="W1 ... W9")
    ap.add_argument("--size", type=int, required=True, help="the workload's size (see README)")
    ap.add_argument("--procs", type=int, default=0, help="gomaxprocs / pool workers; 0 = default")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--pin",
        metavar="SERVER,CLIENT",
        help="W8: pin this process (the server) to CPU SERVER, the load client to CLIENT",
    )
    ap.add_argument("--runtime", default=runtime, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pin:
        global PIN
        server, client = (int(x) for x in args.pin.split(","))
        pin_process(server)
        PIN = (server, client)
    out: dict[str, Any] = {"workload": args.workload, "runtime": args.runtime, "size": args.size}
    fn = workloads.get(args.workload)
    try:
        if fn is None:
            raise NA(f"{args.workload} is not implemented for {args.runtime}")
        metrics = fn(args)
    except NA as e:
        out["na"] = str(e)
    else:
        # A runner that had to shrink the size says so through "size".
        out["size"] = int(metrics.pop("size", args.size))
        out["metrics"] = metrics
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0
