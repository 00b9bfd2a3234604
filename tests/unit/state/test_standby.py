"""Standby replicas (state/standby.py): a worker copies every partition it does not own, tailed
into the database that a takeover's restore continues from (only the tail replayed)."""

import pytest
from pydantic import ValidationError
from tests.unit.state.test_recovery import TOPIC, Changelog

from kstatefun.config.settings import Settings
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.state.recovery import recover
from kstatefun.state.restore import ChangelogRestorer
from kstatefun.state.rocksdb import RocksStore
from kstatefun.state.standby import Standby
from kstatefun.state.store import StateStore
from kstatefun.wire.avro import encode_changelog_value


def val(data):
    return encode_changelog_value("test/T", data)


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


def standby_of(tail, metrics):
    return Standby(4, lambda: tail, TOPIC, metrics)


def test_a_takeover_continues_from_the_copy_and_replays_only_the_tail(tmp_path):
    disk = RocksStore(tmp_path / "app-me.rocksdb", "app", 4)
    log = {0: [(b"a", val(b"1")), (b"b", val(b"1")), None], 1: [], 2: [], 3: []}
    tail, metrics = Tail(log), WorkerMetrics()
    standby = standby_of(tail, metrics)
    standby.on_assignment({2, 3}, disk)
    assert standby.partitions == set()  # nothing started in the rebalance callback
    standby.step()
    assert standby.partitions == {0, 1}  # every partition not owned
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


def test_a_new_assignment_moves_the_copies_and_never_copies_an_owned_partition(tmp_path):
    disk = RocksStore(tmp_path / "app-me.rocksdb", "app", 4)
    standby = standby_of(Tail({p: [] for p in range(4)}), WorkerMetrics())
    standby.step()
    assert standby.partitions == set()  # no assignment yet: no database, no copies
    standby.on_assignment({0, 1}, disk)
    standby.step()
    assert standby.partitions == {2, 3}
    standby.on_assignment({1, 2}, disk)
    assert standby.partitions == {3}  # 2 stopped before the owner's restore opens it
    standby.step()
    assert standby.partitions == {0, 3}
    standby.on_assignment({0, 1, 2, 3}, disk)  # alone in the group
    standby.step()
    assert standby.partitions == set()
