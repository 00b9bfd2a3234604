"""Test application: a chain of two functions that both write to one egress partition.

ingress (JSON {"seq": n}) → chain/a → chain/b. chain/a writes "a" to egress and messages
chain/b, which writes "b". A worker produces its egress records in the order it runs the
invocations, so on an egress topic of one partition the difference between the "a" and "b"
records read so far is how many messages to chain/b were waiting at that moment.
"""

import os

from kstatefun import StatefulFunctions, kafka_egress_message, message_builder

functions = StatefulFunctions()


def _egress(value: str):
    return kafka_egress_message(
        typename="test/out", topic=os.environ["TEST_EGRESS_TOPIC"], key="all", value=value
    )


@functions.bind("chain/a")
def a(context, message):
    context.send_egress(_egress("a"))
    context.send(message_builder("chain/b", context.address.id, str_value="from a"))


@functions.bind("chain/b")
def b(context, message):
    context.send_egress(_egress("b"))
