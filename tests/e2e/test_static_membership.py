"""A named worker's defaults (--instance-id given: static membership and a state directory,
no flags).

Under the classic protocols (KIP-345; ``rebalance_protocol: eager`` here): a worker restarted
after kill -9 gets its partitions back at once instead of after its crashed predecessor's
session timeout and loads its local snapshot instead of restoring the changelog, still exactly
once; a second worker with the same instance id fences the first (exit 3).

Under KIP-848 (``rebalance_protocol: consumer``, the default) the group refuses a member whose
instance id another member still holds: a worker restarted after a clean stop takes its
predecessor's place and partitions (no other worker is assigned anything); one restarted after
kill -9 is refused until the group's session timeout released the killed one, and waits and
joins again meanwhile, without exiting; a second worker with the same instance id fences the
running one's producer, which stops (exit 3) at its next transaction, and then takes its
place; one whose running namesake has nothing to do gives up after three session timeouts
(exit 3), and the running one stops at its next input: never both at work."""

import json
import re
import time

import pytest

from tests.harness import (
    check_exactly_once,
    keyed_events,
    make_app,
    owned_partitions,
    produce_events,
    produce_keyed,
    read_committed,
    set_group_session_timeout,
    wait_for_snapshot,
)

pytestmark = pytest.mark.kafka

SESSION_TIMEOUT_S = 60  # long, so that waiting for it could not pass for a quick hand-back


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    application = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    application.named_defaults = True  # no --static-membership, no --state-dir
    yield application
    application.stop_all()


def test_a_named_worker_restarted_after_kill_resumes_at_once_from_its_snapshot(app):
    app.env["KSTATEFUN_REBALANCE_PROTOCOL"] = "eager"  # KIP-345: the newer member takes over
    app.env["KSTATEFUN_KAFKA_PROPERTIES"] = json.dumps(
        {"session.timeout.ms": str(SESSION_TIMEOUT_S * 1000)}
    )
    events, expected = keyed_events(keys=24, per_key=3)  # keys on every partition
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1")
    read_committed(app.bootstrap, app.egress, len(events), settle=0.2)
    default_dir = app.module.parent / "xdg-state" / "kstatefun"  # $XDG_STATE_HOME/kstatefun
    wait_for_snapshot(default_dir / f"{app.app_id}-w1.sqlite", keys=24)
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
    assert (default_dir / f"{app.app_id}-w1.sqlite").is_file(), log

    app.start_worker("w1")  # same instance id: one of them must go
    assert first.wait(SESSION_TIMEOUT_S) == 3, app.all_logs()
    assert "fenced" in app.log("w1")


KIP848_SESSION_TIMEOUT_S = 20  # long enough that a restart after kill -9 comes before it ends


REFUSED = "the group refused group member"  # the worker's first refusal, before its waits
ADMITTED = "the group admitted instance_id=w1 after"


def test_named_workers_under_kip848_keep_partitions_over_a_clean_restart_and_wait_after_a_kill(app):
    set_group_session_timeout(app.bootstrap, app.app_id, KIP848_SESSION_TIMEOUT_S * 1000)
    expected: dict[str, list[int]] = {}
    app.start_worker("w1")
    app.start_worker("w2")
    deadline = time.monotonic() + 120
    while not all(owned_partitions(app.log(w)) for w in ("w1", "w2")):  # the split settled
        assert time.monotonic() < deadline, app.all_logs()
        time.sleep(0.05)
    # keys on every partition: each worker processes and commits some, w1 into its snapshot
    total = produce_keyed(app, expected, 0, keys=24)
    read_committed(app.bootstrap, app.egress, total, settle=0.2)

    # a clean stop: w1 leaves as a static member (KIP-848 epoch -2), its partitions wait for it
    marks = {w: app.log(w).count("assigned invocations") for w in ("w1", "w2")}
    assert app.stop_worker("w1") == 0, app.all_logs()
    before_restart = len(app.log("w1"))
    total = produce_keyed(app, expected, 1000, keys=24)
    app.start_worker("w1")
    app.wait_for_log("w1", "assigned invocations", marks["w1"] + 1)
    read_committed(app.bootstrap, app.egress, total, settle=0.2)
    assert app.log("w2").count("assigned invocations") == marks["w2"], app.all_logs()
    loaded = re.findall(
        r"loaded local snapshot partition=\d+ keys=(\d+)", app.log("w1")[before_restart:]
    )
    assert loaded and sum(map(int, loaded)) > 0, app.all_logs()

    # kill -9: the group keeps the killed member until its session times out and refuses the
    # restarted one meanwhile, which waits and joins again until it is admitted; nothing is
    # lost or counted twice
    app.kill_worker("w1")
    total = produce_keyed(app, expected, 2000, keys=24)
    restarted = app.start_worker("w1")
    app.wait_for_log("w1", REFUSED, 1, timeout=120)
    app.wait_for_log("w1", ADMITTED, 1, timeout=120)
    log = app.log("w1")
    assert "the group releases when its session times out" in log, app.all_logs()
    # the wait is the group's own session timeout, as the cluster describes it
    assert f"session_timeout_s={KIP848_SESSION_TIMEOUT_S} give_up_after_s=" in log, log
    total = produce_keyed(app, expected, 3000, keys=24)
    records = read_committed(app.bootstrap, app.egress, total)
    assert check_exactly_once(records, expected) == [], app.all_logs()
    assert restarted.poll() is None, app.all_logs()  # never exited

    # the same instance id twice: the group refuses the newcomer, whose producer has fenced the
    # running worker's already (init_transactions comes before the join); the running one
    # stops at its next transaction (exit 3), leaving the group, and the newcomer takes its
    # place: never both at work
    second = app.start_worker("w1")
    try:
        app.wait_for_log("w1", REFUSED, 2, timeout=120)
        total = produce_keyed(app, expected, 4000, keys=24)
        assert restarted.wait(60) == 3, app.all_logs()
        assert "was fenced" in app.log("w1"), app.all_logs()
        app.wait_for_log("w1", ADMITTED, 2, timeout=120)
        records = read_committed(app.bootstrap, app.egress, total)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        assert second.poll() is None, app.all_logs()
    finally:
        if restarted.poll() is None:
            restarted.kill()


def test_a_second_live_worker_with_the_same_instance_id_gives_up_and_never_runs_beside_it(app):
    """Under KIP-848 a running member keeps its instance id for good: the newcomer is refused
    for its three session timeouts and stops (exit 3) naming the running worker; the running
    one, whose producer the newcomer fenced, stops at its next transaction."""
    set_group_session_timeout(app.bootstrap, app.app_id, 6000)  # gives up after 18 s
    expected: dict[str, list[int]] = {}
    first = app.start_worker("w1")
    app.wait_for_log("w1", "assigned invocations")
    second = app.start_worker("w1")
    try:
        assert second.wait(120) == 3, app.all_logs()
        log = app.log("w1")
        assert "session_timeout_s=6 give_up_after_s=18" in log, log
        assert "another running worker holds its instance id" in log, log
        assert "the group admitted" not in log, log
        assert first.poll() is None, log  # nothing to do yet: it has not noticed the fence

        total = produce_keyed(app, expected, 0, keys=24)
        assert first.wait(60) == 3, app.all_logs()
        assert "this worker's transactional id was fenced" in app.log("w1"), app.all_logs()
        app.start_worker("w1")  # alone now: nothing was committed twice or lost
        records = read_committed(app.bootstrap, app.egress, total)
        assert check_exactly_once(records, expected) == [], app.all_logs()
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
