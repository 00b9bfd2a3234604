"""W2, chain: ingress → bench/a (state: count) → bench/b (state: count) → egress.

A counts and messages B (the same id) with its count; B counts and writes "<key>:<count>" to
``$BENCH_EGRESS_TOPIC``. One id is one partition, so B runs in A's transaction
(runtime/local.py; through <app>-invocations with ``KSTATEFUN_LOCAL_MESSAGES=false``)."""

import os

from kstatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message, message_builder

EGRESS_TOPIC = os.environ.get("BENCH_EGRESS_TOPIC", "bench-out")

functions = StatefulFunctions()


@functions.bind("bench/a", specs=[ValueSpec("count", IntType)])
def a(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    context.send(message_builder("bench/b", context.address.id, int_value=count))


@functions.bind("bench/b", specs=[ValueSpec("count", IntType)])
def b(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    key = context.address.id
    context.send_egress(
        kafka_egress_message(
            typename="bench/out", topic=EGRESS_TOPIC, key=key, value=f"{key}:{count}"
        )
    )
