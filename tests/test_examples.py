"""examples/*.py: each runs as printed and prints what it should; README shows worker_pool.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(params=["python", "goroutines run"])
def how(request: pytest.FixtureRequest) -> str:
    """How the examples are run: ``python example.py`` or ``python -m
    goroutines run example.py`` (which must not run main twice)."""
    return str(request.param)


def run_example(name: str, *args: str, how: str = "python") -> str:
    runner = ["-m", "goroutines", "run"] if how == "goroutines run" else []
    r = subprocess.run(
        [sys.executable, *runner, str(EXAMPLES / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


def test_worker_pool(how: str) -> None:
    out = run_example("worker_pool.py", how=how)
    m = re.fullmatch(r"(\d+) of 100 jobs done before the deadline: DeadlineExceeded\n", out)
    assert m is not None, out
    # 4 workers, 10 ms per job, a 0.1 s deadline: some but never all of the jobs.
    assert 0 < int(m[1]) < 100


def test_prime_sieve(how: str) -> None:
    assert run_example("prime_sieve.py", how=how) == (
        "2 3 5 7 11 13 17 19 23 29 31 37 41 43 47 53 59 61 67 71 73 79 83 89 97\n"
    )
    primes = run_example("prime_sieve.py", "200", how=how).split()
    assert len(primes) == 200 and primes[-1] == "1223"


def test_pipeline(how: str) -> None:
    expected = sum(i * i for i in range(1, 1001))
    out = run_example("pipeline.py", how=how)
    assert out == f"sum of the squares of 1..1000: {expected} (1000 values)\n"


@pytest.mark.parametrize(
    "path",
    sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("test_")),
    ids=lambda p: p.name,
)
def test_examples_are_short(path: Path) -> None:
    # The example programs; test_heartbeat.py is a test file (README "Testing").
    # http_server.py is a whole HTTP/1.1 server (benchmark W10's; tests/test_http_server.py).
    limit = 80 if path.name == "http_server.py" else 40
    assert len(path.read_text().splitlines()) < limit


def test_readme_example_is_worker_pool() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = (EXAMPLES / "worker_pool.py").read_text()
    assert example in blocks, "README.md must show examples/worker_pool.py verbatim"


def test_echo_server(how: str) -> None:
    assert run_example("echo_server.py", how=how) == "10 clients echoed OK\n"


def test_fetcher(how: str) -> None:
    pages = "".join(f"/page/{i}: 200 OK\n" for i in range(1, 10))
    assert run_example("fetcher.py", how=how) == pages + "/slow: timed out\n"


def _pytest_outcome(path: Path, cwd: Path, *args: str) -> str:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            str(path),
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_heartbeat_test_file() -> None:
    # README "Testing": the example test file passes as shipped (its timeout
    # test is a strict xfail), at procs 1 and 4.
    for procs in ("1", "4"):
        last = _pytest_outcome(EXAMPLES / "test_heartbeat.py", ROOT, f"--goroutines-procs={procs}")
        assert re.match(r"4 passed, 1 xfailed in ", last), last


def test_readme_testing_example_runs(tmp_path: Path) -> None:
    # The README's copy of that file runs too (it may not drift from it).
    readme = (ROOT / "README.md").read_text()
    start = readme.index("A complete test file, `examples/test_heartbeat.py`")
    block = re.search(r"```python\n(.*?)```", readme[start:], re.S)
    assert block is not None
    (tmp_path / "test_readme_heartbeat.py").write_text(block[1])
    last = _pytest_outcome(tmp_path / "test_readme_heartbeat.py", tmp_path)
    assert re.match(r"4 passed, 1 xfailed in ", last), last


def test_process_pool(how: str) -> None:
    """Under goroutines run too: the pool's forkserver children find the
    script's function (it was loaded as ``__goroutines_main__``, which no
    child could import: BrokenProcessPool)."""
    out = run_example("process_pool.py", how=how)
    assert out == "the longest Collatz chain below 200001 takes 382 steps\n"


def test_asyncio_client() -> None:
    pytest.importorskip("httpx")  # a dev extra: there under make test
    assert run_example("asyncio_client.py") == "20 replies, e.g. 'hello from /0'\n"


def test_readme_streams_and_processes_example(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Streams and processes")
    section = readme[start : readme.index("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    outputs = ["b'Linux\\n'\n[b'apple', b'pear']\n", "TLSv1.3 b'HELLO OVER TLS'\n"]
    assert len(blocks) == len(outputs)
    for i, (block, expected) in enumerate(zip(blocks, outputs, strict=True)):
        script = tmp_path / f"streams{i}.py"
        script.write_text("import goroutines as gr\n" + block + "\ngr.run(main)\n")
        r = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout == expected
