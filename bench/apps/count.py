"""W1, count per key: one function keeps a count in state and writes "<key>:<count>" to the
egress topic ``$BENCH_EGRESS_TOPIC`` for every event (the event's bytes are not decoded)."""

import os

from kstatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message

EGRESS_TOPIC = os.environ.get("BENCH_EGRESS_TOPIC", "bench-out")

functions = StatefulFunctions()


@functions.bind("bench/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    key = context.address.id
    context.send_egress(
        kafka_egress_message(
            typename="bench/out", topic=EGRESS_TOPIC, key=key, value=f"{key}:{count}"
        )
    )
