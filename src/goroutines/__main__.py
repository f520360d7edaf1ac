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
          with scheduler counters
  bench   run the benchmark suite against asyncio, uvloop, trio, gevent and
          threads (python -m goroutines bench --help for its options)
"""


def _run(args: list[str]) -> int:
    from ._cmd_run import main as run

    return run(args)


def _demo(args: list[str]) -> int:
    if args:
        sys.stderr.write(f"demo: unexpected arguments: {' '.join(args)}\n\n{USAGE}")
        return 2
    from ._demo import main as demo

    return demo()


def _bench(args: list[str]) -> int:
    from ._bench import main as bench

    return bench(args)


#: Each subcommand: a function of its arguments (those after its name) that
#: returns the exit status, importing what it needs when it runs.
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run,
    "demo": _demo,
    "bench": _bench,
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
