"""Remote functions on a real broker, served by the real StateFun Python SDK 3.3.0 (its own
virtualenv): state, remote↔embedded messaging, Kafka egress from a remote function, delayed
messages, a raising function, and exactly-once under kill -9."""

import json
import time
from pathlib import Path

import pytest

from kstatefun.wire.avro import decode_dead_letter
from tests.harness import App, check_exactly_once, keyed_events, produce_events, read_committed
from tests.remote import sdk_env

pytestmark = pytest.mark.kafka

APP_SCRIPT = Path(__file__).resolve().parent.parent / "remote" / "sdk_kafka_app.py"

MODULE = """\
kind: io.statefun.endpoints.v2/http
spec:
  functions: remote/*
  urlPathTemplate: {url}
  transport:
    type: io.statefun.transports.v1/async
    call: 3s
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: test/in
  startupPosition:
    type: earliest
  topics:
    - topic: {ingress}
      valueType: test/Event
      targets:
        - {target}
---
kind: io.statefun.kafka.v1/egress
spec:
  id: test/out
---
kind: io.kstatefun.v1/embedded
spec:
  functions:
    - tests.apps.counting:functions
"""


@pytest.fixture(scope="module")
def sdk_app():
    with sdk_env.sdk_app_server(APP_SCRIPT) as server:
        yield server


def make_remote_app(kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, target, egress):
    ingress = create_topic(unique_name("in"), partitions=4)
    module = tmp_path / "module.yaml"
    module.write_text(MODULE.format(url=sdk_app.url("statefun"), ingress=ingress, target=target))
    return App(kafka_bootstrap, unique_name("app"), ingress, egress, module)


@pytest.fixture
def remote_out(create_topic, kafka_admin):
    if "remote-e2e-out" not in kafka_admin.list_topics(timeout=10).topics:
        create_topic("remote-e2e-out", partitions=4)
    return "remote-e2e-out"


@pytest.mark.long  # about 27 s: keeps `make test` under its 15 minutes (it took 14:11-15:05 here)
def test_remote_counter_to_embedded_sink_is_exactly_once_under_kill(
    kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app
):
    egress = create_topic(unique_name("out"), partitions=4)
    app = make_remote_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, "remote/counter", egress
    )
    events, expected = keyed_events(keys=12, per_key=40)
    events.insert(100, (b"k3", json.dumps({"seq": -1, "boom": True}).encode()))
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1")
    try:
        time.sleep(3)
        app.kill_worker("w1")  # kill -9 mid-stream
        app.start_worker("w1")
        records = read_committed(app.bootstrap, egress, len(events) - 1, timeout=120)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        letters = read_committed_dead_letters(app)
    finally:
        app.stop_all()
    assert [(d["reason"], d["target_type"], d["target_id"]) for d in letters] == [
        ("remote-error", "remote/counter", "k3")
    ], letters
    assert "500" in letters[0]["message"]


def read_committed_dead_letters(app, with_headers=False):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {"bootstrap.servers": app.bootstrap, "group.id": "dl", "isolation.level": "read_committed"}
    )
    c.assign([TopicPartition(f"{app.app_id}-dead-letters", 0, 0)])
    out = [
        {
            **decode_dead_letter(m.value()),
            **({"headers": dict(m.headers())} if with_headers else {}),
        }
        for m in c.consume(100, timeout=5)
        if not m.error()
    ]
    c.close()
    return out


def test_embedded_to_remote_sink_writes_kafka_egress_from_the_sdk(
    kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, remote_out
):
    app = make_remote_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, "test/counter", remote_out
    )
    app.env["TEST_SINK"] = "remote/sink"
    prefix = unique_name("k")[-12:]  # remote-e2e-out is shared: keys unique to this test
    events, expected = keyed_events(keys=6, per_key=10)
    events = [(prefix.encode() + k, v) for k, v in events]
    expected = {prefix + k: v for k, v in expected.items()}
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1")
    try:
        records = [
            (k, v)
            for k, v in read_committed(app.bootstrap, remote_out, len(events), timeout=90, settle=1)
            if k.startswith(prefix)
        ]
    finally:
        app.stop_all()
    assert check_exactly_once(records, expected) == [], app.all_logs()


