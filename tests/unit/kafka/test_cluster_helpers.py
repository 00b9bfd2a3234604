"""The failover tests' helpers that need no broker: where a transactional id's coordinator is,
and how the nodes of a local cluster are configured."""

import pytest
from tests.cluster import coordinator_partition, java_string_hash, transaction_state_partition

import kstatefun.devkafka.broker as broker
import kstatefun.devkafka.cluster as cluster_module
from kstatefun.devkafka.cluster import LocalKafkaCluster
from kstatefun.errors import DevKafkaError


def test_java_string_hash():
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("Hello, World") == -505841268  # overflows 32 bits
    assert java_string_hash("polygenelubricants") == -(2**31)


def test_transaction_state_partition_follows_the_brokers_abs():
    assert transaction_state_partition("hello", 50) == 99162322 % 50
    assert transaction_state_partition("Hello, World", 50) == 505841268 % 50
    assert transaction_state_partition("polygenelubricants", 50) == 0  # Utils.abs(MIN) == 0


def test_cluster_nodes_share_a_quorum_and_replicate_by_three(tmp_path):
    cluster = LocalKafkaCluster(tmp_path, brokers=3)
    settings = [n._settings() for n in cluster.nodes]
    assert [s["node.id"] for s in settings] == ["1", "2", "3"]
    voters = {s["controller.quorum.voters"] for s in settings}
    assert len(voters) == 1 and voters.pop().count("@127.0.0.1:") == 3
    for s in settings:
        assert s["default.replication.factor"] == "3" and s["min.insync.replicas"] == "2"
        assert s["transaction.state.log.replication.factor"] == "3"
        assert s["transaction.state.log.min.isr"] == "2"
        assert s["offsets.topic.replication.factor"] == "3"
    assert len(set(cluster.bootstrap_servers.split(","))) == 3
    assert len({n.cluster_id for n in cluster.nodes}) == 1


def test_every_listener_of_the_cluster_has_its_own_port(tmp_path, monkeypatch):
    """The ports are picked at once: node by node, a port one node had let go of came up
    again for another, whose broker then could not bind it."""
    given = iter(range(40000, 40100))
    # a picker that hands out a port again as soon as its call has let it go
    monkeypatch.setattr(broker, "free_ports", lambda count: [41000 + i for i in range(count)])
    monkeypatch.setattr(
        cluster_module, "free_ports", lambda count: [next(given) for _ in range(count)]
    )
    cluster = LocalKafkaCluster(tmp_path, brokers=3, ports=[40001])
    ports = [p for n in cluster.nodes for p in (n.port, n.controller_port)]
    assert len(set(ports)) == 6 and ports[0] == 40001


def test_fewer_than_three_nodes_are_refused(tmp_path):
    with pytest.raises(DevKafkaError, match="at least 3 nodes"):
        LocalKafkaCluster(tmp_path, brokers=2)


def test_the_partition_is_the_brokers_abs_of_the_java_hash():
    assert coordinator_partition("hello", 50) == 99162322 % 50
    assert coordinator_partition("polygenelubricants", 50) == 0  # Utils.abs(MIN) == 0


class _Partition:
    def __init__(self, pid: int, replicas: list[int], isrs: list[int]) -> None:
        self.id, self.replicas, self.isrs = pid, replicas, isrs


class _Topic:
    def __init__(self, *partitions: _Partition) -> None:
        self.partitions = {p.id: p for p in partitions}


class _Metadata:
    def __init__(self, topics: dict[str, _Topic]) -> None:
        self.topics = topics


class _Admin:
    """Answers list_topics with each of ``answers`` in turn, then the last one again."""

    def __init__(self, *answers: _Metadata) -> None:
        self.answers = list(answers)
        self.asked = 0

    def list_topics(self, timeout: float) -> _Metadata:
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_await_in_sync_waits_for_every_replica_to_rejoin_its_isr(tmp_path, monkeypatch):
    behind = _Metadata(
        {"t": _Topic(_Partition(0, [1, 2, 3], [1, 3]), _Partition(1, [2, 3, 1], [2, 3, 1]))}
    )
    offsets = _Metadata({"__consumer_offsets": _Topic(_Partition(0, [3, 1, 2], [3, 1]))})
    caught_up = _Metadata({"t": _Topic(_Partition(0, [1, 2, 3], [3, 2, 1]))})
    admin = _Admin(behind, offsets, caught_up)
    cluster = LocalKafkaCluster(tmp_path, brokers=3)
    monkeypatch.setattr(cluster, "admin", lambda: admin)
    monkeypatch.setattr("kstatefun.devkafka.cluster.time.sleep", lambda s: None)
    cluster.await_in_sync(timeout=60)
    # an internal topic's partition counts as much as the application's
    assert admin.asked == 3


def test_await_in_sync_names_the_partitions_still_behind(tmp_path, monkeypatch):
    admin = _Admin(_Metadata({"chaos-out": _Topic(_Partition(4, [1, 2, 3], [1, 3]))}))
    cluster = LocalKafkaCluster(tmp_path, brokers=3)
    monkeypatch.setattr(cluster, "admin", lambda: admin)
    monkeypatch.setattr("kstatefun.devkafka.cluster.time.sleep", lambda s: None)
    with pytest.raises(DevKafkaError, match=r"under-replicated after 0 s \(chaos-out-4\)"):
        cluster.await_in_sync(timeout=0)


def test_free_ports_are_taken_below_the_ephemeral_range(tmp_path, monkeypatch):
    """A port from the ephemeral range can become an outgoing connection's local end before
    the broker (or a node restarted on its old ports) binds it."""
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("32768\t60999\n")
    monkeypatch.setattr(broker, "_EPHEMERAL_RANGE", ranges)
    ports = broker.free_ports(6)
    assert len(set(ports)) == 6 and all(10_000 <= p < 32768 for p in ports)
    monkeypatch.setattr(broker, "_EPHEMERAL_RANGE", tmp_path / "missing")
    assert len(set(broker.free_ports(3))) == 3  # the kernel picks them instead
