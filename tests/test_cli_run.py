"""``python -m goroutines run script.py [args...]``: a script's ``async def main``
run under the runtime, as ``go run`` does (``goroutines._cmd_run``).

The runs are subprocesses (exit statuses, stderr, a fresh runtime); the
usage errors, which start no runtime, are checked in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from goroutines.__main__ import main as cli
from helpers import signal_when_ready


def script(tmp_path: Path, source: str, name: str = "prog.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("GOROUTINES_DEBUG", "GOROUTINES_TRACE")
    }
    return subprocess.run(
        [sys.executable, "-m", "goroutines", "run", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={**base, "PYTHONIOENCODING": "utf-8", **(env or {})},
    )


def test_runs_main_with_the_scripts_args_and_procs(tmp_path: Path) -> None:
    """Flags before the script are ours, everything after it the script's
    (even ``--procs``); the script's directory is sys.path[0]; its
    ``if __name__ == "__main__"`` block does not run."""
    (tmp_path / "sibling.py").write_text("SQUARE = lambda x: x * x\n")
    path = script(
        tmp_path,
        """
        import sys
        import goroutines as gr
        from sibling import SQUARE

        async def square(x: int, out: gr.Chan[int]) -> None:
            await out.send(SQUARE(x))

        async def main() -> None:
            out: gr.Chan[int] = gr.Chan()
            nums = [int(a) for a in sys.argv[1:4]]
            for n in nums:
                gr.go(square, n, out)
            got = sorted([await out.recv() for _ in nums])
            print(sys.argv[1:], got, gr.gomaxprocs(), __name__)

        if __name__ == "__main__":
            print("main block ran")
            gr.run(main)
        """,
    )
    r = run("--procs", "3", path, "1", "2", "3", "--procs", "9", cwd=tmp_path.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "['1', '2', '3', '--procs', '9'] [1, 4, 9] 3 __mp_main__\n"
    assert r.stderr == ""


def test_missing_script(tmp_path: Path) -> None:
    r = run(tmp_path / "nope.py")
    assert r.returncode == 2
    assert "nope.py" in r.stderr and "can't open file" in r.stderr


def test_main_that_raises_prints_the_traceback_and_exits_1(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        """
        async def main() -> None:
            raise ValueError("boom")
        """,
    )
    r = run(path)
    assert r.returncode == 1
    assert r.stderr.startswith("Traceback (most recent call last):\n"), r.stderr
    assert f'File "{path}", line 3, in main' in r.stderr
    assert r.stderr.endswith("ValueError: boom\n")
    assert "_cmd_run.py" not in r.stderr  # the traceback starts in the script


def test_deadlock_exits_2_with_the_dump(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        """
        import goroutines as gr

        async def main() -> None:
            await gr.Chan().recv()
        """,
    )
    r = run(path)
    assert r.returncode == 2
    assert r.stderr.startswith("fatal error: all goroutines are asleep - deadlock!"), r.stderr
    assert "goroutine 1 [chan receive]:" in r.stderr
    assert "Traceback" not in r.stderr


def test_system_exit_gives_its_code(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        """
        import sys

        async def main() -> None:
            sys.exit(3)
        """,
    )
    r = run(path)
    assert (r.returncode, r.stderr) == (3, "")


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        """
        import goroutines as gr

        async def main() -> None:
            print("ready", flush=True)
            await gr.sleep(30)
        """,
    )
    proc, elapsed = signal_when_ready(
        f"import sys\nfrom goroutines.__main__ import main\nsys.exit(main(['run', {str(path)!r}]))",
        signal.SIGINT,
    )
    assert proc.returncode == 130, proc.stderr
    assert elapsed < 5


def test_schedtrace_prints_sched_lines(tmp_path: Path) -> None:
    """``--schedtrace MS`` is merged into GOROUTINES_DEBUG (replacing its
    schedtrace, keeping the rest: scheddetail's per-P lines) before the
    runtime starts."""
    path = script(
        tmp_path,
        """
        import goroutines as gr

        async def main() -> None:
            await gr.sleep(0.3)
        """,
    )
    r = run("--schedtrace", "50", path, env={"GOROUTINES_DEBUG": "schedtrace=100000,scheddetail=1"})
    assert r.returncode == 0, r.stderr
    sched = [line for line in r.stderr.splitlines() if line.startswith("SCHED ")]
    assert len(sched) >= 2, r.stderr
    assert "\n  P0: status=" in r.stderr, r.stderr


def test_trace_sets_goroutines_trace(tmp_path: Path) -> None:
    """``--trace OUT`` hands the tracer its (absolute) path in GOROUTINES_TRACE;
    what the tracer writes is tested with the tracer."""
    path = script(
        tmp_path,
        """
        import os

        async def main() -> None:
            print(os.environ.get("GOROUTINES_TRACE"))
        """,
    )
    r = run("--trace=out.json", path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'out.json'}\n"


# In-process: these start no runtime.


def test_no_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The script is __main__ and __mp_main__ while it runs (for
    # multiprocessing's children), and the caller's are put back after:
    # importing multiprocessing makes __mp_main__ an alias of __main__.
    main_module, mp_main = sys.modules["__main__"], sys.modules.get("__mp_main__")
    path = script(tmp_path, "x = 1\n", name="nomain.py")
    assert cli(["run", str(path)]) == 2
    assert f"{path} defines no main()" in capsys.readouterr().err
    assert sys.modules["__main__"] is main_module
    assert sys.modules.get("__mp_main__") is mp_main
    for mine in (types.ModuleType("__mp_main__"), None):
        if mine is None:
            sys.modules.pop("__mp_main__", None)
        else:
            sys.modules["__mp_main__"] = mine
        try:
            assert cli(["run", str(path)]) == 2
            assert sys.modules.get("__mp_main__") is mine
        finally:
            if mp_main is None:
                sys.modules.pop("__mp_main__", None)
            else:
                sys.modules["__mp_main__"] = mp_main


def test_sync_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(tmp_path, "def main() -> None:\n    pass\n", name="syncmain.py")
    assert cli(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"main in {path} is not an async function" in err and "async def" in err


def test_main_that_takes_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Go's main takes none: a main(n) is refused before the runtime starts,
    naming what is missing and where the arguments are, not a TypeError
    raised inside the run."""
    path = script(tmp_path, "async def main(n, m=2):\n    pass\n", name="argmain.py")
    assert cli(["run", str(path), "10"]) == 2
    err = capsys.readouterr().err
    assert f"main in {path} must take no arguments" in err
    assert "missing a required argument: 'n'" in err and "sys.argv" in err
    # Defaults, *args and **kwargs are fine: main() can be called.
    path = script(tmp_path, "async def main(n=1, *a, **k):\n    print(n)\n", name="ok.py")
    r = run(path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "1\n", "")


def test_syntax_error_is_shown_as_python_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = script(tmp_path, "x = (\n", name="bad.py")
    assert cli(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert f'File "{path}", line 1' in err and "SyntaxError" in err
    assert "Traceback" not in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m goroutines run")
    for flag in ("--procs", "--trace", "--schedtrace", "Perfetto"):
        assert flag in out
    assert cli(["--help"]) == 0
    assert "python -m goroutines run" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no script given"),
        (["--procs", "0", "x.py"], "--procs must be a positive integer, got '0'"),
        (["--procs=four", "x.py"], "--procs must be a positive integer, got 'four'"),
        (["--procs"], "flag --procs needs a value"),
        (["--schedtrace", "-5", "x.py"], "--schedtrace must be a positive number"),
        (["--trace=", "x.py"], "--trace needs a file name"),
        (["--verbose", "x.py"], "unknown flag '--verbose'"),
    ],
)
def test_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["run", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "usage: python -m goroutines run" in err