def test_remote_send_after_and_cancel(
    kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, remote_out
):
    app = make_remote_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, "remote/later", remote_out
    )
    key = unique_name("t")[-16:]
    produce_events(
        app.bootstrap,
        app.ingress,
        [
            (f"{key}a".encode(), json.dumps({"seq": 1, "delay_ms": 500}).encode()),
            (f"{key}b".encode(), json.dumps({"seq": 2, "delay_ms": 1500, "token": "x"}).encode()),
            (f"{key}b".encode(), json.dumps({"cancel": "x"}).encode()),
            (f"{key}c".encode(), json.dumps({"seq": 3, "delay_ms": 800, "token": "y"}).encode()),
        ],
    )
    app.start_worker("w1")
    try:
        deadline = time.monotonic() + 60
        records = []
        while len(records) < 2 and time.monotonic() < deadline:
            records = [
                v
                for k, v in read_committed(app.bootstrap, remote_out, 10**9, timeout=1)
                if k.startswith(key)
            ]
        time.sleep(2)  # the cancelled one would be due 1.5 s after scheduling
        records = [
            v
            for k, v in read_committed(app.bootstrap, remote_out, 10**9, timeout=2)
            if k.startswith(key)
        ]
    finally:
        app.stop_all()
    assert sorted(records) == [f"{key}a:1:1", f"{key}c:1:3"], app.all_logs()


def test_a_slow_remote_function_is_not_fenced_on_a_backlog(
    kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app
):
    """A backlog of 1,600 invocations at 5 ms each (8 s of the endpoint's time) with a 4 s
    transaction timeout: a transaction that took all of it would be aborted by the broker
    and the worker fenced. The worker must split it into transactions that fit."""
    egress = create_topic(unique_name("out"), partitions=4)
    app = make_remote_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, "remote/slow_counter", egress
    )
    app.env["KSTATEFUN_TRANSACTION_TIMEOUT_MS"] = "4000"
    events, expected = keyed_events(keys=8, per_key=200)
    produce_events(app.bootstrap, app.ingress, events)
    worker = app.start_worker("w1")
    try:
        records = read_committed(app.bootstrap, egress, len(events), timeout=120)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        assert worker.poll() is None, app.all_logs()  # still running: not fenced
    finally:
        app.stop_all()


@pytest.mark.long  # the endpoint stays down past a transaction timeout
def test_an_endpoint_down_longer_than_the_transaction_timeout_loses_nothing(
    kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app
):
    """The endpoint stops answering for 12 s, three times the 4 s transaction timeout, within
    the 60 s call budget: the worker aborts its open transactions (rather than being fenced)
    and retries; once the endpoint answers, every event comes through exactly once and no
    dead letter is written."""
    import signal

    egress = create_topic(unique_name("out"), partitions=4)
    app = make_remote_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, "remote/counter", egress
    )
    app.module.write_text(app.module.read_text().replace("call: 3s", "call: 60s"))
    app.env["KSTATEFUN_TRANSACTION_TIMEOUT_MS"] = "4000"
    events, expected = keyed_events(keys=8, per_key=40)
    produce_events(app.bootstrap, app.ingress, events[:80])
    worker = app.start_worker("w1")
    try:
        read_committed(app.bootstrap, egress, 80, timeout=60, settle=0)
        sdk_app.process.send_signal(signal.SIGSTOP)
        try:
            produce_events(app.bootstrap, app.ingress, events[80:])
            time.sleep(12)
        finally:
            sdk_app.process.send_signal(signal.SIGCONT)
        records = read_committed(app.bootstrap, egress, len(events), timeout=120)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        assert worker.poll() is None, app.all_logs()  # not fenced
        assert "aborting it; the next transactions offer at most" in app.log("w1")
        assert read_committed_dead_letters(app) == []
    finally:
        app.stop_all()


# A call budget longer than half the transaction timeout (how long a transaction waits for its
# calls): every failing call outlives several transactions, which abort and replay it.
BUDGET_S = 10
SHORT_TXN_MS = "4000"


