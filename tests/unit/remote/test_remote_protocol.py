"""The request-reply codec and the state registry, checked against the generated messages."""

from __future__ import annotations

import pytest

from kstatefun.model import Address, TypedValue
from kstatefun.remote import (
    DelayedCancel,
    DelayedSend,
    EgressRecord,
    ExpireMode,
    MalformedReplyError,
    MissingStates,
    OutgoingMessage,
    RemoteResult,
    RemoteStateRegistry,
    StateMutation,
    StateRegistrationError,
    StateSpec,
    StateTypeConflictError,
    StateValue,
    decode_reply,
    encode_batch,
)
from kstatefun.remote.proto import request_reply_pb2 as pb
from kstatefun.remote.protocol import UNSET_STATE_TYPE

INT = "io.statefun.types/int"
STR = "io.statefun.types/string"


# --- encode_batch -----------------------------------------------------------------------------


def _parse(body: bytes) -> pb.ToFunction.InvocationBatchRequest:
    request = pb.ToFunction()
    request.ParseFromString(body)
    assert request.WhichOneof("request") == "invocation"
    return request.invocation


def test_encode_batch_sets_target_states_and_invocations_in_order() -> None:
    body = encode_batch(
        Address("com.example.fns/greeter", "alice"),
        [("seen", INT, b"\x0d\x02\x00\x00\x00"), ("name", STR, None)],
        [
            (None, TypedValue(STR, b"\x0a\x02hi")),
            (Address("ns/caller", "c-1"), TypedValue("ns/empty", b"")),
            (Address("ns/caller", "c-2"), TypedValue("ns/none", None)),
        ],
    )

    batch = _parse(body)
    assert (batch.target.namespace, batch.target.type, batch.target.id) == (
        "com.example.fns",
        "greeter",
        "alice",
    )
    seen, name = batch.state
    assert seen.state_name == "seen" and seen.HasField("state_value")
    assert (seen.state_value.typename, seen.state_value.has_value) == (INT, True)
    assert seen.state_value.value == b"\x0d\x02\x00\x00\x00"
    assert name.state_name == "name" and not name.HasField("state_value")  # the name alone

    first, second, third = batch.invocations
    assert not first.HasField("caller")
    assert (first.argument.typename, first.argument.has_value) == (STR, True)
    assert first.argument.value == b"\x0a\x02hi"
    assert (second.caller.namespace, second.caller.type, second.caller.id) == (
        "ns",
        "caller",
        "c-1",
    )
    assert second.argument.has_value and second.argument.value == b""  # empty is a value
    assert third.caller.id == "c-2" and not third.argument.has_value


def test_encode_batch_gives_an_untyped_state_value_the_unset_type() -> None:
    batch = _parse(encode_batch(Address("a/b", "1"), [StateValue("s", None, b"x")], []))
    assert batch.state[0].state_value.typename == UNSET_STATE_TYPE


def test_encode_batch_with_nothing_is_a_valid_request() -> None:
    batch = _parse(encode_batch(Address("a/b", ""), [], []))
    assert batch.target.type == "b" and list(batch.invocations) == []


# --- decode_reply -----------------------------------------------------------------------------


def _typed(tv: pb.TypedValue, typename: str, value: bytes | None) -> None:
    tv.typename = typename
    if value is not None:
        tv.has_value = True
        tv.value = value


def _address(a: pb.Address, typename: str, id_: str) -> None:
    a.namespace, a.type = typename.split("/")
    a.id = id_


