"""The harness follows the runtime for StateFun's playground egress and for plain text on an
io.statefun.types/string ingress."""

from kstatefun import StatefulFunctions, egress_message_builder, make_json_type
from kstatefun.config import parse_module
from kstatefun.testing import Harness
from kstatefun.wire.protobuf import encode_string_wrapper

EGRESS_RECORD = make_json_type("io.statefun.playground/EgressRecord")

MODULE = """\
kind: io.statefun.kafka.v1/ingress
spec:
  id: t/in
  topics:
    - {topic: names, valueType: io.statefun.types/string, targets: [t/greeter]}
---
kind: io.statefun.playground.v1/egress
spec:
  port: 8091
  topics: [greetings]
"""


def greeter() -> StatefulFunctions:
    functions = StatefulFunctions()

    @functions.bind("t/greeter")
    def greet(context, message):
        name = message.as_string()
        context.send_egress(
            egress_message_builder(
                "io.statefun.playground/egress",
                {"topic": "nowhere" if name == "lost" else "greetings", "payload": f"Hi {name}"},
                EGRESS_RECORD,
            )
        )

    return functions


def test_playground_egress_records_and_plain_text_on_a_string_ingress():
    h = Harness(greeter(), parse_module(MODULE))
    h.send_ingress("names", "ann", encode_string_wrapper("ann"))
    h.send_ingress("names", "bob", b"bob")  # plain text, not a StringWrapper
    h.send_ingress("names", "lost", encode_string_wrapper("lost"))
    h.run()
    assert [(r.topic, r.key, r.text) for r in h.egress("io.statefun.playground/egress")] == [
        ("greetings", None, "Hi ann")
    ]
    reasons = [(d.reason, d.source_topic, d.target) for d in h.dead_letters]
    assert reasons[0] == ("undecodable-value", "names", None)
    assert "message.raw_value()" in h.dead_letters[0].message
    assert reasons[1][0] == "unknown-egress" and "'nowhere'" in h.dead_letters[1].message
