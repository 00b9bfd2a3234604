"""Test functions written with the real StateFun Python SDK, served the way its docs show.

Runs in the SDK's own virtualenv (tests/remote/sdk_env.py), never in kstatefun's:

    python sdk_server.py --port 0      # prints "LISTENING <port>" once it accepts requests

Every path is served by the same ``RequestReplyHandler``, so any ``urlPathTemplate`` works.

Functions (all ids are free-form):

- ``test/counter``: state ``count`` (int). Argument "inc" adds one, "del" deletes the state,
  anything else reads it. After each invocation it sends the count it saw (-1 for none) to
  ``test/sink/<its id>``, so the order of invocations shows in the order of messages.
- ``test/relay``: sends "inc" to ``test/counter/<argument>`` and two Kafka egress records to
  ``test/out``: topic "relayed" keyed by its id, and topic "unkeyed" without a key.
- ``test/whoami``: egress "callers" with "<caller type>/<caller id>" (or "none"), and when
  there is a caller, the string "pong" back to it.
- ``test/timers``: send_after without a token (5 s), with token "tok-1" (1.5 s), and
  cancel_delayed_message("tok-0").
- ``test/boom``: raises ValueError.
- ``test/picky``: state ``seen`` (long); raises on "bad", else counts.
- ``test/ttl``: states ``w`` (string, expire_after_write 60 s), ``c`` (long,
  expire_after_call 1.5 s), ``plain`` (bool); writes the argument to ``w``.
"""

from __future__ import annotations

from datetime import timedelta

from sdk_serving import serve  # noqa: E402 - a sibling module: scripts run by path
from statefun import (
    BoolType,
    Context,
    IntType,
    LongType,
    Message,
    StatefulFunctions,
    StringType,
    ValueSpec,
    kafka_egress_message,
    message_builder,
)

functions = StatefulFunctions()


@functions.bind(typename="test/counter", specs=[ValueSpec(name="count", type=IntType)])
def counter(context: Context, message: Message) -> None:
    command = message.as_string()
    if command == "inc":
        context.storage.count = (context.storage.count or 0) + 1
    elif command == "del":
        del context.storage.count
    seen = context.storage.count
    context.send(
        message_builder("test/sink", context.address.id, int_value=-1 if seen is None else seen)
    )


@functions.bind(typename="test/relay")
def relay(context: Context, message: Message) -> None:
    target = message.as_string()
    context.send(message_builder("test/counter", target, str_value="inc"))
    context.send_egress(
        kafka_egress_message(
            typename="test/out", topic="relayed", key=context.address.id, value=target
        )
    )
    context.send_egress(kafka_egress_message(typename="test/out", topic="unkeyed", value=b"raw"))


@functions.bind(typename="test/whoami")
def whoami(context: Context, message: Message) -> None:
    caller = context.caller
    who = "none" if caller is None else f"{caller.typename}/{caller.id}"
    context.send_egress(kafka_egress_message(typename="test/out", topic="callers", value=who))
    if caller is not None:
        context.send(message_builder(caller.typename, caller.id, str_value="pong"))


@functions.bind(typename="test/timers")
def timers(context: Context, message: Message) -> None:
    later = message_builder("test/counter", "timer", str_value="inc")
    context.send_after(timedelta(seconds=5), later)
    context.send_after(timedelta(milliseconds=1500), later, cancellation_token="tok-1")
    context.cancel_delayed_message("tok-0")


@functions.bind(typename="test/boom")
def boom(context: Context, message: Message) -> None:
    raise ValueError(f"boom on {message.as_string()!r}")


@functions.bind(typename="test/picky", specs=[ValueSpec(name="seen", type=LongType)])
def picky(context: Context, message: Message) -> None:
    if message.as_string() == "bad":
        raise ValueError("picky refuses 'bad'")
    context.storage.seen = (context.storage.seen or 0) + 1


@functions.bind(
    typename="test/ttl",
    specs=[
        ValueSpec(name="w", type=StringType, expire_after_write=timedelta(seconds=60)),
        ValueSpec(name="c", type=LongType, expire_after_call=timedelta(milliseconds=1500)),
        ValueSpec(name="plain", type=BoolType),
    ],
)
def ttl(context: Context, message: Message) -> None:
    context.storage.w = message.as_string()


if __name__ == "__main__":
    serve(functions)
