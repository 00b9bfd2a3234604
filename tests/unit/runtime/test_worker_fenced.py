"""A group consumer's fatal error, as the worker explains it: a static member fenced by a newer
one with the same --instance-id (classic protocols), a static member refused because another
member still holds its instance id (KIP-848) while it has partitions, a broker without the
KIP-848 protocol; all stop with the one FencedError text (runtime/commit.py) or a ConfigError
naming the setting. A refusal before anything is assigned is waited out instead
(test_worker_rejoin.py)."""

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from kstatefun.errors import ConfigError, FencedError
from kstatefun.runtime.worker import Worker


def fatal(text: str, flag: bool = True) -> KafkaError:
    # a consumer's message error carries _FATAL, with or without the fatal flag
    return KafkaError(KafkaError._FATAL, f"Fatal error: {text}", fatal=flag)


# librdkafka's texts (rd_kafka_err2str of the cause, then the heartbeat's own words)
FENCED = fatal("Broker: Static consumer fenced by other consumer with same group.instance.id")
UNRELEASED = fatal(
    "Broker: The instance ID is still used by another member in the consumer group: "
    "ConsumerGroupHeartbeat fatal error: Broker: The instance ID is still used by another "
    "member in the consumer group",
    flag=False,
)
UNSUPPORTED = fatal(
    "Broker: API version not supported: ConsumerGroupHeartbeat fatal error: Broker: API "
    "version not supported"
)


def group_fatal(err: KafkaError, static_membership: bool, protocol: str = "consumer"):
    w = Worker.__new__(Worker)
    w.assignment = SimpleNamespace(assigned=True)
    w.txn = SimpleNamespace(is_open=False)
    w.settings = SimpleNamespace(
        app_id="shop",
        instance_id="w1",
        static_membership=static_membership,
        rebalance_protocol=protocol,
        bootstrap_servers="b:9092",
    )
    with pytest.raises(Exception) as e:
        w._without_errors([SimpleNamespace(error=lambda: err)])
    return e.value


def test_a_fenced_static_member_stops_naming_the_member_and_the_fix():
    e = group_fatal(FENCED, True, "eager")
    assert isinstance(e, FencedError)
    assert str(e) == (
        "group member shop-w1 (static membership) was fenced: it was taken over by another "
        "process; if two workers run with the same --instance-id, give each its own; stopping "
        f"({FENCED.str()})"
    )


def test_a_fatal_consumer_error_without_static_membership_is_not_called_a_fence():
    assert type(group_fatal(FENCED, False)) is KafkaException


def test_an_unreleased_instance_id_with_partitions_says_who_may_hold_it_and_when():
    e = group_fatal(UNRELEASED, True)
    assert isinstance(e, FencedError)
    assert "group member shop-w1 (static membership) was fenced" in str(e)
    assert "stopped without leaving the group" in str(e)
    assert "consumer.session.timeout.ms" in str(e)


def test_a_broker_without_the_consumer_protocol_is_a_configuration_error_naming_the_setting():
    e = group_fatal(UNSUPPORTED, False)
    assert isinstance(e, ConfigError)
    assert "KSTATEFUN_REBALANCE_PROTOCOL" in str(e) and "b:9092" in str(e)
    # the same text from a classic group is not about the protocol setting
    assert type(group_fatal(UNSUPPORTED, False, "eager")) is KafkaException
