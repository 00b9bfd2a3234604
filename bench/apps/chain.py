"""W2, chain: ingress → bench/a (state: count) → bench/b (state: count) → egress.

A counts and messages B with its count; B counts and writes "<key>:<count>" to
``$BENCH_EGRESS_TOPIC``. B's id is A's reversed (``rekeyed``, the default): another key, so
mostly another partition (a prefix would not do: CRC32 is linear, so with the CRC32 partitioner
a fixed prefix moves every key off its partition). A worker that owns B's partition runs B in
A's transaction (runtime/local.py), as one worker owning every partition does; else, or with
``local_messages`` off, the message goes through <app>-invocations as the other contenders'
W2 goes through a topic. With ``BENCH_W2_SAME_ID=1`` B has A's id (bench/hotpath.py's
``w2-same``)."""

import os

from kstatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message, message_builder

EGRESS_TOPIC = os.environ.get("BENCH_EGRESS_TOPIC", "bench-out")


def rekey(id: str) -> str:
    """B's id for A's ``id`` in the re-keyed chain (its own inverse)."""
    return id[::-1]


def make(rekeyed: bool) -> StatefulFunctions:
    functions = StatefulFunctions()

    @functions.bind("bench/a", specs=[ValueSpec("count", IntType)])
    def a(context, message):
        count = (context.storage.count or 0) + 1
        context.storage.count = count
        target = context.address.id[::-1] if rekeyed else context.address.id  # rekey(), inline
        context.send(message_builder("bench/b", target, int_value=count))

    @functions.bind("bench/b", specs=[ValueSpec("count", IntType)])
    def b(context, message):
        count = (context.storage.count or 0) + 1
        context.storage.count = count
        key = context.address.id[::-1] if rekeyed else context.address.id  # A's id
        context.send_egress(
            kafka_egress_message(
                typename="bench/out", topic=EGRESS_TOPIC, key=key, value=f"{key}:{count}"
            )
        )

    return functions


functions = make(rekeyed=os.environ.get("BENCH_W2_SAME_ID") != "1")
