"""kafka_properties tune kstatefun's client defaults but cannot undo what its guarantees need."""

import logging

from kstatefun.kafka import clients


def test_kafka_properties_override_tuning_defaults():
    extra = {"linger.ms": "20", "session.timeout.ms": "45000", "fetch.wait.max.ms": "50"}
    producer = clients.transactional_producer_config("b:9092", "app-w1", 10_000, extra)
    consumer = clients.group_consumer_config("b:9092", "app", extra, "eager")
    restore = clients.restore_consumer_config("b:9092", extra)
    assert producer["linger.ms"] == "20"
    assert consumer["session.timeout.ms"] == "45000"
    assert consumer["fetch.wait.max.ms"] == restore["fetch.wait.max.ms"] == "50"


def test_guarantee_settings_win_with_a_warning(caplog):
    extra = {"isolation.level": "read_uncommitted", "enable.idempotence": "false", "acks": "1"}
    with caplog.at_level(logging.WARNING, logger="kstatefun.kafka.clients"):
        producer = clients.transactional_producer_config("b:9092", "app-w1", 10_000, extra)
        consumer = clients.group_consumer_config("b:9092", "app", extra)
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert consumer["isolation.level"] == "read_committed"
    text = caplog.text
    assert "enable.idempotence for the transactional producer" in text
    assert "acks for the transactional producer" in text
    assert "isolation.level for the group consumer" in text


def test_every_client_keeps_the_metadata_recovery_fix():
    for conf in (
        clients.base_config("b:9092", {}),
        clients.transactional_producer_config("b:9092", "t", 10_000, {}),
        clients.group_consumer_config("b:9092", "g", {}),
        clients.restore_consumer_config("b:9092", {}),
    ):
        assert conf["metadata.recovery.strategy"] == "none"


def test_the_rebalance_protocol_picks_the_assignor_and_who_owns_the_session():
    cooperative = clients.group_consumer_config("b:9092", "g", {}, "cooperative")
    eager = clients.group_consumer_config("b:9092", "g", {}, "eager")
    kip848 = clients.group_consumer_config("b:9092", "g", {})  # the default
    assert cooperative["partition.assignment.strategy"] == "cooperative-sticky"
    assert eager["partition.assignment.strategy"] == "range,roundrobin"
    # KIP-848: the broker assigns and times sessions; librdkafka refuses the client settings
    assert kip848["group.protocol"] == "consumer" and kip848["group.remote.assignor"] == "range"
    assert not {"partition.assignment.strategy", "session.timeout.ms"} & set(kip848)
    assert cooperative["session.timeout.ms"] == eager["session.timeout.ms"] == 10_000


def test_the_worker_producer_lingers_until_its_commit_flushes():
    """A commit's flush sends what lingers (tests/integration/test_producer_linger.py)."""
    conf = clients.transactional_producer_config("b:9092", "t", 10_000, {})
    assert conf["linger.ms"] == clients.TRANSACTIONAL_PRODUCER_TUNING["linger.ms"] == 100
