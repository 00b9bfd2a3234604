"""Standby replicas on a real broker: two workers on the rocksdb store with standby_replicas 1;
one is killed with kill -9 while input flows, and the survivor takes its partitions over from
its standby copies: the takeover replays only the changelog's tail (the restored record count
and the copies' positions, from the survivor's log), and the output stays exactly-once."""

import re
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

from kstatefun.devkafka.broker import free_ports
from tests.e2e.test_rocksdb_store import restored_records
from tests.harness import (
    check_exactly_once,
    make_app,
    owned_partitions,
    produce_keyed,
    read_committed,
)

pytestmark = pytest.mark.kafka

STANDBY = re.compile(r"standby partitions=\[([\d, ]*)\]")


def last_list(pattern: re.Pattern, log: str) -> set[int] | None:
    found = pattern.findall(log)
    if not found:
        return None
    return {int(p) for p in found[-1].split(",") if p.strip()}


def wait_until(condition, what: str, app, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}\n{app.all_logs()}"
        time.sleep(0.2)


def standby_lags(port: int) -> dict[int, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    lags = {}
    for line in text.splitlines():
        if line.startswith("kstatefun_standby_lag{"):
            partition = int(re.search(r'partition="(\d+)"', line).group(1))
            lags[partition] = float(line.rsplit(" ", 1)[1])
    return lags


def changelog_ends(bootstrap: str, topic: str, partitions: set[int]) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def test_a_takeover_from_a_standby_replays_only_the_tail(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    app.env.update(app.store_env("rocksdb"))
    app.env["KSTATEFUN_STANDBY_REPLICAS"] = "1"
    changelog = f"{app.app_id}-changelog"
    port1, port2 = free_ports(2)
    try:
        app.start_worker("w1", "--metrics-port", str(port1))
        app.wait_for_log("w1", "assigned invocations partitions=[0, 1, 2, 3]")
        app.start_worker("w2", "--metrics-port", str(port2))

        def split() -> set[int] | None:
            # settled: w2 owns two and copies the other two, which w1 owns
            mine, copies = owned_partitions(app.log("w2")), last_list(STANDBY, app.log("w2"))
            settled = mine and copies and len(mine) == 2 and mine | copies == {0, 1, 2, 3}
            return copies if settled and "still_restoring=[]" in app.log("w2") else None

        w1_partitions = wait_until(split, "no standby copies", app)

        expected: dict[str, list[int]] = {}
        total = produce_keyed(app, expected, 0, keys=2000, per_key=1)
        records = read_committed(app.bootstrap, app.egress, total, settle=0.5)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        wait_until(
            lambda: all(standby_lags(port2).get(p) == 0 for p in w1_partitions),
            "the standby copies did not catch up",
            app,
        )
        # what a restore without a copy would read: every record of w1's partitions
        in_w1_partitions = sum(changelog_ends(app.bootstrap, changelog, w1_partitions).values())
        assert in_w1_partitions >= 800  # about half of the 2000 keys

        # kill -9 while a second wave is being processed: the copies then trail the owner
        produce_keyed(app, expected, 10_000, keys=200, per_key=1)
        app.kill_worker("w1")

        def took_over() -> str | None:
            log = app.log("w2")
            taken = log[log.rindex("standby partitions=") :]  # the copies' last start onwards
            done = taken.count("taken over by this worker") == 2
            return taken if done and "still_restoring=[]" in taken else None

        taken = wait_until(took_over, "no takeover", app)
        loaded = {
            int(p): int(offset)
            for p, offset in re.findall(
                r"loaded local state store partition=(\d+) replaying_from=(\d+)", taken
            )
        }
        # the takeover started from the copies, not from the beginning
        assert all(loaded.get(p, 0) > 0 for p in w1_partitions), taken
        replayed = restored_records(taken, changelog)
        assert replayed < in_w1_partitions / 4, (replayed, in_w1_partitions, taken)

        total = produce_keyed(app, expected, 20_000, keys=200, per_key=2)
        records = read_committed(app.bootstrap, app.egress, total, timeout=120)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        assert app.stop_worker("w2") == 0, app.all_logs()
    finally:
        app.stop_all()
