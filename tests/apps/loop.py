"""Test application: a function that messages itself, longer than one record's chain may run
in its transaction (runtime/local.py, CASCADE_MAX).

ingress (JSON {"seq": n, "hops": h}) → loop/a, which sends itself h messages, one per
invocation, each numbered by its state ``sent`` (1, 2, 3, ... per id). On each one it counts
its state ``got`` and writes "<number>:<got>" to ``$TEST_EGRESS_TOPIC`` (key = id). Messages
from loop/a to itself must arrive in the order sent, none lost or twice: every egress value
of an id is "n:n", for n = 1, 2, 3, ...
"""

import os

from kstatefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

EVENT = make_json_type("test/Event")
HOP = make_json_type("test/Hop")

functions = StatefulFunctions()


@functions.bind("loop/a", specs=[ValueSpec("sent", IntType), ValueSpec("got", IntType)])
def a(context, message):
    me = context.address.id
    if message.is_type(HOP):
        hop = message.as_type(HOP)
        got = (context.storage.got or 0) + 1
        context.storage.got = got
        context.send_egress(
            kafka_egress_message(
                typename="test/out",
                topic=os.environ["TEST_EGRESS_TOPIC"],
                key=me,
                value=f"{hop['n']}:{got}",
            )
        )
        left = hop["left"]
    else:
        left = message.as_type(EVENT)["hops"]
    if left > 0:
        sent = (context.storage.sent or 0) + 1
        context.storage.sent = sent
        context.send(
            message_builder("loop/a", me, value={"n": sent, "left": left - 1}, value_type=HOP)
        )
