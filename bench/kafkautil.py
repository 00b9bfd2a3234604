"""Kafka helpers for the benchmark driver: topics, input, the read_committed reader."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

Event = tuple[bytes, bytes]

# The paced producers' batching (latency, scale-out, restore under load): librdkafka's default,
# what the users' producers run with. At 0 every event was a Produce request of its own and at
# 5,000 events/s the broker, not the contenders, set the two-worker parts' latency.
PACED_LINGER_MS = 5


def create_topics(
    admin: AdminClient,
    names: Iterable[str],
    partitions: int,
    config: dict[str, str] | None = None,
    timeout: float = 30,
) -> None:
    """Create ``names`` and wait until every partition has a leader."""
    names = list(names)
    futures = admin.create_topics(
        [NewTopic(n, partitions, 1, config=config or {}) for n in names],
        operation_timeout=timeout,
    )
    for fut in futures.values():
        try:
            fut.result()
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout)
        if all(
            n in md.topics
            and md.topics[n].error is None
            and len(md.topics[n].partitions) == partitions
            and all(p.leader >= 0 for p in md.topics[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topics {names} not ready after {timeout}s")


def keyed_events(count: int, keys: int, prefix: str = "k") -> list[Event]:
    """``count`` events over ``keys`` keys, interleaved: key i gets events i, i+keys, ..."""
    names = [f"{prefix}{i}".encode() for i in range(keys)]
    return [(names[i % keys], b'{"seq":%d}' % i) for i in range(count)]


def produce(
    bootstrap: str, topic: str, events: Sequence[Event], partitioner: str = "murmur2_random"
) -> float:
    """Produce ``events`` (key, value) with librdkafka's ``partitioner`` (murmur2_random: as
    Java producers; consistent_random: librdkafka's default, CRC32); returns seconds."""
    started = time.monotonic()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "partitioner": partitioner,
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": True,
        }
    )
    p = producer.produce
    for key, value in events:
        while True:
            try:
                p(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0:
        raise RuntimeError(f"could not produce {len(events)} events to {topic}")
    return time.monotonic() - started


class Reader:
    """Reads a topic with read_committed from the beginning in a thread and keeps every record
    with the monotonic time it became visible here and its producer's timestamp (CreateTime,
    wall-clock ms): (seconds, key, value, create_ms)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.records: list[tuple[float, bytes | None, bytes | None, int]] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{topic}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        md = self._consumer.list_topics(topic, timeout=30)
        self._consumer.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # consume(n, timeout) returns only when n records arrived or the timeout passed: it
        # would hold back what is already visible, so wait for one record, then take the rest
        consume, poll = self._consumer.consume, self._consumer.poll
        records = self.records
        now = time.monotonic
        while not self._stop.is_set():
            first = poll(0.05)
            if first is None:
                continue
            batch = [first, *consume(10_000, timeout=0)]
            if batch:
                t = now()
                records.extend(
                    (t, m.key(), m.value(), m.timestamp()[1]) for m in batch if m.error() is None
                )

    def __len__(self) -> int:
        return len(self.records)

    def wait_for(
        self, count: int, timeout: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        """Wait until ``count`` records arrived; False on timeout or when ``alive()`` fails."""
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            if time.monotonic() > deadline or not alive():
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def group_stable(admin: AdminClient, group: str, members: int) -> bool:
    """True when ``group`` is Stable with ``members`` members that all have partitions."""
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    except KafkaException:
        return False
    return (
        desc.state.name == "STABLE"
        and len(desc.members) == members
        and all(m.assignment.topic_partitions for m in desc.members)
    )


def wait_group_stable(admin: AdminClient, group: str, members: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if group_stable(admin, group, members):
            return True
        time.sleep(0.25)
    return False


class GroupWatcher:
    """Polls a consumer group in a thread and keeps the monotonic time it was first seen
    Stable with ``members`` members that all have partitions: when processing can start."""

    def __init__(self, admin: AdminClient, group: str, members: int, timeout: float = 120) -> None:
        self.stable_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(admin, group, members, timeout), daemon=True
        )
        self._thread.start()

    def _run(self, admin: AdminClient, group: str, members: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            if group_stable(admin, group, members):
                self.stable_at = time.monotonic()
                return
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)
