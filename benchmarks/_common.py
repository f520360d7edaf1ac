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
import http.client
import json
import os
import random
import re
import shutil
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
    "HTTP_BODY",
    "HTTP_CONNS",
    "NA",
    "PIN",
    "W9_HASHERS",
    "check",
    "echo_client",
    "hash_buffer",
    "http_load",
    "main",
    "parse_wrk",
    "pin_process",
    "require_http",
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
#: W10: wrk's connections (one wrk thread), and what every server answers.
HTTP_CONNS = 50
HTTP_BODY = b"Hello, world!\n"

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


def _cpu(children: bool = False) -> float:
    """User + system CPU seconds of this process (every thread), or of its
    children that have been waited for."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# W10 ---------------------------------------------------------------------------


def require_http() -> None:
    """W10 needs h11 (the servers) and wrk (the load): N/A without either."""
    if shutil.which("wrk") is None:
        raise NA("wrk not installed")
    try:
        import h11  # noqa: F401
    except ImportError:
        raise NA("h11 not installed (pip install -e '.[bench]')") from None


def _http_check(port: int) -> None:
    """Two requests on one keep-alive connection: each must be 200 with the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        socks = []
        for path in ("/", "/again"):
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            check(r.status == 200 and body == HTTP_BODY, f"GET {path}: {r.status} {body!r}")
            socks.append(conn.sock)
        check(socks[0] is socks[1] and socks[1] is not None, "the connection was not kept alive")
    finally:
        conn.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(out: str) -> Metrics:
    """What wrk printed: requests, seconds, requests/s, p50 and p99 latency (ms).

    A wrong answer fails: any "Non-2xx or 3xx responses" or socket error
    (connect, read, write, timeout), or no request at all.
    """
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    check(bad is None, f"wrk: {bad and bad[1]} responses were not 2xx or 3xx")
    errs = re.search(r"Socket errors: (.*)", out)
    check(errs is None, f"wrk: socket errors: {errs and errs[1]}")
    done = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", out, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    check(done is not None and rate is not None, f"wrk's output not understood: {out!r}")
    assert done is not None and rate is not None
    m: Metrics = {
        "requests": float(done[1]),
        "seconds": float(done[2]) * _UNITS[done[3]] / 1e3,
        "req_per_s": float(rate[1]),
    }
    check(m["requests"] > 0, "wrk: no request was answered")
    for p in ("50", "99"):
        lat = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
        if lat is not None:
            m[f"p{p}_ms"] = float(lat[1]) * _UNITS[lat[2]]
    return m


#: Runs a command pinned to a CPU, as ``taskset -c CPU command...`` would:
#: argv[1] is the CPU, the rest the command (wrk and each thread it starts
#: inherit the affinity).
_PINNED_EXEC = (
    "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def _affinity(pid: int) -> set[int] | None:
    """The CPUs every thread of process ``pid`` may run on (their union), None if gone."""
    cpus: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            cpus |= os.sched_getaffinity(int(tid))
    except OSError:
        return None
    return cpus


def http_load(port: int, seconds: float) -> Metrics:
    """W10: check the server's answer, then load it with wrk for ``seconds``.

    Blocking: a runner calls it through its runtime's way of offloading a
    blocking call, so its server keeps serving meanwhile. With ``PIN`` set,
    wrk runs pinned to its CPU (checked while it runs), this process
    staying on the other. The server's CPU is this process's (every thread,
    ``getrusage``) from just before wrk starts to its end; wrk's is its
    own (``RUSAGE_CHILDREN``).
    """
    _http_check(port)
    cmd = ["wrk", "-t1", f"-c{HTTP_CONNS}", f"-d{seconds:g}s", "--latency"]
    cmd.append(f"http://127.0.0.1:{port}/")
    if PIN is not None:
        here = os.sched_getaffinity(0)  # the thread that serves this call
        check(here == {PIN[0]}, f"server pinned to CPU {PIN[0]}, runs on {sorted(here)}")
        cmd = [sys.executable, "-c", _PINNED_EXEC, str(PIN[1]), *cmd]
    child0, cpu0, t0 = _cpu(children=True), _cpu(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(seconds + 60, proc.kill)
    watchdog.start()
    try:
        cpus = None
        if PIN is not None:
            time.sleep(min(0.5, seconds / 2))  # wrk is under way: its threads are there
            cpus = _affinity(proc.pid)
        out, err = proc.communicate()
    finally:
        watchdog.cancel()
    cpu1, t1, child1 = _cpu(), time.perf_counter(), _cpu(children=True)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err.strip()[-2000:] or proc.returncode}")
    if PIN is not None:
        check(cpus == {PIN[1]}, f"wrk pinned to CPU {PIN[1]}, ran on {cpus}")
    m = parse_wrk(out)
    server_s = cpu1 - cpu0
    return {
        "req_per_s": m["req_per_s"],
        "server_us_per_req": server_s / m["requests"] * 1e6,
        # CPU in cores over wrk's run, server and wrk: either near 1 says
        # which one the rate is bounded by.
        "server_cpu": server_s / (t1 - t0),
        "client_cpu": (child1 - child0) / (t1 - t0),
        **{k: m[k] for k in ("p50_ms", "p99_ms") if k in m},
        "pinned": float(PIN is not None),
    }


def set_nodelay(sock: socket.socket) -> None:
    """As Go, asyncio, uvloop and trio do for every TCP connection."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main(runtime: str, workloads: dict[str, Callable[[argparse.Namespace], Metrics]]) -> int:
    """A runner's entry point: parse the cell, run it, print its one JSON line."""
    ap = argparse.ArgumentParser(description=f"one benchmark cell for {runtime}")
    ap.add_argument("--workload", required=True, help="W1 ... W10")
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
