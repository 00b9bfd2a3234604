"""End to end on a real broker: messages between functions are not starved by an ingress
backlog. Ingress records placed by librdkafka's default partitioner go direct, so without
flow control a worker started on a backlog consumed nearly all of it before the messages its
functions sent each other (docs/performance.md, W2); DirectPath.balance (runtime/direct.py)
pauses ingress while the worker's own invocations lag. The chain's messages stay in one
partition, which by default runs them in the sender's transaction (runtime/local.py,
tests/e2e/test_local_messages.py): this test turns that off, as for messages between
partitions, which always take the hop."""

import re

import pytest

from tests.harness import (
    keyed_events,
    make_app,
    produce_events,
    read_committed,
)

pytestmark = pytest.mark.kafka

BACKLOG = 40_000


def _backlog_run(bootstrap, tmp_path, unique_name, create_topic) -> tuple[list[str], str]:
    """A fresh application's worker started on a backlog: its egress values in order, and
    its log."""
    tmp_path.mkdir()
    app = make_app(
        bootstrap,
        tmp_path,
        unique_name,
        create_topic,
        partitions=6,
        functions="tests.apps.chain:functions",
        target="chain/a",
    )
    app.egress = create_topic(unique_name("one"), partitions=1)  # one order for "a" and "b"
    app.env["KSTATEFUN_LOCAL_MESSAGES"] = "false"  # every message to chain/b through the topic
    try:
        events, _ = keyed_events(keys=400, per_key=BACKLOG // 400)
        produce_events(app.bootstrap, app.ingress, events)  # CRC32: the direct path
        app.start_worker("w1", partitions=False)
        values = [v for _, v in read_committed(app.bootstrap, app.egress, 2 * BACKLOG, timeout=240)]
        assert app.stop_worker("w1") == 0, app.all_logs()
    finally:
        app.stop_all()
    assert values.count("a") == BACKLOG and values.count("b") == BACKLOG, app.all_logs()
    return values, app.log("w1")


def test_a_chain_keeps_pace_with_an_ingress_backlog(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    # a new application: its ingress partitions may be assigned a heartbeat before its
    # invocations partitions, and wait for them (DirectPath.pair) instead of routing the
    # backlog into that topic, where the messages to chain/b would wait behind all of it
    values, log = _backlog_run(kafka_bootstrap, tmp_path / "run", unique_name, create_topic)
    assert "ingress_routed=0" in log, log[-3000:]
    # how many messages to chain/b waited, at worst: 9,000 to 13,500 with flow control (the
    # pause starts at 5,000, checked after each commit, and a commit's worth of records may
    # pass before it: 13,500 in a run whose 11 transactions took about 7,000 records each;
    # 10,500 failed a bound of a quarter, 13,500 one of a third), close to the whole backlog
    # without it
    waiting = worst = 0
    for value in values:
        waiting += 1 if value == "a" else -1
        worst = max(worst, waiting)
    assigned = re.findall(r".*assigned invocations partitions=.*", log)
    assert worst <= BACKLOG // 2, (
        f"up to {worst} of {BACKLOG} messages to chain/b waited; the worker's assignments:\n"
        + "\n".join(assigned)
        + "\n"
        + log[-3000:]
    )
