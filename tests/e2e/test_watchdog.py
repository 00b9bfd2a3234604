"""A worker stuck for good (here: a function that never returns) is ended by its watchdog with
exit code 4 and a log of where it was stuck, instead of holding its partitions forever."""

import json

import pytest

from tests.harness import make_app, produce_events

pytestmark = pytest.mark.kafka


def test_a_stuck_worker_exits_4_naming_where(kafka_bootstrap, tmp_path, unique_name, create_topic):
    app = make_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, functions="tests.apps.stuck:functions"
    )
    app.env["KSTATEFUN_WATCHDOG_TIMEOUT_S"] = "5"
    try:
        produce_events(app.bootstrap, app.ingress, [(b"k1", json.dumps({"seq": 1}).encode())])
        worker = app.start_worker("w1")
        assert worker.wait(90) == 4, app.all_logs()
        log = app.log("w1")
        assert "watchdog: the worker loop made no progress" in log
        assert "tests/apps/stuck.py" in log  # the stack names the stuck function
    finally:
        app.stop_all()
