"""tests/apps/counting.py (the e2e tests' application), including its bad-input hooks."""

import json

import pytest
from tests.apps.counting import functions

from kstatefun import Address
from kstatefun.config import parse_module
from kstatefun.testing import Harness

EGRESS_TOPIC = "counted"

MODULE = parse_module(
    """\
kind: io.statefun.kafka.v1/ingress
spec:
  id: test/in
  topics:
    - topic: events
      valueType: test/Event
      targets:
        - test/counter
---
kind: io.statefun.kafka.v1/egress
spec:
  id: test/out
"""
)


@pytest.fixture
def h(monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("TEST_EGRESS_TOPIC", EGRESS_TOPIC)
    return Harness(functions, MODULE, egress_topics=[EGRESS_TOPIC])


def event(h: Harness, key: str, **fields: object) -> None:
    h.send_ingress("events", key, json.dumps(fields).encode())


def test_every_count_reaches_the_egress_once_and_in_order(h):
    for seq in range(30):
        event(h, f"k{seq % 3}", seq=seq)
    h.run()
    per_key: dict[str, list[str]] = {}
    for record in h.egress("test/out", topic=EGRESS_TOPIC):
        per_key.setdefault(record.key, []).append(record.text)
    assert per_key == {f"k{k}": [f"k{k}:{n + 1}:{k + 3 * n}" for n in range(10)] for k in range(3)}
    assert {k: h.state("test/counter", f"k{k}") for k in range(3)} == {
        k: {"count": 10} for k in range(3)
    }


def test_the_async_sink_runs(h):
    event(h, "a", seq=0)
    h.run()
    assert [i.target.typename for i in h.invocations] == ["test/counter", "test/sink"]
    assert h.egress()[0].text == "a:1:0"


def test_boom_is_a_function_error_and_changes_nothing(h):
    event(h, "a", seq=0)
    event(h, "a", boom=True)
    event(h, "a", seq=1)
    h.run()
    [dead] = h.dead_letters
    assert dead.reason == "function-error"
    assert dead.message == (
        "function 'test/counter/a' raised RuntimeError: boom requested by the test"
    )
    assert dead.exception_type == "RuntimeError"
    assert dead.target == Address("test/counter", "a")
    assert dead.caller is None
    assert json.loads(dead.value) == {"boom": True}
    assert [r.text for r in h.egress()] == ["a:1:0", "a:2:1"]
    assert [i.dead_letter for i in h.invocations if i.target.typename == "test/counter"] == [
        None,
        "function-error",
        None,
    ]


def test_stray_message_to_an_unregistered_type_is_an_unknown_function(h):
    event(h, "a", stray=True)
    h.run()
    [dead] = h.dead_letters
    assert dead.reason == "unknown-function"
    assert dead.message == "no function is registered for type 'test/nobody'"
    assert dead.target == Address("test/nobody", "a")
    assert dead.caller == Address("test/counter", "a")
    assert dead.typename == "io.statefun.types/string"
    assert h.egress() == []


def test_egress_to_a_missing_topic_is_unknown_egress(h):
    event(h, "a", egress_topic="no-such-topic")
    h.run()
    [dead] = h.dead_letters
    assert dead.reason == "unknown-egress"
    assert "names topic 'no-such-topic', which does not exist" in dead.message


def test_egress_to_an_undeclared_egress_is_unknown_egress(h):
    event(h, "a", egress_id="test/undeclared")
    h.run()
    [dead] = h.dead_letters
    assert dead.reason == "unknown-egress"
    assert "egress 'test/undeclared' is not declared in module.yaml (declared: test/out)" in (
        dead.message
    )
    assert h.egress() == []
