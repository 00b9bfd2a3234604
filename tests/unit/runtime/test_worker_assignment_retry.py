"""An assignment during a broker takeover: the direct-path plan and the committed offsets wait
out the errors a restarting broker causes instead of ending the worker (issue 12)."""

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kstatefun.kafka import errors
from kstatefun.kafka.topics import InternalTopics
from kstatefun.runtime.assignment import Assignment
from kstatefun.runtime.commit import Committer
from kstatefun.runtime.direct import DirectPath
from kstatefun.runtime.reads import ReadGuard
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
    w.router = SimpleNamespace(direct=set(), owned=set())
    w.direct = DirectPath(None, w.topics.invocations, w.router, None)
    w.partitions = 2
    w._stopping = False
    w.reads = ReadGuard()
    return w


def test_plan_direct_survives_a_destroyed_broker_handle():
    w, consumer = bare_worker(), TakeoverConsumer()
    assigned = [
        TopicPartition("app-invocations", 0),
        TopicPartition("app-invocations", 1),
        TopicPartition("in", 0),
        TopicPartition("in", 1),
    ]
    plan = w.direct.plan(consumer, assigned)
    # partition 0 has invocations waiting: drain them first; partition 1 is empty: direct
    assert plan == {("in", 0): 7, ("in", 1): 0}
    assert consumer.refreshed == ["app-invocations", "app-invocations"]


class GroupConsumer:
    """The group consumer, in its on_assign callback: confluent-kafka forbids list_topics here
    (it clears the handle's call state, and the next callback of the same poll aborts the
    process), so offsets must be asked elsewhere."""

    def __init__(self):
        self.assigned, self.paused = [], []

    def committed(self, partitions, timeout):
        return [TopicPartition(tp.topic, tp.partition, 3) for tp in partitions]

    def assign(self, partitions):
        self.assigned = partitions

    def assignment(self):
        return self.assigned

    def memberid(self):
        return "member-1"

    def offsets_for_times(self, partitions, timeout):  # wakes the fetchers (kafka/fetchers.py)
        return partitions

    def pause(self, partitions):
        self.paused = partitions

    def list_topics(self, *args, **kwargs):
        raise AssertionError("list_topics on the group consumer inside its rebalance callback")

    get_watermark_offsets = list_topics


def test_an_assignment_asks_offsets_through_another_consumer_than_the_group_one():

    w = bare_worker()
    w.store = SimpleNamespace(snapshot=None, disk=None)
    w.settings = SimpleNamespace(state_store="memory", rebalance_protocol="eager")
    w.txn = SimpleNamespace(fence_offsets={}, transaction_timeout_s=10.0, is_open=False)
    w.committer = Committer(w.txn, None, 1.0, 1)
    w._offsets = TakeoverConsumer()  # fails once per partition: retried and refreshed there
    group = GroupConsumer()
    w.assignment = Assignment(group, "app-invocations", [], lambda p, ingress: None)
    w.direct.assignment = w.assignment
    assigned = [TopicPartition("app-invocations", 0), TopicPartition("in", 0)]
    w._on_assign(group, assigned)
    # both wait for the restore of partition 0, which the loop runs (runtime/assignment.py)
    assert group.assigned == assigned
    assert sorted(tp.topic for tp in group.paused) == ["app-invocations", "in"]
    assert w._offsets.refreshed == ["app-invocations"]
    assert not w.assignment.ready


def test_a_stopping_worker_does_not_wake_the_fetchers_of_its_closing_consumer():
    """close() calls on_revoke while librdkafka destroys the consumer's handles: an error
    raised there escaped close and ended a cooperative worker's clean stop with exit 1."""

    class Closing:
        def assignment(self):
            raise AssertionError("asked for the assignment while closing")

        def incremental_unassign(self, partitions):
            raise AssertionError("unassigned while closing")

    w = bare_worker()
    w._stopping = True
    w._wake_fetchers(Closing())  # nothing asked


def test_an_assignment_starts_each_partition_at_an_explicit_offset():
    """librdkafka asks the group coordinator again for a partition assigned at OFFSET_INVALID,
    and a NOT_COORDINATOR answer leaves it assigned but never fetched (the coordinator moving
    while a worker is assigned partitions: test_broker_failover's frozen coordinator). The
    offsets the callback read are given instead."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

    class Committed(GroupConsumer):
        def committed(self, partitions, timeout):
            got = {("app-invocations", 0): 3, ("in", 0): 5}
            return [
                TopicPartition(tp.topic, tp.partition, got.get((tp.topic, tp.partition), -1001))
                for tp in partitions
            ]

    w = bare_worker()
    w.store = SimpleNamespace(snapshot=None, disk=None)
    w.settings = SimpleNamespace(state_store="memory", rebalance_protocol="eager")
    w.txn = SimpleNamespace(fence_offsets={}, transaction_timeout_s=10.0, is_open=False)
    w.committer = Committer(w.txn, None, 1.0, 1)
    w._offsets = TakeoverConsumer()
    latest = SimpleNamespace(startup_position=SimpleNamespace(kind="latest"))
    w._ingress_by_topic = {"in": latest}
    w._log_skipped = lambda at_end: None
    group = Committed()
    w.assignment = Assignment(group, "app-invocations", [], lambda p, ingress: None)
    w.direct.assignment = w.assignment
    assigned = [
        TopicPartition("app-invocations", 0),
        TopicPartition("app-invocations", 1),
        TopicPartition("in", 0),
        TopicPartition("in", 1),
    ]
    w._on_assign(group, assigned)
    assert [(tp.topic, tp.partition, tp.offset) for tp in group.assigned] == [
        ("app-invocations", 0, 3),  # committed
        ("app-invocations", 1, OFFSET_BEGINNING),  # nothing committed: auto.offset.reset
        ("in", 0, 5),  # committed
        ("in", 1, OFFSET_END),  # nothing committed: the ingress's startupPosition
    ]
