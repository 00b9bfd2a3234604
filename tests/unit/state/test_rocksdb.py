"""The disk-backed store (state/rocksdb.py): same overlay contract as the memory store, rows and
positions that survive a restart (so only the changelog's tail is replayed), and its faults: a
corrupt, untrusted or foreign database, a failed write."""

import logging
import shutil

import pytest
from tests.unit.runtime.test_commit import FakeConsumer, FakeProducer
from tests.unit.state.test_recovery import Changelog

from kstatefun.errors import ConfigError, StateStoreError
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime.commit import Transaction
from kstatefun.state import store as store_module
from kstatefun.state.recovery import recover
from kstatefun.state.restore import ChangelogRestorer
from kstatefun.state.rocksdb import RocksStore
from kstatefun.state.store import StateStore
from kstatefun.wire.avro import changelog_expire_at, encode_changelog_value

TOPIC = "app-changelog"


def val(data):
    return encode_changelog_value("test/T", data)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "app-w1.rocksdb"


def open_store(path, app="app", partitions=4):
    return StateStore(disk=RocksStore(path, app, partitions))


def restore(store, log, owned):
    restorer = ChangelogRestorer(lambda: Changelog(log), TOPIC)
    recover(store, restorer, owned)
    return restorer


def test_overlay_first_then_committed_rows_and_abort_drops_the_overlay(path):
    s = open_store(path)
    restore(s, {0: [(b"a", val(b"1")), None]}, {0})
    assert s.get(0, b"a") == val(b"1") and s.position(0) == 2
    s.put(0, b"a", val(b"2"))
    s.put(0, b"b", val(b"3"))
    assert s.get(0, b"a") == val(b"2") and s.disk.db.get(b"r\0\0\0\0a") == val(
        b"1"
    )  # not yet on disk
    s.discard_overlay()
    assert s.get(0, b"a") == val(b"1") and s.get(0, b"b") is None
    s.put(0, b"a", None)
    s.put(0, b"b", val(b"3"))
    s.apply_overlay({0: 5})
    assert s.get(0, b"a") is None and s.get(0, b"b") == val(b"3") and s.position(0) == 5
    assert s.size(0) == 1 and dict(s.rows(0).items()) == {b"b": val(b"3")}


def test_a_restart_replays_only_the_tail_from_the_stored_position(path, caplog):
    log = {0: [(b"a", val(b"1")), (b"b", val(b"1")), None]}
    s = open_store(path)
    restore(s, log, {0})
    s.put(0, b"a", val(b"2"))
    s.apply_overlay({0: 4})  # the commit wrote offset 3 (its marker is 4)
    log[0] += [(b"a", val(b"2")), None]
    s.disk.close()

    log[0] += [(b"c", val(b"9")), None]  # written after this worker stopped (by another one)
    s = open_store(path)
    with caplog.at_level(logging.INFO, logger="kstatefun.state"):
        restorer = restore(s, log, {0})
    assert restorer.last_read == {0: 1}  # only the tail, not the 4 records before it
    assert "loaded local state store partition=0 replaying_from=4" in caplog.text
    assert {k: s.get(0, k) for k in (b"a", b"b", b"c")} == {
        b"a": val(b"2"),
        b"b": val(b"1"),
        b"c": val(b"9"),
    }
    assert s.position(0) == 7


def test_a_partition_without_a_position_is_cleared_before_it_is_restored(path):
    s = open_store(path)
    rows = s.add_partition(0)
    rows[b"stale"] = val(b"x")  # a restore that never finished: rows without a position
    rows.flush()
    s.disk.close()
    s = open_store(path)
    restore(s, {0: [(b"a", val(b"1"))]}, {0})
    assert s.get(0, b"stale") is None and s.get(0, b"a") == val(b"1")


