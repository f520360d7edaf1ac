"""``python -m goroutines``: the command line (``run``, ``demo``, ``bench``).

Kept to a hand-written dispatch so that ``import goroutines`` never pays for
the demo: each subcommand imports what it needs when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["main"]

USAGE = """\
usage: python -m goroutines <command> [args...]

commands:
  run     run a script's `async def main()` under the runtime, as `go run`:
          python -m goroutines run [--procs N] [--trace OUT.json]
          [--schedtrace MS] script.py [args...]
          (python -m goroutines run --help for its options)
  demo    run the demo: a prime sieve, a worker pool with a deadline,
          a caught deadlock, a ping-pong timing and blocking calls,
          with scheduler counters; `demo --trace OUT.json` records an
          execution trace of its worker pool
  trace   read an execution trace: summary, plot, check
          (python -m goroutines trace --help)
  bench   run the benchmark suite against asyncio, uvloop, trio, gevent and
          threads (python -m goroutines bench --help for its options)
"""


def _run(args: list[str]) -> int:
    from ._cmd_run import main as run

    return run(args)


def _demo(args: list[str]) -> int:
    trace = None
    if len(args) == 2 and args[0] == "--trace" and args[1]:
        trace = args[1]
    elif len(args) == 1 and args[0].startswith("--trace=") and len(args[0]) > 8:
        trace = args[0][8:]
    elif args:
        sys.stderr.write(f"demo: unexpected arguments: {' '.join(args)}\n\n{USAGE}")
        return 2
    from ._demo import main as demo

    return demo(trace)


def _trace(args: list[str]) -> int:
    from ._tracetool import main as trace

    return trace(args)


def _bench(args: list[str]) -> int:
    from ._bench import main as bench

    return bench(args)


#: Each subcommand: a function of its arguments (those after its name) that
#: returns the exit status, importing what it needs when it runs.
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run,
    "demo": _demo,
    "bench": _bench,
    "trace": _trace,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stderr.write(USAGE)
        return 2
    cmd = args[0]
    if cmd in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    command = COMMANDS.get(cmd)
    if command is None:
        sys.stderr.write(f"unknown command {cmd!r}\n\n{USAGE}")
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
