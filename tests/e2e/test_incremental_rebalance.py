"""Cooperative rebalancing on a real broker: when a worker joins or leaves, the partitions that
stay with a worker are never revoked from it, and the output stays exactly-once throughout.

Each worker's own log of its revocations and assignments is the evidence, not timing. With
``rebalance_protocol: eager`` every rebalance revokes every partition, so this test fails
there (the test sets the protocol it runs with). It runs with KIP-848's consumer protocol
(the default), and with librdkafka's cooperative-sticky (``make test-long``).
"""

import time

import pytest

from tests.harness import (
    App,
    check_exactly_once,
    make_app,
    owned_partitions,
    produce_keyed,
    read_committed,
    revoked_partitions,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 6


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    # One ingress partition beside the 6 invocations partitions: the assignor balances all
    # partitions of the group, so a joining worker is then sure to get invocations partitions
    def one_partition(name, partitions=1, config=None):
        return create_topic(name, 1, config)

    application = make_app(kafka_bootstrap, tmp_path, unique_name, one_partition, PARTITIONS)
    yield application
    application.stop_all()


def _settled(app: App, workers: list[str], timeout: float = 120) -> dict[str, set[int]]:
    """Wait until ``workers`` own every partition between them, each some; returns who owns
    what."""
    deadline = time.monotonic() + timeout
    while True:
        owned = {w: owned_partitions(app.log(w)) for w in workers}
        every = set().union(*owned.values())
        whole = sum(map(len, owned.values())) == PARTITIONS  # nobody owns one twice
        if every == set(range(PARTITIONS)) and all(owned.values()) and whole:
            return owned
        assert time.monotonic() < deadline, f"not settled: {owned}\n{app.all_logs()}"
        time.sleep(0.05)


def _never_revoked(
    app: App, marks: dict[str, int], before: dict[str, set[int]], after: dict[str, set[int]]
) -> None:
    """The partitions w1 and w2 owned both before and after a rebalance were never revoked
    in between (their logs from ``marks`` on), and there were such partitions: eager
    rebalancing revokes them all."""
    stayed = {w: before[w] & after[w] for w in marks}
    assert any(stayed.values()), (before, after, app.all_logs())
    for w in marks:
        revoked = revoked_partitions(app.log(w)[marks[w] :])
        assert not stayed[w] & revoked, (w, stayed, revoked, app.all_logs())


@pytest.mark.parametrize(
    "protocol", ["consumer", pytest.param("cooperative", marks=pytest.mark.long)]
)
def test_partitions_that_stay_are_never_revoked_when_a_worker_joins_and_leaves(app, protocol):
    app.env["KSTATEFUN_REBALANCE_PROTOCOL"] = protocol
    expected: dict[str, list[int]] = {}
    total = produce_keyed(app, expected, 0, keys=24, per_key=4)
    app.start_worker("w1")
    app.start_worker("w2")
    before = _settled(app, ["w1", "w2"])
    read_committed(app.bootstrap, app.egress, total, settle=0.2)
    marks = {w: len(app.log(w)) for w in ("w1", "w2")}

    app.start_worker("w3")  # joins while input arrives
    total = produce_keyed(app, expected, 10_000, keys=24, per_key=4)
    during = _settled(app, ["w1", "w2", "w3"])
    _never_revoked(app, marks, before, during)
    # what w3 got was revoked from the others first
    revoked = set().union(*(revoked_partitions(app.log(w)[marks[w] :]) for w in ("w1", "w2")))
    assert during["w3"] <= revoked, (revoked, during, app.all_logs())
    read_committed(app.bootstrap, app.egress, total, settle=0.2)

    marks = {w: len(app.log(w)) for w in ("w1", "w2")}
    assert app.stop_worker("w3") == 0, app.all_logs()  # leaves: its partitions move back
    total = produce_keyed(app, expected, 20_000, keys=24, per_key=4)
    after = _settled(app, ["w1", "w2"])
    _never_revoked(app, marks, during, after)
    records = read_committed(app.bootstrap, app.egress, total)
    assert check_exactly_once(records, expected) == [], app.all_logs()
