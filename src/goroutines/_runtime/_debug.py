"""``GOROUTINES_DEBUG``: the runtime's debug settings (Go's ``GODEBUG``).

A comma-separated list of ``name=value`` settings, read by the modules that
use them (sysmon: ``schedtrace``, ``scheddetail``, ``slowgoroutine``; the
scheduler: ``shuffle``; ``_lockrank``: ``lockrank``). Here so that a module
low in the import order (``_lockrank``, imported by every module that makes
a lock) can read them without importing sysmon.
"""

from __future__ import annotations

import os

__all__ = ["_debug_flag", "_debug_setting"]


def _debug_setting(name: str) -> str | None:
    """The value of ``name`` in ``GOROUTINES_DEBUG`` (comma-separated
    ``name=value`` settings, as Go's ``GODEBUG``), None when absent."""
    for item in os.environ.get("GOROUTINES_DEBUG", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == name:
            return value
    return None


def _debug_flag(name: str) -> bool:
    """``GOROUTINES_DEBUG=name=1`` (or ``=0``). ``scheddetail``: the SCHED
    trace adds a line per P, M and G; ``shuffle``: perturb scheduling;
    ``lockrank``: check the lock order (``_lockrank``)."""
    value = _debug_setting(name)
    if value is None or value.strip() == "0":
        return False
    if value.strip() == "1":
        return True
    raise ValueError(f"GOROUTINES_DEBUG: {name} must be 0 or 1, got {value!r}")
