"""A worker whose consumer never took a partition the group's coordinator assigned it (as if
librdkafka had missed that assignment) stops with exit code 1 naming it, after
``assignment_audit_s``, rather than leave it unconsumed for good; its restart takes it and
every record comes out exactly once (kafka/groups.py ``AssignmentAudit``)."""

import re

import pytest

from tests.harness import check_exactly_once, keyed_events, make_app, produce_events, read_committed

pytestmark = pytest.mark.kafka


def test_a_partition_assigned_and_never_taken_stops_the_worker_and_its_restart_takes_it(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic, partitions=4)
    try:
        events, expected = keyed_events(keys=40, per_key=3)
        produce_events(app.bootstrap, app.ingress, events)
        app.env.update(TEST_WITHHOLD=f"{app.ingress}:1", KSTATEFUN_ASSIGNMENT_AUDIT_S="4")
        w1 = app.start_worker("w1")
        assert w1.wait(90) == 1, app.all_logs()
        log = app.log("w1")
        stop = re.search(r"stopping: the group's coordinator has assigned this worker .*", log)
        assert stop, log
        assert f"{app.ingress}[1]; it holds " in stop.group(0), stop.group(0)
        assert f"{app.ingress}[0]" in stop.group(0).split("it holds")[1], stop.group(0)
        del app.env["TEST_WITHHOLD"]
        app.start_worker("w1")
        records = read_committed(app.bootstrap, app.egress, len(events))
        assert app.stop_worker("w1") == 0, app.all_logs()
    finally:
        app.stop_all()
    assert check_exactly_once(records, expected) == [], app.all_logs()