def make_budget_app(kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, target):
    egress = create_topic(unique_name("out"), partitions=4)
    app = make_remote_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, target, egress
    )
    app.module.write_text(app.module.read_text().replace("call: 3s", f"call: {BUDGET_S}s"))
    app.env["KSTATEFUN_TRANSACTION_TIMEOUT_MS"] = SHORT_TXN_MS
    return app


def wait_for_dead_letters(app, count, timeout):
    deadline = time.monotonic() + timeout
    letters = read_committed_dead_letters(app)
    while len(letters) < count and time.monotonic() < deadline:
        time.sleep(1)
        letters = read_committed_dead_letters(app)
    return letters


@pytest.mark.long  # the retry budget is spent in real time
def test_a_remote_function_that_always_fails_is_dead_lettered_once_its_budget_is_spent(
    kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app
):
    """The SDK function raises (HTTP 500) for one event, for good. Its call outlives several
    transactions, which the worker aborts (half the 4 s timeout each); the call continues its
    10 s budget across them instead of starting over, so the event becomes exactly one
    remote-error dead letter, and every other event of every key comes through exactly once."""
    app = make_budget_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, "remote/counter"
    )
    events, expected = keyed_events(keys=6, per_key=20)
    events.insert(30, (b"k2", json.dumps({"seq": -1, "boom": True}).encode()))
    produce_events(app.bootstrap, app.ingress, events)
    worker = app.start_worker("w1")
    try:
        # the budget plus generous slack for a slow machine; a budget that restarts with each
        # transaction would never be spent
        letters = wait_for_dead_letters(app, 1, timeout=BUDGET_S + 80)
        assert len(letters) == 1, app.all_logs()
        records = read_committed(app.bootstrap, app.egress, len(events) - 1, timeout=120)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        time.sleep(2)  # a second dead letter of the same event would show by now
        letters = read_committed_dead_letters(app, with_headers=True)
        assert worker.poll() is None, app.all_logs()  # not fenced
        log = app.log("w1")
    finally:
        app.stop_all()
    assert [(d["reason"], d["target_type"], d["target_id"]) for d in letters] == [
        ("remote-error", "remote/counter", "k2")
    ], letters
    # the HTTP status and the start of the body (aiohttp's page for an unhandled exception)
    headers = letters[0]["headers"]
    assert headers["kstatefun.http-status"] == b"500", headers
    assert headers["kstatefun.detail"].startswith(b"HTTP 500\n500 Internal Server Error"), headers
    assert "within the call budget of 10000 ms" in letters[0]["message"], letters
    assert "HTTP 500" in letters[0]["message"], letters
    # the transactions were cut short while the call failed (what used to restart its budget)
    assert "aborting it; the next transactions offer at most" in log
    # and the start-up explains the budget against the transaction timeout
    assert "(10000 ms) is longer than 2000 ms, half of transaction_timeout_ms (4000 ms)" in log


def test_a_remote_function_that_fails_twice_then_succeeds_leaves_no_dead_letter(
    kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app
):
    """Events that raise on their first two calls are retried within their budget: no dead
    letter, and each event's output exactly once, in order."""
    app = make_budget_app(
        kafka_bootstrap, tmp_path, unique_name, create_topic, sdk_app, "remote/flaky"
    )
    prefix = unique_name("f")[-10:]  # the SDK process counts calls per id: ids of this test
    events, expected = keyed_events(keys=4, per_key=10)
    events = [
        (
            prefix.encode() + k,
            json.dumps({**json.loads(v), "fail": 2}).encode() if i % 7 == 0 else v,
        )
        for i, (k, v) in enumerate(events)
    ]
    expected = {prefix + k: v for k, v in expected.items()}
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1")
    try:
        records = read_committed(app.bootstrap, app.egress, len(events), timeout=120)
        assert check_exactly_once(records, expected) == [], app.all_logs()
        letters = read_committed_dead_letters(app)
        log = app.log("w1")
    finally:
        app.stop_all()
    assert letters == [], letters
    assert "remote call failed, retrying" in log  # the failures did happen, and were retried
