"""An asyncio library (httpx, a dev extra) from goroutines: a Group of 20, at
most 10 at a time, each a request through gr.from_asyncio to a local server."""

import http.server
import threading

import httpx

import goroutines as gr


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None: ...


async def main(url: str) -> None:
    client, replies = httpx.AsyncClient(), []

    async def get(i: int) -> None:
        replies.append((await gr.from_asyncio(client.get(f"{url}/{i}"))).text)

    async with gr.Group(limit=10) as g:
        for i in range(20):
            g.go(get, i)
    await gr.from_asyncio(client.aclose())
    print(f"{len(replies)} replies, e.g. {sorted(replies)[0]!r}")


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gr.run(main, f"http://127.0.0.1:{server.server_address[1]}")
