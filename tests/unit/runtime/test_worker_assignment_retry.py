"""An assignment during a broker takeover: the direct-path plan and the committed offsets wait
out the errors a restarting broker causes instead of ending the worker (issue 12)."""

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kstatefun.kafka import errors
from kstatefun.kafka.topics import InternalTopics
from kstatefun.runtime.worker import Worker


class TakeoverConsumer:
    """Each call fails once with a takeover error, then answers."""

    def __init__(self):
        self.failed: set[str] = set()
        self.refreshed: list[str] = []

    def _once(self, call, code):
        if call not in self.failed:
            self.failed.add(call)
            raise KafkaException(KafkaError(code, "takeover"))

    def get_watermark_offsets(self, tp, timeout, cached):
        self._once(f"watermarks {tp.partition}", KafkaError._DESTROY_BROKER)
        return 0, 7 if tp.partition == 0 else 0

    def list_topics(self, topic, timeout):
        self.refreshed.append(topic)


@pytest.fixture(autouse=True)
def fast_policy(monkeypatch):
    monkeypatch.setattr(errors, "POLICY", errors.RetryPolicy(timeout_s=5, backoff_s=0.001))


def bare_worker():
    w = Worker.__new__(Worker)
    w.topics = InternalTopics("app")
    w.router = SimpleNamespace(direct=set())
    w._draining, w._drain_ends = {}, {}
    return w


def test_plan_direct_survives_a_destroyed_broker_handle():
    w, consumer = bare_worker(), TakeoverConsumer()
    assigned = [
        TopicPartition("app-invocations", 0),
        TopicPartition("app-invocations", 1),
        TopicPartition("in", 0),
        TopicPartition("in", 1),
    ]
    pause = w._plan_direct(consumer, assigned)
    # partition 0 has invocations waiting: drain them first; partition 1 is empty: direct
    assert [(tp.topic, tp.partition) for tp in pause] == [("in", 0)]
    assert w._draining == {("in", 0): 7} and w.router.direct == {("in", 1)}
    assert consumer.refreshed == ["app-invocations", "app-invocations"]
