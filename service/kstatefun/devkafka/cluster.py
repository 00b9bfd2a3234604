"""A local Kafka cluster of several KRaft nodes (each broker and controller), for development and
the failover tests: what production clusters look like, replication factor 3 and
min.insync.replicas 2 for every topic, the consumer offsets and the transaction state included.

Each node is a :class:`LocalKafka` in ``<data_dir>/node-<id>``; they share one cluster id and
one static controller quorum. A node can be killed, stopped and restarted on its own while the
others keep serving.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kstatefun.devkafka.broker import (
    HOST,
    JVM_OPTIONS,
    TUNING,
    LocalKafka,
    free_ports,
    new_cluster_id,
)
from kstatefun.devkafka.jars import ensure_runtime, log4j2_xml
from kstatefun.errors import DevKafkaError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_QUORUM_LOGGER = "org.apache.kafka.raft.QuorumState"
_BECAME_LEADER = re.compile(r"Completed transition to Leader\(.*?epoch=(\d+)")

REPLICATED_TUNING: Mapping[str, str] = {
    **TUNING,
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
}
"""TUNING for three or more nodes: every topic survives one lost node without losing writes."""

# Three JVMs on a developer machine (or a shared CI host): a small heap each.
CLUSTER_JVM_OPTIONS: tuple[str, ...] = tuple(
    "-Xmx320m" if option.startswith("-Xmx") else option for option in JVM_OPTIONS
)


class LocalKafkaCluster:
    """``brokers`` KRaft nodes (broker+controller each) on 127.0.0.1, started together.

    ``ports`` gives each node's client port (0 or absent: a free one, kept across restarts);
    ``info_loggers`` are broker loggers that also log at INFO (a diagnosis: e.g.
    ``kafka.cluster.Partition`` for leader and ISR changes).
    """

    def __init__(
        self,
        data_dir: Path,
        brokers: int = 3,
        ports: list[int] | None = None,
        info_loggers: tuple[str, ...] = (),
    ) -> None:
        if brokers < 3:
            raise DevKafkaError(
                f"a replicated cluster needs at least 3 nodes (replication factor 3, "
                f"min.insync.replicas 2), got --brokers {brokers}; use 1 for a single broker"
            )
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.info_loggers = (_QUORUM_LOGGER, *info_loggers)
        ports = list(ports or []) + [0] * brokers
        # every node's free ports picked at once: picked node by node, a port one node had
        # just let go of could come up again for another (a controller port that was also a
        # client port stopped a test run's cluster from starting)
        picked = iter([p for p in free_ports(3 * brokers) if p not in ports])
        self.nodes = [
            LocalKafka(
                self.data_dir / f"node-{i}",
                ports[i - 1] or next(picked),
                controller_port=next(picked),
                node_id=i,
                tuning=REPLICATED_TUNING,
                jvm_options=CLUSTER_JVM_OPTIONS,
            )
            for i in range(1, brokers + 1)
        ]
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes)
        cluster_id = new_cluster_id()
        for node in self.nodes:
            node.quorum_voters = voters
            node.cluster_id = cluster_id  # used only when a node's storage is formatted

    @property
    def bootstrap_servers(self) -> str:
        """Every node's address, comma-separated, for clients' ``bootstrap.servers``."""
        return ",".join(n.bootstrap_servers for n in self.nodes)

    @property
    def running(self) -> bool:
        """True while every node runs."""
        return all(n.running for n in self.nodes)

    @property
    def log_file(self) -> Path:
        """The first node's log (each node logs to ``node-<id>/broker.log``)."""
        return self.nodes[0].log_file

    def node(self, node_id: int) -> LocalKafka:
        """The node with this broker id (1-based)."""
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 180.0) -> str:
        """Start every node and return ``bootstrap_servers`` once all of them are brokers of
        the cluster; raises DevKafkaError (and kills the nodes) otherwise."""
        self._configure_logs()
        try:
            # launched together: formatting a node's storage takes a JVM start of its own
            formatted = _each(self.nodes, lambda n: n.launch() if not n.running else True)
            deadline = time.monotonic() + timeout
            for node, before in zip(self.nodes, formatted, strict=True):
                node.await_ready(max(1.0, deadline - time.monotonic()), before)
            self.await_brokers(len(self.nodes), max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.kill()
            raise
        logger.info("kafka cluster started bootstrap_servers=%s", self.bootstrap_servers)
        return self.bootstrap_servers

    def _configure_logs(self) -> None:
        """The nodes also log their controller quorum transitions, which tell the active
        controller (:meth:`active_controller`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "log4j2.xml"
        config.write_text(log4j2_xml(self.info_loggers))
        runtime = replace(ensure_runtime(), log4j_config=config)
        for node in self.nodes:
            node._runtime = runtime

    def active_controller(self) -> int:
        """The node id of the controller quorum's current leader, from the nodes' logs: the
        running node that most recently became leader (the highest epoch)."""
        best = (-1, -1)
        for node in self.nodes:
            if not node.running or not node.log_file.exists():
                continue
            text = node.log_file.read_text("utf-8", "replace")
            for match in _BECAME_LEADER.finditer(text):
                best = max(best, (int(match.group(1)), node.node_id))
        if best[1] < 0:
            raise DevKafkaError(f"no running node of {self} logged becoming the quorum leader")
        return best[1]

    def await_brokers(self, count: int, timeout: float = 60.0) -> None:
        """Wait until the cluster's metadata lists ``count`` brokers."""
        admin = self.admin()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if len(admin.list_topics(timeout=2).brokers) >= count:
                    return
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise DevKafkaError(
                    f"the cluster at {self.bootstrap_servers} did not list {count} brokers "
                    f"within {timeout:.0f} s; see node-*/broker.log in {self.data_dir}"
                )
            time.sleep(0.2)

    def await_in_sync(self, timeout: float = 60.0) -> None:
        """Wait until no partition is under-replicated: every replica of every partition
        (internal topics too) is in its in-sync set. A rolling restart must wait for this
        before it stops the next node: with min.insync.replicas 2 of 3, a partition whose
        restarted replica has not caught up yet drops to one in-sync replica when another
        node stops, and refuses every acks=all write (NOT_ENOUGH_REPLICAS) until it has."""
        admin = self.admin()
        deadline = time.monotonic() + timeout
        behind: list[str] = []
        while True:
            try:
                topics = admin.list_topics(timeout=2).topics
                behind = [
                    f"{name}-{p.id}"
                    for name, topic in topics.items()
                    for p in topic.partitions.values()
                    if set(p.isrs) != set(p.replicas)
                ]
                if not behind:
                    return
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise DevKafkaError(
                    f"partitions of the cluster at {self.bootstrap_servers} were still "
                    f"under-replicated after {timeout:.0f} s ({', '.join(sorted(behind)[:5])}"
                    f"{', ...' if len(behind) > 5 else ''}); see node-*/broker.log in "
                    f"{self.data_dir}"
                )
            time.sleep(0.2)

    def admin(self) -> AdminClient:
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": logging.getLogger(f"{__name__}.client"),
        }
        return AdminClient(config)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node at once: one by one, the last ones would wait for a controller
        quorum that is gone."""
        _each(self.nodes, lambda n: n.stop(timeout))

    def kill(self) -> None:
        _each(self.nodes, lambda n: n.kill())

    def log_tail(self) -> str:
        return "\n".join(f"=== node {n.node_id}\n{n.log_tail()}" for n in self.nodes)

    def __repr__(self) -> str:
        return f"LocalKafkaCluster({self.bootstrap_servers}, data_dir={self.data_dir})"


def _each(nodes: list[LocalKafka], action: Callable[[LocalKafka], T]) -> list[T]:
    """``action`` on every node in parallel threads; re-raises the first failure."""
    results: list[Any] = [None] * len(nodes)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = action(nodes[i])
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
