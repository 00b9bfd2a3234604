"""A StateFun SDK application written against StateFun's playground ingress and egress, as the
playground's python/greeter is, for tests/e2e/test_playground.py (runs in the SDK virtualenv):

    python sdk_playground_app.py --port 0     # prints "LISTENING <port>"

- ``greeter.fns/person``: state ``visits``; each ``greeter.types/GreetRequest`` JSON
  (``{"name"}``) counts a visit and messages ``greeter.fns/greeter`` with the count.
- ``greeter.fns/greeter``: sends ``"<name>:<visits>"`` as an
  ``io.statefun.playground/EgressRecord`` to the topic ``greetings`` of the egress
  ``io.statefun.playground/egress``; a name starting with ``lost`` names the undeclared topic
  ``nowhere`` instead.
"""

from __future__ import annotations

from sdk_serving import serve  # noqa: E402 - a sibling module: scripts run by path
from statefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    egress_message_builder,
    make_json_type,
    message_builder,
)

GREET_REQUEST = make_json_type("greeter.types/GreetRequest")
EGRESS_RECORD = make_json_type("io.statefun.playground/EgressRecord")

functions = StatefulFunctions()


@functions.bind(typename="greeter.fns/person", specs=[ValueSpec(name="visits", type=IntType)])
def person(context, message):
    request = message.as_type(GREET_REQUEST)
    visits = (context.storage.visits or 0) + 1
    context.storage.visits = visits
    request["visits"] = visits
    context.send(
        message_builder(
            "greeter.fns/greeter", request["name"], value=request, value_type=GREET_REQUEST
        )
    )


@functions.bind(typename="greeter.fns/greeter")
def greeter(context, message):
    request = message.as_type(GREET_REQUEST)
    topic = "nowhere" if request["name"].startswith("lost") else "greetings"
    context.send_egress(
        egress_message_builder(
            target_typename="io.statefun.playground/egress",
            value={"topic": topic, "payload": f"{request['name']}:{request['visits']}"},
            value_type=EGRESS_RECORD,
        )
    )


if __name__ == "__main__":
    serve(functions)
