"""Goroutine dumps: Go's SIGQUIT traceback, for ``stack_dump()`` and ``Deadlock``;
grouped by stack (pprof's goroutine profile) for ``stack_dump(group=True)``.

A parked G's stack is its coroutine's await chain: each coroutine's
``cr_frame`` then ``cr_await`` (or a ``types.coroutine`` generator's
``gi_frame`` then ``gi_yieldfrom``), down to the yield that parked it.

The rule for reading another G's frames: only while no M can start
stepping it, and only if it is not running. The caller stops the world
first (``Sched.stop_the_world``: an M that claims a G waits at the gate,
``M.at_gate``), or dumps after the Ms have stopped (the Deadlock dump);
then a G whose status is not RUNNING or SYSCALL stays suspended while we
read it. A G that is RUNNING or SYSCALL is shown without its stack: its
frames are changing under us (on a free-threaded build, reading them could
crash). The calling G's own frames are read from its own thread. (The gate
is a handshake with the Ms that needs a store-load fence on a free-threaded
build: see ``M.at_gate``.)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from ._goroutine import WRAPPER_CODE, G, GStatus, awaited, frame_of, park_site
from ._machine import current_m

__all__ = ["format_g", "stack_dump"]

#: Frames of this package at the top of the caller's stack belong to the dump.
_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


#: A line of a dump's stack: (qualname, filename, line).
Where = tuple[str, str, int]


def _await_frames(coro: Any) -> Iterator[Where]:
    while coro is not None:
        frame = frame_of(coro)
        if frame is not None:
            if frame.f_code is WRAPPER_CODE:
                # ``make_coroutine``'s wrapper of a generator: show the
                # generator, even before the wrapper has started it.
                coro = frame.f_locals["gen"]
                continue
            yield _where(frame)
        else:
            # A C awaitable (the accelerator's channel operation): shown as
            # the reference's frame it stands for, so dumps do not depend on
            # the mode.
            site = park_site(coro)
            if site is not None:
                yield site
        coro = awaited(coro)


def _where(f: FrameType) -> Where:
    code = f.f_code
    return (code.co_qualname, code.co_filename, f.f_lineno)


def _running_frames() -> list[Where]:
    """The calling goroutine's own frames, innermost last, up to its M's loop."""
    frames: list[Where] = []
    f: FrameType | None = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_PKG):  # the dump itself
        f = f.f_back
    while f is not None and not f.f_code.co_filename.endswith("_machine.py"):
        if f.f_code is not WRAPPER_CODE:
            frames.append(_where(f))
        f = f.f_back
    frames.reverse()
    return frames


def _reason(g: G) -> str:
    """``g``'s state as a dump's header shows it, without how long it has waited."""
    status = g.status
    if status == GStatus.WAITING:
        return g.wait_reason.value or "waiting"
    return status.name.lower()


def _waited(g: G, now: float) -> str:
    """How long a waiting ``g`` has waited, for its header ("" under a second)."""
    if g.status != GStatus.WAITING:
        return ""
    waited = now - g.wait_since
    if waited < 1.0:
        return ""
    return f", {waited:.0f} seconds" if waited < 120 else f", {waited / 60:.0f} minutes"


def _body(g: G, me: G | None) -> list[str]:
    """The lines of ``g``'s entry under its header: its stack (innermost
    last), then where it was created."""
    status = g.status
    lines: list[str] = []
    if g is me:
        frames = _running_frames()
    elif status == GStatus.RUNNING or status == GStatus.SYSCALL:
        frames = []
        lines.append("  (running on another thread)")
    else:
        frames = list(_await_frames(g.coro))
    for qualname, filename, line in frames:
        lines.append(f"  {qualname}(...)\n      {filename}:{line}")
    if g.created_by is not None:
        file, line, fn = g.created_by
        lines.append(f"created by {fn}\n      {file}:{line}")
    return lines


def format_g(g: G, now: float, me: G | None) -> str:
    head = f"goroutine {g.id} [{_reason(g)}{_waited(g, now)}]:"
    return "\n".join([head, *_body(g, me)])


def stack_dump(gs: list[G], *, group: bool = False) -> str:
    """The dump of ``gs``: one entry per goroutine, by id (Go's SIGQUIT dump);
    with ``group``, one entry per distinct (state, stack, creator), most
    goroutines first (pprof's goroutine profile, ``debug=1``)."""
    m = current_m()
    me = m.curg if m is not None else None
    ordered = sorted(gs, key=lambda g: g.id)
    if group:
        return _grouped(ordered, me)
    now = time.monotonic()
    return "\n\n".join(format_g(g, now, me) for g in ordered) + "\n"


def _grouped(gs: list[G], me: G | None) -> str:
    """``stack_dump(group=True)``: goroutines with the same wait reason (or
    state), stack and creation site are one group, headed by their count;
    groups by count, descending, ties in order of their lowest goroutine id.
    How long each has waited is left out: it would split a group."""
    counts: dict[tuple[str, tuple[str, ...]], int] = {}  # in order of first appearance
    for g in gs:
        key = (_reason(g), tuple(_body(g, me)))
        counts[key] = counts.get(key, 0) + 1
    blocks = [f"goroutine profile: total {len(gs)}"]
    for (reason, body), n in sorted(counts.items(), key=lambda kv: -kv[1]):  # stable
        head = f"{n} goroutine{'' if n == 1 else 's'}: [{reason}]"
        blocks.append("\n".join([head, *body]))
    return "\n\n".join(blocks) + "\n"
