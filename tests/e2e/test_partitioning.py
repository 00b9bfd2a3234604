"""End to end on a real broker: invocation partitioning follows the ingress. Records that
librdkafka's default partitioner (CRC32) placed on a topic of 6 partitions are dispatched in
the transaction that consumed them, never through <app>-invocations, exactly once; the
application's partitioner outlives its workers and cannot be changed over its state."""

import re

import pytest

from tests.harness import (
    check_exactly_once,
    keyed_events,
    make_app,
    produce_events,
    read_committed,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    application = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic, partitions=6)
    yield application
    application.stop_all()


def _run_until_out(app, instance: str, expected: dict[str, list[int]]) -> str:
    """Start a worker that takes its partition count from the ingress, wait until every
    expected output is in, exactly once, stop it cleanly and return its log."""
    app.start_worker(instance, partitions=False)
    records = read_committed(
        app.bootstrap, app.egress, sum(map(len, expected.values())), settle=0.5
    )
    assert check_exactly_once(records, expected) == [], app.all_logs()
    assert app.stop_worker(instance) == 0, app.all_logs()
    return app.log(instance)


def _paths(log: str) -> tuple[int, int]:
    """(direct, routed) ingress records from the worker's stop line."""
    found = re.search(r"ingress_direct=(\d+) ingress_routed=(\d+)", log)
    assert found, log[-3000:]
    return int(found[1]), int(found[2])


def _assert_direct(log: str, events: int) -> None:
    """Every ingress record went direct, also for a new application's first worker whose
    group coordinator assigned the ingress partitions before it knew the just-created
    invocations topic (DirectPath.pair: they waited for their invocations partitions)."""
    direct, routed = _paths(log)
    assert routed == 0 and direct >= events, log[-3000:]


def _restart_goes_direct(
    app, expected: dict[str, list[int]], producer_partitioner: str, partitioner: str
) -> None:
    """More input, placed as before; a restarted worker reads the recorded partitioner back
    and takes every record direct."""
    more, expected_more = keyed_events(keys=40, per_key=2, start_seq=1000)
    for key, seqs in expected_more.items():
        expected[key] += seqs
    produce_events(app.bootstrap, app.ingress, more, partitioner=producer_partitioner)
    log = _run_until_out(app, "w2", expected)
    assert f"partitioner={partitioner} partitioner_from='recorded in {app.app_id}-meta'" in log
    _assert_direct(log, len(more))


def test_crc32_input_on_6_partitions_goes_direct_exactly_once(app):
    events, expected = keyed_events(keys=40, per_key=5)
    produce_events(app.bootstrap, app.ingress, events, partitioner="consistent_random")
    log = _run_until_out(app, "w1", expected)
    assert "partitions=6 partitions_from='ingress topic" in log
    # the records already on the ingress topic told the first worker which partitioner to take
    assert (
        f"partitioner=crc32 partitioner_from='the placement of 200 records on {app.ingress}'" in log
    )
    _assert_direct(log, len(events))
    assert "is partitioned with" not in log and "has 6 partitions but" not in log

    _restart_goes_direct(app, expected, "consistent_random", "crc32")


def test_a_new_app_on_java_partitioned_input_takes_murmur2_and_goes_direct(app):
    events, expected = keyed_events(keys=40, per_key=6)
    produce_events(app.bootstrap, app.ingress, events, partitioner="murmur2_random")
    log = _run_until_out(app, "w1", expected)
    assert "partitioner=murmur2 partitioner_from='the placement of 200 records" in log
    _assert_direct(log, len(events))

    _restart_goes_direct(app, expected, "murmur2_random", "murmur2")


def test_input_placed_otherwise_takes_the_hop_and_is_named_in_a_warning(app):
    app.start_worker("w1", partitions=False)  # on an empty ingress topic: the default, crc32
    app.wait_for_log("w1", "assigned invocations partitions=[")
    events, expected = keyed_events(keys=40, per_key=6)  # 240 records: more than the sample
    produce_events(app.bootstrap, app.ingress, events, partitioner="murmur2_random")
    records = read_committed(app.bootstrap, app.egress, len(events), settle=0.5)
    assert check_exactly_once(records, expected) == [], app.all_logs()
    assert app.stop_worker("w1") == 0, app.all_logs()
    log = app.log("w1")
    assert "partitioner=crc32 partitioner_from='the default'" in log
    assert f"ingress topic={app.ingress} is partitioned with murmur2" in log
    assert "partitioner is crc32" in log and "KSTATEFUN_PARTITIONER" in log
    direct, routed = _paths(log)
    assert routed > 0  # ids whose crc32 and murmur2 partitions differ


def test_a_changed_partitioner_is_refused(app):
    events, expected = keyed_events(keys=6, per_key=2)
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1", partitions=False)
    read_committed(app.bootstrap, app.egress, len(events), settle=0.5)
    assert app.stop_worker("w1") == 0, app.all_logs()
    assert app.start_worker("w2", "--partitioner", "murmur2", partitions=False).wait(120) == 2
    log = app.log("w2")
    assert "partitioner=murmur2 (KSTATEFUN_PARTITIONER)" in log
    assert "places its ids with crc32" in log, log[-3000:]
