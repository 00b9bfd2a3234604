"""A named worker's defaults (--instance-id given: static membership and a state directory,
no flags): a worker restarted after kill -9 gets its partitions back at once instead of after
its crashed predecessor's session timeout and loads its local snapshot instead of restoring the
changelog, still exactly once; a second worker with the same instance id fences the first
(exit 3)."""

import json
import re
import time

import pytest

from tests.harness import check_exactly_once, keyed_events, make_app, produce_events, read_committed

pytestmark = pytest.mark.kafka

SESSION_TIMEOUT_S = 60  # long, so that waiting for it could not pass for a quick hand-back


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    application = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    application.named_defaults = True  # no --static-membership, no --state-dir
    application.env["KSTATEFUN_KAFKA_PROPERTIES"] = json.dumps(
        {"session.timeout.ms": str(SESSION_TIMEOUT_S * 1000)}
    )
    yield application
    application.stop_all()


def test_a_named_worker_restarted_after_kill_resumes_at_once_from_its_snapshot(app):
    events, expected = keyed_events(keys=24, per_key=3)  # keys on every partition
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1")
    read_committed(app.bootstrap, app.egress, len(events), settle=0.2)
    app.kill_worker("w1")

    more, expected_more = keyed_events(keys=24, per_key=3, start_seq=1000)
    for key, seqs in expected_more.items():
        expected[key] += seqs
    produce_events(app.bootstrap, app.ingress, more)
    restarted = time.monotonic()
    first = app.start_worker("w1")
    # A dynamic member would wait for the killed one to expire: SESSION_TIMEOUT_S at least.
    records = read_committed(
        app.bootstrap, app.egress, len(events) + len(more), timeout=SESSION_TIMEOUT_S / 2
    )
    assert check_exactly_once(records, expected) == [], app.all_logs()
    assert time.monotonic() - restarted < SESSION_TIMEOUT_S / 2, app.all_logs()
    log = app.log("w1")
    assert "static_membership=true" in log, log
    loaded = re.findall(r"loaded local snapshot partition=\d+ keys=(\d+)", log)
    assert loaded and sum(map(int, loaded)) > 0, log
    default_dir = app.module.parent / "xdg-state" / "kstatefun"  # $XDG_STATE_HOME/kstatefun
    assert (default_dir / f"{app.app_id}-w1.sqlite").is_file(), log

    app.start_worker("w1")  # same instance id: one of them must go
    assert first.wait(SESSION_TIMEOUT_S) == 3, app.all_logs()
    assert "fenced" in app.log("w1")
