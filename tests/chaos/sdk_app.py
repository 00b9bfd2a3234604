"""The chaos application's remote functions, written with the real StateFun Python SDK 3.3.0 and
run with the SDK's own virtualenv (tests/remote/sdk_env.py), never kstatefun's:

    python sdk_app.py --port 0     # prints "LISTENING <port>" once it accepts requests

- ``remote/counter`` (state ``count``; ``last`` expire-after-write ``$CHAOS_TTL_MS``): counts
  every event ``chaos/entry`` forwards and writes ``R|id|count|seq`` to Kafka egress
  ``chaos/out`` on the topic named in the event (``out``); ``rdelay: ms`` also sends
  ``chaos/echo`` a delayed message tagged ``RD``.
- ``remote/pong`` (state ``pongs``): one hop of the ping-pong cycle back to ``chaos/ping``.
- ``remotefail/boom``: always raises (its invocations must end as ``remote-error`` dead
  letters).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from datetime import timedelta

from aiohttp import web
from statefun import (
    IntType,
    RequestReplyHandler,
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

EVENT = make_json_type("chaos/Event")
HOP = make_json_type("chaos/Hop")
ECHO = make_json_type("chaos/Echo")
TTL = timedelta(milliseconds=int(os.environ.get("CHAOS_TTL_MS", "2000")))

functions = StatefulFunctions()


@functions.bind(
    typename="remote/counter",
    specs=[
        ValueSpec(name="count", type=IntType),
        ValueSpec(name="last", type=IntType, expire_after_write=TTL),
    ],
)
def counter(context, message):
    event = message.as_type(EVENT)
    me = context.address.id
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    context.storage.last = event["seq"]
    context.send_egress(
        kafka_egress_message(
            typename="chaos/out", topic=event["out"], key=me, value=f"R|{me}|{count}|{event['seq']}"
        )
    )
    if event.get("rdelay"):
        context.send_after(
            timedelta(milliseconds=event["rdelay"]),
            message_builder(
                "chaos/echo", me, value={"seq": event["seq"], "tag": "RD"}, value_type=ECHO
            ),
        )


@functions.bind(typename="remote/pong", specs=[ValueSpec(name="pongs", type=IntType)])
def pong(context, message):
    hop = message.as_type(HOP)
    context.storage.pongs = (context.storage.pongs or 0) + 1
    context.send(
        message_builder(
            "chaos/ping",
            context.address.id,
            value={"seq": hop["seq"], "n": hop["n"] - 1, "h": hop["h"]},
            value_type=HOP,
        )
    )


@functions.bind(typename="remotefail/boom")
def boom(context, message):
    raise ValueError("remote boom injected by the chaos test")


handler = RequestReplyHandler(functions)


async def handle(request: web.Request) -> web.Response:
    reply = await handler.handle_async(await request.read())
    return web.Response(body=reply, content_type="application/octet-stream")


async def main(port: int) -> None:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(main(parser.parse_args().port))
