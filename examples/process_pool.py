"""CPU-bound Python on every core: goroutines hand it to processes and wait.

Each goroutine of a Group submits a chunk to a process pool and parks in
gr.wait_future: no thread waits, and an error would come back to wait().
"""

import concurrent.futures
import multiprocessing

import goroutines as gr


def max_steps(lo: int, hi: int) -> int:
    """The longest Collatz chain that starts in [lo, hi)."""
    best = 0
    for n in range(lo, hi):
        steps = 0
        while n != 1:
            n, steps = (n // 2 if n % 2 == 0 else 3 * n + 1), steps + 1
        best = max(best, steps)
    return best


async def main() -> None:
    ctx = multiprocessing.get_context("forkserver")  # not fork: we have threads
    with concurrent.futures.ProcessPoolExecutor(mp_context=ctx) as pool:
        found: list[int] = []

        async def chunk(lo: int) -> None:
            found.append(await gr.wait_future(pool.submit(max_steps, lo, lo + 25_000)))

        async with gr.Group() as g:
            for lo in range(1, 200_001, 25_000):
                g.go(chunk, lo)
    print(f"the longest Collatz chain below 200001 takes {max(found)} steps")


if __name__ == "__main__":
    gr.run(main)
