"""Fuzzing the ingress path without Kafka: IngressRouter.route, then Dispatcher.dispatch.

Any ingress record (null, empty, huge or non-UTF-8 key; null, huge, random or JSON value;
random headers) either becomes one invocation per target or exactly one dead letter with the
reason the docs name, and nothing ever raises. Any <app>-invocations record (random bytes,
a tombstone, an envelope with random fields) is processed or dead-lettered, never raised.
"""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kstatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message, make_json_type
from kstatefun.config.module import IngressTopic, KafkaEgress, KafkaIngress, StartupPosition
from kstatefun.kafka.clients import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES
from kstatefun.kafka.partitioner import id_partitioner, partition_for_id
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime.deadletters import REASON_HEADER, DeadLetters
from kstatefun.runtime.dispatcher import Dispatcher
from kstatefun.runtime.router import IngressRouter
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import decode_dead_letter, decode_invocation, encode_invocation
from tests.fakes import Record, Txn
from tests.fuzz.conftest import scaled

P = 4
PARTITIONER = "crc32"  # the default for a new application
INVOCATIONS = "app-invocations"
DEAD_LETTERS = "app-dead-letters"
OUT = "out"
ROOM = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES  # what an ingress key + value may take
KEEP = 64 * 1024  # what a dead letter keeps of the original key and value

EVENT = make_json_type("fz/Event")
functions = StatefulFunctions()


@functions.bind("fz/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    message.as_type(EVENT)  # raises DecodeError for a value that is not JSON
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    context.send_egress(
        kafka_egress_message(typename="fz/out", topic=OUT, key=context.address.id, value=f"{count}")
    )


# topic -> targets: "one" reaches a function, "two" also an unregistered type
ROUTES = {"one": ("fz/counter",), "two": ("fz/counter", "fz/nobody")}


def make_runtime():
    txn, metrics = Txn(), WorkerMetrics()
    store, timers = StateStore(), TimerStore()
    for p in range(P):
        store.add_partition(p)
        timers.add_partition(p)
    dlq = DeadLetters(DEAD_LETTERS, txn, metrics)
    ingresses = [
        KafkaIngress(
            "fz/in",
            tuple(IngressTopic(t, "fz/Event", targets) for t, targets in ROUTES.items()),
            StartupPosition(),
        )
    ]
    router = IngressRouter(ingresses, INVOCATIONS, P, PARTITIONER, txn, dlq)
    egresses = {"fz/out": KafkaEgress("fz/out")}
    dispatcher = Dispatcher(
        functions,
        store,
        txn,
        dlq,
        INVOCATIONS,
        id_partitioner(P, PARTITIONER),
        egresses,
        lambda t: t == OUT,
        timers,
        metrics,
    )
    return router, dispatcher, txn


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return True
    return False


def _sized(n: int, fill: bytes = b"x") -> bytes:
    return fill * n


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
).map(lambda v: json.dumps(v).encode())

keys = st.one_of(
    st.none(),
    st.just(b""),
    st.text(min_size=1, max_size=40).map(str.encode),
    st.binary(min_size=1, max_size=40),
    st.binary(min_size=1, max_size=40).filter(_not_utf8),
    st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x00b", b"\xf4\x90\x80\x80"]),
    st.integers(ROOM - 8, ROOM + 8).map(_sized),  # a key alone at the limit
)
values = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=200),
    json_values,
    st.integers(ROOM - 40, ROOM + 40).map(lambda n: _sized(n, b"7")),  # JSON digits at the limit
    st.integers(MAX_RECORD_BYTES - 8, MAX_RECORD_BYTES + 8).map(_sized),
)
headers = st.none() | st.lists(
    st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=30)), max_size=4
)
records = st.builds(
    Record,
    st.sampled_from(sorted(ROUTES)),
    st.integers(0, P - 1),
    st.integers(0, 2**40),
    keys,
    values,
    headers,
)


def expected_reason(record: Record) -> str | None:
    """The dead-letter reason docs/architecture.md gives for this ingress record, or None."""
    key, value = record.key(), record.value()
    if key is None:
        return "null-key"
    if key == b"" or _not_utf8(key):
        return "invalid-key"
    if value is None:
        return "null-value"
    if len(key) + len(value) > ROOM:
        return "record-too-large"
    return None


def check_dead_letter(txn: Txn, record: Record, reason: str) -> None:
    (letter,) = txn.of(DEAD_LETTERS)
    _, key, value, _, hdrs = letter
    assert hdrs == [(REASON_HEADER, reason.encode())]
    d = decode_dead_letter(value)
    assert d["reason"] == reason and d["message"]
    assert (d["source_topic"], d["source_partition"], d["source_offset"]) == (
        record.topic(),
        record.partition(),
        record.offset(),
    )
    original_key, original_value = record.key(), record.value()
    assert key == (None if original_key is None else original_key[:KEEP])
    assert d["key"] == key
    assert d["value"] == (None if original_value is None else original_value[:KEEP])
    assert len(value) < 2 * KEEP + 4096  # bounded, however large the record


