"""The local snapshot (state/snapshot.py) on real SQLite files: what ``load`` returns is what
the files hold at that moment, read ahead or not; a restore's rows reach the files in slices,
as delta rows or as a base image, and a crash at any moment leaves a snapshot that is the
changelog up to its position, or nothing."""

import pytest

from kstatefun.state.recovery import Recovery
from kstatefun.state.snapshot import LocalSnapshot, base_dir_of
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
    snap.rebase(0, {b"z": b"9"}, 11)
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


# --- a restore's rows written a slice at a time (FLUSH_SLICE_S) ------------------------------


def _position(path, partition):
    import sqlite3

    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT next_offset FROM position WHERE partition = ?", (partition,)
        ).fetchone()
        count = db.execute(
            "SELECT coalesce(sum(rows), 0) FROM delta WHERE partition = ?", (partition,)
        ).fetchone()[0]
    return (row[0] if row else None), count


def test_a_big_save_is_written_a_slice_per_flush_and_its_position_last(tmp_path, monkeypatch):
    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module, "_SLICE_ROWS", 10)
    monkeypatch.setattr(module, "BACKLOG_ROWS", 10)
    monkeypatch.setattr(module, "FLUSH_SLICE_S", 0.0)  # one slice per flush
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.save({0: {b"old": b"x"}}, {0: 3})
    snap.flush()
    restored = {b"k%d" % i: b"%d" % i for i in range(25)}
    snap.save({0: restored, 1: {b"small": b"1"}}, {0: 40, 1: 2}, adopt=True)
    snap.flush()
    # 10 rows of partition 0 written; its position stays the old one until all are
    assert _position(path, 0) == (3, 11) and snap.backlog == 16
    snap.save({0: {b"k24": b"newer"}}, {0: 41})  # a commit meanwhile: the newer value wins
    while snap.backlog:
        before = snap.backlog
        snap.flush_if_due()  # at once while more than a slice waits, else when due
        if snap.backlog == before:
            snap.flush()
    assert _position(path, 0) == (41, 26) and _position(path, 1) == (2, 1)
    snap.close()
    rows, position = LocalSnapshot(path).load(0)
    assert position == 41 and rows[b"k24"] == b"newer" and len(rows) == 26


def test_an_idle_worker_writes_the_backlog_in_longer_slices(tmp_path, monkeypatch):
    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module, "_SLICE_ROWS", 10)
    monkeypatch.setattr(module, "BACKLOG_ROWS", 10)
    monkeypatch.setattr(module, "FLUSH_SLICE_S", 0.0)  # busy: one slice per flush
    monkeypatch.setattr(module, "IDLE_FLUSH_SLICE_S", 60.0)  # idle: all of it here
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.save({0: {b"k%d" % i: b"%d" % i for i in range(35)}}, {0: 35}, adopt=True)
    assert snap.flush_if_due() is True and snap.backlog == 25
    assert snap.flush_if_due(idle=True) is False and snap.backlog == 0
    assert _position(path, 0) == (35, 35)


def test_slices_shrink_to_what_fits_their_time(tmp_path, monkeypatch):
    """Rows that write slowly get fewer rows per slice, so that a busy loop's 5 ms slice stays
    near its time."""
    import time

    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module, "FLUSH_SLICE_S", 0.01)
    monkeypatch.setattr(module, "_SLICE_ROWS", 1000)
    monkeypatch.setattr(module, "_MIN_SLICE_ROWS", 100)
    snap = LocalSnapshot(tmp_path / "s.sqlite")
    write = snap._write

    def slow(partition, writes):  # 100 us a row: 100 rows fill a 10 ms slice
        time.sleep(len(writes) * 1e-4)
        write(partition, writes)

    monkeypatch.setattr(snap, "_write", slow)
    snap.save({0: {b"k%d" % i: b"1" for i in range(3000)}}, {0: 3000}, adopt=True)
    snap.flush()  # not measured yet: a slice of _SLICE_ROWS, 0.1 s
    assert snap.backlog == 2000
    snap.flush()  # measured: as many rows as fit 10 ms, at least _MIN_SLICE_ROWS
    assert snap.backlog == 2000 - module._MIN_SLICE_ROWS


def test_the_catch_up_line_counts_every_restore_it_waited_for(tmp_path, monkeypatch, caplog):
    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module, "_SLICE_ROWS", 10)
    monkeypatch.setattr(module, "BACKLOG_ROWS", 10)
    monkeypatch.setattr(module, "FLUSH_SLICE_S", 0.0)
    snap = LocalSnapshot(tmp_path / "s.sqlite")
    snap.save({0: {b"a%d" % i: b"1" for i in range(15)}}, {0: 15}, adopt=True)
    snap.flush()  # partition 0 half written: a second restore ends meanwhile
    snap.save({1: {b"b%d" % i: b"1" for i in range(20)}}, {1: 20}, adopt=True)
    with caplog.at_level("INFO", logger=module.__name__):
        while snap.backlog:
            snap.flush()
    assert [r.getMessage().split(" seconds")[0] for r in caplog.records] == [
        "local snapshot caught up rows=35"
    ]


