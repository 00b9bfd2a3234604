"""The greeter: the example application of ``make demo`` and the docker-compose setup.

Ingress topic ``greeter-names`` carries JSON like ``{"name": "Ann"}`` keyed by the person's id.
``example/counter`` counts visits per person in state and messages ``example/greeter``, which
writes a greeting to the egress topic ``greeter-greetings``. See config/module.yaml.
"""

from kstatefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

PERSON = make_json_type("example/Person")
GREET_REQUEST = make_json_type("example/GreetRequest")

functions = StatefulFunctions()


@functions.bind("example/counter", specs=[ValueSpec("visits", IntType)])
def counter(context, message):
    person = message.as_type(PERSON)
    visits = (context.storage.visits or 0) + 1
    context.storage.visits = visits
    context.send(
        message_builder(
            "example/greeter",
            context.address.id,
            value={"name": person["name"], "visits": visits},
            value_type=GREET_REQUEST,
        )
    )


@functions.bind("example/greeter")
def greeter(context, message):
    request = message.as_type(GREET_REQUEST)
    name, visits = request["name"], request["visits"]
    if visits == 1:
        greeting = f"Hello {name}! Nice to meet you."
    else:
        greeting = f"Hello {name}, welcome back! This is visit number {visits}."
    context.send_egress(
        kafka_egress_message(
            typename="example/greetings",
            topic="greeter-greetings",
            key=context.address.id,
            value=greeting,
        )
    )
