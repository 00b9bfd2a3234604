"""Static membership (--static-membership): a worker restarted after kill -9 gets its
partitions back at once instead of after its crashed predecessor's session timeout, still
exactly once; a second worker with the same instance id fences the first (exit 3)."""

import json
import time

import pytest

from tests.harness import check_exactly_once, keyed_events, make_app, produce_events, read_committed

pytestmark = pytest.mark.kafka

SESSION_TIMEOUT_S = 60  # long, so that waiting for it could not pass for a quick hand-back


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    application = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    application.env["KSTATEFUN_KAFKA_PROPERTIES"] = json.dumps(
        {"session.timeout.ms": str(SESSION_TIMEOUT_S * 1000)}
    )
    yield application
    application.stop_all()


def test_a_restarted_static_member_resumes_before_the_session_timeout(app):
    events, expected = keyed_events(keys=24, per_key=3)  # keys on every partition
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1", "--static-membership")
    read_committed(app.bootstrap, app.egress, len(events), settle=0.2)
    app.kill_worker("w1")

    more, expected_more = keyed_events(keys=24, per_key=3, start_seq=1000)
    for key, seqs in expected_more.items():
        expected[key] += seqs
    produce_events(app.bootstrap, app.ingress, more)
    restarted = time.monotonic()
    first = app.start_worker("w1", "--static-membership")
    # A dynamic member would wait for the killed one to expire: SESSION_TIMEOUT_S at least.
    records = read_committed(
        app.bootstrap, app.egress, len(events) + len(more), timeout=SESSION_TIMEOUT_S / 2
    )
    assert check_exactly_once(records, expected) == [], app.all_logs()
    assert time.monotonic() - restarted < SESSION_TIMEOUT_S / 2, app.all_logs()

    app.start_worker("w1", "--static-membership")  # same instance id: one of them must go
    assert first.wait(SESSION_TIMEOUT_S) == 3, app.all_logs()
    assert "fenced" in app.log("w1")
