"""The worker's producer lingers (kafka/clients.py TRANSACTIONAL_PRODUCER_TUNING) on the
premise that a commit's flush sends whatever lingers at once, so no record becomes visible
later for the linger. Asked of a real broker with a linger longer than the flush's bound:
were the flush to wait it out, the records would still be unsent when the flush gives up."""

import pytest
from confluent_kafka import Consumer, Producer

from kstatefun.kafka import clients

pytestmark = pytest.mark.kafka

# Longer than the flush's bound below, and below message.timeout.ms (librdkafka's 300 s),
# since librdkafka refuses a linger.ms that is not.
LINGER_MS = 50_000
FLUSH_S = 20


def test_a_commit_sends_what_lingers_without_waiting_for_it(
    kafka_bootstrap, create_topic, unique_name
):
    topic = create_topic(unique_name("out"))
    producer = Producer(
        clients.transactional_producer_config(
            kafka_bootstrap, unique_name("txn"), 60_000, {"linger.ms": str(LINGER_MS)}
        )
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, f"v{i}".encode(), f"k{i}".encode())
    producer.poll(2.0)
    assert len(producer) == 10, "the linger did not hold the records back"
    assert producer.flush(FLUSH_S) == 0, "the flush waited for the linger"
    producer.commit_transaction(30)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name("reader"),
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        values = []
        for _ in range(150):  # at most 30 s
            values += [m.value() for m in consumer.consume(10, 0.2) if not m.error()]
            if len(values) == 10:
                break
        assert sorted(values) == sorted(f"v{i}".encode() for i in range(10))
    finally:
        consumer.close()
