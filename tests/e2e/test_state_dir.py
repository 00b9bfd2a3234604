"""--state-dir: a restart loads the local snapshot (state_store memory) or the local RocksDB
(state_store rocksdb) and replays only the changelog's tail, and a stale one (another worker
owned the partitions meanwhile) is brought up to date."""

import re
from pathlib import Path

import pytest

from tests.harness import (
    check_exactly_once,
    keyed_events,
    make_app,
    produce_events,
    read_committed,
    wait_for_snapshot,
)

pytestmark = pytest.mark.kafka


def extend(expected, more):
    for key, seqs in more.items():
        expected.setdefault(key, []).extend(seqs)


LOADED = {
    "memory": r"loaded local snapshot partition=\d+ keys=\d+ replaying_from=(\d+)",
    "rocksdb": r"loaded local state store partition=\d+ replaying_from=(\d+)",
}


@pytest.mark.parametrize(
    "store", ["memory", pytest.param("rocksdb", marks=pytest.mark.long)]
)  # the rocksdb case: `make test-long`
def test_restart_replays_only_the_tail_and_stale_snapshots_catch_up(
    kafka_bootstrap, tmp_path, unique_name, create_topic, store
):
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    state_dir = str(tmp_path / "state")
    app.env.update(app.store_env(store))
    try:
        events, expected = keyed_events(keys=8, per_key=5)
        produce_events(app.bootstrap, app.ingress, events)
        app.start_worker("w1", "--state-dir", state_dir)
        total = len(events)
        read_committed(app.bootstrap, app.egress, total, settle=0.2)
        if store == "memory":  # commits reach the snapshot at most FLUSH_S later
            wait_for_snapshot(Path(state_dir) / f"{app.app_id}-w1.sqlite", keys=8)
        app.kill_worker("w1")  # kill -9: the snapshot holds what was committed

        more, expected_more = keyed_events(keys=8, per_key=2, start_seq=1000)
        extend(expected, expected_more)
        produce_events(app.bootstrap, app.ingress, more)
        total += len(more)
        app.start_worker("w1", "--state-dir", state_dir)
        read_committed(app.bootstrap, app.egress, total, settle=0.2)
        log = app.log("w1")
        replayed = [int(m) for m in re.findall(LOADED[store], log)]
        assert replayed and all(offset > 0 for offset in replayed), log
        assert app.stop_worker("w1") == 0

        # another worker (memory, no snapshot) owns everything for a while and writes more state
        app.env.update(app.store_env("memory"))
        more, expected_more = keyed_events(keys=8, per_key=2, start_seq=2000)
        extend(expected, expected_more)
        produce_events(app.bootstrap, app.ingress, more)
        total += len(more)
        app.start_worker("w2")
        read_committed(app.bootstrap, app.egress, total, settle=0.2)
        assert app.stop_worker("w2") == 0
        app.env.update(app.store_env(store))

        # w1 comes back with its now stale snapshot: counts must continue from w2's
        more, expected_more = keyed_events(keys=8, per_key=2, start_seq=3000)
        extend(expected, expected_more)
        produce_events(app.bootstrap, app.ingress, more)
        total += len(more)
        app.start_worker("w1", "--state-dir", state_dir)
        records = read_committed(app.bootstrap, app.egress, total)
        assert check_exactly_once(records, expected) == [], app.all_logs()
    finally:
        app.stop_all()


def test_a_restore_from_the_beginning_is_kept_as_a_base_image_and_loaded_after_kill_9(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    """A worker without a snapshot restores its partitions from the changelog's beginning and
    writes them as base images (LocalSnapshot.rebase); killed -9 once they are in place, it
    loads them at its next start and replays only what came after."""
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    state_dir = tmp_path / "state"
    try:
        events, expected = keyed_events(keys=8, per_key=5)
        produce_events(app.bootstrap, app.ingress, events)
        app.start_worker("w0")  # no state directory: the state is only in the changelog
        total = len(events)
        read_committed(app.bootstrap, app.egress, total, settle=0.2)
        assert app.stop_worker("w0") == 0

        app.start_worker("w1", "--state-dir", str(state_dir))
        bases = wait_for_snapshot(state_dir / f"{app.app_id}-w1.sqlite", keys=8)
        assert bases and all(bases.values()), bases  # every partition from a base image
        app.kill_worker("w1")

        more, expected_more = keyed_events(keys=8, per_key=2, start_seq=1000)
        extend(expected, expected_more)
        produce_events(app.bootstrap, app.ingress, more)
        total += len(more)
        app.start_worker("w1", "--state-dir", str(state_dir))
        records = read_committed(app.bootstrap, app.egress, total)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        loaded = re.findall(r"loaded local snapshot partition=(\d+) keys=(\d+)", app.log("w1"))
        assert {int(p) for p, _ in loaded} == set(bases), app.log("w1")
        assert sum(int(keys) for _, keys in loaded) == 8, app.log("w1")
    finally:
        app.stop_all()
