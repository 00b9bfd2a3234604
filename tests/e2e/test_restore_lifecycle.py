"""Restore runs step by step in the worker's loop (runtime/assignment.py): a partition stays
paused until its state is restored, while the worker's other partitions are resumed.

Partition 0's changelog holds the held keys' counts, then many unrelated records, then the
held keys' later counts: a worker that processed partition 0 before its restore reached the
end would count those keys from an older value, and the exactly-once check would fail."""

import re

import pytest
from confluent_kafka import Producer

from kstatefun.kafka.partitioner import id_partitioner
from kstatefun.kafka.topics import InternalTopics
from kstatefun.wire.avro import encode_changelog_value
from tests.harness import (
    App,
    check_exactly_once,
    keyed_events,
    make_app,
    produce_events,
    read_committed,
)

pytestmark = pytest.mark.kafka

FILLER = 200_000  # records in partition 0's changelog that take a restore many steps


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    application = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic, partitions=2)
    yield application
    application.stop_all()


def fill_changelog(app: App, partition: int, count: int) -> None:
    """``count`` state rows of a function nobody calls, in one changelog partition."""
    producer = Producer({"bootstrap.servers": app.bootstrap, "linger.ms": 20})
    value = encode_changelog_value("io.statefun.types/int", b"\x00")
    topic = InternalTopics(app.app_id).changelog
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value, b"filler/%d" % i, partition)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def run_batch(app: App, instance: str, expected: dict, start_seq: int, total: int) -> int:
    """Produce 3 events per key, run ``instance`` until egress holds ``total`` + them, stop."""
    events, more = keyed_events(keys=8, per_key=3, start_seq=start_seq)
    for key, seqs in more.items():
        expected.setdefault(key, []).extend(seqs)
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker(instance)
    read_committed(app.bootstrap, app.egress, total + len(events), settle=0.2)
    assert app.stop_worker(instance) == 0, app.all_logs()
    return total + len(events)


def test_a_partition_processes_only_once_restored_and_the_others_do_not_wait(app):
    expected: dict[str, list[int]] = {}
    total = run_batch(app, "w1", expected, 0, 0)
    fill_changelog(app, 0, FILLER)
    total = run_batch(app, "w1", expected, 1000, total)  # its counts land after the filler
    partitioner = re.search(r"partitioner=(\w+)", app.log("w1")).group(1)
    held = {k for k in expected if id_partitioner(2, partitioner)(k) == 0}
    assert held and held != set(expected)  # both partitions have keys

    # a new instance restores both partitions from scratch; events wait in both
    events, more = keyed_events(keys=8, per_key=3, start_seq=2000)
    for key, seqs in more.items():
        expected[key].extend(seqs)
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w2")
    records = read_committed(app.bootstrap, app.egress, total + len(events))
    assert check_exactly_once(records, expected) == [], app.all_logs()
    # partition 1 (a few records) was resumed while partition 0 was still restoring
    assert "restored invocations partitions=[1] still_restoring=[0]" in app.log("w2")
