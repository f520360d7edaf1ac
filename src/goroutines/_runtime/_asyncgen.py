"""Async generators dropped half-way: their ``aclose()`` runs as a goroutine.

An async generator left suspended (a ``break`` out of ``async for``, an
exception in the loop's body, a goroutine closed at the end of a run) is
finalized by the garbage collector, on whatever thread drops it. Without a
hook, CPython throws GeneratorExit into it there and then, outside any
goroutine: a ``finally`` or ``async with`` in it that waits (closing a TLS
connection, a channel send) cannot, and the park it tried is abandoned
half-made. Python's answer is ``sys.set_asyncgen_hooks``, which asyncio and
trio use to run ``aclose()`` in their own loop; each M sets ours when it
starts (the hooks are per thread, and goroutine code runs only on Ms).

The finalizer can run wherever the collector runs: on an M holding
``Sched.lock``, or half-way through changing its P's queues, or on a thread
of the user's. So it does not start the goroutine itself; it appends the
generator to ``Sched.agens`` (a deque: append and popleft are atomic, no
lock), and a goroutine per generator is started (``drain``) by an M about
to park (``park_idle``: it holds no lock, and owns its P), or by sysmon
while every M stays busy. An M that dropped a generator passes through
``park_idle`` before it can park, so a generator is never left waiting
while the runtime idles (or reports a deadlock); one dropped on a thread of
the user's waits for sysmon's next look. Not at the top of
``find_runnable``: a timer's wake-up goes through there, and the check
cost 1 % of a ``sleep`` (callgrind). A run that is closing runs the rest itself (``_close_all``):
each ``aclose`` from its start, on the terms of a goroutine left over (a
``finally`` that waits gets a RuntimeError). A generator dropped
after its run ended is closed on the spot, as CPython would.

An exception raised by a generator's ``finally`` is logged on the
``goroutines.asyncgen`` logger (as trio does; Python reports it as
"Exception ignored in"), not raised: no caller is left to receive it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import copy_context
from functools import partial
from typing import TYPE_CHECKING, Any

from ._goroutine import new_g

if TYPE_CHECKING:
    from ._scheduler import Sched

__all__ = ["aclose", "drain", "install_hooks", "take"]

_log = logging.getLogger("goroutines.asyncgen")

_HINT = (
    "it was dropped without aclose(): close it where it is used "
    "(async with contextlib.aclosing(agen)) to see this error there"
)


def _finalize(sched: Sched, agen: Any) -> None:
    """The ``finalizer`` hook. Any thread, any locks held: see the docstring."""
    from . import _scheduler

    if _scheduler.current is sched:
        sched.agens.append(agen)
        return
    try:  # the run is over: close it here, as CPython would
        agen.aclose().send(None)
    except StopIteration:
        pass
    except Exception as e:  # a RuntimeError if it tried to wait: nobody can wake it
        _log.error("Exception ignored while finalizing %r (%s)", agen, _HINT, exc_info=e)


def install_hooks(sched: Sched) -> None:
    """Set this thread's async generator hooks to ``sched``'s. Called by an
    M's thread when it starts."""
    sys.set_asyncgen_hooks(firstiter=None, finalizer=partial(_finalize, sched))


async def aclose(agen: Any) -> None:
    """A finalizing goroutine's body: ``agen.aclose()``, its error logged."""
    try:
        await agen.aclose()
    except Exception as e:
        _log.error("Exception ignored while finalizing %r (%s)", agen, _HINT, exc_info=e)


def take(sched: Sched) -> list[Any]:
    """Take every generator the finalizer has queued."""
    q = sched.agens
    out = []
    while True:
        try:
            out.append(q.popleft())
        except IndexError:
            return out


def drain(sched: Sched) -> None:
    """Start a goroutine to ``aclose()`` each generator the finalizer
    queued: onto our P's run queue on an M (``park_idle``), else onto the
    global queue (sysmon). Holding no lock. The thread closing a run runs
    them itself (``_run._close_all``)."""
    gs = [new_g(sched.goidbatch(None), aclose(agen), copy_context(), None) for agen in take(sched)]
    for gp in gs:
        sched.allgs[gp.id] = gp
    if gs:
        sched.injectglist(gs)
