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

import os
import sys
from datetime import timedelta
from pathlib import Path

from statefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "remote"))
from sdk_serving import serve  # noqa: E402 - tests/remote/sdk_serving.py

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


if __name__ == "__main__":
    serve(functions)
