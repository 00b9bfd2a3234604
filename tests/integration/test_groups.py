"""Where a group's coordinator is (kafka/groups.py), asked of a real broker: what the worker
relies on to tell a stuck producer from a coordinator that is still moving."""

import time

import pytest
from confluent_kafka import Consumer

from kstatefun.kafka import clients
from kstatefun.kafka.groups import coordinator_elected

pytestmark = pytest.mark.kafka


def test_a_live_groups_coordinator_is_found_in_metadata(kafka_bootstrap, create_topic, unique_name):
    topic = create_topic(unique_name("in"))
    group = unique_name("group")
    consumer = Consumer(clients.group_consumer_config(kafka_bootstrap, group, {}))
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while not consumer.assignment():  # joined: __consumer_offsets exists, with leaders
            assert time.monotonic() < deadline, "the consumer never joined its group"
            consumer.poll(0.2)
        assert coordinator_elected(consumer, group, 10.0) is True
    finally:
        consumer.close()
