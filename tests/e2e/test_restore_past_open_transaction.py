"""A restore reads a changelog partition to its end, past a transaction another process left
open: a read_committed reader cannot read beyond that transaction (the last stable offset)
until it ends, but committed state may lie beyond it. A zombie (a worker paused past its
session, still in a transaction) opens one; the next owner commits counts after it; a third
owner that restored only up to the last stable offset would count from the zombie's time and
write every count again (a duplicate): exactly-once would break."""

import time

import pytest
from confluent_kafka import Producer

from kstatefun.kafka.topics import InternalTopics
from kstatefun.wire.avro import encode_changelog_value
from tests.harness import check_exactly_once, make_app, produce_keyed, read_committed

pytestmark = pytest.mark.kafka


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, create_topic):
    application = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic, partitions=1)
    yield application
    application.stop_all()


def test_a_restore_waits_for_a_transaction_left_open_and_reads_what_follows_it(app, unique_name):
    expected: dict[str, list[int]] = {}
    total = produce_keyed(app, expected, 0, keys=3, per_key=3)
    app.start_worker("w2")
    read_committed(app.bootstrap, app.egress, total, settle=0.2)

    # the zombie: a transaction on the changelog partition that stays open
    zombie = Producer(
        {
            "bootstrap.servers": app.bootstrap,
            "transactional.id": unique_name("zombie"),
            "transaction.timeout.ms": 300_000,
        }
    )
    zombie.init_transactions(30)
    zombie.begin_transaction()
    value = encode_changelog_value("io.statefun.types/int", b"\x00")
    zombie.produce(InternalTopics(app.app_id).changelog, value, b"zombie/0", 0)
    assert zombie.flush(30) == 0
    try:
        # w2, live since before, commits counts after the zombie's records
        total = produce_keyed(app, expected, 1000, keys=3, per_key=2)
        read_committed(app.bootstrap, app.egress, total, settle=0.2)
        assert app.stop_worker("w2") == 0, app.all_logs()

        # w3 restores from the changelog while the zombie's transaction is still open
        app.start_worker("w3")
        total = produce_keyed(app, expected, 2000, keys=3, per_key=1)
        deadline = time.monotonic() + 10  # a bound, not an assertion: see below
        while "restored invocations partitions=[0]" not in app.log("w3"):
            if time.monotonic() > deadline:
                break  # still restoring: waiting at the open transaction, as it must
            time.sleep(0.1)
    finally:
        zombie.abort_transaction(30)  # the coordinator would abort it at its timeout
    records = read_committed(app.bootstrap, app.egress, total)
    assert check_exactly_once(records, expected) == [], app.all_logs()
    assert app.stop_worker("w3") == 0, app.all_logs()
