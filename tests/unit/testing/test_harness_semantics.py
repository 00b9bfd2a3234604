"""Harness semantics shared with the runtime: ordering, all-or-nothing effects, dead letters."""

import asyncio
from datetime import timedelta

import pytest

from kstatefun import (
    Address,
    IntType,
    StatefulFunctions,
    StringType,
    ValueSpec,
    egress_message_builder,
    kafka_egress_message,
    make_json_type,
    message_builder,
    simple_type,
)
from kstatefun.errors import ConfigError
from kstatefun.testing import Harness, HarnessError

JSON = make_json_type("t/Json")


def recorder() -> tuple[StatefulFunctions, list[tuple[str, str, object]]]:
    """A function that logs (id, caller, value) and forwards 'fwd:<id>' strings."""
    seen: list[tuple[str, str, object]] = []
    functions = StatefulFunctions()

    @functions.bind("t/rec")
    def rec(context, message):
        value = message.as_string() if message.is_string() else message.raw_value()
        seen.append((context.address.id, str(context.caller), value))
        if isinstance(value, str) and value.startswith("fwd:"):
            context.send(
                message_builder("t/rec", value[4:], str_value=f"from {context.address.id}")
            )

    return functions, seen


def test_fifo_order_per_address_and_per_sender_receiver_pair():
    functions, seen = recorder()
    h = Harness(functions)
    for i in range(3):
        h.send("t/rec", "a", f"fwd:z{i % 2}")
        h.send("t/rec", "b", f"fwd:z{i % 2}")
    assert h.queued == 6
    assert h.run() == 12
    assert h.queued == 0
    assert [(i, c, v) for i, c, v in seen if i.startswith("z")] == [
        ("z0", "t/rec/a", "from a"),
        ("z0", "t/rec/b", "from b"),
        ("z1", "t/rec/a", "from a"),
        ("z1", "t/rec/b", "from b"),
        ("z0", "t/rec/a", "from a"),
        ("z0", "t/rec/b", "from b"),
    ]


def test_send_forms_and_typed_values():
    functions, seen = recorder()
    h = Harness(functions)
    h.send("t/rec", "a", "text")
    h.send("t/rec", "a", 7)
    h.send("t/rec", "a", True)
    h.send("t/rec", "a", 1.5)
    h.send("t/rec", "a", {"k": 1}, JSON)
    h.send("t/rec", "a", b"\x00raw", "t/Raw")
    h.send(message_builder("t/rec", "a", long_value=5), caller=Address("t/x", "y"))
    h.run()
    assert [(i.typename, i.value) for i in h.invocations] == [
        ("io.statefun.types/string", StringType.serialize("text")),
        ("io.statefun.types/int", IntType.serialize(7)),
        ("io.statefun.types/bool", b"\x08\x01"),
        ("io.statefun.types/float", b"\x0d\x00\x00\xc0\x3f"),
        ("t/Json", b'{"k": 1}'),
        ("t/Raw", b"\x00raw"),
        ("io.statefun.types/long", b"\x09\x05\x00\x00\x00\x00\x00\x00\x00"),
    ]
    assert seen[-1][1] == "t/x/y"
    with pytest.raises(TypeError, match="pass value_type="):
        h.send("t/rec", "a", object())
    with pytest.raises(TypeError, match="needs a value"):
        h.send("t/rec", "a", None)
    with pytest.raises(TypeError, match="must be bytes"):
        h.send("t/rec", "a", "text", "t/Raw")
    with pytest.raises(ValueError, match="target_id"):
        h.send("t/rec", "", "x")
    with pytest.raises(TypeError, match="no id, value"):
        h.send(message_builder("t/rec", "a", int_value=1), "a")


