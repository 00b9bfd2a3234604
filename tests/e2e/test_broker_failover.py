"""End to end on a 3-node cluster (replication factor 3, min.insync.replicas 2): a broker or a
worker's transaction coordinator killed mid-stream, and a rolling restart of every node, keep
the output exactly once and in per-key order, and no worker exits.

The cluster starts once for the module (three JVMs; about half a minute on a quiet machine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from kstatefun.devkafka.cluster import LocalKafkaCluster
from kstatefun.kafka.errors import call_with_retry
from kstatefun.kafka.topics import InternalTopics, ensure_internal_topics, internal_topic_specs
from kstatefun.runtime.commit import COORDINATOR_ANSWERED
from tests import kafka_fixture
from tests.cluster import (
    PacedProducer,
    coordinator_of,
    elect_preferred_leaders,
    freeze_node,
    group_coordinator_of,
    kill_node,
    partition_leaders,
    replicas_led_elsewhere,
    rolling_restart,
    start_node,
    thaw_node,
)
from tests.harness import App, check_exactly_once, keyed_events, make_app, read_committed

pytestmark = pytest.mark.kafka

PARTITIONS = 6
EVENTS_PER_SECOND = 150


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    c = LocalKafkaCluster(tmp_path_factory.mktemp("cluster"), brokers=3)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def admin(cluster: LocalKafkaCluster) -> AdminClient:
    return cluster.admin()


@pytest.fixture
def app(cluster, admin, tmp_path, unique_name) -> Iterator[App]:
    def create(name: str, partitions: int = 1) -> str:
        return kafka_fixture.create_topic(admin, name, partitions)

    application = make_app(cluster.bootstrap_servers, tmp_path, unique_name, create, PARTITIONS)
    yield application
    application.stop_all()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def run_with_fault(app: App, cluster: LocalKafkaCluster, fault: Callable[[], None]) -> None:
    """Two workers process paced input; ``fault`` strikes once some of it is committed, while
    more is still coming. Then: exactly once, in order, and both workers still running."""
    events, expected = keyed_events(keys=40, per_key=60)  # 2,400 events over ~16 s
    app.start_worker("w1")
    app.start_worker("w2")
    feed = PacedProducer(app.bootstrap, app.ingress, events, EVENTS_PER_SECOND).start()
    wait_until(lambda: feed.sent >= len(events) // 4, "a quarter of the input")
    before = read_committed(app.bootstrap, app.egress, 100, timeout=120, settle=0)
    assert len(before) >= 100, f"no output before the fault\n{app.all_logs()}"
    fault()
    feed.join()
    records = read_committed(app.bootstrap, app.egress, len(events), timeout=240)
    assert check_exactly_once(records, expected) == [], app.all_logs()
    for name, proc in app.workers.items():
        assert proc.poll() is None, f"worker {name} exited {proc.returncode}\n{app.all_logs()}"
    for name in list(app.workers):
        assert app.stop_worker(name) == 0, app.all_logs()
    assert "Traceback" not in app.all_logs()


def test_killing_the_leader_of_most_partitions(app, cluster, admin):
    internal = InternalTopics(app.app_id)
    topics = [app.ingress, app.egress, internal.invocations, internal.changelog, internal.timers]

    def fault() -> None:
        victim, led = partition_leaders(admin, topics).most_common(1)[0]
        kill_node(cluster, victim)
        time.sleep(5)
        start_node(cluster, victim)

    run_with_fault(app, cluster, fault)
    # the internal topics took the cluster's replication: 3 replicas, min.insync.replicas 2
    md = admin.list_topics(timeout=10)
    for name in (internal.invocations, internal.changelog, internal.timers):
        assert {len(p.replicas) for p in md.topics[name].partitions.values()} == {3}
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        assert admin.describe_configs([res])[res].result()["min.insync.replicas"].value == "2"


def test_killing_a_workers_transaction_coordinator(app, cluster, admin):
    def fault() -> None:
        victim = coordinator_of(admin, f"{app.app_id}-w1")
        assert victim >= 0
        kill_node(cluster, victim)
        time.sleep(5)
        start_node(cluster, victim)

    run_with_fault(app, cluster, fault)


def test_killing_the_groups_coordinator_for_longer_than_a_broker_session(app, cluster, admin):
    """The node coordinating the consumer group is down long enough for the others to drop it
    from the metadata, so librdkafka decommissions its handle while the workers' producers may
    still have it cached as the group coordinator: send_offsets_to_transaction then waits for
    it for good (librdkafka #5511, #5456). The workers must give such a producer up and go on
    (runtime/commit.py), not hang or exit."""

    def fault() -> None:
        victim = group_coordinator_of(admin, app.app_id)
        assert victim >= 0
        kill_node(cluster, victim)
        time.sleep(12)  # the dev cluster's broker session is 3 s; metadata refreshes follow
        start_node(cluster, victim)

    run_with_fault(app, cluster, fault)


@pytest.mark.long  # a minute of a frozen node
def test_a_group_coordinator_that_stops_answering(app, cluster, admin):
    """The group coordinator's node freezes (SIGSTOP: connections stay open, nothing answers)
    for longer than the workers' watchdog (40 s here). Each call to the producer then waits out
    its own timeout, and several follow each other in one commit (send_offsets_to_transaction,
    then abort_transaction: 40 s in a row when first tried). Each is bounded, so the watchdog
    must count each as progress (Transaction.on_progress) and end no worker."""
    app.env["KSTATEFUN_WATCHDOG_TIMEOUT_S"] = "40"

    def fault() -> None:
        victim = group_coordinator_of(admin, app.app_id)
        assert victim >= 0
        freeze_node(cluster, victim)
        try:
            time.sleep(50)
        finally:
            thaw_node(cluster, victim)

    run_with_fault(app, cluster, fault)


@pytest.fixture
def app_beside_its_coordinator(cluster, admin, tmp_path, unique_name) -> Iterator[App]:
    """An app whose group coordinator's node is neither its workers' transaction coordinator
    (the app id is drawn until so) nor the preferred leader of any of its topics' partitions
    (ingress, egress, internal): a fault on that node then blocks the workers' calls to the
    group coordinator only, not their produce requests or transaction markers (a frozen
    partition leader or transaction coordinator holds a commit back until the message or
    request timeout, other tests' matter)."""
    # earlier faults may have left one node leading every coordinator partition; a preferred
    # replica not yet back in sync cannot be elected
    cluster.await_in_sync()
    elect_preferred_leaders(admin)
    for _ in range(30):  # each draw: (2/3)^2 on three nodes
        app_id = unique_name("app")
        victim = group_coordinator_of(admin, app_id)
        others = {coordinator_of(admin, f"{app_id}-{w}") for w in ("w1", "w2")}
        if victim >= 0 and not others & {victim, -1}:
            break
        time.sleep(0.2)  # the election's new leaders reach the metadata
    else:
        pytest.fail("no app id whose transaction coordinators avoid its group coordinator")

    def create(name: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        replicas = replicas_led_elsewhere(admin, victim, partitions)
        return kafka_fixture.create_topic(admin, name, partitions, config, replicas=replicas)

    for spec in internal_topic_specs(InternalTopics(app_id), PARTITIONS):
        create(spec.name, spec.create_partitions, dict(spec.config))
    application = make_app(
        cluster.bootstrap_servers, tmp_path, unique_name, create, PARTITIONS, app_id=app_id
    )
    yield application
    application.stop_all()


def test_a_stuck_producer_given_up_while_its_call_is_blocked(
    app_beside_its_coordinator, cluster, admin
):
    """The group coordinator's node freezes (SIGSTOP: connections stay open, nothing answers),
    so the workers' send_offsets_to_transaction blocks on it. Once the controller has moved
    the group's partition and a consumer finds the new coordinator (its heartbeat to the frozen
    node times out after session.timeout.ms), that worker gives its producer up while the
    producer's call is still blocked: the frozen node cannot answer it. The transaction timeout
    is a minute here, so a give-up before the node thaws is the early one (runtime/commit.py).
    When the node thaws, the old producer's requests reach it late; nothing of that producer
    may commit: exactly-once output, and no worker exits."""
    app = app_beside_its_coordinator
    app.env["KSTATEFUN_TRANSACTION_TIMEOUT_MS"] = "60000"
    internal = InternalTopics(app.app_id)
    topics = [app.ingress, app.egress, internal.invocations, internal.changelog, internal.timers]

    def given_up_early() -> bool:
        return any(
            COORDINATOR_ANSWERED in line and "giving the producer up" in line
            for name in app.logs
            for line in app.log(name).splitlines()
        )

    def fault() -> None:
        victim = group_coordinator_of(admin, app.app_id)
        assert victim >= 0
        assert partition_leaders(admin, topics)[victim] == 0, "the victim leads a partition"
        freeze_node(cluster, victim)
        try:
            try:
                wait_until(given_up_early, "a producer given up while the node is frozen", 120)
            except AssertionError as e:
                raise AssertionError(f"{e}\n{app.all_logs()}") from None
        finally:
            thaw_node(cluster, victim)

    run_with_fault(app, cluster, fault)


def test_a_rolling_restart_of_every_node(app, cluster):
    run_with_fault(app, cluster, lambda: rolling_restart(cluster))


def test_a_single_replica_internal_topic_is_warned_about(admin, unique_name, caplog):
    def ensure(topics: InternalTopics, replication_factor: int | None = None) -> None:
        # as a worker calls it: a broker whose metadata has not caught up with a topic just
        # created answers UNKNOWN_TOPIC_OR_PART to its configs (seen in CI after the rolling
        # restart), which the caller retries
        specs = internal_topic_specs(topics, 2, replication_factor=replication_factor)
        call_with_retry(lambda: ensure_internal_topics(admin, specs), "creating topics")

    topics = InternalTopics(unique_name("rf1"))
    with caplog.at_level(logging.WARNING, logger="kstatefun.kafka.topics"):
        ensure(topics, replication_factor=1)
    assert f"internal topic {topics.changelog} has replication factor 1 on a cluster of 3" in (
        caplog.text
    )
    caplog.clear()
    fine = InternalTopics(unique_name("rf3"))
    with caplog.at_level(logging.WARNING, logger="kstatefun.kafka.topics"):
        ensure(fine)  # the cluster's RF 3
    assert "replication factor" not in caplog.text
