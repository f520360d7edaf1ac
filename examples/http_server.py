"""An HTTP/1.1 "hello world" server on h11 over gr.net and gr.bufio: a goroutine
per connection, keep-alive. Benchmark W10 (benchmarks/README.md) measures it.

    python examples/http_server.py [--port N] [--procs N]    # needs h11 (pip install h11)
"""

import argparse
import contextlib
from http import HTTPStatus

import h11

import goroutines as gr

BODY = b"Hello, world!\n"


def response(h, status, body):
    """The bytes of a whole response with ``body``, as h11 frames it."""
    headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
    return (
        h.send(h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase))
        + h.send(h11.Data(data=body))
        + h.send(h11.EndOfMessage())
    )


async def handle(conn):
    """Answer the requests of one connection in turn until the client goes away."""
    h = h11.Connection(h11.SERVER)
    out = gr.bufio.Writer(conn)  # pipelined requests: their answers go out in one write
    async with conn:  # closes the connection, however this ends
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    await out.flush()  # what we owe goes out before we wait for more
                    h.receive_data(await conn.read())  # b"": the client closed its side
                elif isinstance(event, h11.EndOfMessage):  # a whole request: answer it
                    await out.write(response(h, 200, BODY))
                    if h.our_state is h11.MUST_CLOSE:  # "Connection: close", HTTP/1.0
                        return await out.flush()
                    h.start_next_cycle()  # keep-alive: the next request
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except h11.RemoteProtocolError as e:  # a malformed request: 400, then close
            if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(OSError):  # unless the client has gone too
                    await out.write(response(h, e.error_status_hint, b"bad request\n"))
                    await out.flush()  # after the answers owed before it
        except OSError:  # reset, broken pipe: the client went away
            pass


async def serve(ln):
    """Accept connections until the listener is closed, each in its own goroutine."""
    while True:
        try:
            conn = await ln.accept()
        except gr.net.ErrClosed:
            return
        gr.go(handle, conn)


async def main(port):
    ln = await gr.net.listen("tcp", f"127.0.0.1:{port}")
    print(f"serving on http://{gr.net.join_host_port(*ln.addr)}/", flush=True)
    await serve(ln)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="an HTTP/1.1 hello-world server")
    ap.add_argument("--port", type=int, default=8080, help="0: any free port")
    ap.add_argument("--procs", type=int, help="goroutines' procs (default: the CPU count)")
    args = ap.parse_args()
    try:
        gr.run(main, args.port, procs=args.procs)
    except KeyboardInterrupt:
        pass