def everything_then(fail: Exception | None):
    functions = StatefulFunctions()

    @functions.bind("t/all", specs=[ValueSpec("n", IntType)])
    def all_effects(context, message):
        context.storage.n = (context.storage.n or 0) + 1
        context.send(message_builder("t/other", "x", int_value=1))
        context.send_egress(kafka_egress_message(typename="t/out", topic="out", value="v"))
        context.send_after(timedelta(seconds=1), message_builder("t/other", "x", int_value=2), "tk")
        if message.as_int() == 1 and fail is not None:
            raise fail

    @functions.bind("t/other")
    def other(context, message):
        pass

    return functions


@pytest.mark.parametrize(
    ("fail", "reason"),
    [(RuntimeError("no"), "function-error"), (ConfigError("x"), "function-error")],
)
def test_a_failed_invocation_applies_none_of_its_effects(fail, reason):
    h = Harness(everything_then(fail))
    h.send("t/all", "a", 0)
    h.send("t/all", "a", 1)
    h.run()
    assert [d.reason for d in h.dead_letters] == [reason]
    assert h.state("t/all", "a") == {"n": 1}
    assert len(h.egress()) == 1
    assert [i.target.typename for i in h.invocations] == ["t/all", "t/all", "t/other"]
    assert [t.cancellation_token for t in h.timers()] == ["tk"]


def test_a_decode_error_is_undecodable_value_and_state_type_errors_are_function_errors():
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("n", IntType)])
    def f(context, message):
        if message.is_type(JSON):
            message.as_type(JSON)
        else:
            context.storage.n = "not an int"

    h = Harness(functions)
    h.send("t/f", "a", b"{nope", JSON.typename)
    h.send("t/f", "a", "x")
    h.run()
    undecodable, bad_state = h.dead_letters
    assert undecodable.reason == "undecodable-value"
    assert undecodable.message.startswith("cannot decode 5 bytes as 't/Json'")
    assert undecodable.key == b"a"
    assert bad_state.reason == "function-error"
    assert "cannot store str 'not an int' in state 'n'" in bad_state.message
    assert bad_state.exception_type == "FunctionError"


def test_stored_state_that_cannot_be_decoded_is_undecodable_value():
    def picky_decode(data: bytes) -> str:
        if data == b"bad":
            raise ValueError("bad bytes")
        return data.decode()

    picky = simple_type("t/Picky", str.encode, picky_decode)
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("doc", picky)])
    def f(context, message):
        if message.is_string():
            context.storage.doc = message.as_string()
        else:
            context.send(message_builder("t/other", "x", str_value=context.storage.doc))

    h = Harness(functions)
    h.send("t/f", "a", "bad")
    h.send("t/f", "a", 1)
    h.run()
    assert h.raw_state("t/f", "a") == {"doc": b"bad"}
    [dead] = h.dead_letters
    assert dead.reason == "undecodable-value"
    assert dead.message == "cannot decode 3 bytes as 't/Picky': bad bytes"


def test_egress_checks():
    functions = StatefulFunctions()

    @functions.bind("t/f")
    def f(context, message):
        if message.as_int() == 1:
            context.send_egress(kafka_egress_message(typename="t/anything", topic="x", value=1))
        else:
            context.send_egress(egress_message_builder("t/anything", "v", StringType))

    without_module = Harness(functions)
    without_module.send("t/f", "a", 1)
    without_module.send("t/f", "a", 2)
    without_module.run()
    [record] = without_module.egress()
    assert (record.egress, record.topic, record.key, record.value) == (
        "t/anything",
        "x",
        None,
        b"\x00\x00\x00\x01",
    )
    [dead] = without_module.dead_letters
    assert dead.reason == "unknown-egress"
    assert "takes records built with kafka_egress_message()" in dead.message

    declared = Harness(functions, egresses=["t/declared"])
    declared.send("t/f", "a", 1)
    declared.run()
    assert [d.reason for d in declared.dead_letters] == ["unknown-egress"]


def test_egress_record_helpers():
    functions = StatefulFunctions()

    @functions.bind("t/f")
    def f(context, message):
        context.send_egress(
            kafka_egress_message(
                typename="t/e", topic="j", key="k", value={"a": 1}, value_type=JSON
            )
        )

    h = Harness(functions)
    h.send("t/f", "a", 1)
    h.run()
    [record] = h.egress("t/e")
    assert record.json() == {"a": 1} == record.as_type(JSON)
    assert record.text == '{"a": 1}'
    assert h.egress("t/other") == [] == h.egress(topic="other")


