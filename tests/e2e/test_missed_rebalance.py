"""A worker that misses a rebalance must not go on from its old state.

Between a revocation and its next assignment (eager rebalancing) a worker owns nothing; if it is
late to the join (paused, or blocked while the broker restarts) the group goes on without it,
another worker takes its partitions and commits state for them, and the group may later hand
the same partitions back. Nothing tells the late worker that it was left out: no "lost"
callback, because it held no assignment. Its local state for those partitions is then older
than their changelog, and only checking the changelog on assignment finds that out
(docs/architecture.md, "Assignment"). That is eager rebalancing (``rebalance_protocol: eager``),
which the first test pins.

With incremental rebalancing (``rebalance_protocol: consumer``, KIP-848, the default, or
``cooperative``) a worker keeps partitions through a rebalance, so the group removing it is a
loss it learns of (the "lost" callback drops its state) and whatever it commits before that is
refused by the group's epoch (KIP-447); the second test checks that the output stays
exactly-once there too, under both.
"""

import signal
import time

import pytest
from confluent_kafka.admin import AdminClient

from kstatefun.devkafka import LocalKafka
from tests import kafka_fixture
from tests.harness import (
    check_exactly_once,
    make_app,
    owned_partitions,
    produce_keyed,
    read_committed,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of this module's own: one test restarts it."""
    local = LocalKafka(tmp_path_factory.mktemp("kafka"))
    local.start(timeout=kafka_fixture.BROKER_START_TIMEOUT_S)
    yield local
    local.stop()


@pytest.fixture
def app(broker, tmp_path, unique_name):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})

    def create_topic(name, partitions=1, config=None):
        return kafka_fixture.create_topic(admin, name, partitions, config)

    application = make_app(broker.bootstrap_servers, tmp_path, unique_name, create_topic, 2)
    # SIGSTOP freezes the watchdog too: on SIGCONT it would see the whole stop (a broker
    # restart on a loaded machine: over a minute) as a loop without progress and exit 4
    application.env["KSTATEFUN_WATCHDOG_TIMEOUT_S"] = "600"
    yield application
    for proc in application.workers.values():
        proc.send_signal(signal.SIGCONT)
    application.stop_all()


@pytest.mark.parametrize(
    "broker_restart",
    [False, pytest.param(True, marks=pytest.mark.long)],  # a broker restart: half a minute
    ids=["paused", "broker-restart"],
)
def test_a_worker_late_to_a_rebalance_reloads_what_others_committed(app, broker, broker_restart):
    app.env["KSTATEFUN_REBALANCE_PROTOCOL"] = "eager"  # only eager leaves a worker owning nothing
    expected: dict[str, list[int]] = {}
    seq = produce_keyed(app, expected, 0, per_key=3)
    late = app.start_worker("late")
    read_committed(app.bootstrap, app.egress, seq, settle=0.2)  # "late" owns both partitions

    app.start_worker("other")  # a rebalance: "late" is revoked, then must rejoin
    app.wait_for_log("late", "revoked invocations", 1)
    late.send_signal(signal.SIGSTOP)  # misses the join; the group goes on without it
    if broker_restart:
        broker.kill()
        broker.start(timeout=120)
    app.wait_for_log("other", "assigned invocations partitions=[0, 1]", 1, timeout=120)
    seq = produce_keyed(app, expected, 1000, per_key=5)  # "other" moves the counts on
    read_committed(app.bootstrap, app.egress, seq, settle=0.2)

    late.send_signal(signal.SIGCONT)  # rejoins and gets one of its partitions back
    app.wait_for_log("late", "assigned invocations", 2, timeout=120)
    seq = produce_keyed(app, expected, 5000, per_key=5)
    records = read_committed(app.bootstrap, app.egress, seq)
    assert check_exactly_once(records, expected) == [], app.all_logs()
    # the scenario happened: "late" kept a partition that "other" had written meanwhile, and
    # found out from the changelog. On a loaded machine its resumed consumer may instead act
    # on the join it was frozen in, be told that generation is gone and drop its state as
    # lost (make test, load ~20). Exactly-once still held (checked above), but the changelog
    # check was not exercised: reported as xfail, not as a pass
    late_log = app.log("late")
    if "missed a rebalance" not in late_log:
        assert "partitions lost" in late_log, app.all_logs()
        pytest.xfail("the late worker's session ran out: it took the 'lost' path instead")


@pytest.mark.long  # a session timeout and a minute of waiting
@pytest.mark.parametrize("protocol", ["consumer", "cooperative"])
def test_a_worker_removed_from_the_group_mid_rebalance_loses_its_partitions(app, protocol):
    """Incremental: "late" keeps one of its partitions through the rebalance, is paused past
    its session, and the group gives everything to "other"; on waking it learns it lost its
    partitions, and nothing is counted twice."""
    app.env["KSTATEFUN_REBALANCE_PROTOCOL"] = protocol
    expected: dict[str, list[int]] = {}
    seq = produce_keyed(app, expected, 0, per_key=3)
    late = app.start_worker("late")
    read_committed(app.bootstrap, app.egress, seq, settle=0.2)  # "late" owns both partitions

    app.start_worker("other")  # incremental: "late" gives one partition up, keeps the other
    app.wait_for_log("late", "revoked invocations", 1)
    late.send_signal(signal.SIGSTOP)  # its session runs out while it holds partitions
    deadline = time.monotonic() + 120
    while owned_partitions(app.log("other")) != {0, 1}:  # the group went on without "late"
        assert time.monotonic() < deadline, app.all_logs()
        time.sleep(0.05)
    seq = produce_keyed(app, expected, 1000, per_key=5)
    read_committed(app.bootstrap, app.egress, seq, settle=0.2)

    late.send_signal(signal.SIGCONT)  # finds out, drops its state, rejoins
    app.wait_for_log("late", "partitions lost", 1, timeout=120)
    seq = produce_keyed(app, expected, 5000, per_key=5)
    records = read_committed(app.bootstrap, app.egress, seq)
    assert check_exactly_once(records, expected) == [], app.all_logs()