def test_revoked_and_reassigned_partitions_keep_their_rows_on_disk(path):
    s = open_store(path)
    log = {0: [(b"a", val(b"1"))], 1: [(b"b", val(b"1"))]}
    restore(s, log, {0, 1})
    restore(s, log, {1})  # partition 0 revoked
    assert s.partitions() == {1}
    restorer = restore(s, log, {0, 1})
    assert restorer.last_read == {} and s.get(0, b"a") == val(b"1")  # nothing re-read


def test_the_ttl_index_is_rebuilt_from_the_rows_on_disk(path):
    value = encode_changelog_value("t/type", b"v", expire_at_ms=1_000)
    assert changelog_expire_at(value) == 1_000
    s = open_store(path)
    restore(s, {0: [(b"k", value)]}, {0})
    s.apply_overlay()
    s.disk.close()
    s = open_store(path)
    restore(s, {0: [(b"k", value)]}, {0})
    assert s.expire_due(0) == 0  # the loop's first round indexes the partition
    assert s.next_expiry() == 1_000 and s.expire_due(2_000) == 1
    assert dict(next(s.pending())[1]) == {b"k": None}


def test_the_ttl_index_is_built_after_the_assignment_a_slice_at_a_time(path, monkeypatch):
    monkeypatch.setattr(store_module, "INDEX_SLICE_S", 0.0)  # 256 rows per call
    rows = [(b"k%04d" % i, val(b"x")) for i in range(1000)]
    rows.append((b"t", encode_changelog_value("t/type", b"v", expire_at_ms=1_000)))
    s = open_store(path)
    restore(s, {0: rows}, {0})  # no scan of the rows here: the partition serves at once
    assert s.get(0, b"t") is not None
    calls = 0
    while s.next_expiry() == 0:  # due at once while rows are left to index
        assert s.expire_due(0) == 0
        calls += 1
    assert calls >= 3 and s.next_expiry() == 1_000
    assert s.expire_due(2_000) == 1 and dict(next(s.pending())[1]) == {b"t": None}


def test_partitions_without_a_ttl_row_are_not_scanned_after_the_assignment(path):
    rows = [(b"k%04d" % i, val(b"x")) for i in range(1000)]
    ttl = encode_changelog_value("t/type", b"v", expire_at_ms=1_000)
    s = open_store(path)
    restore(s, {0: rows, 1: [*rows, (b"t", ttl)], 2: [], 3: []}, {0, 1, 2, 3})
    s.put(2, b"n", val(b"y"))  # partition 2: no TTL until a committed write brings one
    s.apply_overlay({2: 1})
    s.put(3, b"t", ttl)
    s.apply_overlay({3: 1})
    assert [s.disk.may_expire(p) for p in range(4)] == [False, True, False, True]
    s.disk.close()
    s = open_store(path)
    restore(s, {0: rows}, {0})
    assert s.next_expiry() is None  # nothing left to index: partition 0 was not scanned
    restore(s, {0: rows, 1: [*rows, (b"t", ttl)], 3: [(b"t", ttl)]}, {0, 1, 3})
    for _ in range(10_000):  # indexes partitions 1 and 3, a time slice per call (one slice
        s.expire_due(0)  # holds 1,001 rows on an idle machine, not always on a loaded one)
        if s.next_expiry() != 0:
            break
    assert s.next_expiry() == 1_000
    assert s.expire_due(2_000) == 2
    assert {p: dict(w) for p, w in s.pending()} == {1: {b"t": None}, 3: {b"t": None}}


def test_a_cleared_partition_forgets_its_ttl_mark_and_an_older_database_is_scanned(path):
    ttl = encode_changelog_value("t/type", b"v", expire_at_ms=1_000)
    s = open_store(path)
    restore(s, {0: [(b"t", ttl)]}, {0})
    assert s.disk.may_expire(0)
    s.rows(0).clear()
    assert not s.disk.may_expire(0)
    del s.disk.db[b"m:ttl-marked"]  # as a database written before the marks
    assert s.disk.may_expire(0)


