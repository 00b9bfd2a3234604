"""Internal topics on a real broker: created right, and refused when an existing one would
break a guarantee."""

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource

from kstatefun.errors import TopicError
from kstatefun.kafka import clients
from kstatefun.kafka.errors import call_with_retry
from kstatefun.kafka.partitioner import partition_for_key
from kstatefun.kafka.topics import (
    DEFAULT_PARTITIONS,
    InternalTopics,
    app_partitioner,
    choose_partitions,
    ensure_internal_topics,
    internal_topic_specs,
    require_topics_exist,
    sample_placement,
)

pytestmark = pytest.mark.kafka


def test_created_with_partitions_and_compaction(kafka_admin, unique_name):
    topics = InternalTopics(unique_name("app"))
    ensure_internal_topics(kafka_admin, internal_topic_specs(topics, 3))
    md = kafka_admin.list_topics(timeout=10)
    assert len(md.topics[topics.invocations].partitions) == 3
    assert len(md.topics[topics.changelog].partitions) == 3
    res = ConfigResource(ConfigResource.Type.TOPIC, topics.changelog)
    configs = kafka_admin.describe_configs([res])[res].result()
    assert configs["cleanup.policy"].value == "compact"
    # idempotent: a second worker starting finds everything in place
    ensure_internal_topics(kafka_admin, internal_topic_specs(topics, 3))


def test_wrong_partition_count_is_a_clear_error(kafka_admin, unique_name, create_topic):
    topics = InternalTopics(unique_name("app"))
    create_topic(topics.invocations, partitions=2)
    with pytest.raises(TopicError, match=r"has 2 partitions .* partitions=4.*set it to 2"):
        ensure_internal_topics(kafka_admin, internal_topic_specs(topics, 4))


def test_changelog_without_compaction_is_a_clear_error(kafka_admin, unique_name, create_topic):
    topics = InternalTopics(unique_name("app"))
    create_topic(topics.changelog, partitions=4, config={"cleanup.policy": "delete"})
    with pytest.raises(TopicError, match=r"cleanup.policy=delete but needs cleanup.policy=compact"):
        ensure_internal_topics(kafka_admin, internal_topic_specs(topics, 4))


def test_missing_ingress_topic_is_a_clear_error(kafka_admin, unique_name):
    with pytest.raises(TopicError, match="ingress topic.*do not exist"):
        require_topics_exist(kafka_admin, [unique_name("nope")], "ingress")


@pytest.mark.parametrize(
    ("librdkafka", "ours", "count"),
    [
        ("murmur2_random", "murmur2", 7),
        ("consistent_random", "crc32", 7),  # librdkafka's default
        ("consistent_random", "crc32", 6),
        ("consistent", "crc32", 10),
    ],
)
def test_partitioner_agrees_with_librdkafka(
    kafka_bootstrap, unique_name, create_topic, librdkafka, ours, count
):
    topic = create_topic(unique_name(ours), partitions=count)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": librdkafka})
    keys = [f"user-{i}".encode() for i in range(200)] + ["ü-ñ-界".encode(), b"x" * 301, b"a"]
    for key in keys:
        producer.produce(topic, b"v", key)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(count)])
    seen = {}
    while len(seen) < len(keys):
        for msg in consumer.consume(500, timeout=1):
            assert not msg.error()
            seen[msg.key()] = msg.partition()
    consumer.close()
    assert {k: seen[k] for k in keys} == {k: partition_for_key(k, count, ours) for k in keys}


def _partitioner(bootstrap, admin, topics, given):
    """As a worker starts: retrying what clears once the cluster settles (a new topic's
    leader)."""
    return call_with_retry(
        lambda: app_partitioner(
            admin,
            topics,
            given,
            lambda: Consumer(clients.restore_consumer_config(bootstrap, {})),
            lambda: Producer(clients.idempotent_producer_config(bootstrap, {})),
        )[:2],
        "recording the partitioner",
    )


def test_a_new_app_records_crc32_and_keeps_it(kafka_bootstrap, kafka_admin, unique_name):
    topics = InternalTopics(unique_name("app"))
    assert _partitioner(kafka_bootstrap, kafka_admin, topics, None) == ("crc32", "the default")
    # every later worker reads it back, whatever it was given
    recorded = ("crc32", f"recorded in {topics.meta}")
    assert _partitioner(kafka_bootstrap, kafka_admin, topics, None) == recorded
    assert _partitioner(kafka_bootstrap, kafka_admin, topics, "crc32") == recorded
    with pytest.raises(TopicError, match=r"partitioner=murmur2 .*places its ids with crc32"):
        _partitioner(kafka_bootstrap, kafka_admin, topics, "murmur2")


def test_the_setting_decides_for_a_new_app(kafka_bootstrap, kafka_admin, unique_name):
    topics = InternalTopics(unique_name("app"))
    assert _partitioner(kafka_bootstrap, kafka_admin, topics, "murmur2")[0] == "murmur2"
    assert _partitioner(kafka_bootstrap, kafka_admin, topics, None)[0] == "murmur2"
    with pytest.raises(TopicError, match="Unset partitioner or set it to murmur2"):
        _partitioner(kafka_bootstrap, kafka_admin, topics, "crc32")


