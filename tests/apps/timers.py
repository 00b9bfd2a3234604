"""Test application for delayed messages and state TTL.

ingress (JSON) → test/scheduler:
  {"op": "schedule", "seq": n, "delay_ms": d, "token": t}  send_after(d, echo(seq, due), token t)
  {"op": "cancel", "token": t}                             cancel_delayed_message(t)
  {"op": "count_write" | "count_call", "seq": n}           messages test/ttl_write|test/ttl_call
test/echo writes "<id>:<seq>:<late ms>:<caller>" to egress when a delayed message arrives.
test/ttl_write|ttl_call keep a counter with a TTL of $TEST_TTL_MS (expire_after_write |
expire_after_call) and write "<id>:<seq>:<count>" to egress.
"""

import os
import time
from datetime import timedelta

from kstatefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

COMMAND = make_json_type("test/Command")
ECHO = make_json_type("test/Echo")
TTL = timedelta(milliseconds=int(os.environ.get("TEST_TTL_MS", "2000")))

functions = StatefulFunctions()


def egress(context, value):
    context.send_egress(
        kafka_egress_message(
            typename="test/out",
            topic=os.environ["TEST_EGRESS_TOPIC"],
            key=context.address.id,
            value=value,
        )
    )


@functions.bind("test/scheduler")
def scheduler(context, message):
    command = message.as_type(COMMAND)
    op = command["op"]
    if op == "schedule":
        delay = timedelta(milliseconds=command["delay_ms"])
        due = time.time() * 1000 + command["delay_ms"]
        echo = message_builder(
            "test/echo",
            context.address.id,
            value={"seq": command["seq"], "due": due},
            value_type=ECHO,
        )
        context.send_after(delay, echo, command.get("token", ""))
    elif op == "cancel":
        context.cancel_delayed_message(command["token"])
    elif op in ("count_write", "count_call"):
        target = "test/ttl_write" if op == "count_write" else "test/ttl_call"
        context.send(message_builder(target, context.address.id, value=command, value_type=COMMAND))


@functions.bind("test/echo")
def echo(context, message):
    payload = message.as_type(ECHO)
    late = time.time() * 1000 - payload["due"]
    caller = context.caller.typename if context.caller else "-"
    egress(context, f"{context.address.id}:{payload['seq']}:{late:.0f}:{caller}")


def counter(context, message):
    command = message.as_type(COMMAND)
    count = (context.storage.count or 0) + 1
    if command.get("peek"):  # expire_after_call: a call refreshes without writing
        egress(context, f"{context.address.id}:{command['seq']}:peek")
        return
    context.storage.count = count
    egress(context, f"{context.address.id}:{command['seq']}:{count}")


functions.register("test/ttl_write", counter, [ValueSpec("count", IntType, expire_after_write=TTL)])
functions.register("test/ttl_call", counter, [ValueSpec("count", IntType, expire_after_call=TTL)])