def test_a_restores_backlog_is_written_without_waiting_and_logged(tmp_path, caplog):
    """A backlog above BACKLOG_ROWS (a restore's rows, handed over) goes out a slice per round
    at once, not FLUSH_S later, however many rows a slice holds, and its end is logged."""
    from kstatefun.state import snapshot as module

    snap = LocalSnapshot(tmp_path / "s.sqlite")
    rows = 5 * module.BACKLOG_ROWS
    assert rows < module._SLICE_ROWS  # one slice: the backlog is not measured in slices
    snap.save({0: {b"k%d" % i: b"1" for i in range(rows)}}, {0: rows}, adopt=True)
    with caplog.at_level("INFO", logger=module.__name__):
        while snap.flush_if_due(idle=True):
            pass
    assert snap.backlog == 0 and _position(tmp_path / "s.sqlite", 0) == (rows, rows)
    assert [r.getMessage().split(" seconds")[0] for r in caplog.records] == [
        f"local snapshot caught up rows={rows}"
    ]


def test_rows_without_a_position_are_dropped_at_load(tmp_path, monkeypatch):
    """A crash while a restore's rows were being written leaves rows and no position: the
    next start restores the partition from the changelog, and a key the changelog no longer
    has must not come back from those rows."""
    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module, "_SLICE_ROWS", 2)
    monkeypatch.setattr(module, "FLUSH_SLICE_S", 0.0)
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.save({0: {b"a": b"1", b"b": b"2", b"c": b"3"}}, {0: 9})
    snap.flush()  # two rows, no position: then the process dies
    assert _position(path, 0) == (None, 2)
    assert LocalSnapshot(path).load(0) == ({}, 0)
    assert _position(path, 0) == (None, 0)


def test_a_failed_flush_keeps_its_rows_for_the_next(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.save({0: {b"a": b"1", b"b": b"2"}}, {0: 5})

    def fail(partition, writes):
        raise OSError("disk full")

    monkeypatch.setattr(snap, "_write", fail)
    with pytest.raises(OSError, match="disk full"):
        snap.flush()
    monkeypatch.undo()
    assert snap.backlog == 2
    snap.close()
    assert LocalSnapshot(path).load(0) == ({b"a": b"1", b"b": b"2"}, 5)


def test_a_deleted_key_stays_deleted_over_chunks_and_base_images(tmp_path):
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.save({0: {b"a": b"1", b"b": b"2"}, 1: {b"c": b"3"}}, {0: 2, 1: 1})
    snap.flush()
    snap.save({0: {b"a": None}}, {0: 3})  # in a later chunk than its write
    snap.rebase(1, {b"c": b"3", b"d": b"4"}, 2)
    snap.flush(everything=True)
    snap.save({1: {b"d": None}}, {1: 3})
    snap.close()
    again = LocalSnapshot(path)
    assert again.load(0) == ({b"b": b"2"}, 3)
    assert again.load(1) == ({b"c": b"3"}, 3)  # deleted from its base image


# --- compaction: a long delta becomes a base image (LocalSnapshot.compact) ---------------------


def test_a_compacted_delta_becomes_a_base_image_under_the_chunks_written_since(
    tmp_path, monkeypatch
):
    from kstatefun.state import snapshot as module
    from kstatefun.state.snapshot import read_snapshot

    monkeypatch.setattr(module, "COMPACT_MIN_ROWS", 10)
    monkeypatch.setattr(module, "_CHUNK_ROWS", 2)
    monkeypatch.setattr(module, "FLUSH_SLICE_S", 0.0)  # one chunk of the image per flush
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    committed: dict[bytes, bytes] = {}
    for at in range(1, 4):  # 15 delta rows over 5 keys
        writes = {b"k%d" % i: b"%d" % at for i in range(5)}
        committed.update(writes)
        snap.save({0: writes}, {0: at})
        snap.flush()
    assert _position(path, 0) == (3, 15) and snap.compactable() == [0]
    assert snap.compact(0, {b"k%d" % i: b"1" for i in range(8)}) is False  # 15 <= 2 * 8 keys
    assert snap.compact(0, committed) is True
    assert snap.compactable() == []  # being written
    committed[b"k4"] = b"changed after the copy"  # the copy is the snapshot's own
    snap.save({0: {b"k0": b"newer", b"k1": None}}, {0: 4})  # a commit while it is written
    snap.flush()  # the image's first chunk, and the commit's chunk
    expected = {b"k0": b"newer", b"k2": b"3", b"k3": b"3", b"k4": b"3"}
    assert _position(path, 0) == (4, 17)
    # a crash now leaves the old delta, whole
    positions, rows = read_snapshot(path, base_dir_of(path))
    assert positions[0][0] == 4 and rows[0] == expected
    while snap.backlog:
        snap.flush()
    assert _position(path, 0) == (4, 2)  # the chunks the image covers are gone
    assert _bases(path) == ["p0-g1.bin"]
    assert snap.load(0) == (expected, 4)
    snap.close()
    assert LocalSnapshot(path).load(0) == (expected, 4)


def test_the_store_compacts_only_restored_partitions(tmp_path, monkeypatch):
    """A restored partition's committed rows hold everything its snapshot does; a partition
    still being restored holds only part of it, and is left alone."""
    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module, "COMPACT_MIN_ROWS", 10)
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    store = StateStore(snap)
    store.add_partition(0)
    store.restored(0, 0)
    store.add_partition(1)  # restoring: its rows are the restore's so far
    snap.save({1: {b"r%d" % i: ONE for i in range(12)}}, {1: 12})
    for at in range(1, 6):
        for i in range(3):
            store.put(0, b"k%d" % i, encode_changelog_value("io.statefun.types/int", b"%d" % at))
        store.apply_overlay({0: at})
        snap.flush(everything=True)
    # 0: compacted at the fifth commit, its delta 12 rows over 3 keys; 1: not restored
    assert _bases(path) == ["p0-g1.bin"] and _position(path, 0) == (5, 3)
    assert _position(path, 1) == (12, 12)
    rows, position = snap.load(0)
    assert rows == dict(store.rows(0)) and position == 5


