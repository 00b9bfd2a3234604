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
``$TEST_SINK_ID=reversed`` puts each counter's sink on the reversed id (mostly another partition;
the egress still names the counter's id). ``$TEST_SINK_SLEEP_MS`` makes a sink invocation take
that long: every one, or with ``$TEST_SLOW_SINK_FROM=<name>`` those of messages a worker with
``$TEST_WORKER=<name>`` sent. ``$TEST_GROUP_CONSUMER_PROPERTIES`` (a JSON object) adds librdkafka
properties to the worker's group consumer only (not its restore, standby or end-offsets ones).
``$TEST_HOLD_INVOCATIONS_S`` holds back an invocations
partition gained after its first record produced since (``_hold_invocations_gained``);
``$TEST_SLOW_RESTORE`` slows the worker's restores (``_slow_restores``).
``$TEST_READ_PAUSE_MARKER``: once that file exists, the
worker's group consumer pauses for ``$TEST_READ_PAUSE_S`` seconds (8) after the next poll that
returns a record, and deletes the file: a main thread that stalls between the two calls of a
read (runtime/worker.py ``_read``), as on a loaded machine. ``<that file>.read`` then says
which record the read held and whether the read's next call revoked its partition ("<topic>
<partition> <offset> 0|1"); the next send_offsets_to_transaction takes
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

SINK_REVERSED = os.environ.get("TEST_SINK_ID") == "reversed"
SINK_SLEEP_S = float(os.environ.get("TEST_SINK_SLEEP_MS", "0")) / 1000
SLOW_FROM = os.environ.get("TEST_SLOW_SINK_FROM")
WORKER = os.environ.get("TEST_WORKER")

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
    counted = {"count": count, "seq": event["seq"]}
    sink_id = context.address.id
    if SINK_REVERSED:
        sink_id, counted["key"] = sink_id[::-1], sink_id
    if WORKER:
        counted["from"] = WORKER
    context.send(
        message_builder(
            os.environ.get("TEST_SINK", "test/sink"),  # a remote sink in the remote e2e tests
            sink_id,
            value=counted,
            value_type=COUNTED,
        )
    )


@functions.bind("test/sink")
async def sink(context, message):  # async on purpose: every e2e test runs the async path
    counted = message.as_type(COUNTED)
    if SINK_SLEEP_S and SLOW_FROM in (None, counted.get("from")):
        time.sleep(SINK_SLEEP_S)
    key = counted.get("key", context.address.id)
    context.send_egress(
        kafka_egress_message(
            typename="test/out",
            topic=os.environ["TEST_EGRESS_TOPIC"],
            key=key,
            value=f"{key}:{counted['count']}:{counted['seq']}",
        )
    )


def _block_once(seconds: float) -> None:
    try:
        with open(os.environ["TEST_BLOCK_MARKER"], "x"):
            pass
    except FileExistsError:
        return
    time.sleep(seconds)


def _in_app_group(config) -> bool:
    """Whether a worker's client ``config`` is its group consumer's, not its restore, standby
    or end-offsets consumer's (group ids of their own, ``kstatefun-...``) or a producer's."""
    group = config.get("group.id", "")
    return bool(group) and not group.startswith("kstatefun-")


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
            self.in_group = _in_app_group(config)
            self.stalled = None  # the record the last pause held, until the read's next call

        def poll(self, *args, **kwargs):
            msg = super().poll(*args, **kwargs)
            if msg is not None and self.in_group:
                try:
                    os.remove(marker)
                except FileNotFoundError:
                    return msg
                time.sleep(float(os.environ.get("TEST_READ_PAUSE_S", "8")))
                self.stalled = msg
                paused.set()
            return msg

        def consume(self, *args, **kwargs):
            msg, self.stalled = self.stalled, None
            if msg is None:
                return super().consume(*args, **kwargs)
            # the rest of the read: did a callback in it take the held record's partition away?
            held = (msg.topic(), msg.partition())
            before = {(tp.topic, tp.partition) for tp in self.assignment()}
            batch = super().consume(*args, **kwargs)
            after = {(tp.topic, tp.partition) for tp in self.assignment()}
            moved = int(held in before - after)
            with open(f"{marker}.read", "w") as read:
                read.write(f"{msg.topic()} {msg.partition()} {msg.offset()} {moved}")
            return batch

    class SlowOffsetsProducer(confluent_kafka.Producer):
        def send_offsets_to_transaction(self, *args, **kwargs):
            if paused.is_set():  # the first commit after the pause: a slow coordinator
                paused.clear()
                time.sleep(float(os.environ.get("TEST_SLOW_OFFSETS_S", "1.8")))
            return super().send_offsets_to_transaction(*args, **kwargs)

    # the worker makes its clients after loading this module
    worker.Consumer = PausingConsumer
    worker.Producer = SlowOffsetsProducer


