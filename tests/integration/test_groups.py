"""Whether a group's coordinator answers (kafka/groups.py), asked of a real broker: what the
worker relies on to tell a stuck producer from a coordinator that is still moving."""

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from kstatefun.kafka import clients
from kstatefun.kafka.groups import coordinator_answers

pytestmark = pytest.mark.kafka


@pytest.fixture
def joined(kafka_bootstrap, create_topic, unique_name):
    """A consumer of a new topic that has joined its group (so the group's coordinator is
    known and loaded): (consumer, topic, group)."""
    topic = create_topic(unique_name("in"))
    group = unique_name("group")
    consumer = Consumer(clients.group_consumer_config(kafka_bootstrap, group, {}))
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer never joined its group"
            consumer.poll(0.2)
        yield consumer, topic, group
    finally:
        consumer.close()


def test_a_live_groups_coordinator_answers(joined):
    consumer, topic, _ = joined
    assert coordinator_answers(consumer, [TopicPartition(topic, 0, 5)], 10.0) is True


def test_a_pending_transactional_offset_commit_is_no_answer(joined, kafka_bootstrap, unique_name):
    """A producer's offsets sent in an open transaction: the coordinator holds them as unstable,
    and the worker must not read that as "the coordinator answers but the call is stuck"."""
    consumer, topic, _ = joined
    producer = Producer(
        clients.transactional_producer_config(kafka_bootstrap, unique_name("txn"), 60_000, {})
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.send_offsets_to_transaction(
        [TopicPartition(topic, 0, 1)], consumer.consumer_group_metadata(), 30
    )
    assert coordinator_answers(consumer, [TopicPartition(topic, 0, 2)], 3.0) is False
    producer.commit_transaction(30)
    assert coordinator_answers(consumer, [TopicPartition(topic, 0, 2)], 10.0) is True
