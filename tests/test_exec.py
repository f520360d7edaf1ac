"""gr.exec: programs from goroutines, their pipes and their exit on the
poller (issue "Streams, TLS and processes on the poller", part 3). Every
test checks that no fd is left open and no child is left unreaped."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

import goroutines as gr
from goroutines._runtime import _scheduler
from goroutines.exec import ExitError, command


@pytest.fixture(autouse=True)
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No fd left open, and every process the test started reaped (a zombie
    keeps its /proc entry until its parent waits for it)."""
    pids: list[int] = []
    real_start = gr.exec.Cmd.start

    def start(self: gr.exec.Cmd) -> None:
        real_start(self)
        assert self.proc is not None
        pids.append(self.proc.pid)

    monkeypatch.setattr(gr.exec.Cmd, "start", start)
    fds = len(os.listdir("/proc/self/fd"))
    yield
    assert len(os.listdir("/proc/self/fd")) == fds, "an fd was left open"
    unreaped = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    assert unreaped == [], f"processes left unreaped: {unreaped}"


@pytest.mark.goroutines
async def test_output_and_combined_output() -> None:
    assert await command("echo", "hello").output() == b"hello\n"
    both = await command("sh", "-c", "echo out; echo err >&2").combined_output()
    assert sorted(both.splitlines()) == [b"err", b"out"]


@pytest.mark.goroutines
async def test_exit_error_carries_code_and_stderr_tail() -> None:
    with pytest.raises(ExitError) as info:
        await command("sh", "-c", "echo oops >&2; exit 3").output()
    assert info.value.code == 3
    assert info.value.stderr == b"oops\n"
    assert "sh: exit status 3: oops" in str(info.value)
    with pytest.raises(ExitError) as info2:
        await command("false").run()
    assert info2.value.code == 1


@pytest.mark.goroutines
async def test_missing_program_names_it() -> None:
    with pytest.raises(FileNotFoundError, match="no-such-program-here"):
        await command("no-such-program-here", "x").run()
    cmd = command("no-such-program-here")
    cmd.stdout_pipe()  # its pipe is closed too (the fixture counts fds)
    with pytest.raises(FileNotFoundError):
        cmd.start()


@pytest.mark.goroutines
async def test_pipes_with_bufio() -> None:
    cmd = command("sort")
    w, r = cmd.stdin_pipe(), cmd.stdout_pipe()
    cmd.start()
    async with gr.bufio.Writer(w) as bw:
        for word in (b"pear", b"apple", b"fig"):
            await bw.write(word + b"\n")
    w.close()  # end of file: sort answers
    lines = [line async for line in gr.bufio.Reader(r)]
    await cmd.wait()
    assert lines == [b"apple", b"fig", b"pear"]


@pytest.mark.goroutines
async def test_a_big_transfer_through_cat() -> None:
    data = os.urandom(4 << 20)
    cmd = command("cat")
    w, r = cmd.stdin_pipe(), cmd.stdout_pipe()
    cmd.start()

    async def feed() -> None:
        await w.write(data)  # more than a pipe holds: it parks on the poller
        w.close()

    gr.go(feed)
    got = await gr.bufio.Reader(r).read()
    await cmd.wait()
    assert got == data


@pytest.mark.goroutines
async def test_ctx_deadline_kills_the_process() -> None:
    ctx, cancel = gr.with_timeout(gr.background(), 0.2)
    cmd = command("sleep", "30", ctx=ctx)
    with pytest.raises(gr.DeadlineExceeded, match="the process was stopped"):
        await cmd.run()
    assert cmd.returncode == -signal.SIGKILL
    cancel()


@pytest.mark.goroutines
async def test_cancel_hook_sends_sigterm_first() -> None:
    ctx, cancel = gr.with_cancel(gr.background())
    cmd = command("sleep", "30", ctx=ctx, cancel=subprocess.Popen.terminate)
    cmd.start()
    cancel()
    with pytest.raises(gr.Canceled):
        await cmd.wait()
    assert cmd.returncode == -signal.SIGTERM


@pytest.mark.goroutines
async def test_waiting_costs_no_thread(procs: int) -> None:
    n = 20
    async with gr.Group() as g:
        for _ in range(n):
            g.go(command("sleep", "0.2").run)
        await gr.sleep(0.1)
        assert _scheduler.require().mcount <= procs + 2  # 20 waits hold no M


@pytest.mark.goroutines
async def test_misuse() -> None:
    cmd = command("true")
    with pytest.raises(RuntimeError, match="wait\\(\\) before start\\(\\)"):
        await cmd.wait()
    await cmd.run()
    with pytest.raises(RuntimeError, match="start\\(\\) called twice"):
        cmd.start()
    with pytest.raises(RuntimeError, match="after start"):
        cmd.stdout_pipe()
    with pytest.raises(TypeError, match="must be strs"):
        command("echo", 1)  # type: ignore[arg-type]


@pytest.mark.goroutines
async def test_without_pidfd_wait_falls_back_to_a_blocking_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", refused)
    before = _scheduler.require().mcounters()["nsyscall"]
    assert await command("echo", "fallback").output() == b"fallback\n"
    with pytest.raises(ExitError):
        await command("false").run()
    assert _scheduler.require().mcounters()["nsyscall"] >= before + 2  # the waits were syscalls


@pytest.mark.goroutines(procs=1)
async def test_close_while_reading_keeps_the_fd_until_the_reader_leaves() -> None:
    """``close`` from another goroutine while one waits in ``read``: the fd
    number stays open (and so cannot be reused under the reader) until the
    woken reader has left ``read``; then it is closed. At procs=1 the reader
    cannot run between the close and the fstat."""
    cmd = command("sleep", "10")
    r = cmd.stdout_pipe()
    cmd.start()
    errs = gr.Chan[BaseException](1)

    async def reader() -> None:
        try:
            await r.read(100)
        except BaseException as e:
            await errs.send(e)

    gr.go(reader)
    await gr.sleep(0.02)  # the reader parks in read (procs=1: it ran first)
    fd = r._fd
    r.close()
    os.fstat(fd)  # still ours: the reader holds it
    assert isinstance(await errs.recv(), gr.net.ErrClosed)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by the reader's way out
    with pytest.raises(gr.net.ErrClosed, match="read from a closed pipe"):
        await r.read(1)
    cmd.proc.kill()  # type: ignore[union-attr]
    with pytest.raises(ExitError):
        await cmd.wait()
