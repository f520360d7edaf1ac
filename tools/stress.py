"""Run the stress, race and model tests over many seeds and procs (``make stress``).

Each round runs, in a fresh process::

    python -m pytest -x -q -p no:cacheprovider --capture=sys -m stress tests/ \\
        --hypothesis-seed=SEED

with ``GOROUTINES_SEED=SEED`` (every random choice of the runtime),
``GOROUTINES_TEST_PROCS=P`` (every procs-parametrized test at P only, see
``tests/conftest.py``), ``GOROUTINES_TEST_SWITCHINTERVAL=1e-6`` (the GIL
changes hands as often as CPython allows) and
``GOROUTINES_DEBUG=lockrank=1,shuffle=1`` (shuffle alternates on and off
between rounds). SEED and P come from a master seed printed at the start,
so ``--seed MASTER`` replays the same rounds (at procs > 1 the OS still
decides the interleaving: a failure there is not certain to come back).

A round that runs over ``--round-timeout`` has hung: it gets SIGQUIT (the
runtime prints every goroutine's stack and exits), then SIGKILL. For every
failure the seed, procs and the shell command that replays it are printed,
and its output is kept in ``.stress/<session>/``. At the end: a summary, and
exit status 1 if any round failed.

    python tools/stress.py --minutes 10
    python tools/stress.py --rounds 5 --seed 1234 -- -k chains
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import resource
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
#: How long a hung round gets, after SIGQUIT, to print its dump and exit.
QUIT_GRACE = 15.0


@dataclass
class Round:
    n: int
    seed: int
    procs: int
    shuffle: bool
    env: dict[str, str]
    #: The round's command: ``head`` (interpreter, pytest, options), then
    #: ``select`` (what to run), then ``tail`` (--hypothesis-seed, pytest args).
    head: list[str]
    select: list[str]
    tail: list[str]
    log: Path
    rc: int | None = None
    hung: bool = False
    seconds: float = 0.0
    failed_tests: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.hung or self.rc != 0

    @property
    def argv(self) -> list[str]:
        return [*self.head, *self.select, *self.tail]


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Arguments after `--` are passed to pytest.",
    )
    ap.add_argument("--minutes", type=float, default=10.0, help="run rounds for this long (10)")
    ap.add_argument(
        "--rounds", type=int, default=0, help="stop after this many rounds (0: no limit)"
    )
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=None, help="master seed (random)")
    ap.add_argument("--procs", default="1-8", help="procs to draw from: 1-8, or a list: 1,2,4")
    ap.add_argument(
        "--round-timeout",
        type=float,
        default=100.0,
        help="seconds before a round counts as hung (100; below pytest-timeout's 120 s per "
        "test, so a hang gets the runtime's goroutine dump rather than a thread dump)",
    )
    ap.add_argument("--marker", default="stress", help="pytest -m expression (stress)")
    ap.add_argument("--switchinterval", default="1e-6", help="GOROUTINES_TEST_SWITCHINTERVAL")
    ap.add_argument(
        "--debug",
        default="lockrank=1",
        help="GOROUTINES_DEBUG besides shuffle, which alternates (lockrank=1)",
    )
    ap.add_argument(
        "--shuffle",
        choices=["alternate", "on", "off"],
        default="alternate",
        help="shuffle=1 every other round (alternate), always or never",
    )
    ap.add_argument(
        "--python", default=sys.executable, help="interpreter for the rounds (this one)"
    )
    ap.add_argument(
        "--log-dir", type=Path, default=ROOT / ".stress", help="where logs go (.stress)"
    )
    ap.add_argument("--keep-logs", action="store_true", help="keep the logs of passing rounds too")
    ap.add_argument("--stop-on-failure", action="store_true", help="end at the first failure")
    ap.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def procs_choices(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    if not out or min(out) < 1:
        raise SystemExit(f"stress: bad --procs {spec!r}")
    return out


def shell_command(r: Round, select: list[str] | None = None) -> str:
    """The shell line that replays round ``r`` (from the repository root),
    or runs ``select`` (test ids) instead of the round's selection."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in r.env.items())
    argv = r.argv if select is None else [*r.head, *select, *r.tail]
    return f"{env} {shlex.join([python_for_display(argv[0]), *argv[1:]])}"


def python_for_display(python: str) -> str:
    """``python`` relative to the repository when it is inside it."""
    with contextlib.suppress(ValueError):
        return str(Path(python).relative_to(ROOT))
    return python


