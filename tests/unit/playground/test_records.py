"""The playground's wire formats: the type a Content-Type gives, and EgressRecord values."""

import json

import pytest

from kstatefun.kafka.topics import InternalTopics
from kstatefun.model import TypedValue
from kstatefun.playground import egress_record
from kstatefun.playground.ingress import value_type

RECORD = "io.statefun.playground/EgressRecord"


def test_content_type_names_the_value_type_as_statefuns_playground_does():
    assert value_type("application/vnd.example/GreetRequest") == "example/GreetRequest"
    assert value_type("application/vnd.example/Greet; charset=utf-8") == "example/Greet"
    assert value_type("application/x-www-form-urlencoded") == "io.statefun.types/string"
    assert value_type(None) == "io.statefun.types/string"


def test_egress_record_goes_to_the_topic_of_its_playground_topic():
    value = TypedValue(RECORD, json.dumps({"topic": "greetings", "payload": "Hi ü"}).encode())
    assert egress_record(InternalTopics("app"), ["greetings"], value) == (
        "app-playground-greetings",
        None,
        "Hi ü".encode(),
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (TypedValue("example/Other", b"{}"), "takes values of type 'io.statefun.playground/"),
        (TypedValue(RECORD, b"not json"), "is not JSON"),
        (TypedValue(RECORD, b'{"topic": "greetings"}'), "needs 'topic' and 'payload'"),
        (TypedValue(RECORD, b'{"topic": "other", "payload": "x"}'), "names topic 'other'"),
    ],
)
def test_invalid_egress_records_say_why(value, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        egress_record(InternalTopics("app"), ["greetings"], value)
