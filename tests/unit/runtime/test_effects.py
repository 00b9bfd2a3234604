"""runtime/effects.py's check and apply against the worker's stores, and the stores' encoding
methods (the harness runs the same code against in-memory ones: tests/unit/testing)."""

from datetime import timedelta

import pytest

from kstatefun import IntType, StatefulFunctions, ValueSpec, message_builder
from kstatefun.model import Address
from kstatefun.runtime.deadletters import Rejected
from kstatefun.runtime.effects import Effects, EffectsApplier, EgressRoutes, StateLayout
from kstatefun.sdk.context import CancelDelayed, DelayedMessage
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import (
    decode_changelog_value,
    decode_timer_key,
    decode_timer_value,
    encode_changelog_key,
)
from kstatefun.wire.protobuf import encode_int_wrapper

A = Address("ns/f", "a")
ONE = encode_int_wrapper(1)


def layout(**specs: ValueSpec) -> StateLayout:
    functions = StatefulFunctions()
    functions.bind("ns/f", specs=list(specs.values()))(lambda context, message: None)
    spec = functions.for_typename("ns/f")
    assert spec is not None
    return StateLayout.of(spec)


class Out:
    def __init__(self) -> None:
        self.sent: list[tuple[Address, Address]] = []

    def send(self, sender, message):
        self.sent.append((sender, message.target))

    def emit(self, sender, egress, record):
        raise AssertionError("no egress in these tests")


def make() -> tuple[EffectsApplier, StateStore, TimerStore, Out]:
    store, timers, out = StateStore(), TimerStore(), Out()
    store.add_partition(0)
    timers.add_partition(0)
    return EffectsApplier(EgressRoutes({}), store, timers, out), store, timers, out


def later(token: str, n: int = 1) -> DelayedMessage:
    return DelayedMessage(1000, message_builder("ns/g", "b", int_value=n), token)


def test_a_written_value_is_encoded_by_the_store_and_expires_at_its_ttl():
    applier, store, _, _ = make()
    ttl = layout(n=ValueSpec("n", IntType, expire_after_write=timedelta(seconds=1)))
    applier.apply(Effects(A, ttl, {"n": ONE}), 0, now_ms=5_000)
    raw = store.get(0, encode_changelog_key("ns/f", "a", "n"))
    assert raw is not None
    v = decode_changelog_value(raw)
    assert (v.typename, v.value, v.expire_at_ms) == (IntType.typename, ONE, 6_000)
    key = store.key_of(A)
    assert store.read(0, key, "n", 5_999, IntType.typename) == ONE
    assert store.read(0, key, "n", 6_000, IntType.typename) is None  # expired: never returned
    assert store.read(0, key, "n", 6_000) is None  # the same rule for a remote read


def test_an_invocation_refreshes_expire_after_call_values_it_did_not_write_unless_expired():
    applier, store, _, _ = make()
    lay = layout(
        n=ValueSpec("n", IntType, expire_after_call=timedelta(seconds=1)),
        m=ValueSpec("m", IntType, expire_after_call=timedelta(seconds=1)),
    )
    applier.apply(Effects(A, lay, {"n": ONE, "m": ONE}), 0, now_ms=0)
    applier.apply(Effects(A, lay, {}), 0, now_ms=900)  # a call that writes nothing
    key = store.key_of(A)
    assert store.read(0, key, "n", 1_800) == ONE
    applier.apply(Effects(A, lay, {"m": ONE}), 0, now_ms=3_000)  # n expired at 1_900
    assert store.read(0, key, "n", 3_000) is None
    assert store.read(0, key, "m", 3_999) == ONE


def test_a_pending_token_is_refused_before_anything_applies():
    applier, store, timers, out = make()
    lay = layout(n=ValueSpec("n", IntType))
    applier.apply(Effects(A, lay, {}, delayed=[later("tk")]), 0, now_ms=0)
    assert timers.has_token(0, A, "tk")
    assert not timers.has_token(0, Address("ns/f", "other"), "tk")  # scoped to the sender
    fx = Effects(
        A, lay, {"n": ONE}, [message_builder("ns/g", "b", int_value=1)], delayed=[later("tk")]
    )
    with pytest.raises(Rejected) as e:
        applier.check(fx, 0)
    assert e.value.reason == "duplicate-cancellation-token"
    assert not store.has_pending() and not out.sent
    # cancelling first, in the same invocation, is allowed; ops apply in call order
    fx = Effects(A, lay, {}, delayed=[CancelDelayed("tk"), later("tk", 2)])
    applier.check(fx, 0)
    applier.apply(fx, 0, now_ms=10)
    (key,) = [k for k, v in timers._overlay[0].items() if v is not None]
    assert decode_timer_key(key) == ("ns/f", "a", "tk", False)
    assert decode_timer_value(timers.get(0, key)).due_ms == 1_010


def test_tokenless_delayed_messages_are_keyed_by_origin_and_position():
    applier, _, timers, _ = make()
    lay = layout()
    fx = Effects(A, lay, {}, delayed=[later(""), CancelDelayed("x"), later("")])
    applier.check(fx, 0)
    applier.apply(fx, 0, now_ms=0, origin="0-7")
    keys = sorted(decode_timer_key(k) for k, v in timers._overlay[0].items() if v is not None)
    assert keys == [("ns/f", "a", "0-7-0", True), ("ns/f", "a", "0-7-2", True)]


def test_an_undeclared_egress_is_refused_with_the_declared_ones_named():
    from kstatefun import kafka_egress_message

    applier, _, _, _ = make()
    applier.routes.declared = {"ns/out": object()}
    msg = kafka_egress_message(typename="ns/other", topic="t", value="v")
    with pytest.raises(Rejected, match="declared: ns/out") as e:
        applier.check(Effects(A, layout(), {}, egress=[msg]), 0)
    assert e.value.reason == "unknown-egress"


def test_messages_are_sent_with_the_target_as_caller_only_when_applied():
    applier, _, _, out = make()
    fx = Effects(A, layout(), {}, [message_builder("ns/g", "b", int_value=1)])
    applier.check(fx, 0)
    assert not out.sent
    applier.apply(fx, 0, now_ms=0)
    assert out.sent == [(A, Address("ns/g", "b"))]
