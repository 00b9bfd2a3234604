"""End to end on a real broker: messages between functions of one partition run in their
sender's transaction (runtime/local.py) and never overtake a message to the same target that
still waits in <app>-invocations.

The application (tests/apps/counting.py) is test/counter → test/sink with the same id: every
counter's message to its sink stays in one partition. A first worker runs with
``local_messages`` off, on ingress placed over 3 partitions while the internal topics have 4,
so most ingress records and every message to a sink go through <app>-invocations; it stops
cleanly with counter invocations and sink messages still unread there. A second worker, with
the default, reads them: a counter invocation below the end that partition had at its
assignment sends its sink message through the topic too, behind the ones waiting there (the
floor), and only later messages run at once. Were they run at once earlier, a sink would
write a count before the smaller counts still waiting: the egress check below (counts 1, 2,
3... in produced order per key) fails; it did with the floors left out. The second test
covers the targets blocked behind a message this worker routed itself.
"""

import json
import re

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.harness import (
    check_exactly_once,
    keyed_events,
    make_app,
    produce_events,
    read_committed,
)

pytestmark = pytest.mark.kafka

KEYS, PER_KEY = 200, 60  # 12,000 events in the first batch


def _unread(bootstrap: str, app_id: str, topic: str, partitions: int) -> int:
    """Records of ``topic`` beyond the group's committed offsets."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": app_id})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = c.committed(tps, timeout=30)
        unread = 0
        for tp in committed:
            _, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=30)
            unread += high - max(tp.offset, 0)
        return unread
    finally:
        c.close()


def test_messages_run_at_once_only_behind_those_still_waiting_in_the_topic(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic, partitions=3)
    args = ("--partitions", "4")
    try:
        events, expected = keyed_events(keys=KEYS, per_key=PER_KEY)
        produce_events(app.bootstrap, app.ingress, events)
        app.env["KSTATEFUN_LOCAL_MESSAGES"] = "false"
        app.start_worker("w1", *args, partitions=False)
        read_committed(app.bootstrap, app.egress, 1_500, timeout=120, settle=0)
        assert app.stop_worker("w1") == 0, app.all_logs()
        unread = _unread(app.bootstrap, app.app_id, f"{app.app_id}-invocations", 4)
        assert unread > 0, "the first worker read everything: nothing left to overtake"
        more, expected_more = keyed_events(keys=KEYS, per_key=10, start_seq=len(events))
        produce_events(app.bootstrap, app.ingress, more)
        for key, seqs in expected_more.items():
            expected[key].extend(seqs)
        del app.env["KSTATEFUN_LOCAL_MESSAGES"]
        app.start_worker("w2", *args, partitions=False)
        total = len(events) + len(more)
        records = read_committed(app.bootstrap, app.egress, total, timeout=240)
        assert app.stop_worker("w2") == 0, app.all_logs()
    finally:
        app.stop_all()
    problems = check_exactly_once(records, expected)
    assert not problems, "\n".join(problems[:10]) + f"\n{unread} unread\n" + app.log("w2")[-4000:]
    assert "messages_local=0 " in app.log("w1"), app.log("w1")[-2000:]
    stop = app.log("w2").rsplit("worker stopped", 1)[-1]
    assert "messages_local=0 " not in stop, stop  # the later ones did run at once


def test_a_chain_past_its_bound_keeps_the_order_of_a_functions_messages_to_itself(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    """loop/a sends itself 1,500 messages per event (tests/apps/loop.py): 1,000 run in the
    event's transaction (CASCADE_MAX), the next takes the topic, and the messages the next
    events of the id start must wait behind it (its target is blocked) until it is read back.
    Run at once, they would arrive before it: an egress value "n:got" with n != got."""
    hops, keys, per_key = 1_500, 4, 3
    app = make_app(
        kafka_bootstrap,
        tmp_path,
        unique_name,
        create_topic,
        functions="tests.apps.loop:functions",
        target="loop/a",
    )
    try:
        events = [
            (f"k{k}".encode(), json.dumps({"seq": i * keys + k, "hops": hops}).encode())
            for i in range(per_key)
            for k in range(keys)
        ]
        produce_events(app.bootstrap, app.ingress, events)  # one batch: the events wait
        app.start_worker("w1")
        total = keys * per_key * hops
        records = read_committed(app.bootstrap, app.egress, total, timeout=180)
        assert app.stop_worker("w1") == 0, app.all_logs()
    finally:
        app.stop_all()
    by_key: dict[str, list[str]] = {}
    for key, value in records:
        by_key.setdefault(key, []).append(value)
    want = [f"{n}:{n}" for n in range(1, per_key * hops + 1)]
    wrong = {
        k: [v for v, w in zip(vs, want, strict=False) if v != w][:5]
        for k, vs in by_key.items()
        if vs != want
    }
    assert sorted(by_key) == [f"k{k}" for k in range(keys)] and not wrong, (wrong, len(records))
    stop = app.log("w1").rsplit("worker stopped", 1)[-1]
    local = int(re.search(r"messages_local=(\d+)", stop).group(1))
    assert 0 < local < total, stop  # some ran at once, some took the topic
