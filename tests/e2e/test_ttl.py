"""State TTL on a real broker, StateFun semantics: expire_after_write refreshes on write,
expire_after_call on every invocation; an expired value is never returned, becomes a tombstone
on the changelog, and stays expired across a restart."""

import json
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from kstatefun.wire.avro import encode_changelog_key
from tests.harness import make_app, produce_events, read_committed

pytestmark = pytest.mark.kafka

TTL_MS = 3000


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    application = make_app(
        kafka_bootstrap,
        tmp_path,
        unique_name,
        create_topic,
        partitions=1,
        functions="tests.apps.timers:functions",
        target="test/scheduler",
        value_type="test/Command",
    )
    application.env["TEST_TTL_MS"] = str(TTL_MS)
    yield application
    application.stop_all()


def send(app, key, op, seq, **extra):
    produce_events(
        app.bootstrap,
        app.ingress,
        [(key.encode(), json.dumps({"op": op, "seq": seq, **extra}).encode())],
    )


def outputs(app, n):
    return {
        v.split(":")[1]: v.split(":")[2]
        for _, v in read_committed(app.bootstrap, app.egress, n, settle=0.3)
    }


def changelog_values(app, key):
    consumer = Consumer(
        {"bootstrap.servers": app.bootstrap, "group.id": "cl", "isolation.level": "read_committed"}
    )
    consumer.assign([TopicPartition(f"{app.app_id}-changelog", 0, 0)])
    values = [
        m.value() for m in consumer.consume(1000, timeout=3) if not m.error() and m.key() == key
    ]
    consumer.close()
    return values


def test_expire_after_write_and_after_call(app):
    app.start_worker("w1")
    send(app, "w", "count_write", 1)
    send(app, "w", "count_write", 2)
    send(app, "c", "count_call", 3)
    assert outputs(app, 3) == {"1": "1", "2": "2", "3": "1"}
    for seq in (4, 5, 6, 7):  # calls without writes, each well within the TTL of the last
        time.sleep(1.0)
        send(app, "c", "count_call", seq, peek=True)
    # 4 s after both writes: the after-call value lives on, the after-write one has expired
    send(app, "c", "count_call", 8)
    send(app, "w", "count_write", 9)
    got = outputs(app, 9)
    assert (got["8"], got["9"]) == ("2", "1"), got

    # the sweep wrote a tombstone for the expired value, inside a transaction
    key = encode_changelog_key("test/ttl_write", "w", "count")
    history = changelog_values(app, key)
    assert None in history, history


def test_expiry_survives_a_restart(app):
    app.start_worker("w1")
    send(app, "r", "count_write", 1)
    send(app, "r", "count_write", 2)
    assert outputs(app, 2) == {"1": "1", "2": "2"}
    assert app.stop_worker("w1") == 0
    time.sleep(TTL_MS / 1000 + 0.5)  # expires while no worker runs
    app.start_worker("w1")
    send(app, "r", "count_write", 3)
    assert outputs(app, 3)["3"] == "1", app.all_logs()
