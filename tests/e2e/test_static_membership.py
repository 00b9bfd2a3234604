"""A named worker's defaults (--instance-id given: static membership and a state directory,
no flags).

Under the classic protocols (KIP-345; ``rebalance_protocol: eager`` here): a worker restarted
after kill -9 gets its partitions back at once instead of after its crashed predecessor's
session timeout and loads its local snapshot instead of restoring the changelog, still exactly
once; a second worker with the same instance id fences the first (exit 3).

Under KIP-848 (``rebalance_protocol: consumer``, the default), where librdkafka's static
members leave with epoch -2 and the group refuses a member whose instance id another still
holds: a worker restarted after a clean stop takes its predecessor's place and partitions (no
other worker is assigned anything); so does one restarted after kill -9, which releases the
killed member first (kafka/membership.py) instead of waiting for its session; a second
worker with the same instance id fences the running one's producer, releases its membership
and takes its place, and the running one stops (exit 3): never both at work. A worker stopped
with leave_group_on_stop (scale-in) leaves for good: its partitions move at once."""

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
from tests.integration.test_cli_tools import run_cli

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


REFUSED = "the group refused group member"  # the worker's refusal (_join_again)


def wait_for_split(app) -> None:
    """Until w1 and w2 both own partitions: the group's split settled."""
    deadline = time.monotonic() + 120
    while not all(owned_partitions(app.log(w)) for w in ("w1", "w2")):
        assert time.monotonic() < deadline, app.all_logs()
        time.sleep(0.05)


RELEASED = "released the previous member of this instance id"


def test_named_workers_under_kip848_keep_partitions_over_a_clean_restart_and_after_a_kill(app):
    # long: a restart that waited for the killed member's session would fail the test
    set_group_session_timeout(app.bootstrap, app.app_id, SESSION_TIMEOUT_S * 1000)
    expected: dict[str, list[int]] = {}
    app.start_worker("w1")
    app.start_worker("w2")
    wait_for_split(app)
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

    # kill -9: the group would keep the killed member until its session ends and refuse the
    # restarted one meanwhile; the restart releases it (having fenced its transactions) and
    # takes its place and partitions at once, without a rebalance: w2 is assigned nothing
    owned = owned_partitions(app.log("w1"))
    app.kill_worker("w1")
    total = produce_keyed(app, expected, 2000, keys=24)
    marks = {w: app.log(w).count("assigned invocations") for w in ("w1", "w2")}
    restarted = app.start_worker("w1")
    app.wait_for_log("w1", "assigned invocations", marks["w1"] + 1, timeout=SESSION_TIMEOUT_S / 2)
    log = app.log("w1")
    assert RELEASED in log and REFUSED not in log, app.all_logs()
    assert owned_partitions(log) == owned, app.all_logs()
    total = produce_keyed(app, expected, 3000, keys=24)
    records = read_committed(app.bootstrap, app.egress, total)
    assert check_exactly_once(records, expected) == [], app.all_logs()
    assert app.log("w2").count("assigned invocations") == marks["w2"], app.all_logs()
    assert restarted.poll() is None, app.all_logs()  # never exited

    # the same instance id twice: the newcomer fences the running worker's producer
    # (init_transactions comes before the join), releases its membership and takes its place;
    # the running one stops (exit 3): never both at work
    marks = {w: app.log(w).count("assigned invocations") for w in ("w1", "w2")}
    released = app.log("w1").count(RELEASED)
    second = app.start_worker("w1")
    try:
        app.wait_for_log("w1", RELEASED, released + 1, timeout=60)
        app.wait_for_log("w1", "assigned invocations", marks["w1"] + 1, timeout=60)
        total = produce_keyed(app, expected, 4000, keys=24)
        assert restarted.wait(60) == 3, app.all_logs()
        records = read_committed(app.bootstrap, app.egress, total)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        assert second.poll() is None, app.all_logs()
    finally:
        if restarted.poll() is None:
            restarted.kill()


