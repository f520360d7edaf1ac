"""The exceptions of the public API."""

from __future__ import annotations

__all__ = ["Canceled", "ChanClosed", "DeadlineExceeded", "Deadlock"]


class ChanClosed(RuntimeError):
    """Send on a closed channel, or close of a closed channel (a panic in Go)."""


class Deadlock(RuntimeError):
    """Raised by ``run()``: all goroutines are asleep. The message carries the goroutine dump."""


class Canceled(Exception):
    """``ctx.err()`` of a context that was cancelled (Go's ``context.Canceled``)."""


class DeadlineExceeded(TimeoutError):
    """``ctx.err()`` of a context whose deadline passed (Go's ``context.DeadlineExceeded``)."""
