# ruff: noqa: F405 - the star import is the point: a StateFun module ports by changing it
import asyncio
from datetime import timedelta

import pytest

from kstatefun import *  # noqa: F403
from kstatefun.sdk.storage import storage_class, storage_mutations
from kstatefun.wire.protobuf import decode_kafka_producer_record

# --- a StateFun greeter, unchanged but for its import -----------------------------------------

functions = StatefulFunctions()


@functions.bind(typename="example/greeter", specs=[ValueSpec(name="seen", type=IntType)])
async def greeter(context: Context, message: Message):
    name = message.as_string()
    storage = context.storage
    seen = storage.seen or 0
    storage.seen = seen + 1
    context.send(
        message_builder(target_typename="example/counter", target_id=name, int_value=seen + 1)
    )
    context.send_egress(
        kafka_egress_message(
            typename="example/greets",
            topic="greetings",
            key=name,
            value=f"Hello {name}, visit {seen + 1}!",
        )
    )


def invoke(stored: dict[str, bytes], argument: Message, caller: Address | None = None) -> Context:
    spec = functions.for_typename("example/greeter")
    storage = storage_class(spec.typename, spec.specs)(stored.get)
    context = Context(argument.target, caller, storage)
    result = spec.fun(context, argument)
    if spec.is_async:
        asyncio.run(result)
    return context


def test_greeter_counts_visits_sends_a_message_and_a_kafka_record():
    stored: dict[str, bytes] = {}
    for visit in (1, 2, 3):
        context = invoke(stored, message_builder("example/greeter", "ann", str_value="ann"))
        stored.update(storage_mutations(context.storage))

        assert storage_mutations(context.storage) == {"seen": IntType.serialize(visit)}
        [out] = context.outgoing
        assert out.target == Address("example/counter", "ann")
        assert out.as_int() == visit
        [egress] = context.egress
        assert egress.typename == "example/greets"
        assert decode_kafka_producer_record(egress.raw_value()) == (
            "greetings",
            "ann",
            f"Hello ann, visit {visit}!".encode(),
        )
    assert IntType.deserialize(stored["seen"]) == 3


def test_context_exposes_address_and_caller():
    caller = Address("example/counter", "ann")
    context = invoke({}, message_builder("example/greeter", "ann", str_value="ann"), caller)
    assert context.address == Address("example/greeter", "ann")
    assert (context.address.namespace, context.address.name, context.address.id) == (
        "example",
        "greeter",
        "ann",
    )
    assert context.caller == caller
    assert invoke({}, message_builder("example/greeter", "bob", str_value="bob")).caller is None


def make_context() -> Context:
    storage = storage_class("example/f", {})(lambda name: None)
    return Context(Address("example/f", "1"), None, storage)


def test_send_validates_its_argument():
    context = make_context()
    with pytest.raises(TypeError, match="message_builder"):
        context.send("not a message")
    with pytest.raises(TypeError, match="kafka_egress_message"):
        context.send_egress(message_builder("example/f", "1", int_value=1))
    assert context.outgoing == [] and context.egress == []


def test_delayed_messages_and_cancellations_are_recorded_in_call_order():
    from kstatefun.sdk.context import CancelDelayed, DelayedMessage

    context = make_context()
    message = message_builder("example/f", "1", int_value=1)
    context.send_after(timedelta(seconds=1.5), message)
    context.cancel_delayed_message("t")
    context.send_after(timedelta(0), message, cancellation_token="t")
    assert context.delayed == [
        DelayedMessage(1500, message, ""),
        CancelDelayed("t"),
        DelayedMessage(0, message, "t"),
    ]
    with pytest.raises(ValueError, match="zero or more"):
        context.send_after(timedelta(seconds=-1), message)
    with pytest.raises(ValueError, match="non-empty token"):
        context.cancel_delayed_message("")
    with pytest.raises(TypeError, match="timedelta"):
        context.send_after(5, message)


def test_public_api_matches_statefun_names():
    import kstatefun

    statefun_names = {
        "TypeSerializer",
        "Type",
        "simple_type",
        "ValueSpec",
        "SdkAddress",
        "BoolType",
        "IntType",
        "FloatType",
        "DoubleType",
        "LongType",
        "StringType",
        "Message",
        "EgressMessage",
        "message_builder",
        "egress_message_builder",
        "kafka_egress_message",
        "Context",
        "StatefulFunctions",
        "make_protobuf_type",
        "make_json_type",
    }
    assert statefun_names <= set(kstatefun.__all__)
    assert all(hasattr(kstatefun, name) for name in kstatefun.__all__)
