from kstatefun.state.store import StateStore


def test_reads_see_the_overlay_before_the_committed_store():
    s = StateStore()
    s.add_partition(0)[b"k"] = b"old"  # restored value
    assert s.get(0, b"j") is None and s.get(0, b"k") == b"old"
    s.put(0, b"k", b"new")
    assert s.get(0, b"k") == b"new"
    s.put(0, b"k", None)
    assert s.get(0, b"k") is None


def test_commit_folds_the_overlay_and_abort_drops_it():
    s = StateStore()
    s.add_partition(0)
    s.add_partition(1)
    s.put(0, b"a", b"1")
    s.put(0, b"a", b"2")  # coalesced: only the last write is pending
    s.put(1, b"b", b"3")
    assert sorted((p, k, v) for p, w in s.pending() for k, v in w.items()) == [
        (0, b"a", b"2"),
        (1, b"b", b"3"),
    ]
    s.apply_overlay()
    assert not s.has_pending() and s.get(0, b"a") == b"2"
    s.put(0, b"a", None)
    s.put(1, b"c", b"4")
    s.discard_overlay()
    assert s.get(0, b"a") == b"2" and s.get(1, b"c") is None
    s.put(0, b"a", None)
    s.apply_overlay()
    assert s.get(0, b"a") is None and s.size(0) == 0


def test_dropping_a_partition_forgets_its_state_and_pending_writes():
    s = StateStore()
    s.add_partition(3)[b"x"] = b"1"
    s.put(3, b"y", b"2")
    s.drop_partition(3)
    assert s.partitions() == set() and list(s.pending()) == []


def test_snapshot_follows_commits_and_survives_reopening(tmp_path):
    from kstatefun.state.snapshot import LocalSnapshot

    path = tmp_path / "app-w1.sqlite"
    s = StateStore(LocalSnapshot(path))
    s.add_partition(0)
    s.put(0, b"a", b"1")
    s.put(0, b"b", b"2")
    s.apply_overlay({0: 17})
    s.put(0, b"a", None)
    s.apply_overlay({})  # a commit whose delivery reports did not arrive: position stays
    s.snapshot.close()

    again = LocalSnapshot(path)
    assert again.load(0) == ({b"b": b"2"}, 17)
    assert again.load(1) == ({}, 0)


def test_a_snapshot_older_than_the_tombstone_horizon_is_ignored(tmp_path):
    from kstatefun.state.snapshot import LocalSnapshot

    snap = LocalSnapshot(tmp_path / "s.sqlite", max_age_s=0)
    snap.save({0: {b"a": b"1"}}, {0: 5})
    import time

    time.sleep(0.01)
    assert snap.load(0) == ({}, 0)


def _gathering(tmp_path, monkeypatch):
    """A store over a snapshot, on a clock the test moves: (clock, path, snapshot, store)."""
    from kstatefun.state import snapshot as snapshot_module
    from kstatefun.state.snapshot import LocalSnapshot

    now = [100.0]
    monkeypatch.setattr(snapshot_module.time, "monotonic", lambda: now[0])
    path = tmp_path / "app-w1.sqlite"
    snap = LocalSnapshot(path)
    s = StateStore(snap)
    s.add_partition(0)
    return now, path, snap, s


def test_snapshot_writes_gathered_commits_at_most_flush_s_later(tmp_path, monkeypatch):
    from kstatefun.state import snapshot as snapshot_module
    from kstatefun.state.snapshot import LocalSnapshot

    now, path, snap, s = _gathering(tmp_path, monkeypatch)
    s.put(0, b"a", b"1")
    s.apply_overlay({0: 5})
    s.put(0, b"a", b"2")
    s.put(0, b"b", b"3")
    s.apply_overlay({0: 9})
    assert LocalSnapshot(path).load(0) == ({}, 0)  # gathered, not written yet: as after kill -9
    now[0] += snapshot_module.FLUSH_S
    s.put(0, b"b", None)
    s.apply_overlay({0: 12})
    assert LocalSnapshot(path).load(0) == ({b"a": b"2"}, 12)  # the last write per key
    s.put(0, b"c", b"4")
    s.apply_overlay({0: 14})
    assert snap.load(0) == ({b"a": b"2", b"c": b"4"}, 14)  # a read writes what it gathered first
    s.put(0, b"d", b"5")
    s.apply_overlay({0: 16})
    snap.discard(0)  # drops what it gathered for the partition too
    snap.close()
    assert LocalSnapshot(path).load(0) == ({}, 0)


def test_an_idle_worker_writes_its_gathered_snapshot_when_due(tmp_path, monkeypatch):
    from kstatefun.state import snapshot as snapshot_module
    from kstatefun.state.snapshot import LocalSnapshot

    now, path, snap, s = _gathering(tmp_path, monkeypatch)
    s.put(0, b"a", b"1")
    s.apply_overlay({0: 5})  # the last commit before the input ends
    snap.flush_if_due()
    assert LocalSnapshot(path).load(0) == ({}, 0)  # not due yet
    now[0] += snapshot_module.FLUSH_S
    snap.flush_if_due()  # the loop's housekeeping, no commit since
    assert LocalSnapshot(path).load(0) == ({b"a": b"1"}, 5)


def test_a_big_partition_in_memory_is_indexed_a_slice_per_round_after_its_restore():
    """Indexing every row's TTL at once stopped the worker for seconds after a restore of
    millions of rows: past INDEX_AT_ONCE rows it is done in slices (expire_due, once per loop
    round), with each value read as it is then."""
    from kstatefun.state.store import INDEX_AT_ONCE
    from kstatefun.wire.avro import encode_changelog_value

    s = StateStore()
    rows = s.add_partition(0)
    plain = encode_changelog_value("t/type", b"v")
    for i in range(INDEX_AT_ONCE + 5_000):
        rows[b"k%06d" % i] = plain
    rows[b"t"] = encode_changelog_value("t/type", b"v", expire_at_ms=1_000)
    rows[b"u"] = encode_changelog_value("t/type", b"v", expire_at_ms=1_000)
    s.restored(0, 10)  # returns at once: nothing scanned yet
    assert s.next_expiry() == 0  # rows left to index: due at once
    rows[b"u"] = plain  # overwritten before the scan reached it: never expires
    del rows[b"k000001"]  # gone before the scan reached it
    rounds = 0
    while s.next_expiry() == 0:
        assert s.expire_due(0) == 0
        rounds += 1
    assert rounds >= 1 and s.next_expiry() == 1_000
    assert s.expire_due(2_000) == 1 and dict(next(s.pending())[1]) == {b"t": None}
