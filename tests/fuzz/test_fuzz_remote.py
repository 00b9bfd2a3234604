"""Fuzzing remote replies: whatever an endpoint answers (garbage bytes, truncated or mutated
protobuf, another content type, any status, too slow, never ending, too large, a compression
bomb) becomes a classified failure of the transport within the call budget, and at the
worker's level one `remote-error` dead letter per invocation; nothing raises, nothing hangs,
memory stays bounded.

A local aiohttp server (tests/remote/conftest.py RogueServer, 127.0.0.1 only) answers each
request as the example says.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kstatefun import StatefulFunctions
from kstatefun.config.module import HttpTransport, parse_module
from kstatefun.kafka.partitioner import id_partitioner
from kstatefun.model import Address, TypedValue
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.remote import (
    CallBudgetExceeded,
    MalformedReplyError,
    MissingStates,
    PermanentCallError,
    RemoteResult,
    RemoteTransport,
    RetryPolicy,
    decode_reply,
)
from kstatefun.remote.proto import request_reply_pb2 as pb
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.runtime.dispatcher import Dispatcher
from kstatefun.runtime.remote import RemoteInvoker
from kstatefun.sdk.messages import Message
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import decode_dead_letter
from tests.fakes import Record, Txn
from tests.fuzz.conftest import scaled
from tests.remote.conftest import RogueServer

OCTETS = "application/octet-stream"
LIMIT = 64 * 1024  # payload_max_bytes of these tests
CALL_MS = 400  # the call budget of these tests: retried failures give up after it

# --- replies ----------------------------------------------------------------------------------


def _valid_replies() -> list[bytes]:
    missing = pb.FromFunction()
    spec = missing.incomplete_invocation_context.missing_values.add()
    spec.state_name = "seen"
    spec.type_typename = "io.statefun.types/int"
    spec.expiration_spec.mode = 1
    spec.expiration_spec.expire_after_millis = 1000
    result = pb.FromFunction()
    r = result.invocation_result
    m = r.state_mutations.add()
    m.state_name, m.mutation_type = "seen", 1
    m.state_value.typename, m.state_value.has_value, m.state_value.value = "t/x", True, b"\x01"
    out = r.outgoing_messages.add()
    out.target.namespace, out.target.type, out.target.id = "fz", "other", "id"
    out.argument.typename, out.argument.has_value, out.argument.value = "t/x", True, b"v"
    d = r.delayed_invocations.add()
    d.delay_in_ms, d.cancellation_token = 10, "tok"
    d.target.namespace, d.target.type, d.target.id = "fz", "other", "id"
    e = r.outgoing_egresses.add()
    e.egress_namespace, e.egress_type = "fz", "out"
    e.argument.typename, e.argument.has_value, e.argument.value = "t/x", True, b"\x0a\x01k"
    return [missing.SerializeToString(), result.SerializeToString()]


VALID = _valid_replies()


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for at, byte in edits:
        if out:
            out[at % len(out)] = byte
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out)


bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(
        _mutate,
        st.sampled_from(VALID),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
        st.none() | st.integers(0, 10_000),
    ),
)


def expected_decode(body: bytes) -> type:
    try:
        return type(decode_reply(body))
    except MalformedReplyError:
        return MalformedReplyError


@settings(max_examples=scaled(300))
@given(bodies)
@example(b"\x0a\x05\xff\xff\xff\xff\xff")
@example(b"\x08" + b"\xff" * 20)
@example(b"\x12\x02\x0a")  # a message cut in the middle of a nested field
def test_decode_reply_returns_a_result_or_raises_malformed_reply_error(body):
    try:
        reply = decode_reply(body)
    except MalformedReplyError as e:
        assert f"({len(body)} bytes)" in str(e) or str(e)
        return
    assert isinstance(reply, RemoteResult | MissingStates)


# --- the transport against a misbehaving endpoint ----------------------------------------------


def _bomb() -> bytes:
    co = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    return co.compress(b"\x00" * (64 * 1024 * 1024)) + co.flush()


BOMB = _bomb()  # about 64 KiB that inflate to 64 MiB


@st.composite
def behaviours(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(
        st.sampled_from(
            [
                "body",
                "body",
                "body",
                "status",
                "ctype",
                "slow",
                "stream",
                "large",
                "bomb",
                "bad-encoding",
                "reset",
            ]
        )
    )
    if kind == "body":
        return ("body", draw(st.sampled_from([200, 201, 202])), draw(bodies))
    if kind == "status":
        status = draw(
            st.sampled_from([400, 401, 403, 404, 405, 408, 413, 422, 429, 500, 502, 503, 504, 599])
        )
        return ("status", status, draw(st.binary(max_size=400)))
    if kind == "ctype":
        ctype = draw(
            st.sampled_from(
                [
                    "text/plain",
                    "application/json",
                    "application/x-protobuf",
                    "application/octet-streams",
                    "octet-stream",
                ]
            )
        )
        return ("ctype", ctype, draw(bodies))
    if kind == "slow":
        return ("slow", draw(st.floats(CALL_MS / 1000 + 0.2, 3.0)))
    if kind == "stream":
        return ("stream", draw(st.integers(1, 64 * 1024)))
    if kind == "large":
        return ("large", draw(st.integers(LIMIT + 1, 4 * LIMIT)), draw(st.booleans()))
    return (kind,)


async def _respond(request: web.Request, behaviour: tuple[Any, ...]) -> web.StreamResponse:
    kind = behaviour[0]
    if kind == "body":
        return web.Response(status=behaviour[1], body=behaviour[2], content_type=OCTETS)
    if kind == "status":
        return web.Response(status=behaviour[1], body=behaviour[2], content_type=OCTETS)
    if kind == "ctype":
        return web.Response(body=behaviour[2], headers={"Content-Type": behaviour[1]})
    if kind == "slow":
        await asyncio.sleep(behaviour[1])
        return web.Response(body=b"", content_type=OCTETS)
    if kind == "stream":  # a reply that never ends, until the client hangs up
        resp = web.StreamResponse(headers={"Content-Type": OCTETS})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = b"\x0a" * behaviour[1]
        for _ in range(1_000_000):  # bounded: 1e6 chunks, far past any payload_max_bytes
            await resp.write(chunk)
        return resp
    if kind == "large":
        size, announced = behaviour[1], behaviour[2]
        if announced:
            return web.Response(body=b"\x00" * size, content_type=OCTETS)
        resp = web.StreamResponse(headers={"Content-Type": OCTETS})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"\x00" * size)
        await resp.write_eof()
        return resp
    if kind == "bomb":
        return web.Response(body=BOMB, headers={"Content-Type": OCTETS, "Content-Encoding": "gzip"})
    if kind == "bad-encoding":
        return web.Response(
            body=b"not gzip at all", headers={"Content-Type": OCTETS, "Content-Encoding": "gzip"}
        )
    assert kind == "reset"
    assert request.transport is not None
    request.transport.close()
    await asyncio.sleep(0.05)
    return web.Response(body=b"", content_type=OCTETS)


def check_classified(behaviour: tuple[Any, ...], error: Exception | None, reply: Any) -> None:
    """The completion's classification that docs/architecture.md promises for ``behaviour``."""
    kind = behaviour[0]
    if kind == "body":
        expected = expected_decode(behaviour[2])
        if expected is MalformedReplyError:
            assert isinstance(error, PermanentCallError) and "malformed body" in str(error)
        else:
            assert error is None and type(reply) is expected
    elif kind == "status":
        status = behaviour[1]
        retryable = status >= 500 or status in (408, 429)
        assert isinstance(error, CallBudgetExceeded if retryable else PermanentCallError), error
        assert error.status == status and f"HTTP {status}" in str(error)
    elif kind == "ctype":
        assert isinstance(error, PermanentCallError) and "content type" in str(error)
    elif kind == "slow":
        assert isinstance(error, CallBudgetExceeded) and "no complete reply within" in str(error)
    elif kind in ("stream", "large", "bomb"):
        assert isinstance(error, PermanentCallError) and "payload_max_bytes" in str(error)
    elif kind == "bad-encoding":  # aiohttp reports it as a broken payload: retried
        assert isinstance(error, CallBudgetExceeded) and "content-encoding" in str(error)
    else:  # reset: the connection closed before a reply, retried until the budget is spent
        assert isinstance(error, CallBudgetExceeded), error


