"""``python -m goroutines run``: run a script's ``async def main()`` under the
runtime, as ``go run`` runs a Go program.

    python -m goroutines run [--procs N] [--trace OUT.json] [--schedtrace MS] SCRIPT [ARGS...]

Flags go before the script; everything after it is the script's (Go's rule):
while it runs, ``sys.argv`` is ``[SCRIPT, *ARGS]`` and ``sys.path[0]`` the
script's directory, as under ``python SCRIPT``. The script is loaded as a
module named ``__mp_main__`` (not ``__main__``), so that its
``if __name__ == "__main__": gr.run(main)`` block does not start a second
runtime; then ``gr.run(main)`` runs its ``main``. ``__mp_main__`` is the
name multiprocessing gives a main script in its child processes, and
``sys.modules["__main__"]`` is the script while it runs: a child (spawn or
forkserver) runs the script as ``__mp_main__`` and finds the functions a
process pool is handed by that name, as under ``python SCRIPT``.

Exit status: 0; 1 if the script raised (traceback printed, as Python does);
2 for a usage error, a missing script or ``main``, or a deadlock (Go's exit
status for a fatal error: the message and the goroutine dump are printed);
130 on Ctrl-C; ``SystemExit``'s code.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from typing import Any

__all__ = ["USAGE", "main"]

USAGE = """\
usage: python -m goroutines run [flags] script.py [args...]

Run script.py's `async def main()` as the main goroutine (gr.run(main)).
Flags come before the script; everything after it is the script's own
arguments (sys.argv = [script.py, *args]). The script is loaded as module
__mp_main__, so its `if __name__ == "__main__":` block does not run.

