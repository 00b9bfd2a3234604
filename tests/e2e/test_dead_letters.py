"""Bad input lands in <app>-dead-letters with its reason and origin, in the same transaction;
the good records around it are processed exactly once."""

import json

import pytest

from kstatefun.wire.avro import decode_dead_letter
from tests.harness import check_exactly_once, keyed_events, make_app, produce_events, read_committed

pytestmark = pytest.mark.kafka


def read_dead_letters(bootstrap, topic, expected):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "dl-reader",
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    import time

    deadline = time.monotonic() + 60
    while len(out) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(100, timeout=0.5):
            if not msg.error():
                out.append((msg.key(), decode_dead_letter(msg.value()), dict(msg.headers() or [])))
    consumer.close()
    return out


def test_each_bad_input_is_a_dead_letter_and_good_ones_flow(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    good, expected = keyed_events(keys=3, per_key=4)
    bad = [
        (None, json.dumps({"seq": -1}).encode()),  # null key
        (b"\xff\xfe", json.dumps({"seq": -2}).encode()),  # key not UTF-8
        (b"", json.dumps({"seq": -7}).encode()),  # empty key: no address has an empty id
        (b"k0", b"{not json"),  # undecodable value
        (b"k1", json.dumps({"seq": -3, "boom": True}).encode()),  # function raises
        (b"k2", json.dumps({"seq": -4, "stray": True}).encode()),  # unknown target type
        (b"k0", None),  # tombstone: no value
        (b"k1", json.dumps({"seq": -5, "egress_topic": "no-such-topic"}).encode()),
        (b"k2", json.dumps({"seq": -6, "egress_id": "test/undeclared"}).encode()),
        (b"k3", b'"' + b"x" * 998_000 + b'"'),  # fits Kafka, not with an envelope around it
    ]
    # bad records between the good ones, same keys, so ordering around them is checked too
    events = good[:6] + bad + good[6:]
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1")
    try:
        records = read_committed(app.bootstrap, app.egress, len(good))
        assert check_exactly_once(records, expected) == [], app.all_logs()
        letters = read_dead_letters(app.bootstrap, f"{app.app_id}-dead-letters", len(bad))
    finally:
        app.stop_all()
    reasons = sorted(d["reason"] for _, d, _ in letters)
    assert reasons == sorted(
        [
            "null-key",
            "invalid-key",
            "invalid-key",
            "undecodable-value",
            "function-error",
            "unknown-function",
            "null-value",
            "unknown-egress",
            "unknown-egress",
            "record-too-large",
        ]
    ), letters
    egress_messages = sorted(d["message"] for _, d, _ in letters if d["reason"] == "unknown-egress")
    assert "names topic 'no-such-topic', which does not exist" in egress_messages[0]
    assert "egress 'test/undeclared' is not declared in module.yaml" in egress_messages[1]
    by_reason = {d["reason"]: (k, d, h) for k, d, h in letters}
    _, record, _ = by_reason["record-too-large"]
    assert len(record["value"]) == 64 * 1024 and "cut to" in record["message"]
    key, record, headers = by_reason["function-error"]
    assert key == b"k1"
    assert record["target_type"] == "test/counter" and record["target_id"] == "k1"
    assert record["exception_type"] == "RuntimeError" and "boom requested" in record["message"]
    assert headers["kstatefun.reason"] == b"function-error"
    _, record, _ = by_reason["null-key"]
    assert record["source_topic"] == app.ingress and record["source_offset"] >= 0
    assert json.loads(record["value"]) == {"seq": -1}
    _, record, _ = by_reason["unknown-function"]
    assert record["target_type"] == "test/nobody" and record["caller_type"] == "test/counter"
    _, record, _ = by_reason["undecodable-value"]
    assert record["value"] == b"{not json" and record["target_id"] == "k0"


def test_plain_text_on_a_string_ingress_is_a_dead_letter_with_the_raw_type_hint(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    app = make_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, value_type="io.statefun.types/string"
    )
    produce_events(app.bootstrap, app.ingress, [(b"ann", b"hello from a console producer")])
    app.start_worker("w1")
    try:
        letters = read_dead_letters(app.bootstrap, f"{app.app_id}-dead-letters", 1)
    finally:
        app.stop_all()
    assert len(letters) == 1, app.all_logs()
    _, letter, _ = letters[0]
    assert letter["reason"] == "undecodable-value"
    assert letter["source_topic"] == app.ingress
    message = letter["message"]
    assert f"ingress topic '{app.ingress}' has valueType io.statefun.types/string" in message
    assert "raw type" in message and "message.raw_value()" in message
