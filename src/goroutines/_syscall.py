"""Blocking calls: ``await gr.syscall(fn, ...)`` and ``@gr.blocking`` (Go's entersyscall).

The goroutine's own M makes the call, so a call that returns at once costs
little more than the call (no thread switch, no queue). If it blocks, sysmon
hands the M's P, with the goroutines queued on it, to another M; see
``_runtime._sysmon`` for the threshold and ``M.syscall`` for the way back.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any, ParamSpec, TypeVar

from ._runtime._goroutine import SYSCALL, is_async_callable
from ._runtime._scheduler import current_g

__all__ = ["blocking", "syscall"]

T = TypeVar("T")
P = ParamSpec("P")


def _check(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} needs a callable, got {fn!r}")
    if is_async_callable(fn):
        raise TypeError(
            f"{what} runs a plain blocking function; {fn!r} is async: await it directly"
        )


@types.coroutine
def _syscall(
    fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Generator[Any, None, T]:
    g = current_g()
    g.elem = (fn, args, kwargs)
    yield SYSCALL
    v = g.elem
    g.elem = None
    if g.success:
        return v  # type: ignore[no-any-return]
    raise v


def syscall(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
    """Run the blocking function ``fn(*args, **kwargs)`` without stalling other goroutines.

    It runs on the calling goroutine's OS thread; if it blocks longer than
    a sysmon round, the processor is handed to another thread so the other
    goroutines keep running. Its result is returned and its exception raised.
    """
    _check(fn, "syscall()")
    return _syscall(fn, args, kwargs)


def blocking(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """Decorate a plain blocking function so that calling it returns an awaitable
    that runs it through ``gr.syscall``."""
    _check(fn, "blocking()")

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        return _syscall(fn, args, kwargs)

    return wrapper
