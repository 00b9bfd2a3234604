"""The limit: a bare confluent-kafka transactional consume-process-produce loop.

No framework, no envelopes, no SDK: the least Python per record that still does the Kafka I/O
kstatefun does, with kstatefun's client settings (kafka/clients.py) and its commit policy
(commit when a consume returns less than a full batch, or when the transaction has been open
for the commit interval; begin the next transaction no sooner than SETTLE_S after a commit).

Modes (W1 = count per key, W2 = chain):

- ``hop``:    ingress → internal topic → count (state) → changelog + egress   (kstatefun's W1 I/O)
- ``direct``: ingress → count (state) → changelog + egress                    (W1 without the hop)
- ``chain``:  ingress → internal → A (state) → internal → B (state) → changelog + egress (W2)
- ``restore``: read a changelog topic from the beginning into a dict and print the rate
  (the limit for kstatefun's restore).

State is a dict; the changelog gets the last value per key at each commit. There is no restore
on assignment: the benchmark never moves a key between workers while it is being counted.

    python bench/peers/bare.py --mode hop --bootstrap B --group G --instance I \
        --ingress IN --egress OUT --internal INT --changelog CL
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from kstatefun.kafka.clients import TRANSACTIONAL_PRODUCER_TUNING
from kstatefun.runtime.commit import SETTLE_S

STAGE_A = b"A"
STAGE_B = b"B"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["hop", "direct", "chain", "restore"], required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", default="bare")
    p.add_argument("--instance", default="0")
    p.add_argument("--ingress")
    p.add_argument("--egress")
    p.add_argument("--internal")
    p.add_argument("--changelog", required=True)
    p.add_argument("--commit-interval-ms", type=int, default=100)
    p.add_argument("--max-batch", type=int, default=500)
    args = p.parse_args()
    if args.mode == "restore":
        return restore(args.bootstrap, args.changelog)
    return run(args)


def run(args: argparse.Namespace) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # the same settings as kstatefun's group consumer and transactional producer
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "partition.assignment.strategy": "range,roundrobin",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "transactional.id": f"{args.group}-{args.instance}",
            "enable.idempotence": True,
            "transaction.timeout.ms": 10_000,
            "partitioner": "murmur2_random",
            **TRANSACTIONAL_PRODUCER_TUNING,
        }
    )
    producer.init_transactions(30)
    ingress, egress, internal, changelog = args.ingress, args.egress, args.internal, args.changelog
    mode = args.mode
    max_batch = args.max_batch
    interval = args.commit_interval_ms / 1000
    counts: dict[bytes, int] = {}  # state key (stage + key) -> count
    dirty: dict[tuple[int, bytes], bytes] = {}  # (partition, state key) -> changelog value
    offsets: dict[tuple[str, int], int] = {}
    is_open = False
    opened_at = committed_at = 0.0
    produce = producer.produce

    def commit() -> None:
        nonlocal is_open, committed_at
        for (partition, skey), value in dirty.items():
            while True:
                try:
                    produce(changelog, value, skey, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.send_offsets_to_transaction(
            [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            consumer.consumer_group_metadata(),
            30,
        )
        producer.commit_transaction(30)
        dirty.clear()
        offsets.clear()
        is_open = False
        committed_at = time.monotonic()

    def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
        if is_open:
            commit()

    consumer.subscribe([ingress] if mode == "direct" else [ingress, internal], on_revoke=on_revoke)
    try:
        while not stopping:
            if is_open:
                batch = consumer.consume(max_batch, timeout=0)
            else:
                first = consumer.poll(0.2)
                batch = [] if first is None else [first]
                if first is not None:
                    batch += consumer.consume(max_batch - 1, timeout=0)
            if batch:
                if not is_open:
                    settle = committed_at + SETTLE_S - time.monotonic()
                    if settle > 0:  # as kstatefun's commit protocol does (runtime/commit.py)
                        time.sleep(settle)
                    producer.begin_transaction()
                    is_open = True
                    opened_at = time.monotonic()
                for msg in batch:
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            print(f"consumer error: {msg.error()}", file=sys.stderr)
                        continue
                    topic = msg.topic()
                    partition = msg.partition()
                    offsets[(topic, partition)] = msg.offset() + 1
                    key = msg.key()
                    if topic == ingress:
                        if mode != "direct":
                            # the routing hop: the event goes to the key's internal partition
                            _produce(producer, internal, STAGE_A + msg.value(), key)
                            continue
                        stage = STAGE_B
                    else:
                        value = msg.value()
                        stage = value[:1]
                    skey = stage + key
                    count = counts.get(skey, 0) + 1
                    counts[skey] = count
                    dirty[(partition, skey)] = b"%d" % count
                    if mode == "chain" and stage == STAGE_A:
                        _produce(producer, internal, STAGE_B + b"%d" % count, key)
                    else:
                        _produce(producer, egress, b"%s:%d" % (key, count), key)
            if is_open and (len(batch) < max_batch or time.monotonic() - opened_at >= interval):
                commit()
    finally:
        if is_open:
            commit()
        consumer.close()
        producer.flush(10)
    return 0


def _produce(producer: Producer, topic: str, value: bytes, key: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


def restore(bootstrap: str, changelog: str) -> int:
    """Read ``changelog`` (read_committed) from the start into a dict, as fast as possible."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bare-restore",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            # as kstatefun's restore consumer (kafka/clients.py restore_consumer_config)
            "queued.min.messages": 200_000,
            "queued.max.messages.kbytes": 32_768,
        }
    )
    md = consumer.list_topics(changelog, timeout=30)
    parts = sorted(md.topics[changelog].partitions)
    ends = {}
    for p in parts:
        _, high = consumer.get_watermark_offsets(TopicPartition(changelog, p), 30, cached=False)
        if high > 0:
            ends[p] = high
    started = time.monotonic()
    consumer.assign([TopicPartition(changelog, p, 0) for p in ends])
    store: dict[bytes, bytes] = {}
    read = 0
    while ends:
        for msg in consumer.consume(10_000, timeout=0.2):
            if msg.error() is not None:
                continue
            value = msg.value()
            if value is None:
                store.pop(msg.key(), None)
            else:
                store[msg.key()] = value
            read += 1
        done = [
            tp
            for tp in consumer.position([TopicPartition(changelog, p) for p in ends])
            if tp.offset >= ends[tp.partition]
        ]
        for tp in done:
            del ends[tp.partition]
    elapsed = time.monotonic() - started
    consumer.close()
    print(
        json.dumps(
            {
                "records": read,
                "keys": len(store),
                "seconds": round(elapsed, 3),
                "rate": round(read / elapsed),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