def test_an_app_from_before_the_record_keeps_murmur2(
    kafka_bootstrap, kafka_admin, unique_name, create_topic
):
    topics = InternalTopics(unique_name("app"))
    ensure_internal_topics(kafka_admin, internal_topic_specs(topics, 3))  # state, no record
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.changelog, b"state", b"key", partition=2)
    assert producer.flush(30) == 0
    with pytest.raises(TopicError, match="KSTATEFUN_PARTITIONER.*places its ids with murmur2"):
        _partitioner(kafka_bootstrap, kafka_admin, topics, "crc32")
    assert _partitioner(kafka_bootstrap, kafka_admin, topics, None)[0] == "murmur2"


def test_state_topics_created_empty_beforehand_are_a_new_app(
    kafka_bootstrap, kafka_admin, unique_name
):
    topics = InternalTopics(unique_name("app"))
    ensure_internal_topics(kafka_admin, internal_topic_specs(topics, 3))  # as operations.md does
    assert _partitioner(kafka_bootstrap, kafka_admin, topics, None) == ("crc32", "the default")


def test_the_first_record_wins(kafka_bootstrap, kafka_admin, unique_name):
    topics = InternalTopics(unique_name("app"))
    _partitioner(kafka_bootstrap, kafka_admin, topics, "murmur2")
    # a racing worker that found nothing recorded and wrote its own choice afterwards
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.meta, b'{"partitioner": "crc32"}', b"partitioner")
    assert producer.flush(30) == 0
    assert _partitioner(kafka_bootstrap, kafka_admin, topics, None)[0] == "murmur2"


def test_compacted_invocations_topic_is_refused(kafka_admin, unique_name, create_topic):
    topics = InternalTopics(unique_name("app"))
    create_topic(topics.invocations, partitions=4, config={"cleanup.policy": "compact"})
    with pytest.raises(
        TopicError,
        match=r"cleanup.policy=compact but needs cleanup.policy=delete \(compaction would drop",
    ):
        ensure_internal_topics(kafka_admin, internal_topic_specs(topics, 4))


def test_partitions_come_from_existing_topics_then_flag_then_ingress(
    kafka_admin, unique_name, create_topic
):
    small, large = create_topic(unique_name("in"), 2), create_topic(unique_name("in"), 5)
    new = InternalTopics(unique_name("app"))
    assert choose_partitions(kafka_admin, new, None, [small, large]) == (
        5,
        f"ingress topic {large}",
    )
    assert choose_partitions(kafka_admin, new, 3, [small, large]) == (3, "--partitions")
    assert choose_partitions(kafka_admin, new, None, [])[0] == DEFAULT_PARTITIONS

    existing = InternalTopics(unique_name("app"))
    ensure_internal_topics(kafka_admin, internal_topic_specs(existing, 6))
    assert choose_partitions(kafka_admin, existing, None, [small, large]) == (
        6,
        f"existing topic {existing.invocations}",
    )
    # a flag that differs is kept, so that ensure_internal_topics refuses it
    count, _ = choose_partitions(kafka_admin, existing, 4, [large])
    with pytest.raises(TopicError, match=r"has 6 partitions .* partitions=4.*set it to 6"):
        ensure_internal_topics(kafka_admin, internal_topic_specs(existing, count))


def test_replication_defaults_to_the_clusters_and_a_setting_overrides_it(kafka_admin, unique_name):
    brokers = len(kafka_admin.list_topics(timeout=10).brokers)
    res = ConfigResource(
        ConfigResource.Type.BROKER, str(next(iter(kafka_admin.list_topics(timeout=10).brokers)))
    )
    default_rf = int(
        kafka_admin.describe_configs([res])[res].result()["default.replication.factor"].value
    )
    topics = InternalTopics(unique_name("app"))
    ensure_internal_topics(kafka_admin, internal_topic_specs(topics, 2))
    md = kafka_admin.list_topics(timeout=10)
    for name in (topics.invocations, topics.changelog, topics.timers, topics.dead_letters):
        assert {len(p.replicas) for p in md.topics[name].partitions.values()} == {default_rf}
    # more replicas than brokers: refused by the cluster, and the error names the topic
    more = InternalTopics(unique_name("app"))
    with pytest.raises(TopicError, match=f"could not create internal topic '{more.app_id}-"):
        ensure_internal_topics(
            kafka_admin, internal_topic_specs(more, 2, replication_factor=brokers + 1)
        )
    set_isr = InternalTopics(unique_name("app"))
    ensure_internal_topics(
        kafka_admin,
        internal_topic_specs(set_isr, 2, replication_factor=brokers, min_insync_replicas=1),
    )
    res = ConfigResource(ConfigResource.Type.TOPIC, set_isr.changelog)
    assert kafka_admin.describe_configs([res])[res].result()["min.insync.replicas"].value == "1"


@pytest.mark.parametrize(
    ("librdkafka", "ours"), [("consistent_random", "crc32"), ("murmur2", "murmur2")]
)
def test_placement_of_existing_records_tells_the_partitioner(
    kafka_bootstrap, unique_name, create_topic, librdkafka, ours
):
    topic = create_topic(unique_name("in"), partitions=5)
    empty = create_topic(unique_name("empty"), partitions=3)
    restore = lambda: Consumer(clients.restore_consumer_config(kafka_bootstrap, {}))  # noqa: E731
    assert sample_placement(restore(), {topic: 5, empty: 3}) is None
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": librdkafka})
    for i in range(300):
        producer.produce(topic, b"v", f"user-{i}".encode())
    producer.produce(topic, b"v", None)  # a record without a key tells nothing
    assert producer.flush(30) == 0
    found = sample_placement(restore(), {topic: 5, empty: 3})
    assert found == (ours, f"the placement of 200 records on {topic}")
