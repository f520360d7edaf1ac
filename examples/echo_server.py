# A TCP echo server, a goroutine per connection, and 10 clients to try it.
import goroutines as gr


async def echo(conn):
    async with conn:  # closes the connection
        while data := await conn.read():  # b"" at end of stream
            await conn.write(data)


async def serve(ln):
    while True:
        try:
            gr.go(echo, await ln.accept())
        except gr.net.ErrClosed:  # the listener was closed: stop serving
            return


async def client(addr, i, results):
    msg, got = f"hello from client {i} ".encode() * 500, b""
    async with await gr.net.dial("tcp", addr) as conn:
        await conn.write(msg)
        conn.close_write()  # half-close: the server reads EOF, we can still read
        while data := await conn.read():
            got += data
    await results.send(got == msg)


async def main(n=10):
    ln, results = await gr.net.listen("tcp", "127.0.0.1:0"), gr.Chan()
    gr.go(serve, ln)
    for i in range(n):
        gr.go(client, gr.net.join_host_port(*ln.addr), i, results)
    print(f"{sum([await results.recv() for _ in range(n)])} clients echoed OK")
    ln.close()


if __name__ == "__main__":
    gr.run(main)
