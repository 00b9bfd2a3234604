"""The local snapshot read ahead (LocalSnapshot.prefetch): what ``load`` returns must be what
the file holds at that moment, read ahead or not."""

from kstatefun.state.recovery import Recovery
from kstatefun.state.snapshot import LocalSnapshot
from kstatefun.state.store import StateStore
from kstatefun.wire.avro import encode_changelog_value

ONE = encode_changelog_value("io.statefun.types/int", b"1")
TWO = encode_changelog_value("io.statefun.types/int", b"2")


def _written(path, partitions):
    """A snapshot file holding ``partitions`` ({partition: (rows, position)})."""
    snap = LocalSnapshot(path)
    snap.save(
        {p: rows for p, (rows, _) in partitions.items()},
        {p: at for p, (_, at) in partitions.items()},
    )
    snap.close()


def test_a_prefetched_load_returns_what_the_file_holds(tmp_path):
    path = tmp_path / "s.sqlite"
    _written(path, {0: ({b"a": b"1", b"b": b"2"}, 7), 3: ({b"c": b"3"}, 4)})
    snap = LocalSnapshot(path)
    snap.prefetch()
    assert snap.load(3) == ({b"c": b"3"}, 4)
    assert snap.load(0) == ({b"a": b"1", b"b": b"2"}, 7)
    assert snap.load(5) == ({}, 0)  # not in the file


def test_the_same_partition_loaded_twice_gets_its_rows_both_times(tmp_path):
    # e.g. an eager rebalance before the first restore completed: the partition is fresh again
    path = tmp_path / "s.sqlite"
    _written(path, {1: ({b"a": b"1"}, 9)})
    snap = LocalSnapshot(path)
    snap.prefetch()
    assert snap.load(1) == ({b"a": b"1"}, 9)
    assert snap.load(1) == ({b"a": b"1"}, 9)


def test_a_write_after_the_prefetch_is_not_hidden_by_it(tmp_path):
    path = tmp_path / "s.sqlite"
    _written(path, {0: ({b"a": b"1"}, 5), 1: ({b"b": b"1"}, 5)})
    snap = LocalSnapshot(path)
    snap.prefetch()
    snap.save({1: {b"b": b"2", b"c": b"3"}}, {1: 8})  # gathered: load writes it first
    assert snap.load(1) == ({b"b": b"2", b"c": b"3"}, 8)
    snap.replace(0, {b"z": b"9"}, 11)
    assert snap.load(0) == ({b"z": b"9"}, 11)


def test_a_prefetched_snapshot_older_than_the_tombstone_horizon_is_ignored(tmp_path):
    path = tmp_path / "s.sqlite"
    _written(path, {0: ({b"a": b"1"}, 5)})
    snap = LocalSnapshot(path, max_age_s=0)
    snap.prefetch()
    assert snap.load(0) == ({}, 0)
    assert LocalSnapshot(path).load(0) == ({}, 0)  # and discarded from the file


class _NoRestore:
    """A restorer with nothing to read: every partition is complete where it starts."""

    active: set[int] = set()

    def add(self, stores, starts, changes):
        return dict(starts)

    def cancel(self):
        pass


def test_recovery_takes_the_assigned_partitions_from_the_prefetch_and_drops_the_rest(tmp_path):
    path = tmp_path / "s.sqlite"
    _written(path, {0: ({b"a": ONE}, 5), 1: ({b"b": TWO}, 6)})
    snap = LocalSnapshot(path)
    snap.prefetch()
    store = StateStore(snap)
    recovery = Recovery(store, _NoRestore(), snap)  # type: ignore[arg-type]
    assert recovery.begin({0}) == {0}
    recovery.hand_over({0})  # complete: the caller hands it over with its other stores
    assert store.get(0, b"a") == ONE and store.position(0) == 5
    assert snap._prefetch is None  # partition 1's rows are not kept in memory
    assert snap.load(1) == ({b"b": TWO}, 6)  # still in the file