# --- base images (LocalSnapshot.rebase) --------------------------------------------------------


def _bases(path):
    directory = base_dir_of(path)
    return sorted(f.name for f in directory.iterdir()) if directory.is_dir() else []


def test_a_rebase_is_written_a_chunk_per_flush_and_its_position_once_complete(
    tmp_path, monkeypatch
):
    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module, "_CHUNK_ROWS", 10)
    monkeypatch.setattr(module, "FLUSH_SLICE_S", 0.0)  # one chunk per flush
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    restored = {b"k%d" % i: b"%d" % i for i in range(25)}
    restored[b"gone"] = None  # the changelog's last record of it is a tombstone
    snap.rebase(0, restored, 40)
    assert snap.backlog == 26
    assert snap.flush_if_due() is True  # a chunk written, more waits
    assert snap.backlog == 16 and _position(path, 0) == (None, 0)
    snap.save({0: {b"k3": b"newer", b"k4": None}}, {0: 41})  # a commit meanwhile: it waits
    snap.flush()
    assert _position(path, 0) == (None, 0) and _bases(path) == ["p0-g1.tmp"]
    snap.flush()  # the last chunk: the partition switches to its image, then the commit
    assert _bases(path) == ["p0-g1.bin"]
    assert _position(path, 0) == (41, 2)  # k4 deleted by a row, as the image holds it
    snap.close()
    rows, position = LocalSnapshot(path).load(0)
    expected = {k: v for k, v in restored.items() if k not in (b"gone", b"k4")}
    assert position == 41 and rows == {**expected, b"k3": b"newer"}


def test_a_prefetch_reads_base_images_and_their_deltas(tmp_path):
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.rebase(2, {b"a": b"1", b"b": b"2", b"c": b"3"}, 9)
    snap.flush(everything=True)
    snap.save({2: {b"b": None, b"d": b"4"}}, {2: 12})
    snap.close()
    snap = LocalSnapshot(path)
    snap.prefetch()
    assert snap.load(2) == ({b"a": b"1", b"c": b"3", b"d": b"4"}, 12)
    assert LocalSnapshot(path).load(2) == ({b"a": b"1", b"c": b"3", b"d": b"4"}, 12)


def test_a_second_rebase_replaces_the_first_and_its_delta(tmp_path):
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.rebase(0, {b"a": b"1", b"b": b"2"}, 5)
    snap.flush(everything=True)
    snap.save({0: {b"c": b"3"}}, {0: 6})
    snap.flush()
    snap.rebase(0, {b"x": b"9"}, 30)
    snap.flush(everything=True)
    assert _bases(path) == ["p0-g2.bin"] and _position(path, 0) == (30, 0)
    assert snap.load(0) == ({b"x": b"9"}, 30)