def test_async_functions_are_awaited():
    functions = StatefulFunctions()

    @functions.bind("t/a", specs=[ValueSpec("n", IntType)])
    async def a(context, message):
        await asyncio.sleep(0)
        context.storage.n = message.as_int()
        if message.as_int() < 0:
            raise ValueError("negative")

    with Harness(functions) as h:
        h.send("t/a", "x", 3)
        h.send("t/a", "y", -1)
        h.run()
        assert h.state("t/a", "x") == {"n": 3}
        assert h.state("t/a", "y") == {}
        assert [d.message for d in h.dead_letters] == [
            "function 't/a/y' raised ValueError: negative"
        ]


def test_async_functions_inside_a_running_loop_are_a_harness_error():
    functions = StatefulFunctions()

    @functions.bind("t/a")
    async def a(context, message):
        pass

    h = Harness(functions)
    h.send("t/a", "x", 1)

    async def main():
        h.run()

    with pytest.raises(HarnessError, match="event loop is already running"):
        asyncio.run(main())


def test_run_with_max_steps_and_the_step_limit():
    functions = StatefulFunctions()

    @functions.bind("t/ping")
    def ping(context, message):
        context.send(message_builder("t/ping", context.address.id, int_value=message.as_int() + 1))

    h = Harness(functions, step_limit=100)
    h.send("t/ping", "a", 0)
    assert h.run(max_steps=10) == 10
    assert h.queued == 1
    with pytest.raises(HarnessError, match="100 invocations ran and 1 are still queued"):
        h.run()
    assert h.run(max_steps=1000) == 1000


def test_inspection_of_an_unknown_function_type_and_value_name():
    h = Harness(recorder()[0])
    with pytest.raises(HarnessError, match="no function is registered for type 't/none'"):
        h.state("t/none", "a")
    with pytest.raises(HarnessError, match="'nope' is not a registered ValueSpec"):
        h.set_state("t/rec", "a", nope=1)


def test_several_function_sets_merge_and_none_is_a_config_error():
    one, _ = recorder()
    two = StatefulFunctions()
    two.register("t/two", lambda context, message: None)
    h = Harness([one, two])
    h.send("t/two", "a", 1)
    h.send("t/rec", "a", 1)
    h.run()
    assert h.dead_letters == []
    with pytest.raises(ConfigError, match="needs functions"):
        Harness()


def test_runs_are_deterministic():
    def scenario() -> list[tuple[object, ...]]:
        functions, _ = recorder()
        h = Harness(functions)
        for i in range(50):
            h.send("t/rec", f"n{i % 7}", f"fwd:n{(i * 3) % 5}")
        h.run()
        return [(i.seq, i.target, i.caller, i.value) for i in h.invocations]

    assert scenario() == scenario()


def test_an_effect_over_the_record_limit_is_record_too_large_as_in_the_runtime():
    from kstatefun.kafka.clients import MAX_RECORD_BYTES

    functions = StatefulFunctions()

    @functions.bind("t/big", specs=[ValueSpec("blob", StringType)])
    def big(context, message):
        if context.address.id == "a":
            context.send(message_builder("t/big", "other", int_value=1))
        context.storage.blob = "x" * message.as_int()

    h = Harness(functions)
    h.send("t/big", "a", MAX_RECORD_BYTES)
    h.run()
    (letter,) = h.dead_letters
    assert letter.reason == "record-too-large"
    assert letter.exception is None  # the runtime refused it; the function raised nothing
    assert h.state("t/big", "a") == {}
    assert [i.target.id for i in h.invocations] == ["a"]  # its message was not sent
    h.send("t/big", "b", 10)
    h.run()
    assert h.state("t/big", "b") == {"blob": "x" * 10}
