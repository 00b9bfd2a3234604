"""Faults on a local 3-node cluster (kstatefun.devkafka.cluster) for the failover tests and the
chaos run: which node to hit (the leader of most partitions, a transactional id's coordinator)
and how (kill -9, SIGTERM, restart), plus a paced, idempotent input producer that keeps writing
while a node is down."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable

from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from kstatefun.devkafka.cluster import LocalKafkaCluster
from kstatefun.kafka.errors import RetryPolicy, call_with_retry

TRANSACTION_STATE = "__transaction_state"
CONSUMER_OFFSETS = "__consumer_offsets"


def partition_leaders(admin: AdminClient, topics: Iterable[str]) -> Counter[int]:
    """How many partitions of ``topics`` each broker id leads."""
    md = admin.list_topics(timeout=10)
    leaders: Counter[int] = Counter()
    for name in topics:
        for p in md.topics[name].partitions.values():
            if p.leader >= 0:
                leaders[p.leader] += 1
    return leaders


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, 32-bit overflow)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(key: str, partitions: int) -> int:
    """The partition of ``__consumer_offsets`` (a group id) or ``__transaction_state`` (a
    transactional id) whose leader coordinates ``key``: the broker's
    ``Utils.abs(key.hashCode) % partitions``."""
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def leader_of(admin: AdminClient, topic: str, partition: int) -> int:
    """The broker id leading ``topic`` partition ``partition`` (-1 while there is none)."""
    md = admin.list_topics(topic, timeout=10)
    return md.topics[topic].partitions[partition].leader


def transaction_state_partition(transactional_id: str, partitions: int) -> int:
    """The ``__transaction_state`` partition holding ``transactional_id``."""
    return coordinator_partition(transactional_id, partitions)


def _leader_for_key(admin: AdminClient, topic: str, key: str) -> int:
    """The leader of the partition of an internal coordinator topic that holds ``key``."""
    md = admin.list_topics(topic, timeout=10)
    meta = md.topics.get(topic)
    partitions = len(meta.partitions) if meta is not None else 0
    if not partitions:  # created with the cluster's first transaction or group
        raise RuntimeError(f"{topic} does not exist yet: no transaction or group ran")
    return meta.partitions[transaction_state_partition(key, partitions)].leader


def coordinator_of(admin: AdminClient, transactional_id: str, timeout: float = 30) -> int:
    """The broker id coordinating ``transactional_id``: the leader of its transaction-state
    partition (confluent-kafka's admin client has no describe_transactions); -1 while that
    partition has no leader. A cluster that has run no transaction yet creates that topic at
    the first init_transactions, which a producer of another transactional id runs."""
    if TRANSACTION_STATE not in admin.list_topics(timeout=10).topics:
        probe_id = f"probe-{transactional_id}"
        probe = Producer({"bootstrap.servers": _bootstrap(admin), "transactional.id": probe_id})
        probe.init_transactions(timeout)
        probe.flush(timeout)
    return _leader_for_key(admin, TRANSACTION_STATE, transactional_id)


def _bootstrap(admin: AdminClient) -> str:
    """Every broker's address, as the cluster lists them."""
    brokers = admin.list_topics(timeout=10).brokers.values()
    return ",".join(f"{b.host}:{b.port}" for b in brokers)


def group_coordinator_of(admin: AdminClient, group: str, timeout: float = 30) -> int:
    """The broker id coordinating consumer group ``group``: the leader of its
    ``__consumer_offsets`` partition (same hash as the transaction state's). A cluster that
    has not seen a group yet creates that topic at the first FindCoordinator, which a consumer
    of another group asking for its committed offsets sends (the admin client's
    list_consumer_group_offsets crashed confluent-kafka 2.16 while the topic was missing).
    While the new topic's coordinators load, the answer may be NOT_COORDINATOR, which
    librdkafka's committed() raises at once (OffsetFetch: refresh, no retry): retried here."""
    if CONSUMER_OFFSETS not in admin.list_topics(timeout=10).topics:
        probe = Consumer({"bootstrap.servers": _bootstrap(admin), "group.id": f"probe-{group}"})
        try:
            call_with_retry(
                lambda: probe.committed([TopicPartition(CONSUMER_OFFSETS, 0)], timeout=5),
                f"creating {CONSUMER_OFFSETS}",
                policy=RetryPolicy(timeout_s=timeout),
            )
        finally:
            probe.close()
    return _leader_for_key(admin, CONSUMER_OFFSETS, group)


def elect_preferred_leaders(admin: AdminClient, timeout: float = 30) -> None:
    """Give every partition back to its preferred leader (its first replica), as the brokers'
    own leader rebalance does every five minutes: after kills and restarts one node may lead
    most partitions, coordinators' included."""
    # no timeouts passed: confluent-kafka 2.16's binding refuses both at once (TypeError)
    asked = admin.elect_leaders(ElectionType.PREFERRED, None)
    asked.result(timeout)  # per-partition errors (e.g. no election needed) are no failure


def replicas_led_elsewhere(admin: AdminClient, avoid: int, partitions: int) -> list[list[int]]:
    """A replica assignment over every broker whose first replica (the preferred leader, which
    leads a new topic) is never ``avoid``: a fault on that node then holds no partition of the
    topic back."""
    others = sorted(b for b in admin.list_topics(timeout=10).brokers if b != avoid)
    assert others, f"no broker other than {avoid}"
    n = len(others)
    return [[*others[p % n :], *others[: p % n], avoid] for p in range(partitions)]


def kill_node(cluster: LocalKafkaCluster, node_id: int) -> None:
    """kill -9 one node."""
    cluster.node(node_id).kill()


def stop_node(cluster: LocalKafkaCluster, node_id: int) -> None:
    """SIGTERM one node (a controlled shutdown: it hands its leaderships over first)."""
    cluster.node(node_id).stop()


def freeze_node(cluster: LocalKafkaCluster, node_id: int) -> None:
    """SIGSTOP one node: its connections stay open and nothing answers (a long GC pause, a
    network that drops packets without resetting connections)."""
    pid = cluster.node(node_id).pid
    assert pid is not None, f"node {node_id} is not running"
    os.killpg(pid, signal.SIGSTOP)  # the node leads its own process group


def thaw_node(cluster: LocalKafkaCluster, node_id: int) -> None:
    """SIGCONT a node frozen by :func:`freeze_node`."""
    pid = cluster.node(node_id).pid
    assert pid is not None, f"node {node_id} is not running"
    os.killpg(pid, signal.SIGCONT)


def start_node(cluster: LocalKafkaCluster, node_id: int, timeout: float = 120) -> None:
    """Start a stopped or killed node again and wait until the cluster lists every broker."""
    cluster.node(node_id).start(timeout)
    cluster.await_brokers(len(cluster.nodes), timeout)


def rolling_restart(cluster: LocalKafkaCluster, pause_s: float = 2.0) -> None:
    """SIGTERM and restart each node in turn, as an upgrade would: the next node stops only
    once the restarted one is back in every partition's in-sync replicas."""
    for node in cluster.nodes:
        stop_node(cluster, node.node_id)
        start_node(cluster, node.node_id)
        cluster.await_in_sync()
        time.sleep(pause_s)


class PacedProducer:
    """Produces ``events`` in a thread, ``per_second`` at most, idempotently (a broker failover
    must not duplicate input, or the output check would blame the workers)."""

    def __init__(self, bootstrap: str, topic: str, events: list, per_second: float) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "linger.ms": 5,
                "partitioner": "consistent_random",  # the app's default crc32: the direct path
            }
        )
        self._topic, self._events, self._rate = topic, events, per_second
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PacedProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            started = time.monotonic()
            for key, value in self._events:
                while True:
                    try:
                        self._producer.produce(self._topic, value, key)
                        break
                    except BufferError:
                        self._producer.poll(0.1)
                self.sent += 1
                ahead = self.sent / self._rate - (time.monotonic() - started)
                if ahead > 0:
                    self._producer.poll(ahead)
            if self._producer.flush(120) != 0:
                raise RuntimeError("input not fully delivered within 120 s")
        except BaseException as e:  # noqa: BLE001 - reported by join()
            self.error = e

    def join(self, timeout: float = 180) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the input producer did not finish"
        assert self.error is None, self.error
