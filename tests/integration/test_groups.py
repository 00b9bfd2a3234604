"""Whether a group's coordinator answers (kafka/groups.py), asked of a real broker: what the
worker relies on to tell a stuck producer from a coordinator that is still moving."""

import time

import pytest
from confluent_kafka import Consumer

from kstatefun.devkafka.broker import free_ports
from kstatefun.kafka import clients
from kstatefun.kafka.groups import coordinator_answers

pytestmark = pytest.mark.kafka


def test_the_coordinator_of_a_live_group_answers(kafka_bootstrap, create_topic, unique_name):
    topic = create_topic(unique_name("in"))
    group = unique_name("group")
    consumer = Consumer(clients.group_consumer_config(kafka_bootstrap, group, {}))
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while not consumer.assignment():  # joined: the coordinator has the group loaded
            assert time.monotonic() < deadline, "the consumer never joined its group"
            consumer.poll(0.2)
        assert coordinator_answers(kafka_bootstrap, {}, group, 10.0) is True
    finally:
        consumer.close()


def test_a_cluster_that_does_not_answer_is_no_answer():
    (port,) = free_ports(1)  # nothing listens there
    assert coordinator_answers(f"127.0.0.1:{port}", {}, "any-group", 1.0) is False
