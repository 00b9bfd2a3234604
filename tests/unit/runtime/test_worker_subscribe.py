"""The subscription under the classic protocols waits (bounded) until the consumer's metadata
holds each topic: their assignor, run by a member, assigns only what its metadata holds, and a
just-created invocations topic was missing there for 20 s (Worker._await_metadata)."""

from types import SimpleNamespace

import pytest

from kstatefun.kafka.topics import InternalTopics
from kstatefun.runtime import worker as worker_module
from kstatefun.runtime.worker import Worker


class Consumer:
    """Metadata that holds the invocations topic only from the ``late``-th request on."""

    def __init__(self, late):
        self.late, self.requests, self.subscribed = late, [], None

    def list_topics(self, topic, timeout):
        self.requests.append(topic)
        known = topic != "app-invocations" or len(self.requests) > self.late
        found = SimpleNamespace(error=None, partitions={0: None} if known else {})
        return SimpleNamespace(topics={topic: found})

    def subscribe(self, topics, **callbacks):
        self.subscribed = topics


def worker(protocol, consumer):
    w = Worker.__new__(Worker)
    w.topics = InternalTopics("app")
    w.router = SimpleNamespace(topics=["in"])
    w.settings = SimpleNamespace(rebalance_protocol=protocol)
    w.consumer = consumer
    return w


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(worker_module.time, "sleep", lambda s: None)


@pytest.mark.parametrize("protocol", ["eager", "cooperative"])
def test_a_classic_subscription_waits_until_the_consumer_knows_the_invocations_topic(protocol):
    consumer = Consumer(late=3)
    worker(protocol, consumer)._subscribe()
    assert consumer.requests == ["in", "app-invocations", "app-invocations", "app-invocations"]
    assert consumer.subscribed == ["in", "app-invocations"]


def test_kip848_subscribes_at_once_and_a_classic_one_waits_at_most_metadata_wait_s(monkeypatch):
    consumer = Consumer(late=0)
    worker("consumer", consumer)._subscribe()
    assert consumer.requests == [] and consumer.subscribed == ["in", "app-invocations"]
    clock = iter(range(0, 1000, 3))  # 3 s per look at the clock
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: next(clock))
    consumer = Consumer(late=10**6)
    worker("eager", consumer)._subscribe()
    assert consumer.subscribed == ["in", "app-invocations"]  # subscribed all the same
    assert 2 <= len(consumer.requests) <= 1 + worker_module.METADATA_WAIT_S / 3 + 1
