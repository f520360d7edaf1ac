"""A pipeline with fan-out and fan-in: numbers -> 4 squarers -> merge -> sum.

The squarers share one input channel (fan-out) and one output channel (fan-in);
a WaitGroup tells when the last one is done, so the output can be closed.
"""

import goroutines as gr


async def numbers(out, n):
    for i in range(1, n + 1):
        await out.send(i)
    out.close()


async def squarer(inp, out, wg):
    async for x in inp:
        await out.send(x * x)
    wg.done()


async def close_when_done(wg, ch):
    await wg.wait()
    ch.close()


async def main():
    nums, squares, wg = gr.Chan(), gr.Chan(16), gr.WaitGroup()
    gr.go(numbers, nums, 1000)
    for _ in range(4):
        wg.add(1)
        gr.go(squarer, nums, squares, wg)
    gr.go(close_when_done, wg, squares)
    values = [s async for s in squares]
    print(f"sum of the squares of 1..1000: {sum(values)} ({len(values)} values)")


if __name__ == "__main__":
    gr.run(main)