def test_decode_reply_reads_every_effect_in_order() -> None:
    reply = pb.FromFunction()
    r = reply.invocation_result
    m = r.state_mutations.add()
    m.mutation_type = pb.FromFunction.PersistedValueMutation.MODIFY
    m.state_name = "count"
    _typed(m.state_value, INT, b"\x0d\x05\x00\x00\x00")
    m = r.state_mutations.add()
    m.mutation_type = pb.FromFunction.PersistedValueMutation.DELETE
    m.state_name = "gone"
    for i in range(2):
        out = r.outgoing_messages.add()
        _address(out.target, "ns/fn", f"id-{i}")
        _typed(out.argument, STR, f"m{i}".encode())
    d = r.delayed_invocations.add()
    d.delay_in_ms = 1500
    _address(d.target, "ns/fn", "later")
    _typed(d.argument, STR, b"x")
    d.cancellation_token = "tok"
    d = r.delayed_invocations.add()
    d.is_cancellation_request = True
    d.cancellation_token = "old"
    e = r.outgoing_egresses.add()
    e.egress_namespace, e.egress_type = "io.example", "out"
    _typed(e.argument, "type.googleapis.com/x.Y", b"rec")

    decoded = decode_reply(reply.SerializeToString())

    assert decoded == RemoteResult(
        mutations=[
            StateMutation("count", INT, b"\x0d\x05\x00\x00\x00"),
            StateMutation("gone", "", None),
        ],
        outgoing=[
            OutgoingMessage(Address("ns/fn", "id-0"), TypedValue(STR, b"m0")),
            OutgoingMessage(Address("ns/fn", "id-1"), TypedValue(STR, b"m1")),
        ],
        delayed=[
            DelayedSend(1500, Address("ns/fn", "later"), TypedValue(STR, b"x"), "tok"),
            DelayedCancel("old"),
        ],
        egress=[EgressRecord("io.example/out", TypedValue("type.googleapis.com/x.Y", b"rec"))],
    )
    assert [x.is_cancellation_request for x in decoded.delayed] == [False, True]
    assert not decoded.is_empty


def test_a_value_without_has_value_is_no_value() -> None:
    reply = pb.FromFunction()
    out = reply.invocation_result.outgoing_messages.add()
    _address(out.target, "ns/fn", "x")
    out.argument.typename = STR
    out.argument.value = b"ignored"  # has_value stays false
    m = reply.invocation_result.state_mutations.add()
    m.mutation_type = pb.FromFunction.PersistedValueMutation.MODIFY
    m.state_name = "s"
    m.state_value.typename = INT

    decoded = decode_reply(reply.SerializeToString())

    assert isinstance(decoded, RemoteResult)
    assert decoded.outgoing[0].argument == TypedValue(STR, None)
    assert decoded.mutations == [StateMutation("s", INT, None)]


def test_an_empty_reply_has_no_effects() -> None:
    assert decode_reply(b"") == RemoteResult([], [], [], [])
    assert decode_reply(pb.FromFunction().SerializeToString()).is_empty  # type: ignore[union-attr]
    assert decode_reply(b"\xa2\x06\x00") == RemoteResult([], [], [], [])  # empty result set


def test_decode_reply_reads_missing_states_with_expiration() -> None:
    reply = pb.FromFunction()
    missing = reply.incomplete_invocation_context.missing_values
    for name, typename, mode, ms in [
        ("a", INT, 0, 0),
        ("b", STR, 1, 60_000),
        ("c", "", 2, 1_500),
    ]:
        spec = missing.add()
        spec.state_name = name
        spec.type_typename = typename
        spec.expiration_spec.mode = mode  # type: ignore[assignment]
        spec.expiration_spec.expire_after_millis = ms

    assert decode_reply(reply.SerializeToString()) == MissingStates(
        [
            StateSpec("a", INT, ExpireMode.NONE, 0),
            StateSpec("b", STR, ExpireMode.AFTER_WRITE, 60_000),
            StateSpec("c", UNSET_STATE_TYPE, ExpireMode.AFTER_INVOKE, 1_500),
        ]
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"\x0a\x05ab", "not a StateFun FromFunction"),
        (b"\xff\xff\xff\xff", "not a StateFun FromFunction"),
        (b"<html>502 Bad Gateway</html>", "not a StateFun FromFunction"),
    ],
)
def test_garbage_is_a_malformed_reply(body: bytes, fragment: str) -> None:
    with pytest.raises(MalformedReplyError, match=fragment):
        decode_reply(body)


def _result_with(build: object) -> bytes:
    reply = pb.FromFunction()
    build(reply.invocation_result)  # type: ignore[operator]
    return reply.SerializeToString()