@settings(max_examples=scaled(150))
@given(records, st.booleans())
@example(Record("one", 0, 1, b"", b"{}"), False)
@example(Record("one", 0, 1, None, None), False)
@example(Record("two", 1, 2, b"\xff\xfe", b"{}"), True)
@example(Record("one", 2, 3, b"k", b"x" * (ROOM + 1)), False)
def test_route_is_one_invocation_per_target_or_one_dead_letter(record, direct):
    router, dispatcher, txn = make_runtime()
    dispatched = []
    if direct:  # the shortcut: every ingress partition is marked direct
        router.direct = {(t, p) for t in ROUTES for p in range(P)}
        router.invoke = lambda *args: dispatched.append(args)
    router.route(record)
    reason = expected_reason(record)
    if reason is not None:
        check_dead_letter(txn, record, reason)
        assert len(txn.produced) == 1 and not dispatched
        return
    assert not txn.of(DEAD_LETTERS)
    id_ = record.key().decode()
    partition = partition_for_id(id_, P, PARTITIONER)
    targets = ROUTES[record.topic()]
    if direct and partition == record.partition():  # invoked at once, in the same transaction
        assert not txn.produced and len(dispatched) == len(targets)
        for (source, message, caller), target in zip(dispatched, targets, strict=True):
            argument = message.typed_value
            assert (message.target.typename, message.target_id, caller) + (
                argument.typename,
                argument.value,
            ) == (
                target,
                id_,
                None,
                "fz/Event",
                record.value(),
            )
            assert source.partition() == partition and source.offset() == record.offset()
        return
    assert not dispatched
    sent = txn.of(INVOCATIONS)
    assert len(sent) == len(targets)
    for (_, key, envelope, p, _), target in zip(sent, targets, strict=True):
        assert key == record.key() and p == partition
        env = decode_invocation(envelope)
        assert (env.target_type, env.target_id, env.caller_type, env.caller_id) == (
            target,
            id_,
            None,
            None,
        )
        assert env.typename == "fz/Event" and env.value == record.value()


@settings(max_examples=scaled(100))
@given(st.lists(records, min_size=1, max_size=12), st.booleans())
def test_route_then_dispatch_processes_or_dead_letters_each_record_once(batch, direct):
    router, dispatcher, txn = make_runtime()
    if direct:
        router.direct = {(t, p) for t in ROUTES for p in range(P)}
        router.invoke = dispatcher.invoke
    outcomes = []  # per record: dead-letter reasons and egress records it caused
    for record in batch:
        before = len(txn.produced)
        router.route(record)
        routed = txn.produced[before:]
        del txn.produced[before:]
        for topic, key, value, partition, _ in routed:
            if topic == INVOCATIONS:
                dispatcher.dispatch(Record(INVOCATIONS, partition, 0, key, value))
            else:
                txn.produced.append((topic, key, value, partition, None))
        mine = txn.produced[before:]
        outcomes.append(
            (
                sorted(
                    decode_dead_letter(v)["reason"] for t, _, v, _, _ in mine if t == DEAD_LETTERS
                ),
                [(k, v) for t, k, v, _, _ in mine if t == OUT],
            )
        )
    counts: dict[str, int] = {}
    for record, (reasons, egress) in zip(batch, outcomes, strict=True):
        reason = expected_reason(record)
        if reason is not None:
            assert (reasons, egress) == ([reason], [])
            continue
        try:
            json.loads(record.value())
            decodes = True
        except ValueError:
            decodes = False
        except RecursionError:  # pragma: no cover - JSON nested deeper than the stack
            decodes = False
        unknown = ["unknown-function"] if record.topic() == "two" else []
        if decodes:
            id_ = record.key().decode()
            counts[id_] = counts.get(id_, 0) + 1
            assert reasons == unknown
            assert egress == [(record.key(), str(counts[id_]).encode())]
        else:
            assert reasons == sorted(["undecodable-value", *unknown]) and egress == []


envelope_fields = st.fixed_dictionaries(
    {
        "target_type": st.sampled_from(["fz/counter", "fz/nobody", "", "fz", "fz/", "/x", "a/b/c"])
        | st.text(max_size=12),
        "target_id": st.text(max_size=12),
        "caller_type": st.none() | st.text(max_size=12),
        "caller_id": st.none() | st.text(max_size=12),
        "typename": st.sampled_from(["fz/Event", "io.statefun.types/int"]) | st.text(max_size=12),
        "value": st.none() | st.binary(max_size=40) | json_values,
    }
)


@settings(max_examples=scaled(150))
@given(
    st.one_of(
        st.none(),
        st.binary(max_size=120),
        envelope_fields.map(lambda f: encode_invocation(**f)),
        # a valid envelope, cut or with a byte changed
        st.tuples(envelope_fields, st.integers(0, 200), st.integers(0, 255)).map(
            lambda t: _mutate(encode_invocation(**t[0]), t[1], t[2])
        ),
    )
)
@example(None)
@example(b"")
@example(b"\x01")
@example(encode_invocation("fz/counter", "k", None, None, "fz/Event", None))
def test_dispatch_of_any_invocations_record_never_raises(value):
    _, dispatcher, txn = make_runtime()
    dispatcher.dispatch(Record(INVOCATIONS, 1, 7, b"k", value))
    letters = [decode_dead_letter(v) for _, _, v, _, _ in txn.of(DEAD_LETTERS)]
    assert len(letters) <= 1
    egress = txn.of(OUT)
    assert len(letters) + len(egress) == 1  # processed (one egress) or one dead letter
    if letters:
        assert letters[0]["reason"] in ("undecodable-value", "unknown-function")
        assert letters[0]["source_offset"] == 7


def _mutate(data: bytes, at: int, byte: int) -> bytes:
    if not data:
        return data
    at %= len(data) + 1
    if at == len(data):
        return data[: byte % (len(data) + 1)]  # truncated
    return data[:at] + bytes((byte,)) + data[at + 1 :]
