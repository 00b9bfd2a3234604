"""Test application: a per-key counter chained to a sink that writes every count to egress.

ingress (JSON {"seq": n}) → test/counter (state: count) → test/sink → egress topic
``$TEST_EGRESS_TOPIC`` with key = id and value "<id>:<count>:<seq>".

So for every key the egress must read 1, 2, 3, ... with the seqs in produced order: a lost,
duplicated or reordered record shows up at once. Bad-input hooks: {"boom": true} raises in the
function, {"stray": true} messages an unregistered function type, {"egress_topic": t} and
{"egress_id": e} write egress to a missing topic or an undeclared egress. {"block_s": s} blocks
the worker's main thread for s seconds, once per file ``$TEST_BLOCK_MARKER`` (the first worker
to see it creates the file), then counts as usual: a worker that misses a rebalance.
{"sleep_ms": n} makes the invocation take that long (a backlog that drains slowly).
``$TEST_READ_PAUSE_MARKER``: once that file exists, the worker's group consumer pauses for
``$TEST_READ_PAUSE_S`` seconds (8) after the next poll that returns a record, and deletes the
file (and names the record in ``<that file>.read``): a main thread that stalls between the
two calls of a read (runtime/worker.py ``_read``),
as on a loaded machine; the next send_offsets_to_transaction then takes
``$TEST_SLOW_OFFSETS_S`` (1.8) longer, as with a coordinator that moves.
"""

import os
import time

from kstatefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

EVENT = make_json_type("test/Event")
COUNTED = make_json_type("test/Counted")

functions = StatefulFunctions()


@functions.bind("test/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    event = message.as_type(EVENT)
    if event.get("boom"):
        raise RuntimeError("boom requested by the test")
    if event.get("sleep_ms"):
        time.sleep(event["sleep_ms"] / 1000)
    if event.get("stray"):
        context.send(message_builder("test/nobody", context.address.id, str_value="lost?"))
        return
    if event.get("egress_topic") or event.get("egress_id"):
        context.send_egress(
            kafka_egress_message(
                typename=event.get("egress_id", "test/out"),
                topic=event.get("egress_topic", os.environ["TEST_EGRESS_TOPIC"]),
                value="never",
            )
        )
        return
    if event.get("block_s"):
        _block_once(event["block_s"])
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    context.send(
        message_builder(
            os.environ.get("TEST_SINK", "test/sink"),  # a remote sink in the remote e2e tests
            context.address.id,
            value={"count": count, "seq": event["seq"]},
            value_type=COUNTED,
        )
    )


@functions.bind("test/sink")
async def sink(context, message):  # async on purpose: every e2e test runs the async path
    counted = message.as_type(COUNTED)
    context.send_egress(
        kafka_egress_message(
            typename="test/out",
            topic=os.environ["TEST_EGRESS_TOPIC"],
            key=context.address.id,
            value=f"{context.address.id}:{counted['count']}:{counted['seq']}",
        )
    )


def _block_once(seconds: float) -> None:
    try:
        with open(os.environ["TEST_BLOCK_MARKER"], "x"):
            pass
    except FileExistsError:
        return
    time.sleep(seconds)


def _pause_reads_when_asked() -> None:
    marker = os.environ.get("TEST_READ_PAUSE_MARKER")
    if not marker:
        return
    import threading

    import confluent_kafka

    from kstatefun.runtime import worker

    paused = threading.Event()

    class PausingConsumer(confluent_kafka.Consumer):
        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            self.in_group = "group.id" in config  # not the restore or end-offsets consumers

        def poll(self, *args, **kwargs):
            msg = super().poll(*args, **kwargs)
            if msg is not None and self.in_group:
                try:
                    os.remove(marker)
                except FileNotFoundError:
                    return msg
                with open(f"{marker}.read", "w") as read:  # which record the test stalls on
                    read.write(f"{msg.topic()} {msg.partition()} {msg.offset()}")
                time.sleep(float(os.environ.get("TEST_READ_PAUSE_S", "8")))
                paused.set()
            return msg

    class SlowOffsetsProducer(confluent_kafka.Producer):
        def send_offsets_to_transaction(self, *args, **kwargs):
            if paused.is_set():  # the first commit after the pause: a slow coordinator
                paused.clear()
                time.sleep(float(os.environ.get("TEST_SLOW_OFFSETS_S", "1.8")))
            return super().send_offsets_to_transaction(*args, **kwargs)

    # the worker makes its clients after loading this module
    worker.Consumer = PausingConsumer
    worker.Producer = SlowOffsetsProducer


_pause_reads_when_asked()
