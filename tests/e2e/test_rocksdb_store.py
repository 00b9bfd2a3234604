"""state_store rocksdb on a real broker: a restart after kill -9 replays only the changelog's
tail (the restored record count, from the worker's log), and stays exactly-once. Kill -9 mid-
stream and a zombie fenced by its successor: tests/e2e/test_exactly_once.py (the first
parametrized over the stores, all of it with KSTATEFUN_TEST_STATE_STORE=rocksdb)."""

import re
import time

import pytest

from tests.harness import (
    check_exactly_once,
    keyed_events,
    make_app,
    owned_partitions,
    produce_events,
    read_committed,
)

pytestmark = pytest.mark.kafka


START = "local state store rocksdb path="
FULL = {0, 1, 2, 3}  # owned after the callbacks (incremental ones name only what is added)
RESTORED = "still_restoring=[]"  # the loop restored every partition (runtime/assignment.py)


def last_start(log: str) -> str:
    """The worker's log since its last start (restarts append to the same file)."""
    return log.rsplit(START, 1)[-1]


def loaded_from_disk(log: str) -> dict[int, int]:
    """Partition -> offset the last start's store was complete up to."""
    found = re.findall(r"loaded local state store partition=(\d+) replaying_from=(\d+)", log)
    return {int(p): int(offset) for p, offset in found}


def restored_records(log: str, topic: str) -> int:
    """Changelog records replayed, per the restorer's log lines."""
    pattern = rf"restored topic={re.escape(topic)} partitions=\S+ records=(\d+)"
    return sum(int(n) for n in re.findall(pattern, log))


def test_a_restart_after_kill_minus_nine_replays_only_the_tail(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    app.env.update(app.store_env("rocksdb"))
    changelog = f"{app.app_id}-changelog"
    try:
        events, expected = keyed_events(keys=20, per_key=20)
        produce_events(app.bootstrap, app.ingress, events)
        app.start_worker("w1")
        records = read_committed(app.bootstrap, app.egress, len(events), settle=0.5)
        assert check_exactly_once(records, expected) == [], app.all_logs()

        # idle (everything committed and folded): a kill -9 leaves the store complete
        app.kill_worker("w1")
        in_changelog = len(
            read_committed(app.bootstrap, changelog, 1, settle=1.0, convert=lambda msg: msg.key())
        )
        assert in_changelog >= 20  # one record per key at least
        app.start_worker("w1")
        deadline = time.monotonic() + 120
        while True:
            log = app.log("w1")
            since = last_start(log)
            if log.count(START) == 2 and owned_partitions(since) == FULL and RESTORED in since:
                break
            assert time.monotonic() < deadline, app.all_logs()
            time.sleep(0.2)
        log = last_start(log)
        loaded = loaded_from_disk(log)  # the partitions that hold state
        assert len(loaded) >= 2 and all(offset > 0 for offset in loaded.values()), log
        # a full restore would read every record in the changelog again
        assert restored_records(log, changelog) == 0, log

        more, expected_more = keyed_events(keys=20, per_key=5, start_seq=10_000)
        for key, seqs in expected_more.items():
            expected[key] += seqs
        produce_events(app.bootstrap, app.ingress, more)
        records = read_committed(app.bootstrap, app.egress, len(events) + len(more), timeout=120)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        assert app.stop_worker("w1") == 0, app.all_logs()
    finally:
        app.stop_all()
