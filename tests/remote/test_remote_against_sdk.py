"""kstatefun's remote pieces against functions written with the real StateFun Python SDK.

The SDK (apache-flink-statefun 3.3.0) runs in its own virtualenv and serves
tests/remote/sdk_server.py over HTTP; see tests/remote/sdk_env.py.
"""

from __future__ import annotations

import time

import pytest

from kstatefun.config.module import HttpTransport
from kstatefun.model import Address, TypedValue
from kstatefun.remote import (
    CallBudgetExceeded,
    Completion,
    DelayedCancel,
    DelayedSend,
    ExpireMode,
    MissingStates,
    OutgoingMessage,
    RemoteResult,
    RemoteStateRegistry,
    RemoteTransport,
    StateMutation,
    StateSpec,
    encode_batch,
)
from kstatefun.wire.protobuf import (
    KAFKA_PRODUCER_RECORD_TYPENAME,
    decode_int_wrapper,
    decode_kafka_producer_record,
    encode_int_wrapper,
    encode_string_wrapper,
)
from tests.remote import sdk_env
from tests.remote.driver import RemoteDriver

STRING = "io.statefun.types/string"
INT = "io.statefun.types/int"
FAST = HttpTransport(call_ms=10_000)


def s(text: str) -> TypedValue:
    return TypedValue(STRING, encode_string_wrapper(text))


def call(
    transport: RemoteTransport, url: str, body: bytes, settings: HttpTransport = FAST
) -> Completion:
    transport.submit(1, url, body, settings)
    deadline = time.monotonic() + settings.call_ms / 1000 + 10
    while time.monotonic() < deadline:
        transport.wait(0.5)
        done = transport.drain()
        if done:
            assert len(done) == 1
            return done[0]
    raise AssertionError("no completion")


def result(completion: Completion) -> RemoteResult:
    assert completion.error is None, completion.error
    assert isinstance(completion.reply, RemoteResult), completion.reply
    return completion.reply


def sink_counts(outcome_result: RemoteResult) -> list[int]:
    return [
        decode_int_wrapper(m.argument.value or b"")
        for m in outcome_result.outgoing
        if m.target.typename == "test/sink"
    ]


