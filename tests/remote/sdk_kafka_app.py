"""StateFun SDK functions for the end-to-end tests on Kafka (tests/e2e/test_remote.py), written
with the real SDK exactly as a StateFun user would, in its own virtualenv:

    python sdk_kafka_app.py --port 0     # prints "LISTENING <port>"

- ``remote/counter``: state ``count``; for each ``test/Event`` JSON it counts and messages
  ``test/sink`` (an embedded kstatefun function) with ``{"count", "seq"}``. ``{"boom": true}``
  raises.
- ``remote/slow_counter``: ``remote/counter`` after 5 ms of blocking work per invocation.
- ``remote/flaky``: ``remote/counter``, but an event with ``{"fail": n}`` raises the first n
  times it is invoked (counted per id and seq in this process).
- ``remote/sink``: takes ``test/Counted`` JSON from an embedded function and writes
  ``"<id>:<count>:<seq>"`` to Kafka egress ``test/out``, topic ``remote-e2e-out``.
- ``remote/later``: ``send_after`` to ``remote/sink`` (``{"delay_ms", "seq", "token"}``), or
  ``cancel_delayed_message`` with ``{"cancel": token}``.
"""

from __future__ import annotations

import time
from datetime import timedelta

from sdk_serving import serve  # noqa: E402 - a sibling module: scripts run by path
from statefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

EVENT = make_json_type("test/Event")
COUNTED = make_json_type("test/Counted")
EGRESS_TOPIC = "remote-e2e-out"
SLOW_S = 0.005

functions = StatefulFunctions()


@functions.bind(typename="remote/counter", specs=[ValueSpec(name="count", type=IntType)])
def counter(context, message):
    event = message.as_type(EVENT)
    if event.get("boom"):
        raise ValueError("boom requested by the test")
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    context.send(
        message_builder(
            "test/sink",
            context.address.id,
            value={"count": count, "seq": event["seq"]},
            value_type=COUNTED,
        )
    )


@functions.bind(typename="remote/slow_counter", specs=[ValueSpec(name="count", type=IntType)])
def slow_counter(context, message):
    time.sleep(SLOW_S)  # blocking, as CPU-bound or synchronous I/O code would be
    counter(context, message)


_calls: dict[tuple[str, int], int] = {}


@functions.bind(typename="remote/flaky", specs=[ValueSpec(name="count", type=IntType)])
def flaky(context, message):
    event = message.as_type(EVENT)
    key = (context.address.id, event["seq"])
    calls = _calls[key] = _calls.get(key, 0) + 1
    if calls <= event.get("fail", 0):
        raise RuntimeError(f"failure {calls} of {event['fail']} requested by the test")
    counter(context, message)


@functions.bind(typename="remote/sink")
def sink(context, message):
    counted = message.as_type(COUNTED)
    context.send_egress(
        kafka_egress_message(
            typename="test/out",
            topic=EGRESS_TOPIC,
            key=context.address.id,
            value=f"{context.address.id}:{counted['count']}:{counted['seq']}",
        )
    )


@functions.bind(typename="remote/later")
def later(context, message):
    event = message.as_type(EVENT)
    if "cancel" in event:
        context.cancel_delayed_message(event["cancel"])
        return
    context.send_after(
        timedelta(milliseconds=event["delay_ms"]),
        message_builder(
            "remote/sink",
            context.address.id,
            value={"count": 1, "seq": event["seq"]},
            value_type=COUNTED,
        ),
        event.get("token", ""),
    )


if __name__ == "__main__":
    serve(functions)
