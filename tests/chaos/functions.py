"""The chaos application's embedded functions (the remote half is tests/chaos/sdk_app.py).

Every ingress record is a JSON event ``{"seq": n, ...flags}`` keyed by the target id; the
flags say what the event exercises, so the verifier (tests/chaos/verify.py) derives every
expected egress record and every final state value from the ingress topic alone.

- ``chaos/entry`` (state ``count``, ``hold``): counts the event and writes ``E|id|count|seq``;
  forwards it to the remote counter; ``cycle: H`` starts a bounded message cycle
  ``chaos/ping`` → ``remote/pong`` → ``chaos/ping`` … of H hops; ``delay: ms`` sends
  ``chaos/echo`` a delayed message; ``ttl`` messages ``chaos/ttl``; ``hold`` schedules a
  delayed message an hour ahead with a token, which the next event of the id cancels.
  Bad-input hooks: ``boom`` raises, ``stray`` messages an unregistered type, ``rboom`` messages
  the remote function that always raises. Every counted event is also sent to
  ``chaos/mirror`` on another id (``mirror_id``), mostly in another partition: a message
  between partitions, which runs in its sender's transaction when the sender's worker owns
  both (runtime/local.py).
- ``chaos/ping`` (state ``hops``): one hop of the cycle; at hop 0 writes ``C<H>|id|seq``
  (one stream per cycle length H: a short cycle started later may end first).
- ``chaos/echo``: writes ``<tag>|id|seq`` (tag ``D`` from entry, ``RD`` from the remote
  counter; ``X`` would mean a cancelled delayed message was delivered).
- ``chaos/mirror`` (state ``count``): counts the events of the id it mirrors, in the order
  sent, and writes ``M|mirror id|count|seq``.
- ``chaos/ttl`` (state ``total``; ``recent`` expire-after-write, ``touched``
  expire-after-call): writes ``T|id|total|seq``.

Egress goes to ``$CHAOS_EGRESS_TOPIC`` (egress id ``chaos/out``), key = id.
"""

from __future__ import annotations

import os
from datetime import timedelta

from kstatefun import (
    IntType,
    StatefulFunctions,
    StringType,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

EVENT = make_json_type("chaos/Event")
HOP = make_json_type("chaos/Hop")
ECHO = make_json_type("chaos/Echo")
TTL = timedelta(milliseconds=int(os.environ.get("CHAOS_TTL_MS", "2000")))
HOLD = timedelta(hours=1)  # never due within a run: only a cancellation may end it

functions = StatefulFunctions()


def mirror_id(id: str) -> str:
    """The id of ``chaos/mirror`` that counts the events of entry ``id``."""
    return f"m{id}"


def _egress(context, value: str) -> None:
    context.send_egress(
        kafka_egress_message(
            typename="chaos/out",
            topic=os.environ["CHAOS_EGRESS_TOPIC"],
            key=context.address.id,
            value=value,
        )
    )


@functions.bind("chaos/entry", specs=[ValueSpec("count", IntType), ValueSpec("hold", StringType)])
def entry(context, message):
    event = message.as_type(EVENT)
    me = context.address.id
    seq = event["seq"]
    if event.get("boom"):
        raise RuntimeError("boom injected by the chaos test")
    if event.get("stray"):
        context.send(message_builder("chaos/nobody", me, str_value="stray"))
        return
    if event.get("rboom"):
        context.send(message_builder("remotefail/boom", me, value=event, value_type=EVENT))
        return
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    _egress(context, f"E|{me}|{count}|{seq}")
    context.send(
        message_builder("chaos/mirror", mirror_id(me), value={"seq": seq}, value_type=EVENT)
    )
    held = context.storage.hold
    if held:
        context.cancel_delayed_message(held)
        del context.storage.hold
    if event.get("hold"):
        token = f"x{seq}"
        echo = message_builder("chaos/echo", me, value={"seq": seq, "tag": "X"}, value_type=ECHO)
        context.send_after(HOLD, echo, token)
        context.storage.hold = token
    forward = {"seq": seq, "out": os.environ["CHAOS_EGRESS_TOPIC"]}
    if event.get("rdelay"):
        forward["rdelay"] = event["rdelay"]
    context.send(message_builder("remote/counter", me, value=forward, value_type=EVENT))
    if event.get("cycle"):
        hop = {"seq": seq, "n": event["cycle"], "h": event["cycle"]}
        context.send(message_builder("chaos/ping", me, value=hop, value_type=HOP))
    if event.get("delay"):
        echo = message_builder("chaos/echo", me, value={"seq": seq, "tag": "D"}, value_type=ECHO)
        context.send_after(timedelta(milliseconds=event["delay"]), echo)
    if event.get("ttl"):
        context.send(message_builder("chaos/ttl", me, value={"seq": seq}, value_type=EVENT))


@functions.bind("chaos/ping", specs=[ValueSpec("hops", IntType)])
def ping(context, message):
    hop = message.as_type(HOP)
    context.storage.hops = (context.storage.hops or 0) + 1
    if hop["n"] <= 0:
        _egress(context, f"C{hop['h']}|{context.address.id}|{hop['seq']}")
        return
    nxt = {"seq": hop["seq"], "n": hop["n"] - 1, "h": hop["h"]}
    context.send(message_builder("remote/pong", context.address.id, value=nxt, value_type=HOP))


@functions.bind("chaos/mirror", specs=[ValueSpec("count", IntType)])
def mirror(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    _egress(context, f"M|{context.address.id}|{count}|{message.as_type(EVENT)['seq']}")


@functions.bind("chaos/echo")
def echo(context, message):
    payload = message.as_type(ECHO)
    _egress(context, f"{payload['tag']}|{context.address.id}|{payload['seq']}")


@functions.bind(
    "chaos/ttl",
    specs=[
        ValueSpec("total", IntType),
        ValueSpec("recent", IntType, expire_after_write=TTL),
        ValueSpec("touched", IntType, expire_after_call=TTL),
    ],
)
def ttl(context, message):
    event = message.as_type(EVENT)
    total = (context.storage.total or 0) + 1
    context.storage.total = total
    context.storage.recent = event["seq"]
    if context.storage.touched is None:
        context.storage.touched = event["seq"]
    _egress(context, f"T|{context.address.id}|{total}|{event['seq']}")
