"""Which implementation of the hot paths runs: the C accelerator or the reference.

Like asyncio (``_asyncio`` under ``asyncio.Future``), goroutines has one
implementation of each hot operation in Python, the reference, and an
optional C accelerator, ``goroutines._speedups``, built by ``pip install``
(``setup.py``; skipped if it cannot be compiled). Both run under one test
suite with the same behaviour. The C module is used unless

- ``GOROUTINES_PURE=1`` is set (any value but empty or ``0``), read once,
  at import;
- it is not built (an ImportError: no compiler at install time);
- it is stale: built for an older ``API_VERSION`` than this code expects
  (a checkout updated without rebuilding), which also warns.

``MODE`` says which ("c" or "pure"; re-exported as
``goroutines.__speedups__``), and ``WHY_PURE`` why the reference runs.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

__all__ = ["API_VERSION", "MODE", "WHY_PURE", "speedups"]

#: The version of the C module's interface that this Python code expects
#: (``API_VERSION`` in ``_speedups.c``).
API_VERSION = 15

speedups: ModuleType | None = None
WHY_PURE = ""

if os.environ.get("GOROUTINES_PURE", "") not in ("", "0"):
    WHY_PURE = "GOROUTINES_PURE is set"
else:
    try:
        from . import _speedups as _mod  # type: ignore[attr-defined]
    except ImportError as e:
        WHY_PURE = f"the C extension is not built ({e})"
    else:
        if getattr(_mod, "API_VERSION", None) == API_VERSION:
            speedups = _mod
        else:
            WHY_PURE = (
                f"the C extension is stale (API_VERSION {getattr(_mod, 'API_VERSION', None)}, "
                f"this code needs {API_VERSION}): reinstall goroutines to rebuild it"
            )
            warnings.warn(f"goroutines: {WHY_PURE}", RuntimeWarning, stacklevel=2)

#: "c" when the accelerator runs, "pure" when the reference does.
MODE = "pure" if speedups is None else "c"
