"""Delayed messages on a real broker: delivered once, cancellable, durable across kill -9 and
rebalances; a still-pending token is a dead letter."""

import json
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from kstatefun.wire.avro import decode_dead_letter
from tests.harness import make_app, produce_events, read_committed

pytestmark = pytest.mark.kafka


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    application = make_app(
        kafka_bootstrap,
        tmp_path,
        unique_name,
        create_topic,
        functions="tests.apps.timers:functions",
        target="test/scheduler",
        value_type="test/Command",
    )
    yield application
    application.stop_all()


def cmd(key, **fields):
    return key.encode(), json.dumps(fields).encode()


def parse(records):
    """{(id, seq): [lateness ms, ...]} of the echo records."""
    out = {}
    for key, value in records:
        rid, seq, late, caller = value.split(":")
        assert rid == key and caller == "test/scheduler"
        out.setdefault((rid, int(seq)), []).append(int(late))
    return out


def test_fires_once_cancelled_never_zero_delay_and_duplicate_token(app):
    app.start_worker("w1")
    produce_events(
        app.bootstrap,
        app.ingress,
        [
            cmd("a", op="schedule", seq=1, delay_ms=300),
            cmd("a", op="schedule", seq=2, delay_ms=600, token="t"),
            cmd("a", op="schedule", seq=3, delay_ms=0),
            cmd("b", op="schedule", seq=4, delay_ms=800, token="x"),
            cmd("b", op="cancel", token="x"),
            cmd("b", op="cancel", token="never-scheduled"),  # a no-op
            cmd("c", op="schedule", seq=5, delay_ms=700, token="dup"),
            cmd("c", op="schedule", seq=6, delay_ms=700, token="dup"),  # still pending
            cmd("d", op="schedule", seq=7, delay_ms=200, token="t"),  # tokens are per sender
        ],
    )
    fired = parse(read_committed(app.bootstrap, app.egress, 5, settle=1.5))
    assert set(fired) == {("a", 1), ("a", 2), ("a", 3), ("c", 5), ("d", 7)}, app.all_logs()
    assert all(len(lates) == 1 for lates in fired.values())  # exactly once
    assert all(-50 <= late < 5000 for (late,) in fired.values())  # never early
    consumer = Consumer(
        {"bootstrap.servers": app.bootstrap, "group.id": "dl", "isolation.level": "read_committed"}
    )
    consumer.assign([TopicPartition(f"{app.app_id}-dead-letters", 0, 0)])
    letters = [
        decode_dead_letter(m.value()) for m in consumer.consume(10, timeout=5) if not m.error()
    ]
    consumer.close()
    assert [(d["reason"], d["target_id"]) for d in letters] == [
        ("duplicate-cancellation-token", "c")
    ]
    assert "token 'dup', which is still pending" in letters[0]["message"]


def test_kill_minus_nine_before_and_around_firing_delivers_each_once(app):
    # 60 timers due over ~6 s; the worker is killed before any fires and twice while they fire
    events = [cmd(f"k{i % 6}", op="schedule", seq=i, delay_ms=2500 + i * 60) for i in range(60)]
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1")
    time.sleep(1.5)  # let it join and commit before the first kill
    for pause in (0.5, 3.0, 2.0):
        time.sleep(pause)
        app.kill_worker("w1")
        app.start_worker("w1")
    fired = parse(read_committed(app.bootstrap, app.egress, 60, timeout=120))
    assert sorted(seq for _, seq in fired) == list(range(60)), app.all_logs()
    assert all(len(lates) == 1 for lates in fired.values()), fired


def test_a_rebalance_moves_pending_timers_to_the_new_owner(app):
    app.start_worker("w1")
    app.wait_for_log("w1", "assigned invocations")
    events = [cmd(f"k{i}", op="schedule", seq=i, delay_ms=6000) for i in range(24)]
    produce_events(app.bootstrap, app.ingress, events)
    time.sleep(2)  # scheduled and committed by w1
    app.start_worker("w2")
    app.wait_for_log("w2", "assigned invocations")  # a SIGTERM before that would kill it
    assert app.stop_worker("w1") == 0  # w2 now owns every partition and every pending timer
    fired = parse(read_committed(app.bootstrap, app.egress, 24, timeout=90))
    assert sorted(seq for _, seq in fired) == list(range(24)), app.all_logs()
    assert all(len(lates) == 1 for lates in fired.values())