def test_a_crash_during_a_rebase_leaves_nothing_of_the_partition(tmp_path, monkeypatch):
    """The process dies with the image half written: the next start finds no position for
    the partition (it restores it from the changelog) and removes the unfinished file."""
    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module, "_CHUNK_ROWS", 2)
    monkeypatch.setattr(module, "FLUSH_SLICE_S", 0.0)
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.save({0: {b"old": b"x"}}, {0: 3})
    snap.flush()
    snap.rebase(0, {b"a": b"1", b"b": b"2", b"c": b"3"}, 9)
    snap.flush()  # one chunk of two, then kill -9 (nothing closed)
    snap._writers[0]._file.flush()
    assert _bases(path) == ["p0-g1.tmp"]
    again = LocalSnapshot(path)
    assert _bases(path) == []
    assert again.load(0) == ({}, 0)


def test_an_incomplete_base_image_is_restored_from_the_changelog(tmp_path, caplog):
    """An OS crash may leave a renamed image without its data (no fsync): ``load`` finds it
    short and the partition restores from the changelog, never from part of its rows."""
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.rebase(1, {b"k%d" % i: b"v" for i in range(100)}, 50)
    snap.close()
    image = base_dir_of(path) / "p1-g1.bin"
    image.write_bytes(image.read_bytes()[:-20])
    with caplog.at_level("WARNING", logger="kstatefun.state.snapshot"):
        assert LocalSnapshot(path).load(1) == ({}, 0)
    assert "base image of partition=1 is missing or incomplete" in caplog.text
    assert _position(path, 1) == (None, 0) and _bases(path) == []
    snap = LocalSnapshot(path)
    snap.prefetch()  # read ahead, the same
    assert snap.load(1) == ({}, 0)


def test_a_failed_base_image_write_falls_back_to_delta_rows(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    snap = LocalSnapshot(path)
    snap.rebase(0, {b"a": b"1", b"b": b"2"}, 7)
    snap.save({0: {b"b": b"3"}}, {0: 8})  # a newer commit, gathered

    def full(self, deadline):
        raise OSError("disk full")

    from kstatefun.state import snapshot as module

    monkeypatch.setattr(module._BaseWriter, "write", full)
    with pytest.raises(OSError, match="disk full"):
        snap.flush()
    monkeypatch.undo()
    snap.close()
    assert _bases(path) == []
    assert LocalSnapshot(path).load(0) == ({b"a": b"1", b"b": b"3"}, 8)


def test_a_snapshot_of_the_older_layout_is_emptied(tmp_path, caplog):
    import sqlite3

    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE state (partition INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT "
            "NULL, PRIMARY KEY (partition, key)) WITHOUT ROWID; CREATE TABLE position "
            "(partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL, saved_at_ms INTEGER "
            "NOT NULL); INSERT INTO state VALUES (0, x'61', x'31'); INSERT INTO position VALUES "
            "(0, 4, 0);"
        )
    with caplog.at_level("INFO", logger="kstatefun.state.snapshot"):
        snap = LocalSnapshot(path)
    assert "local snapshot of an older layout emptied" in caplog.text
    assert snap.load(0) == ({}, 0)
    snap.save({0: {b"a": b"2"}}, {0: 5})
    snap.close()
    assert LocalSnapshot(path).load(0) == ({b"a": b"2"}, 5)


class _Restores:
    """A restorer that reads ``records`` per partition from where each starts, at once."""

    active: set[int] = set()

    def __init__(self, records):
        self.records = records
        self.last_read: dict[int, int] = {}

    def add(self, stores, starts, changes):
        ends = {}
        for p, rows in stores.items():
            tail = self.records.get(p, [])[starts[p] :]
            for key, value in tail:
                if value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = value
                if changes is not None:
                    changes.setdefault(p, {})[key] = value
            ends[p] = starts[p] + len(tail)
        return ends

    def cancel(self):
        pass


def test_a_restore_from_the_beginning_becomes_a_base_image_and_a_tail_delta_rows(tmp_path):
    path = tmp_path / "s.sqlite"
    _written(path, {1: ({b"b": TWO}, 1)})
    records = {
        0: [(b"a", ONE), (b"x", ONE), (b"x", None)],  # no snapshot: from the beginning
        1: [(b"b", TWO), (b"c", ONE)],  # the snapshot's tail: one record
    }
    snap = LocalSnapshot(path)
    store = StateStore(snap)
    recovery = Recovery(store, _Restores(records), snap)  # type: ignore[arg-type]
    assert recovery.begin({0, 1}) == {0, 1}
    recovery.hand_over({0, 1})
    assert snap.backlog == 2 + 1  # partition 0's image, partition 1's tail
    snap.flush(everything=True)
    assert _bases(path) == ["p0-g1.bin"]
    assert _position(path, 0) == (3, 0) and _position(path, 1) == (2, 2)
    snap.close()
    assert LocalSnapshot(path).load(0) == ({b"a": ONE}, 3)
    assert LocalSnapshot(path).load(1) == ({b"b": TWO, b"c": ONE}, 2)
