"""A restore's offset lookups survive a broker takeover: the stale-metadata errors seen in
issue 12 clear after one metadata refresh, which the retry policy makes."""

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kstatefun.kafka import errors
from kstatefun.state.restore import watermarks


class StaleMetadataConsumer:
    """get_watermark_offsets fails with ``code`` until list_topics refreshes the metadata."""

    def __init__(self, code):
        self.code = code
        self.stale = True
        self.calls = 0

    def get_watermark_offsets(self, tp, timeout, cached):
        self.calls += 1
        if self.stale:
            raise KafkaException(KafkaError(self.code, "Failed to get watermark offsets"))
        return 3, 42

    def list_topics(self, topic, timeout):
        assert topic == "app-changelog"
        self.stale = False


@pytest.fixture(autouse=True)
def fast_policy(monkeypatch):
    monkeypatch.setattr(errors, "POLICY", errors.RetryPolicy(timeout_s=5, backoff_s=0.001))


@pytest.mark.parametrize("code", [KafkaError._UNKNOWN_PARTITION, KafkaError._DESTROY_BROKER])
def testwatermarks_refresh_metadata_and_retry(code):
    consumer = StaleMetadataConsumer(code)
    assert watermarks(consumer, TopicPartition("app-changelog", 2)) == (3, 42)
    assert consumer.calls == 2


def test_a_permanent_error_is_not_retried():
    consumer = StaleMetadataConsumer(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        watermarks(consumer, TopicPartition("app-changelog", 2))
    assert consumer.calls == 1


class BehindConsumer:
    """A changelog that ends at offset 0 (recreated), below the local state's position."""

    def __init__(self):
        self.calls = 0

    def get_watermark_offsets(self, tp, timeout, cached):
        self.calls += 1
        return 0, 0

    def list_topics(self, topic, timeout):
        pass


def test_a_high_watermark_below_the_local_position_is_asked_again_with_beats():
    consumer, beats, slept = BehindConsumer(), [], []
    low_high = watermarks(
        consumer,
        TopicPartition("app-changelog", 2),
        at_least=5,
        settle_s=0.05,
        sleep=slept.append,
        on_wait=lambda: beats.append(1),
    )
    assert low_high == (0, 0)  # the caller then restores from the beginning
    assert consumer.calls > 1 and len(beats) == len(slept) == consumer.calls - 1


def test_no_settle_wait_asks_once():
    consumer = BehindConsumer()
    assert watermarks(consumer, TopicPartition("app-changelog", 2), at_least=5, settle_s=0) == (
        0,
        0,
    )
    assert consumer.calls == 1