def test_values_no_runtime_can_apply_are_malformed() -> None:
    def no_type(r: pb.FromFunction.InvocationResponse) -> None:
        r.outgoing_messages.add().target.id = "x"

    def unknown_mutation(r: pb.FromFunction.InvocationResponse) -> None:
        m = r.state_mutations.add()
        m.state_name = "s"
        m.mutation_type = 7  # type: ignore[assignment]

    def nameless_egress(r: pb.FromFunction.InvocationResponse) -> None:
        r.outgoing_egresses.add().egress_type = "out"

    def delayed_without_target(r: pb.FromFunction.InvocationResponse) -> None:
        r.delayed_invocations.add().delay_in_ms = 5

    for build, fragment in [
        (no_type, "no function type"),
        (unknown_mutation, "unknown mutation type 7"),
        (nameless_egress, "egress '/out'"),
        (delayed_without_target, "a delayed message targets"),
    ]:
        with pytest.raises(MalformedReplyError, match=fragment):
            decode_reply(_result_with(build))


# --- RemoteStateRegistry ----------------------------------------------------------------------


def test_registry_learns_specs_and_attaches_them_with_values() -> None:
    registry = RemoteStateRegistry()
    assert registry.attach("ns/f", lambda n: b"never") == []

    new = registry.register(
        "ns/f", [StateSpec("a", INT), StateSpec("b", STR, ExpireMode.AFTER_WRITE, 10)]
    )

    assert [s.name for s in new] == ["a", "b"]
    values = {"a": b"\x0d\x01\x00\x00\x00"}
    assert registry.attach("ns/f", values.get) == [
        StateValue("a", INT, b"\x0d\x01\x00\x00\x00"),
        StateValue("b", STR, None),
    ]
    assert registry.spec("ns/f", "b") == StateSpec("b", STR, ExpireMode.AFTER_WRITE, 10)
    assert registry.specs("ns/other") == ()


def test_registering_again_adds_only_what_is_new() -> None:
    registry = RemoteStateRegistry()
    registry.register("ns/f", [StateSpec("a", INT, ExpireMode.AFTER_WRITE, 5)])

    # another batch sent before the first registration asks again: nothing new, no error
    assert registry.register("ns/f", [StateSpec("a", INT)]) == []
    assert registry.register("ns/f", [StateSpec("a", INT), StateSpec("c", STR)]) == [
        StateSpec("c", STR)
    ]
    assert registry.spec("ns/f", "a") == StateSpec("a", INT, ExpireMode.AFTER_WRITE, 5)


def test_a_spec_with_another_type_is_a_conflict_and_registers_nothing() -> None:
    registry = RemoteStateRegistry()
    registry.register("ns/f", [StateSpec("a", INT)])

    with pytest.raises(StateTypeConflictError, match="'a' with type 'io.statefun.types/long'"):
        registry.register("ns/f", [StateSpec("z", STR), StateSpec("a", "io.statefun.types/long")])
    assert [s.name for s in registry.specs("ns/f")] == ["a"]


def test_a_function_asking_for_a_state_it_was_sent_is_an_error() -> None:
    registry = RemoteStateRegistry()
    registry.register("ns/f", [StateSpec("a", INT)])

    with pytest.raises(StateRegistrationError, match="although the request carried it"):
        registry.register("ns/f", [StateSpec("a", INT)], attached=["a"])


def test_mutations_must_name_registered_states_with_their_type() -> None:
    registry = RemoteStateRegistry()
    registry.register("ns/f", [StateSpec("a", INT), StateSpec("u", "")])

    registry.check_mutations(
        "ns/f",
        [
            StateMutation("a", INT, b"x"),
            StateMutation("a", "", None),
            StateMutation("u", UNSET_STATE_TYPE, b"y"),
        ],
    )
    with pytest.raises(StateRegistrationError, match="never declared"):
        registry.check_mutations("ns/f", [StateMutation("zz", INT, b"x")])
    with pytest.raises(StateTypeConflictError, match="wrote state 'a' as type 'ns/other'"):
        registry.check_mutations("ns/f", [StateMutation("a", "ns/other", b"x")])
