"""A consumer's fatal error: with static membership it means another worker joined with the same
--instance-id, and the worker stops with the one FencedError text (runtime/commit.py)."""

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from kstatefun.errors import FencedError
from kstatefun.runtime.worker import Worker

FATAL = KafkaError(
    KafkaError._FATAL,
    "Fatal consumer error: Broker: Static consumer fenced by other consumer with same "
    "group.instance.id",
    fatal=True,
)


def bare_worker(static_membership: bool) -> Worker:
    w = Worker.__new__(Worker)
    w.settings = SimpleNamespace(
        app_id="shop", instance_id="w1", static_membership=static_membership
    )
    return w


def test_a_fenced_static_member_stops_naming_the_member_and_the_fix():
    with pytest.raises(FencedError) as e:
        bare_worker(True)._without_errors([SimpleNamespace(error=lambda: FATAL)])
    assert str(e.value) == (
        "group member shop-w1 (static membership) was fenced: it was taken over by another "
        "process; if two workers run with the same --instance-id, give each its own; stopping "
        f"({FATAL.str()})"
    )


def test_a_fatal_consumer_error_without_static_membership_is_not_called_a_fence():
    with pytest.raises(KafkaException):
        bare_worker(False)._without_errors([SimpleNamespace(error=lambda: FATAL)])