def test_an_idle_named_worker_stops_when_a_second_one_with_its_instance_id_takes_its_place(app):
    """KIP-848, nothing to process after the newcomer took its place: the running worker learns
    it from its group (its next heartbeat is refused, its partitions are lost and its join again
    is refused: UNRELEASED_INSTANCE_ID), not from its fenced producer, and still stops (exit 3)
    within a heartbeat or two instead of waiting, as a restart after kill -9 does, for sessions
    of a member that is not dead. Then the newcomer alone goes on, exactly once."""
    set_group_session_timeout(app.bootstrap, app.app_id, SESSION_TIMEOUT_S * 1000)
    expected: dict[str, list[int]] = {}
    first = app.start_worker("w1")
    total = produce_keyed(app, expected, 0, keys=24)
    read_committed(app.bootstrap, app.egress, total, settle=0.2)

    second = app.start_worker("w1")
    try:
        # the refused join again would have waited three group sessions (3 x 60 s)
        assert first.wait(SESSION_TIMEOUT_S / 2) == 3, app.all_logs()
        assert "took its place" in app.log("w1"), app.all_logs()
        total = produce_keyed(app, expected, 1000, keys=24)
        records = read_committed(app.bootstrap, app.egress, total)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        assert second.poll() is None, app.all_logs()
    finally:
        if first.poll() is None:
            first.kill()


def test_a_named_worker_stopped_with_leave_group_on_stop_hands_its_partitions_over_at_once(app):
    """Scale-in: a static member that stops cleanly with leave_group_on_stop leaves the group
    for good, so the other worker takes its partitions now, not when its session ends; a
    worker stopped without it keeps them until then (the group's session is longer than the
    test waits)."""
    expected: dict[str, list[int]] = {}
    partitions = two_named_workers_at_work(app, expected, {"KSTATEFUN_LEAVE_GROUP_ON_STOP": "true"})

    assert app.stop_worker("w2") == 0, app.all_logs()
    assert "left the group for good" in app.log("w2"), app.all_logs()
    w1_takes_over_before_the_session_ends(app, expected, partitions)


def test_group_remove_hands_a_killed_named_workers_partitions_over_at_once(app):
    """Scale-in by kill: ``kstatefun group members`` still lists the killed named worker with
    its partitions (the group waits for its session), ``kstatefun group remove`` removes it,
    and the other worker takes its partitions at once; removing it again says it is gone."""
    expected: dict[str, list[int]] = {}
    partitions = two_named_workers_at_work(app, expected, {})

    app.kill_worker("w2")
    listed = json.loads(run_cli(app.bootstrap, app.app_id, "group", "members", "--json").stdout)
    invocations = f"{app.app_id}-invocations"
    by_instance = {m["instance_id"]: m["partitions"].get(invocations) for m in listed["members"]}
    assert set(by_instance) == {"w1", "w2"}, listed
    clients = {m["instance_id"]: m["client_id"] for m in listed["members"]}
    assert clients == {w: f"{app.app_id}-{w}" for w in ("w1", "w2")}, listed  # worker.py
    assert set(by_instance["w2"]) == owned_partitions(app.log("w2")), listed

    removed = run_cli(app.bootstrap, app.app_id, "group", "remove", "--instance-id", "w2")
    assert removed.stdout.strip() == "w2: removed", removed.stdout
    w1_takes_over_before_the_session_ends(app, expected, partitions)
    again = run_cli(app.bootstrap, app.app_id, "group", "remove", "--instance-id", "w2", expect=1)
    assert again.stdout.strip() == "w2: not removed (UNKNOWN_MEMBER_ID)", again.stdout


def two_named_workers_at_work(app, expected, w2_env: dict[str, str]) -> set[int]:
    """w1 and w2 (w2 with ``w2_env`` more), the group's session longer than the tests wait,
    their split settled and some keys on every partition processed: all the partitions."""
    set_group_session_timeout(app.bootstrap, app.app_id, SESSION_TIMEOUT_S * 1000)
    app.start_worker("w1")
    app.env.update(w2_env)
    app.start_worker("w2")
    wait_for_split(app)
    total = produce_keyed(app, expected, 0, keys=24)
    read_committed(app.bootstrap, app.egress, total, settle=0.2)
    return owned_partitions(app.log("w1")) | owned_partitions(app.log("w2"))


def w1_takes_over_before_the_session_ends(app, expected, partitions: set[int]) -> None:
    """w2 is out of the group: w1 owns every partition before w2's session could have ended,
    and more input comes out exactly once."""
    total = produce_keyed(app, expected, 1000, keys=24)
    deadline = time.monotonic() + SESSION_TIMEOUT_S / 2  # its session would end only after
    while owned_partitions(app.log("w1")) != partitions:
        assert time.monotonic() < deadline, app.all_logs()
        time.sleep(0.05)
    records = read_committed(app.bootstrap, app.egress, total)
    assert check_exactly_once(records, expected) == [], app.all_logs()