def _vm_rss_mib(pid: str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def rogue() -> Iterator[RogueServer]:
    server = RogueServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def transport() -> Iterator[RemoteTransport]:
    t = RemoteTransport(RetryPolicy(initial_backoff_ms=5, max_backoff_ms=100))
    try:
        yield t
    finally:
        t.close()


_ids = count(1)


@settings(
    max_examples=scaled(40, long_cap=200),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(behaviours())
@example(("stream", 65536))
@example(("bomb",))
@example(("large", LIMIT + 1, False))
@example(("status", 503, b""))
@example(("slow", 1.0))
def test_the_transport_classifies_whatever_the_endpoint_answers(rogue, transport, behaviour):
    async def answer(request: web.Request) -> web.StreamResponse:
        return await _respond(request, behaviour)

    request_id = next(_ids)
    url = rogue.route(f"t{request_id}", answer)
    settings_ = HttpTransport(call_ms=CALL_MS, payload_max_bytes=LIMIT)
    rss_before = _vm_rss_mib()
    started = time.monotonic()
    transport.submit(request_id, url, b"request", settings_)
    assert transport.wait(CALL_MS / 1000 + 10), f"no completion for {behaviour[:2]}"
    (done,) = transport.drain()
    elapsed = time.monotonic() - started
    check_classified(behaviour, done.error, done.reply)
    assert elapsed < CALL_MS / 1000 + 3  # never past its budget (plus scheduling slack)
    # a bomb or a never-ending reply is cut at payload_max_bytes: no growth worth the name
    assert _vm_rss_mib() - rss_before < 48, behaviour[:2]


# --- the worker's side: RemoteInvoker with the real dispatcher -------------------------------


def to_fn(fid: str, value: bytes) -> Message:
    """A message of type t/x to rm/fn ``fid``, as ``Dispatcher.invoke`` takes it."""
    return Message(Address("rm/fn", fid), TypedValue("t/x", value))


def make_invoker(url: str, call_ms: int = CALL_MS) -> tuple[RemoteInvoker, Dispatcher, Txn]:
    module = parse_module(
        f"""
kind: io.statefun.endpoints.v2/http
spec:
  functions: rm/*
  urlPathTemplate: {url}
  transport:
    call: {call_ms}ms
    payload_max_bytes: {LIMIT}
---
kind: io.statefun.kafka.v1/egress
spec:
  id: fz/out
"""
    )
    txn, metrics = Txn(), WorkerMetrics()
    store, timers = StateStore(), TimerStore()
    for p in range(4):
        store.add_partition(p)
        timers.add_partition(p)
    dlq = DeadLetters("app-dead-letters", txn, metrics)
    egresses = {e.id: e for e in module.egresses}
    dispatcher = Dispatcher(
        StatefulFunctions(),
        store,
        txn,
        dlq,
        "app-invocations",
        id_partitioner(4, "murmur2"),
        egresses,
        lambda t: t == "out",
        timers,
        metrics,
    )
    invoker = RemoteInvoker(module, dispatcher)
    dispatcher.remote = invoker
    return invoker, dispatcher, txn


def run_until_idle(invoker: RemoteInvoker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not invoker.idle:
        assert time.monotonic() < deadline, "remote invocations still in flight"
        invoker.wait(0.05)
        invoker.poll()


failing = behaviours().filter(
    lambda b: b[0] != "body" or expected_decode(b[2]) is MalformedReplyError
)


@settings(
    max_examples=scaled(20, long_cap=60),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(failing, st.integers(1, 4), st.integers(1, 2))
@example(("stream", 4096), 3, 1)
@example(("status", 500, b"boom"), 2, 2)
def test_each_invocation_of_a_failing_endpoint_is_one_remote_error_dead_letter(
    rogue, behaviour, invocations, addresses
):
    async def answer(request: web.Request) -> web.StreamResponse:
        return await _respond(request, behaviour)

    n = next(_ids)
    rogue.route(f"w{n}/fn", answer)
    url = rogue.url(f"w{n}/") + "{function.name}"
    invoker, dispatcher, txn = make_invoker(url)
    try:
        offered = []
        for i in range(invocations):
            for a in range(addresses):
                record = Record("app-invocations", a, 100 * a + i, f"id{a}".encode(), b"")
                dispatcher.invoke(record, to_fn(f"id{a}", f"{i}".encode()), None)
                offered.append((a, i))
        # each failing call takes at most its budget; a failed batch is retried one by one
        run_until_idle(invoker, timeout_s=(invocations + 1) * (CALL_MS / 1000 + 3))
    finally:
        invoker.close()
    letters = [decode_dead_letter(v) for t, _, v, _, _ in txn.produced if t == "app-dead-letters"]
    assert all(t == "app-dead-letters" for t, *_ in txn.produced)
    assert sorted((d["source_partition"], int(d["value"])) for d in letters) == sorted(offered)
    for d in letters:
        assert d["reason"] == "remote-error" and d["target_type"] == "rm/fn", d
        assert "remote function 'rm/fn/id" in d["message"]


def _reply(**fields: Any) -> bytes:
    reply = pb.FromFunction()
    r = reply.invocation_result
    for ns, tp, id_ in fields.get("outgoing", ()):
        m = r.outgoing_messages.add()
        m.target.namespace, m.target.type, m.target.id = ns, tp, id_
        m.argument.typename = "t/x"
    for delay, token, ns, tp in fields.get("delayed", ()):
        d = r.delayed_invocations.add()
        d.delay_in_ms, d.cancellation_token = delay, token
        d.target.namespace, d.target.type, d.target.id = ns, tp, "id"
    for ns, tp, payload in fields.get("egress", ()):
        e = r.outgoing_egresses.add()
        e.egress_namespace, e.egress_type = ns, tp
        e.argument.typename = "type.googleapis.com/io.statefun.sdk.egress.KafkaProducerRecord"
        e.argument.has_value, e.argument.value = True, payload
    for name, value in fields.get("mutations", ()):
        m = r.state_mutations.add()
        m.state_name, m.mutation_type = name, 1
        m.state_value.typename, m.state_value.has_value, m.state_value.value = "t/x", True, value
    return reply.SerializeToString()


names = st.sampled_from(["", "fz", "rm", "a/b"]) | st.text(max_size=6)
effects = st.fixed_dictionaries(
    {},
    optional={
        "outgoing": st.lists(st.tuples(names, names, st.text(max_size=6)), max_size=3),
        "delayed": st.lists(
            st.tuples(st.integers(-(2**40), 2**40), st.text(max_size=4), names, names),
            max_size=3,
        ),
        "egress": st.lists(
            st.tuples(
                st.sampled_from(["fz", "", "x"]),
                st.sampled_from(["out", "", "nope"]),
                st.binary(max_size=30) | st.just(b"\x1a\x03out\x12\x01v"),
            ),
            max_size=2,
        ),
        "mutations": st.lists(st.tuples(names, st.binary(max_size=8)), max_size=2),
    },
)


@settings(
    max_examples=scaled(30, long_cap=200),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(effects, st.integers(1, 3))
def test_any_decodable_reply_is_applied_or_dead_lettered_once_per_invocation(
    rogue, fields, invocations
):
    body = _reply(**fields)

    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type=OCTETS)

    n = next(_ids)
    rogue.route(f"r{n}/fn", answer)
    url = rogue.url(f"r{n}/") + "{function.name}"
    invoker, dispatcher, txn = make_invoker(url)
    try:
        for i in range(invocations):
            record = Record("app-invocations", 0, i, b"id", b"")
            dispatcher.invoke(record, to_fn("id", f"{i}".encode()), None)
        run_until_idle(invoker, timeout_s=(invocations + 1) * (CALL_MS / 1000 + 3))
    finally:
        invoker.close()
    letters = [decode_dead_letter(v) for t, _, v, _, _ in txn.produced if t == "app-dead-letters"]
    applied = dispatcher.metrics.invocations.get("rm/fn", 0)
    # every invocation is accounted for exactly once: applied, or one dead letter
    assert applied + len(letters) == invocations, (applied, letters)
    assert sorted(int(d["value"]) for d in letters) == sorted(set(int(d["value"]) for d in letters))
    for d in letters:
        assert d["reason"] in (
            "remote-error",
            "unknown-egress",
            "undecodable-value",
            "record-too-large",
            "duplicate-cancellation-token",
        ), d
