"""W10's peer: examples/http_server.py on asyncio streams (and on uvloop's loop).

The same h11 server, written the same way: a task per connection (what
``asyncio.start_server`` gives), ``StreamReader.read`` and ``StreamWriter.write``
plus ``drain`` where the example has ``conn.read`` and ``conn.write``.

    python benchmarks/http_asyncio.py [--port N] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from http import HTTPStatus

import h11

BODY = b"Hello, world!\n"


def response(h: h11.Connection, status: int, body: bytes) -> bytes:
    """The bytes of a whole response with ``body``, as h11 frames it."""
    headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
    return (
        h.send(h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase))
        + h.send(h11.Data(data=body))
        + h.send(h11.EndOfMessage())
    )


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer the requests of one connection in turn until the client goes away."""
    h = h11.Connection(h11.SERVER)
    try:
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(await reader.read(65536))  # b"": the client closed its side
            elif isinstance(event, h11.EndOfMessage):  # a whole request: answer it
                writer.write(response(h, 200, BODY))
                await writer.drain()
                if h.our_state is h11.MUST_CLOSE:  # "Connection: close", HTTP/1.0
                    return
                h.start_next_cycle()  # keep-alive: the next request
            elif isinstance(event, h11.ConnectionClosed):
                return
    except h11.RemoteProtocolError as e:  # a malformed request: 400, then close
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(OSError):  # unless the client has gone too
                writer.write(response(h, e.error_status_hint, b"bad request\n"))
                await writer.drain()
    except OSError:  # reset, broken pipe: the client went away
        pass
    finally:
        writer.close()


async def start(port: int = 0) -> asyncio.Server:
    """The server, listening on 127.0.0.1:``port`` (0: a free one)."""
    return await asyncio.start_server(handle, "127.0.0.1", port)


async def main(port: int) -> None:
    server = await start(port)
    host, bound = server.sockets[0].getsockname()[:2]
    print(f"serving on http://{host}:{bound}/", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="the W10 server on asyncio streams")
    ap.add_argument("--port", type=int, default=8080, help="0: any free port")
    ap.add_argument("--uvloop", action="store_true", help="on uvloop's loop")
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.uvloop:
            import uvloop

            uvloop.run(main(args.port))
        else:
            asyncio.run(main(args.port))
