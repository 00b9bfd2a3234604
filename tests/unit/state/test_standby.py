"""Standby replicas (state/standby.py): the placement rule every member computes, and a copy
tailed into the database that a takeover's restore continues from (only the tail replayed)."""

import random
from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import ConsumerGroupState, TopicPartition
from pydantic import ValidationError
from tests.unit.state.test_recovery import TOPIC, Changelog

from kstatefun.config.settings import Settings
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.state import standby as standby_module
from kstatefun.state.recovery import recover
from kstatefun.state.restore import ChangelogRestorer
from kstatefun.state.rocksdb import RocksStore
from kstatefun.state.standby import Standby, standby_partitions
from kstatefun.state.store import StateStore
from kstatefun.wire.avro import encode_changelog_value

INVOCATIONS = "app-invocations"


def val(data):
    return encode_changelog_value("test/T", data)


def copies(owners, replicas):
    """Per partition, the members holding a copy of it."""
    held = {}
    for member in owners:
        for p in standby_partitions(owners, member, replicas):
            held.setdefault(p, set()).add(member)
    return held


@pytest.mark.parametrize("seed", range(20))
def test_each_partition_has_its_copies_on_members_other_than_its_owner(seed):
    rng = random.Random(seed)
    members = [f"m{i}" for i in range(rng.randint(1, 6))]
    owners = {m: set() for m in members}
    for p in range(rng.randint(1, 24)):
        owners[rng.choice(members)].add(p)
    replicas = rng.randint(1, 4)
    held = copies(owners, replicas)
    for owner, partitions in owners.items():
        for p in partitions:
            assert owner not in held.get(p, set())
            assert len(held.get(p, set())) == min(replicas, len(members) - 1)


def test_a_member_leaving_moves_only_the_copies_it_held():
    owners = {"a": {0, 1}, "b": {2, 3}, "c": {4, 5}, "d": {6, 7}}
    before = copies(owners, 1)
    # d leaves; its partitions are not counted (their owner changes), the others' copies stay
    # where they were unless d held them
    after = copies({m: ps for m, ps in owners.items() if m != "d"}, 1)
    for p in range(6):
        if "d" not in before[p]:
            assert after[p] == before[p]


def test_standby_replicas_need_the_rocksdb_store(tmp_path):
    with pytest.raises(ValidationError, match="standby_replicas 1 needs state_store rocksdb"):
        Settings(standby_replicas=1)
    s = Settings(standby_replicas=1, state_store="rocksdb", state_dir=tmp_path)
    assert s.standby_replicas == 1


class Tail(Changelog):
    """The changelog as the standby's consumer reads it."""

    def incremental_assign(self, tps):
        for tp in tps:
            self._pos[tp.partition] = max(tp.offset, 0)

    def close(self):
        pass


class Admin:
    def __init__(self):
        self.owners = {}
        self.state = ConsumerGroupState.STABLE

    def describe_consumer_groups(self, groups, request_timeout=None):
        members = [
            SimpleNamespace(
                member_id=m,
                group_instance_id=None,
                assignment=SimpleNamespace(
                    topic_partitions=[TopicPartition(INVOCATIONS, p) for p in ps]
                ),
            )
            for m, ps in self.owners.items()
        ]
        done = Future()
        done.set_result(SimpleNamespace(state=self.state, members=members))
        return {groups[0]: done}


def standby_of(tail, admin, metrics):
    return Standby(1, lambda: tail, admin, "app", lambda: "me", (INVOCATIONS, TOPIC), metrics)


def test_a_takeover_continues_from_the_copy_and_replays_only_the_tail(tmp_path):
    disk = RocksStore(tmp_path / "app-me.rocksdb", "app", 4)
    log = {0: [(b"a", val(b"1")), (b"b", val(b"1")), None], 1: [], 2: [], 3: []}
    tail, admin, metrics = Tail(log), Admin(), WorkerMetrics()
    standby = standby_of(tail, admin, metrics)
    admin.owners = {"me": {2, 3}, "other": {0, 1}}
    standby.on_assignment({2, 3}, disk)
    while standby.partitions != {0, 1}:
        standby.step()
    standby.step()
    assert disk.trusted_position(0) == 3 and metrics.standby_lag[(TOPIC, 0)] == 0
    log[0] += [(b"a", val(b"2")), (b"b", None), None]  # the owner goes on
    standby.step()
    assert disk.trusted_position(0) == 6

    log[0] += [(b"c", val(b"3")), None]  # committed after the copy's last step
    standby.on_assignment({0, 1, 2, 3}, disk)  # the owner failed: this worker takes over
    assert standby.partitions == set()
    store = StateStore(disk=disk)
    restorer = ChangelogRestorer(lambda: Changelog(log), TOPIC)
    recover(store, restorer, {0, 1, 2, 3})
    assert restorer.last_read == {0: 1}  # the tail, not the partition's 6 records
    assert dict(store.rows(0).items()) == {b"a": val(b"2"), b"c": val(b"3")}
    assert store.position(0) == 8


def test_no_copy_from_a_description_older_than_the_assignment(tmp_path, monkeypatch):
    monkeypatch.setattr(standby_module, "RETRY_S", 0.0)  # asked again at every step
    disk = RocksStore(tmp_path / "app-me.rocksdb", "app", 4)
    tail, admin = Tail({p: [] for p in range(4)}), Admin()
    standby = standby_of(tail, admin, WorkerMetrics())
    admin.owners = {"me": {0, 1, 2, 3}, "other": set()}  # before the rebalance
    standby.on_assignment({2, 3}, disk)
    for _ in range(3):
        standby.step()
    assert standby.partitions == set()
    admin.state = ConsumerGroupState.COMPLETING_REBALANCING
    admin.owners = {"me": {2, 3}, "other": {0, 1}}
    for _ in range(3):
        standby.step()
    assert standby.partitions == set()