def test_first_call_without_states_gets_the_specs_with_expiration_then_runs(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    target = Address("test/ttl", "a")
    body = encode_batch(target, [], [(None, s("hello"))])

    missing = call(transport, sdk.url(), body).reply

    assert missing == MissingStates(
        [
            StateSpec("w", STRING, ExpireMode.AFTER_WRITE, 60_000),
            StateSpec("c", "io.statefun.types/long", ExpireMode.AFTER_INVOKE, 1_500),
            StateSpec("plain", "io.statefun.types/bool", ExpireMode.NONE, 0),
        ]
    )
    registry = RemoteStateRegistry()
    assert len(registry.register(target.typename, missing.specs)) == 3
    states = registry.attach(target.typename, lambda name: None)
    assert [(st.name, st.value) for st in states] == [("w", None), ("c", None), ("plain", None)]

    again = result(call(transport, sdk.url(), encode_batch(target, states, [(None, s("hello"))])))

    assert again.mutations == [StateMutation("w", STRING, encode_string_wrapper("hello"))]


def test_state_is_read_written_and_deleted_across_batches(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    driver = RemoteDriver(transport, lambda _t: sdk.url())
    me = Address("test/counter", "c1")
    for command in ["inc", "inc", "get", "inc", "del", "get", "inc"]:
        driver.offer(me, s(command))
        driver.run_until_idle()  # one invocation per batch: state travels with every request

    outcomes = driver.outcomes_of(me)
    assert [o.error for o in outcomes] == [None] * 7
    assert [o.handshakes for o in outcomes] == [1, 0, 0, 0, 0, 0, 0]
    assert [c for o in outcomes for c in sink_counts(o.result)] == [1, 2, 2, 3, -1, -1, 1]
    deletion = outcomes[4].result
    assert deletion is not None
    assert deletion.mutations == [StateMutation("count", "", None)]  # DELETE carries no type
    assert outcomes[2].result is not None and outcomes[2].result.mutations == []  # a read only
    assert driver.state[(me, "count")] == (INT, encode_int_wrapper(1))


def test_the_function_sees_each_invocations_caller(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    target = Address("test/whoami", "w")
    body = encode_batch(
        target,
        [],
        [(Address("test/relay", "r1"), s("x")), (None, s("y")), (Address("a.b/c", "z"), s("z"))],
    )

    reply = result(call(transport, sdk.url(), body))

    callers = [decode_kafka_producer_record(e.argument.value or b"")[2] for e in reply.egress]
    assert callers == [b"test/relay/r1", b"none", b"a.b/c/z"]
    assert reply.outgoing == [
        OutgoingMessage(Address("test/relay", "r1"), s("pong")),
        OutgoingMessage(Address("a.b/c", "z"), s("pong")),
    ]


def test_outgoing_messages_and_kafka_egress_decode(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    body = encode_batch(Address("test/relay", "r1"), [], [(None, s("t1")), (None, s("t2"))])

    reply = result(call(transport, sdk.url(), body))

    assert reply.outgoing == [
        OutgoingMessage(Address("test/counter", "t1"), s("inc")),
        OutgoingMessage(Address("test/counter", "t2"), s("inc")),
    ]
    assert [e.egress for e in reply.egress] == ["test/out"] * 4
    assert {e.argument.typename for e in reply.egress} == {KAFKA_PRODUCER_RECORD_TYPENAME}
    records = [decode_kafka_producer_record(e.argument.value or b"") for e in reply.egress]
    assert records == [
        ("relayed", "r1", b"t1"),
        ("unkeyed", None, b"raw"),  # no key given: an empty key, which means a null key
        ("relayed", "r1", b"t2"),
        ("unkeyed", None, b"raw"),
    ]
    assert reply.mutations == [] and reply.delayed == []


def test_delayed_messages_and_cancellations_decode(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    body = encode_batch(Address("test/timers", "t"), [], [(None, s("go"))])

    reply = result(call(transport, sdk.url(), body))

    later = Address("test/counter", "timer")
    assert reply.delayed == [
        DelayedSend(5_000, later, s("inc"), ""),
        DelayedSend(1_500, later, s("inc"), "tok-1"),
        DelayedCancel("tok-0"),
    ]
    assert [d.is_cancellation_request for d in reply.delayed] == [False, False, True]


def test_a_raising_function_is_http_500_retried_until_the_budget_runs_out(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    body = encode_batch(Address("test/boom", "b"), [], [(None, s("x"))])

    done = call(transport, sdk.url(), body, HttpTransport(call_ms=800))

    # The SDK has no error reply: the exception escapes the handler, and the HTTP server
    # (aiohttp here, as in StateFun's examples) answers 500, which is retryable.
    assert isinstance(done.error, CallBudgetExceeded)
    assert done.error.status == 500
    assert done.attempts > 1
    assert 500 <= done.elapsed_ms < 3_000


def test_one_raising_invocation_fails_its_whole_batch(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    driver = RemoteDriver(transport, lambda _t: sdk.url(), HttpTransport(call_ms=1_000))
    me = Address("test/picky", "p")
    driver.offer(me, s("ok"))  # goes alone (and does the state handshake)
    for arg in ["ok", "bad", "ok"]:
        driver.offer(me, s(arg))  # queue behind it: one batch of three
    driver.run_until_idle()

    first, second = driver.outcomes_of(me)
    assert first.error is None and len(first.batch) == 1
    assert len(second.batch) == 3 and isinstance(second.error, CallBudgetExceeded)
    assert driver.state[(me, "seen")][1] == b"\x09" + (1).to_bytes(8, "little")  # untouched


def test_a_burst_to_one_address_goes_as_few_ordered_batches(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    driver = RemoteDriver(transport, lambda _t: sdk.url(), batch_limit=20)
    me = Address("test/counter", "burst")
    for _ in range(50):
        driver.offer(me, s("inc"))
    driver.run_until_idle()

    outcomes = driver.outcomes_of(me)
    assert [len(o.batch) for o in outcomes] == [1, 20, 20, 9]
    assert all(o.error is None for o in outcomes)
    assert [c for o in outcomes for c in sink_counts(o.result)] == list(range(1, 51))
    # the SDK reports each state once per batch: its value after the batch's last invocation
    finals = [o.result.mutations for o in outcomes if o.result is not None]
    assert finals[-1] == [StateMutation("count", INT, encode_int_wrapper(50))]
    assert all(len(m) == 1 for m in finals)


def test_many_addresses_are_in_flight_at_once(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    driver = RemoteDriver(transport, lambda _t: sdk.url(), max_in_flight=64)
    addresses = [Address("test/counter", f"k{i}") for i in range(300)]
    for round_ in range(3):
        for a in addresses:
            driver.offer(a, s("inc"))
        if round_ == 0:
            assert driver.batcher.in_flight_count() == 64
    driver.run_until_idle(60)

    assert all(o.error is None for o in driver.outcomes)
    assert {a: driver.state[(a, "count")][1] for a in addresses} == {
        a: encode_int_wrapper(3) for a in addresses
    }
    assert driver.peak_in_flight == 64


def test_a_state_sent_with_another_type_makes_the_sdk_fail(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    # Why the registry sends every value with its registered type: the SDK refuses others.
    states = [("count", "io.statefun.types/long", b"\x09" + bytes(8))]
    body = encode_batch(Address("test/counter", "x"), states, [(None, s("get"))])

    done = call(transport, sdk.url(), body, HttpTransport(call_ms=1_000))

    assert isinstance(done.error, CallBudgetExceeded) and done.error.status == 500


def test_a_function_type_the_endpoint_does_not_serve_is_http_500_too(
    transport: RemoteTransport, sdk: sdk_env.SdkServer
) -> None:
    body = encode_batch(Address("test/nobody", "x"), [], [(None, s("x"))])

    done = call(transport, sdk.url(), body, HttpTransport(call_ms=1_000))

    assert isinstance(done.error, CallBudgetExceeded) and done.error.status == 500


def test_endpoint_down_then_up_is_retried_until_it_answers(
    transport: RemoteTransport, sdk_python: object
) -> None:
    port = sdk_env.free_port()
    url = f"http://127.0.0.1:{port}/statefun"
    body = encode_batch(Address("test/relay", "r"), [], [(None, s("later"))])
    transport.submit(7, url, body, HttpTransport(call_ms=30_000, connect_ms=1_000))
    time.sleep(1.0)
    assert transport.drain() == []  # still retrying

    with sdk_env.sdk_server(sdk_python, port):  # type: ignore[arg-type]
        assert transport.wait(20)
        (done,) = transport.drain()

    reply = result(done)
    assert reply.outgoing == [OutgoingMessage(Address("test/counter", "later"), s("inc"))]
    assert done.attempts > 2


@pytest.mark.parametrize("path", ["statefun", "fns/counter", "deep/er/path"])
def test_any_url_path_reaches_the_functions(
    transport: RemoteTransport, sdk: sdk_env.SdkServer, path: str
) -> None:
    body = encode_batch(Address("test/relay", "r"), [], [(None, s("p"))])
    assert result(call(transport, sdk.url(path), body)).outgoing