def make_round(
    n: int, seed: int, procs: int, shuffle: bool, args: argparse.Namespace, logdir: Path
) -> Round:
    debug = ",".join(x for x in (args.debug, f"shuffle={int(shuffle)}") if x)
    env = {
        "GOROUTINES_SEED": str(seed),
        "GOROUTINES_TEST_PROCS": str(procs),
        "GOROUTINES_TEST_SWITCHINTERVAL": args.switchinterval,
        "GOROUTINES_DEBUG": debug,
    }
    # --capture=sys: output captured at the fd level (pytest's default) is lost
    # when the runtime's SIGQUIT handler writes its dump to fd 2 and _exits.
    head = [args.python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--capture=sys"]
    select = ["-m", args.marker, "tests/"]
    tail = [f"--hypothesis-seed={seed}", *args.pytest_args]
    log = logdir / f"round-{n:04d}-seed{seed}-procs{procs}-shuffle{int(shuffle)}.log"
    return Round(n, seed, procs, shuffle, env, head, select, tail, log)


def _child_setup() -> None:
    """In the round's process, before exec: SIGQUIT and SIGINT as a terminal
    gives them (a shell starts background jobs with both ignored, and an
    ignored signal stays ignored across exec, so the runtime would not
    install its dump), and no core files."""
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_round(r: Round, timeout: float) -> None:
    env = {**os.environ, **r.env}
    env.pop("PYTEST_ADDOPTS", None)  # the replay command must be the whole story
    t0 = time.monotonic()
    with open(r.log, "wb") as out:
        out.write(f"# {shell_command(r)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            r.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C is ours; killpg gets pytest's children too
            preexec_fn=_child_setup,
        )
        try:
            r.rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            r.hung = True
            r.rc = hang(proc, out, timeout)
        except BaseException:  # Ctrl-C: take the round down with us
            kill_group(proc)
            raise
        finally:
            kill_group(proc)  # anything the round left behind
    r.seconds = time.monotonic() - t0
    text = r.log.read_text(errors="replace")
    r.failed_tests = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S*::\S+)", text, re.M)))
    # pytest-timeout's "Timeout" banner names the test it stopped.
    r.failed_tests += [
        t
        for t in re.findall(r"Timeout \+*\s*\n?.*?(tests/\S+::\S+)", text)
        if t not in r.failed_tests
    ][:1]


def dumped_test_frames(text: str) -> list[str]:
    """Test code in a goroutine dump (``fn(...)`` then ``path:line``) or a
    Python thread dump (``File "path", line N, in fn``): ``test_x.py:line fn``."""
    go = re.findall(r"^\s+([\w.<>]+)\(\.\.\.\)\n\s+\S*?(test_\w+\.py:\d+)", text, re.M)
    py = re.findall(r'File "\S*?(test_\w+\.py)", line (\d+), in (\w+)', text)
    found = [f"{where} {fn}" for fn, where in go] + [f"{f}:{n} {fn}" for f, n, fn in py]
    return list(dict.fromkeys(found))


def hang(proc: subprocess.Popen[bytes], out: IO[bytes], timeout: float) -> int:
    """A round that ran over its time: SIGQUIT (the runtime's goroutine
    dump), wait for it, then SIGKILL."""
    out.flush()
    out.write(f"\n# stress: round still running after {timeout:g}s: sending SIGQUIT\n".encode())
    out.flush()
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGQUIT)
    try:
        rc = proc.wait(QUIT_GRACE)
    except subprocess.TimeoutExpired:
        out.write(f"\n# stress: no exit {QUIT_GRACE:g}s after SIGQUIT: SIGKILL\n".encode())
        kill_group(proc)
        rc = proc.wait()
    if rc == -signal.SIGQUIT:
        out.write(
            b"\n# stress: killed by SIGQUIT's default action: no goroutines runtime was"
            b" running (or it had not installed its handler), so there is no goroutine dump\n"
        )
    return rc


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def fmt_time(s: float) -> str:
    return f"{int(s // 60):d}:{int(s % 60):02d}"


