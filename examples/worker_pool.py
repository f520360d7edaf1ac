import goroutines as gr


async def worker(ctx, jobs, results):
    async for n in jobs:
        i, _ = await gr.select(ctx.done().recv, gr.after(0.01).recv)  # 10 ms of "work"
        if i == 0:
            return  # cancelled: give up
        await results.send(n * n)


async def main():
    ctx, cancel = gr.with_timeout(gr.background(), 0.1)
    jobs, results = gr.Chan(100), gr.Chan(100)
    for _ in range(4):
        gr.go(worker, ctx, jobs, results)
    for n in range(100):
        await jobs.send(n)
    jobs.close()
    done = 0
    while (await gr.select(ctx.done().recv, results.recv))[0] == 1:
        done += 1
    cancel()
    print(f"{done} of 100 jobs done before the deadline: {ctx.err().__name__}")


if __name__ == "__main__":
    gr.run(main)
