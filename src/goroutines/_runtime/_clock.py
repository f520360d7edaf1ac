"""The runtime's clock: real (``time.monotonic``) or virtual (a bubble).

Every time the runtime keeps is read here: the timer heap's "now", the
time ``sleep``, ``Timer``, ``Ticker``, ``after`` and ``tick`` count from
and deliver, context deadlines, socket deadlines and ``gr.monotonic()``.
Outside a bubble ``now`` *is* ``time.monotonic``.

A bubble (``gr.testing.run``, Go's ``testing/synctest``) runs on a
``VirtualClock``: it starts at ``EPOCH`` in every run (so a seeded run
reads the same times every time) and stands still while any goroutine can
make progress; when every goroutine is durably blocked (the runtime is
quiescent: ``Sched.quiescent_locked``), the M that parks last moves it
straight to the earliest timer and fires it. Real time passes meanwhile
only for what the runtime cannot see through: a goroutine in a blocking
call or waiting on a socket holds the virtual clock still (it is not
durably blocked), and code that reads ``time.monotonic()`` itself sees
real time.

One clock per process, as one runtime per process: ``install`` swaps it
in and out under the scheduler's ``_run_lock`` (``start``/``uninstall``).
Callers read ``_clock.now()`` through the module, never bind it.

Guards: ``VirtualClock.t`` is written only by ``advance``, by an M that
holds ``sched.lock`` while every other M is parked; everyone else reads it
racily (a float attribute read is atomic, and no reader can be running
while it changes). The accelerator keeps its own copy of the virtual time
(``_speedups.set_virtual_time``), written at the same moments.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .._accel import speedups

__all__ = ["EPOCH", "VirtualClock", "install", "now", "virtual"]

#: Where every virtual clock starts: the same value in every run, well away
#: from 0 (a deadline of 0 means "none" to the poller).
EPOCH = 1_000_000.0

#: The runtime's clock: ``time.monotonic``, or the bubble's ``VirtualClock.read``.
now: Callable[[], float] = time.monotonic
#: The installed virtual clock, or None.
virtual: VirtualClock | None = None


class VirtualClock:
    """The clock of a bubble: reads ``t``, moved only by ``advance``."""

    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t = EPOCH

    def read(self) -> float:
        return self.t

    def advance(self, when: float) -> None:
        """Move the clock forward to ``when`` (never back). ``sched.lock``
        held, every other M parked."""
        if when > self.t:
            self.t = when
            if speedups is not None and virtual is self:
                speedups.set_virtual_time(when)


def install(clock: VirtualClock | None) -> None:
    """Make ``clock`` (None: the real one) the runtime's clock. ``_run_lock`` held."""
    global now, virtual
    virtual = clock
    now = time.monotonic if clock is None else clock.read
    if speedups is not None:
        speedups.set_virtual_time(None if clock is None else clock.t)
