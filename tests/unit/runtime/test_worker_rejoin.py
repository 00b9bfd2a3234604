"""A named worker that the group refuses at its first join because another member still holds
its instance id (KIP-848 UNRELEASED_INSTANCE_ID, a predecessor killed without leaving): its
consumer is fatal, so the worker replaces it, waits and joins again until the group admits it;
past a few session timeouts the holder is a running worker, and it stops (exit 3). With fake
consumers, a fake admin client and a fake clock; the transaction and the partition lifecycle
are the real ones."""

import logging
from functools import partial
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError

from kstatefun.errors import FencedError
from kstatefun.kafka.groups import Rejoin
from kstatefun.kafka.topics import InternalTopics
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime import worker as worker_module
from kstatefun.runtime.assignment import Assignment
from kstatefun.runtime.commit import Transaction
from kstatefun.runtime.direct import DirectPath
from kstatefun.runtime.reads import ReadGuard
from kstatefun.runtime.worker import Worker

UNRELEASED = KafkaError(
    KafkaError._FATAL,
    "Fatal error: Broker: The instance ID is still used by another member in the consumer "
    "group: ConsumerGroupHeartbeat fatal error: Broker: The instance ID is still used by "
    "another member in the consumer group",
    fatal=False,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class Group:
    """The group coordinator as the consumers see it: a join is refused until ``release_at``
    (fake time; None: never, a running member holds the instance id)."""

    def __init__(self, clock: Clock, release_at: float | None) -> None:
        self.clock = clock
        self.release_at = release_at
        self.consumers: list[GroupConsumer] = []
        self.holder: str | None = None  # the member id holding instance shop-w1, if any

    def new_consumer(self) -> "GroupConsumer":
        self.consumers.append(GroupConsumer(self))
        return self.consumers[-1]

    def admits(self) -> bool:
        return self.release_at is not None and self.clock() >= self.release_at


class GroupConsumer:
    def __init__(self, group: Group) -> None:
        self.group = group
        self.subscribed: list[str] = []
        self.callbacks: dict = {}
        self.closed = False
        self.joined = False

    def subscribe(self, topics, on_assign, on_revoke, on_lost):
        self.subscribed = list(topics)
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def poll(self, timeout):
        assert not self.closed and self.subscribed, "polled a closed or unsubscribed consumer"
        if self.group.admits():
            self.joined = True
            return None
        return SimpleNamespace(error=lambda: UNRELEASED)  # fatal: this consumer is done

    def consume(self, num_messages, timeout):
        return []

    def consumer_group_metadata(self):
        return f"metadata of consumer {self.group.consumers.index(self)}"

    def memberid(self):
        return f"member-{self.group.consumers.index(self)}"

    def close(self):
        self.closed = True


class Admin:
    """describe_configs of the group: its consumer.session.timeout.ms, or a failure;
    describe_consumer_groups: the member holding instance shop-w1 (``group.holder``)."""

    def __init__(self, session_timeout_ms: int | None, group: Group | None = None) -> None:
        self.ms = session_timeout_ms
        self.group = group

    def describe_consumer_groups(self, groups, request_timeout):
        if self.group is None:
            raise RuntimeError("DescribeConsumerGroups: group authorization failed")
        holder = self.group.holder
        members = (
            []
            if holder is None
            else [SimpleNamespace(group_instance_id="shop-w1", member_id=holder)]
        )
        future = SimpleNamespace(result=lambda timeout: SimpleNamespace(members=members))
        return {g: future for g in groups}

    def describe_configs(self, resources):
        future = SimpleNamespace(result=self._result)
        return {r: future for r in resources}

    def _result(self, timeout):
        if self.ms is None:
            raise RuntimeError("DescribeConfigs: group authorization failed")
        return {"consumer.session.timeout.ms": SimpleNamespace(value=str(self.ms))}


class Producer:
    def init_transactions(self, timeout):
        pass


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(worker_module, "Rejoin", partial(Rejoin, clock=clock, sleep=clock.sleep))
    return clock


def named_worker(group: Group, admin: Admin) -> Worker:
    """A worker between its subscription and its first assignment, as _start leaves it."""
    w = Worker.__new__(Worker)
    w.settings = SimpleNamespace(
        app_id="shop",
        instance_id="w1",
        static_membership=True,
        rebalance_protocol="consumer",
        bootstrap_servers="b:9092",
        max_batch_records=100,
    )
    w.topics = InternalTopics("shop")
    w.partitions = 2
    w.router = SimpleNamespace(topics=["orders"], owned=set())
    w._admin = admin
    w._new_consumer = group.new_consumer
    w.consumer = group.new_consumer()
    w.txn = Transaction(Producer, w.consumer, [], WorkerMetrics())
    w.assignment = Assignment(w.consumer, w.topics.invocations, [], lambda p, ingress: None)
    w.remote = None
    w.watchdog = SimpleNamespace(beats=0)
    w.watchdog.beat = lambda: setattr(w.watchdog, "beats", w.watchdog.beats + 1)
    w.committer = SimpleNamespace(after_batch=lambda n: False)
    w._housekeep = lambda: 0.2
    w._stopping = False
    w.direct = DirectPath(w.consumer, w.topics.invocations, w.router, w.assignment)
    w.reads = ReadGuard()
    w._subscribe()
    return w


def run_until_joined(w: Worker, group: Group) -> None:
    for _ in range(1000):
        w._step()
        if group.consumers[-1].joined:
            return
    raise AssertionError("never joined")


def test_a_refused_named_worker_replaces_its_consumer_and_joins_once_the_group_admits_it(
    clock, caplog
):
    group = Group(clock, release_at=7.5)  # the killed member's session ends 7.5 s from now
    w = named_worker(group, Admin(10_000))
    with caplog.at_level(logging.INFO):
        run_until_joined(w, group)

    *refused, joined = group.consumers
    assert len(refused) == 8  # one try per second until the release
    assert all(c.closed for c in refused) and not joined.closed
    # the new consumer is subscribed as the first was, and every part of the worker uses it
    assert joined.subscribed == ["orders", "shop-invocations"]
    assert joined.callbacks == {"assign": w._on_assign, "revoke": w._on_revoke, "lost": w._on_lost}
    assert w.consumer is joined
    assert w.txn._consumer is joined and w.assignment._consumer is joined
    assert w.txn._coordinator_answers.args == (joined,)
    assert w.watchdog.beats > 0  # the waits do not look stuck
    text = caplog.text
    assert "the group refused group member shop-w1 (static membership)" in text
    assert "instance_id=w1" in text and "session_timeout_s=10 " in text
    assert "give_up_after_s=30" in text
    assert text.count("the group refused") == 1  # one explanation, not one per try


def test_a_first_assignment_after_refusals_says_how_long_the_worker_waited(clock, caplog):
    group = Group(clock, release_at=2.5)
    w = named_worker(group, Admin(10_000))
    run_until_joined(w, group)
    w.settings.state_store = "memory"
    w.committer = SimpleNamespace(commit_open=lambda why: None, assigned=lambda committed: None)
    w.standby = None
    w._offsets = None
    w.router.direct = set()
    group.consumers[-1].assignment = lambda: []
    group.consumers[-1].incremental_assign = lambda partitions: None
    with caplog.at_level(logging.INFO):
        w._on_assign(group.consumers[-1], [])
    assert "the group admitted instance_id=w1 after 3 refusals waited_s=3.0" in caplog.text
    assert w._rejoin is None
    assert w._member_id == "member-3"  # the consumer admitted: this worker is a member now


def test_a_refusal_that_outlasts_three_session_timeouts_stops_naming_the_running_holder(clock):
    group = Group(clock, release_at=None)  # a running worker with the same --instance-id
    w = named_worker(group, Admin(None))  # the cluster does not say: Kafka's default, 45 s
    with pytest.raises(FencedError) as e:
        for _ in range(1000):
            w._step()
    assert clock() == pytest.approx(135)  # three times 45 s after the first refusal, no more
    assert str(e.value).startswith(
        "group member shop-w1 (static membership) was fenced: the group still refused it 135 s "
        "after the first refusal (136 tries, 3 session timeouts of 45 s, by when a killed "
        "member is released): another running worker holds its instance id; stop it; if two "
        "workers run with the same --instance-id, give each its own; stopping (Fatal error: "
    )


def test_a_stop_during_the_wait_ends_it_without_joining_again(clock, monkeypatch):
    group = Group(clock, release_at=None)
    w = named_worker(group, Admin(10_000))
    stop = lambda s: setattr(w, "_stopping", True)  # noqa: E731 - SIGTERM while waiting
    monkeypatch.setattr(worker_module, "Rejoin", partial(Rejoin, clock=clock, sleep=stop))
    w._step()
    first, second = group.consumers
    assert first.closed and second.subscribed == []  # the shutdown closes it
    assert w.consumer is second


def test_a_worker_refused_while_partitions_are_assigned_stops_at_once(clock):
    group = Group(clock, release_at=None)
    w = named_worker(group, Admin(10_000))
    w.assignment.assigned = True  # its consumer holds an assignment: never swapped
    with pytest.raises(FencedError, match="another member still holds its instance id"):
        w._step()
    assert len(group.consumers) == 1


def test_a_member_whose_place_another_worker_took_stops_at_once_though_nothing_is_assigned(
    clock,
):
    """A second worker with the same instance id fenced this one's producer and released its
    membership; this one, idle, learns it from the group only: its partitions were lost and its
    join again refused. It stops (exit 3) at once instead of waiting out sessions."""
    group = Group(clock, release_at=None)
    group.holder = "member-of-the-newcomer"
    w = named_worker(group, Admin(10_000, group))
    w._member_id = "member-0"  # assigned partitions before (_on_assign)
    with pytest.raises(FencedError) as e:
        w._step()
    assert (
        "another worker with the same --instance-id took its place in the group (member "
        "member-of-the-newcomer) and fenced its transactions" in str(e.value)
    )
    assert clock() == 0 and len(group.consumers) == 1


@pytest.mark.parametrize("holder", ["member-0", None], ids=["itself", "nobody"])
def test_a_member_refused_while_no_other_member_holds_its_instance_id_joins_again(clock, holder):
    """The instance id still held by this worker's own earlier membership, or by nobody by
    the time the group is read: a refusal to wait out, not another worker."""
    group = Group(clock, release_at=2.5)
    group.holder = holder
    w = named_worker(group, Admin(10_000, group))
    w._member_id = "member-0"
    run_until_joined(w, group)
    assert len(group.consumers) == 4


def test_a_refused_member_whose_group_cannot_be_read_joins_again(clock):
    group = Group(clock, release_at=1.5)
    w = named_worker(group, Admin(10_000))  # describe_consumer_groups fails
    w._member_id = "member-0"
    run_until_joined(w, group)
    assert len(group.consumers) == 3
