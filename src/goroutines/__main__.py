"""``python -m goroutines``: the command line (``demo``, ``bench``).

Kept to a hand-written dispatch so that ``import goroutines`` never pays for
the demo: each subcommand imports what it needs when it runs.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

USAGE = """\
usage: python -m goroutines <command>

commands:
  demo    run the demo: a prime sieve, a worker pool with a deadline,
          a caught deadlock, a ping-pong timing and blocking calls,
          with scheduler counters
  bench   run the benchmark suite against asyncio, uvloop, trio, gevent and
          threads (python -m goroutines bench --help for its options)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stderr.write(USAGE)
        return 2
    cmd = args[0]
    if cmd in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if cmd == "bench":
        from ._bench import main as bench

        return bench(args[1:])
    if len(args) > 1:
        sys.stderr.write(f"{cmd}: unexpected arguments: {' '.join(args[1:])}\n\n{USAGE}")
        return 2
    if cmd == "demo":
        from ._demo import main as demo

        return demo()
    sys.stderr.write(f"unknown command {cmd!r}\n\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