def _group_consumer_properties() -> None:
    extra = os.environ.get("TEST_GROUP_CONSUMER_PROPERTIES")
    if not extra:
        return
    import json

    from kstatefun.runtime import worker

    class GroupConsumer(worker.Consumer):
        def __init__(self, config, *args, **kwargs):
            if _in_app_group(config):
                config = {**config, **json.loads(extra)}
            super().__init__(config, *args, **kwargs)

    worker.Consumer = GroupConsumer


def _hold_invocations_gained() -> None:
    """``$TEST_HOLD_INVOCATIONS_S``: once the worker's group consumer has returned the first
    record of an invocations partition that was produced after the partition was assigned to
    this worker, that partition is paused for that many seconds (once per assignment; resumes
    the worker asks for meanwhile wait too): the rest of what was produced into it since comes
    seconds after that first record, while the other partitions go on."""
    hold = float(os.environ.get("TEST_HOLD_INVOCATIONS_S", "0"))
    if not hold:
        return
    from confluent_kafka import TopicPartition

    from kstatefun.runtime import worker

    class HoldingConsumer(worker.Consumer):
        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            self.in_group = _in_app_group(config)
            self.assigned_at: dict[tuple[str, int], int] = {}  # -> ms, until held once
            self.held: dict[tuple[str, int], float] = {}  # -> when the hold ends

        def subscribe(self, topics, on_assign=None, **kwargs):
            def noting(consumer, partitions):
                now_ms = int(time.time() * 1000)
                for tp in partitions:
                    if tp.topic.endswith("-invocations"):
                        self.assigned_at[(tp.topic, tp.partition)] = now_ms
                return on_assign(consumer, partitions)

            return super().subscribe(topics, on_assign=noting, **kwargs)

        def resume(self, partitions):
            rest = [tp for tp in partitions if (tp.topic, tp.partition) not in self.held]
            if rest:
                super().resume(rest)

        def _after(self, msgs):
            now = time.monotonic()
            due = [key for key, until in self.held.items() if until <= now]
            for key in due:
                del self.held[key]
            if due:
                super().resume([TopicPartition(*key) for key in due])
            new = set()
            for m in msgs:
                key = (m.topic(), m.partition())
                since = self.assigned_at.get(key)
                if m.error() is None and since is not None and m.timestamp()[1] > since:
                    new.add(key)
                    del self.assigned_at[key]
            if new:
                self.held.update(dict.fromkeys(new, now + hold))
                self.pause([TopicPartition(*key) for key in new])
            return msgs

        def poll(self, *args, **kwargs):
            msg = super().poll(*args, **kwargs)
            if self.in_group:
                self._after([] if msg is None else [msg])
            return msg

        def consume(self, *args, **kwargs):
            batch = super().consume(*args, **kwargs)
            return self._after(batch) if self.in_group else batch

    worker.Consumer = HoldingConsumer


def _slow_restores() -> None:
    """``$TEST_SLOW_RESTORE=<records>:<ms>``: each read of the worker's restore consumers
    (changelog and timers) returns at most that many records and then sleeps that long, so
    that a partition this worker gains stays restoring for seconds while its loop goes on."""
    spec = os.environ.get("TEST_SLOW_RESTORE")
    if not spec:
        return
    most, ms = (int(v) for v in spec.split(":"))

    from kstatefun.runtime import worker

    class SlowRestoreConsumer(worker.Consumer):
        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            self.restoring = config.get("group.id") == "kstatefun-restore"

        def consume(self, num_messages=1, *args, **kwargs):
            if not self.restoring:
                return super().consume(num_messages, *args, **kwargs)
            batch = super().consume(min(num_messages, most), *args, **kwargs)
            if batch:
                time.sleep(ms / 1000)
            return batch

    worker.Consumer = SlowRestoreConsumer


_pause_reads_when_asked()
_group_consumer_properties()
_hold_invocations_gained()
_slow_restores()