flags:
  --procs N          the number of Ps (gr.gomaxprocs); default: the CPU count
  --trace OUT.json   record an execution trace of the run to OUT.json
                     (Perfetto / chrome://tracing JSON; GOROUTINES_TRACE=OUT.json)
  --schedtrace MS    print the scheduler's SCHED line to stderr every MS
                     milliseconds (GOROUTINES_DEBUG=schedtrace=MS)
  -h, --help         show this help

exit status: 1 if the script raises, 2 on a usage error or a deadlock,
130 on Ctrl-C, a SystemExit's code
"""

#: The script's module name: not ``__main__``, so its main block does not
#: run; multiprocessing's children know the script by it.
MODULE_NAME = "__mp_main__"

#: The flags that take a value (``--flag VALUE`` or ``--flag=VALUE``).
_FLAGS = ("--procs", "--trace", "--schedtrace")


class _UsageError(Exception):
    pass


def _parse(args: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """Split ``args`` into goroutines' flags and the script's command line
    (the script and its arguments); None for ``--help``."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            return None
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        if name not in _FLAGS:
            raise _UsageError(f"unknown flag {arg!r}")
        if not eq:
            i += 1
            if i == len(args):
                raise _UsageError(f"flag {name} needs a value")
            value = args[i]
        flags[name] = value
        i += 1
    rest = args[i:]
    if not rest:
        raise _UsageError("no script given")
    return flags, rest


def _procs(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise _UsageError(f"--procs must be a positive integer, got {value!r}")
    return n


def _schedtrace(value: str) -> str:
    try:
        ms = float(value)
    except ValueError:
        ms = 0.0
    if not 0 < ms < float("inf"):
        raise _UsageError(f"--schedtrace must be a positive number of milliseconds, got {value!r}")
    return value.strip()


def _set_debug(name: str, value: str) -> None:
    """Set ``name=value`` in ``GOROUTINES_DEBUG``, keeping its other settings."""
    items = [
        item
        for item in os.environ.get("GOROUTINES_DEBUG", "").split(",")
        if item.strip() and item.partition("=")[0].strip() != name
    ]
    items.append(f"{name}={value}")
    os.environ["GOROUTINES_DEBUG"] = ",".join(items)


def main(args: list[str]) -> int:
    """``python -m goroutines run ARGS``; returns the exit status."""
    try:
        parsed = _parse(args)
        if parsed is None:
            sys.stdout.write(USAGE)
            return 0
        flags, (script, *script_args) = parsed
        procs = _procs(flags["--procs"]) if "--procs" in flags else None
        schedtrace = _schedtrace(flags["--schedtrace"]) if "--schedtrace" in flags else None
        trace = flags.get("--trace")
        if trace is not None and not trace:
            raise _UsageError("--trace needs a file name")
    except _UsageError as e:
        sys.stderr.write(
            f"goroutines run: {e}\n{USAGE.splitlines()[0]}\n"
            "(python -m goroutines run --help for the flags)\n"
        )
        return 2
    path = os.path.abspath(script)
    if not os.path.isfile(path):
        why = "No such file" if not os.path.exists(path) else "not a file"
        sys.stderr.write(f"goroutines run: can't open file {script!r}: {why}\n")
        return 2
    # The runtime reads these when it starts (sysmon: GOROUTINES_DEBUG; the
    # tracer: GOROUTINES_TRACE), so they are set before gr.run (and put back
    # after, for a caller in the same process).
    saved_env = {k: os.environ.get(k) for k in ("GOROUTINES_DEBUG", "GOROUTINES_TRACE")}
    saved_argv, saved_path = sys.argv, list(sys.path)
    # Both put back after: a caller may itself be a multiprocessing child.
    saved_main, saved_mp_main = sys.modules["__main__"], sys.modules.get(MODULE_NAME)
    try:
        if schedtrace is not None:
            _set_debug("schedtrace", schedtrace)
        if trace is not None:
            os.environ["GOROUTINES_TRACE"] = os.path.abspath(trace)
        # As ``python script.py``: argv from the script on, its directory first on the path.
        sys.argv = [script, *script_args]
        sys.path[:1] = [os.path.dirname(path)]
        return _run_script(script, path, procs)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        sys.modules["__main__"] = saved_main
        if saved_mp_main is None:
            sys.modules.pop(MODULE_NAME, None)
        else:
            sys.modules[MODULE_NAME] = saved_mp_main
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_script(script: str, path: str, procs: int | None) -> int:
    import goroutines as gr
    from goroutines._runtime._goroutine import is_async_callable

    module = types.ModuleType(MODULE_NAME)
    module.__file__ = path
    # Registered, as an imported module is: ``@dataclass``, pickle and
    # ``typing.get_type_hints`` look the script's classes up in sys.modules.
    sys.modules[MODULE_NAME] = module
    # multiprocessing hands its spawn and forkserver children the main
    # module's __file__ to run (as __mp_main__): this script, not us.
    sys.modules["__main__"] = module
    try:
        with open(path, "rb") as f:
            source = f.read()
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, module.__dict__)
        fn = module.__dict__.get("main")
        if fn is None:
            sys.stderr.write(f"goroutines run: {script} defines no main()\n")
            return 2
        if not callable(fn) or not is_async_callable(fn):
            sys.stderr.write(
                f"goroutines run: main in {script} is not an async function: "
                "define it with `async def main():`\n"
            )
            return 2
        if (why := _needs_arguments(fn)) is not None:
            # Go's main takes none: a script's arguments are its sys.argv.
            sys.stderr.write(
                f"goroutines run: main in {script} must take no arguments ({why}); "
                "read the script's arguments from sys.argv\n"
            )
            return 2
        gr.run(fn, procs=procs)
    except gr.Deadlock as e:
        # Go's fatal error: the message and the dump, no traceback.
        notes = "".join(f"\n{n}" for n in getattr(e, "__notes__", ()))
        sys.stderr.write(f"fatal error: {e}{notes}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("KeyboardInterrupt\n")
        return 130
    except SystemExit as e:
        return _exit_code(e)
    except BaseException as e:
        tb = _user_traceback(e)
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        return 1
    return 0


def _needs_arguments(fn: Any) -> str | None:
    """Why ``fn()`` cannot be called with no arguments, or None if it can
    (or its signature cannot be read)."""
    try:
        inspect.signature(fn).bind()
    except TypeError as e:
        return str(e)
    except ValueError:  # no signature to read: let the call decide
        pass
    return None


def _exit_code(e: SystemExit) -> int:
    """The exit status Python gives ``SystemExit(code)``."""
    code: Any = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)
    sys.stderr.write(f"{code}\n")
    return 1


def _user_traceback(e: BaseException) -> types.TracebackType | None:
    """``e``'s traceback without its leading frames of this package (this
    runner, ``gr.run``, the M stepping the goroutine): as under ``python
    script.py``, it starts in the script. Whole if it never leaves the
    package, except for a SyntaxError in the script: none, as Python shows it."""
    pkg = os.path.dirname(os.path.abspath(__file__)) + os.sep
    tb = t = e.__traceback__
    while t is not None and t.tb_frame.f_code.co_filename.startswith(pkg):
        t = t.tb_next
    if t is not None:
        return t
    return None if isinstance(e, SyntaxError) else tb
