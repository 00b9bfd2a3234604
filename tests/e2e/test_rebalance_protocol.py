"""A broker that does not take KIP-848's consumer group protocol (Kafka older than 4.0, or the
protocol turned off) against the default ``rebalance_protocol: consumer``: the worker stops at
its first join with exit code 2, naming the setting and what to set it to, and with that
advice followed (eager here) the same application runs exactly-once on the same broker."""

import pytest
from confluent_kafka.admin import AdminClient

from kstatefun.devkafka import LocalKafka
from kstatefun.devkafka.broker import TUNING
from tests import kafka_fixture
from tests.harness import check_exactly_once, make_app, produce_keyed, read_committed

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def classic_broker(tmp_path_factory):
    """A broker of this module's own whose group coordinator takes classic groups only."""
    local = LocalKafka(
        tmp_path_factory.mktemp("kafka"),
        tuning={**TUNING, "group.coordinator.rebalance.protocols": "classic"},
    )
    local.start(timeout=kafka_fixture.BROKER_START_TIMEOUT_S)
    yield local
    local.stop()


def test_a_broker_without_the_consumer_protocol_stops_the_worker_naming_the_setting(
    classic_broker, tmp_path, unique_name
):
    admin = AdminClient({"bootstrap.servers": classic_broker.bootstrap_servers})

    def create_topic(name, partitions=1, config=None):
        return kafka_fixture.create_topic(admin, name, partitions, config)

    app = make_app(classic_broker.bootstrap_servers, tmp_path, unique_name, create_topic)
    try:
        assert app.start_worker("w1").wait(120) == 2, app.all_logs()
        log = app.log("w1")
        assert "does not take rebalance_protocol consumer" in log, log
        assert "KSTATEFUN_REBALANCE_PROTOCOL" in log, log

        app.env["KSTATEFUN_REBALANCE_PROTOCOL"] = "eager"
        expected: dict[str, list[int]] = {}
        total = produce_keyed(app, expected, 0)
        app.start_worker("w1")
        records = read_committed(app.bootstrap, app.egress, total)
        assert check_exactly_once(records, expected) == [], app.all_logs()
    finally:
        app.stop_all()
