"""sysmon: the slow-goroutine warning, the network poll, and its idle cost.

The P hand-off from Ms blocked in a syscall is tested through its effect in
``test_syscall.py``; here, what sysmon does besides: warn (with
``GOROUTINES_DEBUG=slowgoroutine=MS``) about a goroutine that holds its P
too long, poll the network when no M does, and cost next to nothing while
the program sleeps.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from goroutines._runtime._goroutine import GStatus
from helpers import grun

# ------------------------------------------------------------------ slow goroutine warning

SLOW_SCRIPT = """
import sys
import time
import goroutines as gr

async def polite(done):
    # 0.3 s of work in 1 ms slices: never holds the P for 50 ms
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        t = time.monotonic() + 0.001
        while time.monotonic() < t:
            pass
        await gr.gosched()
    await done.send(None)

async def busy(done):
    print("busy", gr.goroutine_id(), flush=True)
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # BUSY LINE
        pass
    await done.send(None)

async def main():
    done = gr.Chan()
    gr.go(polite, done)
    await done.recv()
    print("polite done", flush=True)
    gr.go(busy, done)
    await done.recv()

gr.run(main, procs=PROCS)
"""


@pytest.mark.parametrize("procs", [1, 4], ids=lambda n: f"procs{n}")
def test_slow_goroutine_warns_once(procs: int, tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    src = textwrap.dedent(SLOW_SCRIPT).replace("PROCS", str(procs))
    script.write_text(src)
    busy_line = (
        src.splitlines().index(next(ln for ln in src.splitlines() if "# BUSY LINE" in ln)) + 1
    )
    r = subprocess.run(
        [sys.executable, "-W", "always::RuntimeWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "GOROUTINES_DEBUG": "slowgoroutine=50"},
    )
    assert r.returncode == 0, r.stderr
    m = re.search(r"busy (\d+)", r.stdout)
    assert m is not None, r.stdout
    gid = m.group(1)
    warnings = [ln for ln in r.stderr.splitlines() if "RuntimeWarning" in ln]
    assert len(warnings) == 1, r.stderr
    w = warnings[0]
    assert f"goroutine {gid} " in w
    assert "busy" in w
    assert f"{script}:{busy_line}" in w
    assert "without yielding" in w


def test_no_slow_warning_by_default(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(SLOW_SCRIPT).replace("PROCS", "1"))
    env = {k: v for k, v in os.environ.items() if k != "GOROUTINES_DEBUG"}
    r = subprocess.run(
        [sys.executable, "-W", "always::RuntimeWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr


@pytest.mark.parametrize(
    "value", ["slowgoroutine=abc", "slowgoroutine=0", "slowgoroutine=-5", "slowgoroutine"]
)
def test_bad_goroutines_debug(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    async def main() -> None:
        raise AssertionError("must not start")

    monkeypatch.setenv("GOROUTINES_DEBUG", value)
    with pytest.raises(ValueError, match="GOROUTINES_DEBUG: slowgoroutine"):
        gr.run(main, procs=1)
    assert _scheduler.current is None

    async def ok() -> int:
        return 1

    monkeypatch.setenv("GOROUTINES_DEBUG", "slowgoroutine=1000")
    assert grun(ok, procs=1) == 1


def _traced(tmp_path: Path, debug: str, main: str) -> list[str]:
    """Run ``main`` (an async function's source) at procs=2 in a fresh
    process with ``GOROUTINES_DEBUG=debug``; return its stderr lines."""
    script = tmp_path / "traced.py"
    script.write_text(
        "import goroutines as gr\n" + textwrap.dedent(main) + "gr.run(main, procs=2)\n"
    )
    r = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "GOROUTINES_DEBUG": debug},
    )
    assert r.returncode == 0, r.stderr
    return r.stderr.splitlines()


def test_schedtrace_prints_go_sched_lines(tmp_path: Path) -> None:
    lines = _traced(
        tmp_path,
        "schedtrace=50",
        """
        async def main():
            await gr.sleep(0.3)
        """,
    )
    line = re.compile(
        r"SCHED \d+ms: gomaxprocs=2 idleprocs=\d+ threads=\d+ spinningthreads=\d+ "
        r"idlethreads=\d+ runqueue=\d+ \[\d+ \d+\]"
    )
    assert len(lines) >= 3, lines
    assert all(line.fullmatch(ln) for ln in lines), lines


def test_scheddetail_adds_a_line_per_p_m_and_g(tmp_path: Path) -> None:
    lines = _traced(
        tmp_path,
        "schedtrace=50,scheddetail=1",
        """
        async def waiter(c):
            await c.recv()

        async def main():
            c = gr.Chan()
            gr.go(waiter, c)
            await gr.sleep(0.3)
            await c.send(1)
        """,
    )
    sched = [i for i, ln in enumerate(lines) if ln.startswith("SCHED ")]
    assert len(sched) >= 3, lines
    p_line = re.compile(
        r"  P[01]: status=(idle|running|syscall) schedtick=\d+ syscalltick=\d+ m=-?\d+ "
        r"runqsize=\d+ stuck=(True|False)"
    )
    m_line = re.compile(
        r"  M\d+: p=-?\d+ curg=-?\d+ spinning=(true|false) blocked=(true|false) lockedg=-?\d+"
    )
    g_line = re.compile(r"  G\d+: status=\d\([a-z .]+\) m=-?\d+ lockedm=-?\d+")
    detail = [ln for ln in lines if not ln.startswith("SCHED ")]
    assert all(
        p_line.fullmatch(ln) or m_line.fullmatch(ln) or g_line.fullmatch(ln) for ln in detail
    ), lines
    # A trace taken while both sleep: G1 sleeping, G2 waiting on the channel.
    assert "  G1: status=4(sleep) m=-1 lockedm=-1" in detail, lines
    assert "  G2: status=4(chan receive) m=-1 lockedm=-1" in detail, lines
    assert sum(ln.startswith("  P") for ln in detail) == 2 * len(sched)


def test_bad_scheddetail(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        raise AssertionError("must not start")

    monkeypatch.setenv("GOROUTINES_DEBUG", "scheddetail=yes")
    with pytest.raises(ValueError, match="GOROUTINES_DEBUG: scheddetail must be 0 or 1"):
        gr.run(main, procs=1)


def test_bad_schedtrace(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        raise AssertionError("must not start")

    monkeypatch.setenv("GOROUTINES_DEBUG", "schedtrace=soon")
    with pytest.raises(ValueError, match="GOROUTINES_DEBUG: schedtrace"):
        gr.run(main, procs=1)


# ------------------------------------------------------------------ network poll


def test_sysmon_polls_network_while_the_only_p_is_busy() -> None:
    """procs=1: main computes for 0.3 s without yielding. A goroutine waiting
    on a socket that becomes readable is made runnable by sysmon (no M polls:
    the only one is busy) well before main yields; it then reads the data."""

    async def reader(sock: socket.socket, out: gr.Chan[bytes]) -> None:
        pd = _scheduler.require().netpoll.open(sock.fileno())
        try:
            while True:
                try:
                    data = sock.recv(100)
                    break
                except BlockingIOError:
                    await pd.wait(False)
        finally:
            pd.evict()
        await out.send(data)

    async def main() -> tuple[float | None, bytes | None]:
        sched = _scheduler.require()
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            out: gr.Chan[bytes] = gr.Chan()
            gr.go(reader, a, out)
            # let the reader park in the poller
            gid = 0
            deadline = time.monotonic() + 5
            while True:
                await gr.gosched()
                others = [g for g in sched.allgs.copy().values() if g.id != 1]
                if others and others[0].status == GStatus.WAITING:
                    gid = others[0].id
                    break
                assert time.monotonic() < deadline, gr.stack_dump()
            g = sched.allgs[gid]
            b.send(b"hello")
            t0 = time.monotonic()
            woken: float | None = None
            while time.monotonic() - t0 < 0.3:  # busy, never yields
                if woken is None and g.status != GStatus.WAITING:
                    woken = time.monotonic() - t0
            data = await out.recv()
            return woken, data
        finally:
            a.close()
            b.close()

    woken, data = grun(main, procs=1)
    print(f"sysmon made the reader runnable after {woken}s")
    assert data == b"hello"
    assert woken is not None, "the reader stayed WAITING until main yielded"
    assert woken < 0.15


# ------------------------------------------------------------------ idle cost


@pytest.mark.parametrize("procs", [1, 4], ids=lambda n: f"procs{n}")
def test_idle_runtime_uses_little_cpu(procs: int) -> None:
    """Main asleep for 1 s (and another goroutine blocked on a channel):
    sysmon backs off, the Ms park; the process uses < 0.1 s of CPU."""

    async def blocked(c: gr.Chan[int]) -> None:
        await c.recv()

    async def main() -> float:
        c: gr.Chan[int] = gr.Chan()
        gr.go(blocked, c)
        await gr.sleep(0.05)  # let the start-up settle
        t0 = time.process_time()
        await gr.sleep(1.0)
        used = time.process_time() - t0
        c.close()
        return used

    used = grun(main, procs=procs)
    print(f"procs={procs}: {used:.4f}s CPU while asleep for 1 s")
    assert used < 0.1


@pytest.mark.parametrize("procs", [1, 4], ids=lambda n: f"procs{n}")
def test_sysmon_sleeps_while_every_p_is_idle(procs: int) -> None:
    """With every goroutine parked, sysmon sleeps until woken (Go's
    sysmonwait): a couple of rounds in 0.5 s, not the ~60 of its 10 ms
    back-off. The 0.5 s are counted by a plain thread from the moment every
    P is idle (on a loaded machine, the three suites side by side, the last
    M can take a while to give its P back, and sysmon rightly watches it
    meanwhile); main waits on a channel that thread closes, not on a timer
    (sysmon keeps looking while a timer is due and not yet fired)."""

    async def blocked(c: gr.Chan[int]) -> None:
        await c.recv()

    async def main() -> int:
        c: gr.Chan[int] = gr.Chan()
        gr.go(blocked, c)
        sched = _scheduler.require()
        sysmon = sched.sysmon
        done: gr.Chan[None] = gr.Chan()
        rounds: list[int] = []

        def measure() -> None:
            deadline = time.monotonic() + 10
            while len(sched.pidle) != sched.gomaxprocs and time.monotonic() < deadline:
                time.sleep(0.001)
            r0 = sysmon.nrounds
            time.sleep(0.5)
            rounds.append(sysmon.nrounds - r0)
            done.close()

        threading.Thread(target=measure).start()
        await done.recv_ok()
        c.close()
        return rounds[0]

    rounds = grun(main, procs=procs)
    assert rounds <= 5, f"sysmon made {rounds} rounds while every P was idle"


@pytest.mark.parametrize("procs", [1, 2], ids=lambda n: f"procs{n}")
def test_sysmon_wakes_when_work_comes_back(procs: int) -> None:
    """sysmon asleep (every P idle, no timer: it would sleep a whole second)
    is woken when an M takes a P: here main, readied by the poller when a
    plain thread writes to its socket, queues goroutines behind a blocking
    call, and they run while the call sleeps (sysmon handed the P off)."""
    a, b = socket.socketpair()

    def poke() -> None:
        time.sleep(0.3)  # main is parked on the socket meanwhile
        b.send(b"x")

    async def other(ran: list[float]) -> None:
        ran.append(time.monotonic())

    async def main() -> tuple[float, float]:
        conn = gr.net.wrap(a)
        assert await conn.read(1) == b"x"
        ran: list[float] = []
        for _ in range(procs):  # one per P, queued behind the call
            gr.go(other, ran)
        await gr.syscall(time.sleep, 0.3)
        done = time.monotonic()
        assert len(ran) == procs
        conn.close()
        return ran[0], done

    t = threading.Thread(target=poke)
    t.start()
    try:
        first, done = grun(main, procs=procs)
    finally:
        t.join()
        b.close()
    assert done - first > 0.2, "the queued goroutine waited for the blocking call to end"
