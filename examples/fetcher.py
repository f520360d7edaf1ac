# Fetch 10 pages from a local server, at most 4 at a time, all within 0.5 s.
import goroutines as gr


async def handle(conn):  # a request for /slow is answered in 10 s, others in 10 ms
    async with conn:
        await gr.sleep(10 if b"/slow" in await conn.read() else 0.01)
        await conn.write(b"200 OK")


async def serve(ln):
    while True:
        gr.go(handle, await ln.accept())


async def fetch(ctx, addr, path, sem, out):
    await sem.acquire()  # at most 4 fetches at once
    try:
        async with await gr.net.dial("tcp", addr) as conn:
            conn.set_deadline(ctx.deadline())  # the context's deadline bounds the I/O
            await conn.write(f"GET {path}".encode())
            result = (await conn.read()).decode()
    except TimeoutError:
        result = "timed out"
    sem.release()
    await out.send(f"{path}: {result}")


async def main():
    ctx, _ = gr.with_timeout(gr.background(), 0.5)
    ln, sem, out = await gr.net.listen("tcp", "127.0.0.1:0"), gr.Semaphore(4), gr.Chan()
    gr.go(serve, ln)
    for path in [f"/page/{i}" for i in range(1, 10)] + ["/slow"]:
        gr.go(fetch, ctx, gr.net.join_host_port(*ln.addr), path, sem, out)
    print("\n".join(sorted([await out.recv() for _ in range(10)])))


if __name__ == "__main__":
    gr.run(main)
