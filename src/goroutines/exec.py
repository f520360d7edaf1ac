"""Running programs from goroutines (Go's ``os/exec``), on the poller.

::

    out = await gr.exec.command("git", "rev-parse", "HEAD").output()
    await gr.exec.command("make", "test", cwd=repo).run()   # ExitError unless it exits 0

    cmd = gr.exec.command("sort")
    w, r = cmd.stdin_pipe(), cmd.stdout_pipe()   # conn-like: read/write/close
    cmd.start()
    await w.write(b"b\\na\\n"); w.close()
    print(await gr.bufio.Reader(r).read())        # b"a\\nb\\n"
    await cmd.wait()

Waiting costs no thread: the process's pidfd (Linux 5.3+) is on the
runtime's poller, and so are the pipes. Where ``os.pidfd_open`` is missing
or refused, ``wait`` falls back to ``gr.syscall(proc.wait)`` (a thread per
waiting goroutine). ``ctx`` done kills the process (SIGKILL, as Go does;
``cancel=`` replaces that, e.g. with ``Process.terminate``) and ``wait``
raises ``ctx.err()``. A non-zero exit raises ``ExitError`` (the code, and
the end of stderr when it was captured); a missing program raises
``FileNotFoundError`` naming it. The process is always reaped and every
pipe closed by ``wait`` (no zombie, no fd left open).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, final

from ._chan import Chan
from ._context import Context
from ._run import go
from ._runtime import poll_open
from ._runtime._netpoll import ErrClosed
from ._select import select
from ._syscall import syscall

__all__ = ["Cmd", "ExitError", "Pipe", "command"]

#: How much of stderr an ``ExitError`` keeps.
STDERR_TAIL = 4096


class ExitError(Exception):
    """The program exited with a non-zero code (or was killed by a signal:
    ``code`` is then minus the signal number, as ``Popen.returncode``)."""

    def __init__(self, args: Sequence[str], code: int, stderr: bytes) -> None:
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        tail = stderr[-STDERR_TAIL:]
        super().__init__(
            f"{args[0]}: {how}" + (f": {tail.decode(errors='replace')}" if tail else "")
        )
        self.code = code
        self.stderr = tail


@final
class Pipe:
    """One end of a pipe to or from a process, on the poller: ``read(n)``
    (``b""`` at the end) or ``write(data)`` (all of it), and ``close()``.
    For one goroutine at a time; ``close`` may come from any goroutine and
    wakes the one waiting with ``ErrClosed``."""

    # The fd is closed by whoever drops the last reference, as net's _FD
    # does: a read on another M may be between "read the fd number" and
    # "os.read" when close runs, and a number closed under it could be
    # reused by a file opened meanwhile, whose data the stray read would
    # take. ``_lock`` (plain, a leaf: nothing is taken while it is held)
    # guards ``_refs`` and ``closed``.

    __slots__ = ("_fd", "_lock", "_pd", "_refs", "closed")

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._pd = poll_open(fd)
        self._lock = threading.Lock()
        self._refs = 0
        self.closed = False

    def _incref(self, what: str) -> None:
        with self._lock:
            if self.closed:
                raise ErrClosed(f"{what} a closed pipe")
            self._refs += 1

    def _decref(self) -> None:
        with self._lock:
            self._refs -= 1
            last = self.closed and self._refs == 0
        if last:
            os.close(self._fd)

    async def read(self, n: int) -> bytes:
        self._incref("read from")
        try:
            while True:
                try:
                    return os.read(self._fd, n)
                except BlockingIOError:
                    await self._pd.wait(False)
        finally:
            self._decref()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self._incref("write to")
        try:
            while view:
                try:
                    n = os.write(self._fd, view)
                except BlockingIOError:
                    await self._pd.wait(True)
                    continue
                view = view[n:]
        finally:
            self._decref()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            last = self._refs == 0
        self._pd.evict()  # wakes a waiter with ErrClosed
        if last:
            os.close(self._fd)


def command(
    name: str,
    *args: str,
    ctx: Context | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    cancel: Callable[[subprocess.Popen[bytes]], Any] | None = None,
) -> Cmd:
    """A command to run: ``name`` (looked up on PATH) with ``args``."""
    if not isinstance(name, str) or not all(isinstance(a, str) for a in args):
        raise TypeError("command: the program and its arguments must be strs")
    return Cmd([name, *args], ctx, cwd, env, cancel)


@final
class Cmd:
    """A program to run, made by ``command``; ``start`` it once."""

    def __init__(
        self,
        args: list[str],
        ctx: Context | None,
        cwd: Any,
        env: Mapping[str, str] | None,
        cancel: Callable[[subprocess.Popen[bytes]], Any] | None,
    ) -> None:
        self.args = args
        self.ctx = ctx
        self.cwd = cwd
        self.env = env
        self.cancel = cancel
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._child_fds: dict[str, int] = {}  # the child's ends, closed after the start
        self._pipes: dict[str, Pipe] = {}
        self._stderr = b""

    def _pipe(self, which: str) -> Pipe:
        if self.proc is not None:
            raise RuntimeError(f"{which}_pipe() after start()")
        if which in self._pipes:
            raise RuntimeError(f"{which}_pipe() called twice")
        r, w = os.pipe()
        ours, theirs = (w, r) if which == "stdin" else (r, w)
        self._child_fds[which] = theirs
        self._pipes[which] = p = Pipe(ours)
        return p

    def stdin_pipe(self) -> Pipe:
        """A pipe to the program's stdin (close it to send end-of-file)."""
        return self._pipe("stdin")

    def stdout_pipe(self) -> Pipe:
        """A pipe from the program's stdout."""
        return self._pipe("stdout")

    def stderr_pipe(self) -> Pipe:
        """A pipe from the program's stderr."""
        return self._pipe("stderr")

    def start(self) -> None:
        """Start the program (FileNotFoundError if there is none such)."""
        if self.proc is not None:
            raise RuntimeError("start() called twice")
        fds = self._child_fds
        try:
            self.proc = subprocess.Popen(
                self.args,
                stdin=fds.get("stdin"),
                stdout=fds.get("stdout"),
                stderr=fds.get("stderr"),
                cwd=self.cwd,
                env=None if self.env is None else dict(self.env),
            )
        except BaseException:
            for p in self._pipes.values():
                p.close()
            raise
        finally:
            for fd in fds.values():
                os.close(fd)
            fds.clear()

    async def wait(self) -> None:
        """Wait for the program to exit, reap it and close its pipes.
        ``ctx.err()`` if the context ended it; ``ExitError`` if it exited
        with a non-zero code."""
        proc = self.proc
        if proc is None:
            raise RuntimeError("wait() before start()")
        ctx = self.ctx
        finished: Chan[None] = Chan()
        if ctx is not None:

            async def watch() -> None:
                i, _ = await select(ctx.done().recv, finished.recv)
                if i == 0 and proc.returncode is None:
                    (self.cancel or _kill)(proc)

            go(watch)
        try:
            self.returncode = await _wait_exit(proc)
        finally:
            finished.close()
            for p in self._pipes.values():
                p.close()
        if ctx is not None and ctx.err() is not None:
            err = ctx.err()
            assert err is not None
            raise err(f"{self.args[0]}: the context is done; the process was stopped")
        if self.returncode != 0:
            raise ExitError(self.args, self.returncode, self._stderr)

    async def run(self) -> None:
        """``start()``, then ``wait()``."""
        self.start()
        await self.wait()

    async def output(self) -> bytes:
        """Run the program and return its stdout; an ``ExitError`` carries
        the end of its stderr."""
        out = self.stdout_pipe()
        err = self.stderr_pipe()
        return await self._collect(out, err)

    async def combined_output(self) -> bytes:
        """Run the program and return its stdout and stderr, interleaved."""
        out = self.stdout_pipe()
        self._child_fds["stderr"] = os.dup(self._child_fds["stdout"])
        return await self._collect(out, None)

    async def _collect(self, out: Pipe, err: Pipe | None) -> bytes:
        self.start()
        errs: Chan[bytes] = Chan(1)
        if err is not None:

            async def drain() -> None:
                await errs.send(await _read_all(err))

            go(drain)
        data = await _read_all(out)
        if err is not None:
            self._stderr = await errs.recv() or b""
        await self.wait()
        return data


async def _read_all(p: Pipe) -> bytes:
    chunks = []
    while chunk := await p.read(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """Wait for ``proc`` to exit and reap it: on its pidfd on the poller,
    else (no pidfd) in a blocking call."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return await syscall(proc.wait)
    pd = poll_open(pidfd)
    try:
        while (code := proc.poll()) is None:
            await pd.wait(False)
        return code
    finally:
        pd.evict()
        os.close(pidfd)