def report_failure(r: Round) -> None:
    what = f"HUNG (no end within the round timeout; rc {r.rc})" if r.hung else f"FAILED (rc {r.rc})"
    print(f"\n*** round {r.n} {what}: seed={r.seed} procs={r.procs} shuffle={int(r.shuffle)}")
    text = r.log.read_text(errors="replace")
    for t in r.failed_tests:
        print(f"    failed: {t}")
    if r.hung:
        frames = dumped_test_frames(text)
        print(f"    test code in the dump: {', '.join(frames[:8]) if frames else '(none)'}")
    print(f"    log: {r.log}")
    print("    replay the round (from the repository root):")
    print(f"      {shell_command(r)}")
    if r.failed_tests:
        # Without the [param] suffix: GOROUTINES_TEST_PROCS renames it anyway.
        ids = list(dict.fromkeys(re.sub(r"\[[^\]]*\]$", "", t) for t in r.failed_tests))
        print("    replay just the failing test:")
        print(f"      {shell_command(r, ids)}")
    if r.procs != 1:
        print("    (at procs > 1 the OS picks the interleaving: rerun it a few times,")
        print("     or try GOROUTINES_TEST_PROCS=1, where a seed replays exactly)")
    keep = [
        ln
        for ln in text.splitlines()
        if ln.startswith(("E ", "FAILED", "ERROR", "SIGQUIT", "goroutine "))
    ]
    for ln in keep[:15]:
        print(f"    | {ln[:160]}")
    print(flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Ctrl-C or kill (even when started in the background, where SIGINT comes
    # ignored): stop the running round's process group, print the summary.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if os.sep in args.python:  # a path: absolute, as the rounds run from the root
        args.python = os.path.abspath(args.python)  # not resolve(): keep the venv's symlink
    choices = procs_choices(args.procs)
    master = args.seed if args.seed is not None else secrets.randbits(32)
    rng = random.Random(master)
    session = time.strftime("%Y%m%d-%H%M%S") + f"-m{master}"
    logdir = args.log_dir / session
    logdir.mkdir(parents=True, exist_ok=True)
    budget = args.minutes * 60.0

    replay = f"--seed {master}"
    if args.procs != "1-8":
        replay += f" --procs {args.procs}"
    py = python_for_display(args.python)
    make_py = "" if py == ".venv/bin/python" else f" PYTHON={shlex.quote(py)}"
    print(
        f"stress: master seed {master} "
        f"(same rounds again: make stress{make_py} STRESS_ARGS='{replay}')"
    )
    print(
        f"stress: {args.minutes:g} min{f', at most {args.rounds} rounds' if args.rounds else ''}, "
        f"procs from {sorted(set(choices))}, -m {args.marker!r}, "
        f"GOROUTINES_DEBUG={args.debug or '-'} + shuffle {args.shuffle}, "
        f"switchinterval {args.switchinterval}, round timeout {args.round_timeout:g}s"
    )
    print(
        f"stress: python {args.python} ({sys.version.split()[0]} here); logs in {logdir}",
        flush=True,
    )

    rounds: list[Round] = []
    t0 = time.monotonic()
    deck: list[int] = []
    interrupted = False
    try:
        while time.monotonic() - t0 < budget and not (args.rounds and len(rounds) >= args.rounds):
            n = len(rounds) + 1
            if not deck:  # every procs value once per deck, in a random order
                deck = list(choices)
                rng.shuffle(deck)
            procs = deck.pop()
            seed = rng.getrandbits(32)
            shuffle = {"on": True, "off": False}.get(args.shuffle, n % 2 == 1)
            r = make_round(n, seed, procs, shuffle, args, logdir)
            rounds.append(r)
            print(
                f"[{fmt_time(time.monotonic() - t0)}] round {n:4d} seed={seed:<10d} "
                f"procs={procs} shuffle={int(shuffle)} ... ",
                end="",
                flush=True,
            )
            run_round(r, args.round_timeout)
            status = "HUNG" if r.hung else "ok" if r.rc == 0 else f"FAIL rc={r.rc}"
            print(f"{status} ({r.seconds:.1f}s)", flush=True)
            if r.failed:
                report_failure(r)
                if args.stop_on_failure:
                    break
            elif not args.keep_logs:
                r.log.unlink(missing_ok=True)
    except KeyboardInterrupt:
        interrupted = True
        if rounds and rounds[-1].rc is None:
            rounds.pop().log.unlink(missing_ok=True)
        print("\nstress: interrupted", flush=True)

    return summary(rounds, time.monotonic() - t0, master, logdir, interrupted)


def summary(
    rounds: list[Round], elapsed: float, master: int, logdir: Path, interrupted: bool
) -> int:
    failed = [r for r in rounds if r.failed]
    print()
    print(f"stress summary: master seed {master}, {fmt_time(elapsed)} elapsed")
    print(
        f"  rounds {len(rounds)}, passed {len(rounds) - len(failed)}, failed {len(failed)}"
        f" (hung {sum(r.hung for r in failed)})"
    )
    by_procs = Counter(r.procs for r in rounds)
    fail_procs = Counter(r.procs for r in failed)
    print(
        "  per procs (rounds/failed): "
        + "  ".join(f"{p}: {by_procs[p]}/{fail_procs[p]}" for p in sorted(by_procs))
    )
    for sh in (True, False):
        rs = [r for r in rounds if r.shuffle == sh]
        if rs:
            print(f"  shuffle={int(sh)}: {len(rs)} rounds, {sum(r.failed for r in rs)} failed")
    if rounds:
        secs = sorted(r.seconds for r in rounds)
        print(f"  round time: median {secs[len(secs) // 2]:.1f}s, max {secs[-1]:.1f}s")
    if failed:
        tests = Counter(t for r in failed for t in (r.failed_tests or ["(no test named)"]))
        print("  failing tests:")
        for t, k in tests.most_common():
            print(f"    {k:3d}x {t}")
        print("  failed rounds:")
        for r in failed:
            print(
                f"    round {r.n}: seed={r.seed} procs={r.procs} shuffle={int(r.shuffle)}"
                f"{' HUNG' if r.hung else ''} -> {r.log}"
            )
            print(f"      {shell_command(r)}")
    else:
        with contextlib.suppress(OSError):
            logdir.rmdir()  # empty: nothing to keep
    if failed:
        return 1
    if interrupted:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
