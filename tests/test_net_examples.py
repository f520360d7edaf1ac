"""examples/echo_server.py and examples/fetcher.py run as scripts and print what they should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str) -> str:
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


def test_echo_server() -> None:
    assert run_example("echo_server.py") == "10 clients echoed OK\n"


def test_fetcher() -> None:
    pages = "".join(f"/page/{i}: 200 OK\n" for i in range(1, 10))
    assert run_example("fetcher.py") == pages + "/slow: timed out\n"