def test_a_corrupt_store_is_rebuilt_from_the_changelog_with_a_warning(path, caplog):
    s = open_store(path)
    restore(s, {0: [(b"a", val(b"1"))]}, {0})
    s.disk.close()
    for f in path.iterdir():
        if f.name.startswith("MANIFEST"):
            f.write_bytes(b"\0garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="kstatefun.state"):
        s = open_store(path)
    assert "local state store is corrupt, rebuilding it from the changelog" in caplog.text
    restorer = restore(s, {0: [(b"a", val(b"1"))]}, {0})
    assert restorer.last_read == {0: 1} and s.get(0, b"a") == val(b"1")


def test_a_missing_store_is_restored_from_the_changelog(path):
    s = open_store(path)
    restore(s, {0: [(b"a", val(b"1"))]}, {0})
    s.disk.close()
    shutil.rmtree(path)
    s = open_store(path)
    restorer = restore(s, {0: [(b"a", val(b"1"))]}, {0})
    assert restorer.last_read == {0: 1} and s.get(0, b"a") == val(b"1")


@pytest.mark.parametrize(("app", "partitions"), [("other", 4), ("app", 8)])
def test_a_store_of_another_application_or_partition_count_is_refused(path, app, partitions):
    open_store(path).disk.close()
    with pytest.raises(ConfigError, match="belongs to application 'app' with 4 partitions") as e:
        open_store(path, app, partitions)
    assert str(path) in str(e.value) and "delete" in str(e.value)


def test_a_store_in_use_is_refused_not_rebuilt(path):
    s = open_store(path)
    restore(s, {0: [(b"a", val(b"1"))]}, {0})
    with pytest.raises(ConfigError, match="in use by another process") as e:
        RocksStore(path, "app", 4, lock_wait_s=1.5)
    assert str(path) in str(e.value)
    assert s.get(0, b"a") == val(b"1")


class FailingWrites:
    """The database, with every batch write failing as on a full disk."""

    def __init__(self, db):
        self._db = db

    def write(self, *args):
        raise Exception("IO error: No space left on device")  # what rocksdict raises

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_failed_fold_after_the_kafka_commit_stops_and_the_next_start_rebuilds(path, caplog):
    s = open_store(path)
    restore(s, {0: [(b"a", val(b"1"))]}, {0})
    real = s.disk.db
    s.disk.db = FailingWrites(real)
    producer = FakeProducer()
    txn = Transaction(lambda: producer, FakeConsumer(), [(TOPIC, s)], WorkerMetrics())
    txn.begin()
    s.put(0, b"a", val(b"2"))
    with pytest.raises(StateStoreError, match="No space left on device") as e:
        txn.commit()
    assert producer.commits == 1 and not txn.is_open  # committed: nothing to abort
    assert str(path) in str(e.value) and "rebuilds the store from the changelog" in str(e.value)
    real.close()

    with caplog.at_level(logging.WARNING, logger="kstatefun.state"):
        s = open_store(path)
    assert "marked untrusted after a failed write or read, rebuilding" in caplog.text
    # the changelog holds the committed write: the rebuilt store serves it
    restorer = restore(s, {0: [(b"a", val(b"1")), (b"a", val(b"2")), None]}, {0})
    assert restorer.last_read == {0: 2} and s.get(0, b"a") == val(b"2")


def test_a_failed_write_that_cannot_even_mark_the_store_leaves_its_older_positions(path):
    s = open_store(path)
    restore(s, {0: [(b"a", val(b"1")), None]}, {0})
    real = s.disk.db

    class NothingWrites(FailingWrites):
        def put(self, *args):
            raise Exception("IO error: No space left on device")

    s.disk.db = NothingWrites(real)
    s.put(0, b"a", val(b"2"))
    with pytest.raises(StateStoreError):
        s.apply_overlay({0: 4})
    real.close()
    s = open_store(path)
    restorer = restore(s, {0: [(b"a", val(b"1")), None, (b"a", val(b"2")), None]}, {0})
    assert restorer.last_read == {0: 1} and s.get(0, b"a") == val(b"2")  # replayed from offset 2
