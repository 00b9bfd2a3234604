"""Serve a StateFun SDK ``StatefulFunctions`` over HTTP the way StateFun's aiohttp example does:
one ``RequestReplyHandler`` behind every path, on 127.0.0.1. Runs in the SDK's virtualenv
(tests/remote/sdk_env.py), imported by the SDK server scripts; prints ``LISTENING <port>``
once it accepts requests (an exception in a function becomes aiohttp's HTTP 500).
"""

from __future__ import annotations

import argparse
import asyncio
import socket

from aiohttp import web
from statefun import RequestReplyHandler, StatefulFunctions


def serve(functions: StatefulFunctions) -> None:
    """Parse ``--port`` (0: any free port) and serve ``functions`` until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_main(RequestReplyHandler(functions), parser.parse_args().port))


async def _main(handler: RequestReplyHandler, port: int) -> None:
    async def handle(request: web.Request) -> web.Response:
        reply = await handler.handle_async(await request.read())
        return web.Response(body=reply, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()
