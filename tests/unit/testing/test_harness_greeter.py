"""The greeter example (examples/greeter.py with config/module.yaml) on the harness."""

import json
import time
from pathlib import Path

import pytest
from examples.greeter import GREET_REQUEST, PERSON, functions

from kstatefun import Address
from kstatefun.config import parse_module
from kstatefun.errors import ConfigError
from kstatefun.testing import Harness, HarnessError

MODULE = Path(__file__).resolve().parents[3] / "config" / "module.yaml"


def visit(h: Harness, person_id: str, name: str) -> None:
    h.send_ingress("greeter-names", person_id, json.dumps({"name": name}).encode())


def test_visits_are_counted_per_person_and_greeted_in_order():
    h = Harness(functions, MODULE)
    for person_id, name in [("ann", "Ann"), ("bob", "Bob"), ("ann", "Ann"), ("ann", "Ann")]:
        visit(h, person_id, name)

    assert h.run() == 8  # a counter and a greeter invocation per visit

    assert h.state("example/counter", "ann") == {"visits": 3}
    assert h.state("example/counter", "bob") == {"visits": 1}
    greetings = [(r.key, r.text) for r in h.egress("example/greetings")]
    assert [text for key, text in greetings if key == "ann"] == [
        "Hello Ann! Nice to meet you.",
        "Hello Ann, welcome back! This is visit number 2.",
        "Hello Ann, welcome back! This is visit number 3.",
    ]
    assert greetings.count(("bob", "Hello Bob! Nice to meet you.")) == 1
    assert {r.topic for r in h.egress()} == {"greeter-greetings"}
    assert h.dead_letters == []


def test_the_module_embedded_functions_are_imported_when_none_are_given():
    h = Harness(module=MODULE)
    visit(h, "cleo", "Cleo")
    h.run()
    assert [r.text for r in h.egress()] == ["Hello Cleo! Nice to meet you."]


def test_invocations_log_shows_who_called_whom():
    h = Harness(functions, MODULE)
    visit(h, "ann", "Ann")
    h.run()
    counter, greeter = h.invocations
    assert (counter.seq, counter.target, counter.caller) == (
        1,
        Address("example/counter", "ann"),
        None,
    )
    assert PERSON.deserialize(counter.value) == {"name": "Ann"}
    assert (greeter.seq, greeter.target, greeter.caller) == (
        2,
        Address("example/greeter", "ann"),
        Address("example/counter", "ann"),
    )
    assert greeter.typename == GREET_REQUEST.typename
    assert GREET_REQUEST.deserialize(greeter.value) == {"name": "Ann", "visits": 1}
    assert counter.ok and greeter.ok
    assert h.egress()[0].source == Address("example/greeter", "ann")


def test_state_can_be_seeded():
    h = Harness(functions, MODULE)
    h.set_state("example/counter", "ann", visits=41)
    visit(h, "ann", "Ann")
    h.run()
    assert h.egress()[0].text == "Hello Ann, welcome back! This is visit number 42."
    assert h.raw_state("example/counter", "ann") == {"visits": b"\x0d\x2a\x00\x00\x00"}


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b'{"name": "Ann"}', "null-key"),
        (b"\xff\xfe", b'{"name": "Ann"}', "invalid-key"),
        ("ann", None, "null-value"),
    ],
)
def test_bad_ingress_records_are_dead_letters_and_reach_no_function(key, value, reason):
    h = Harness(functions, MODULE)
    h.send_ingress("greeter-names", key, value)
    assert h.run() == 0
    [dead] = h.dead_letters
    assert dead.reason == reason
    assert dead.source_topic == "greeter-names"
    assert dead.target is None
    assert dead.value == value
    assert h.invocations == []


def test_an_undecodable_ingress_value_is_a_dead_letter_of_the_counter():
    h = Harness(functions, MODULE)
    h.send_ingress("greeter-names", "ann", b"not json")
    h.run()
    [dead] = h.dead_letters
    assert dead.reason == "undecodable-value"
    assert dead.target == Address("example/counter", "ann")
    assert dead.typename == "example/Person"
    assert dead.value == b"not json"
    assert h.state("example/counter", "ann") == {}


def test_unknown_ingress_topic_and_unregistered_targets_are_test_errors():
    h = Harness(functions, MODULE)
    with pytest.raises(HarnessError, match="'nope' is not an ingress topic.*greeter-names"):
        h.send_ingress("nope", "ann", b"{}")
    with pytest.raises(HarnessError, match="pass module="):
        Harness(functions).send_ingress("greeter-names", "ann", b"{}")
    module = parse_module(
        "kind: io.statefun.kafka.v1/ingress\n"
        "spec:\n  id: x/in\n  topics:\n"
        "    - topic: t\n      valueType: x/T\n      targets: [x/missing]\n"
    )
    with pytest.raises(ConfigError, match="targets 'x/missing'"):
        Harness(functions, module)


def test_greeter_runs_thousands_of_invocations_per_second():
    h = Harness(functions, MODULE)
    records = 2_000
    started = time.perf_counter()
    for i in range(records):
        visit(h, f"p{i % 50}", "Ann")
    invocations = h.run()
    rate = invocations / (time.perf_counter() - started)
    assert invocations == 2 * records
    assert len(h.egress()) == records
    assert rate > 1_000, f"{rate:.0f} invocations/s"
