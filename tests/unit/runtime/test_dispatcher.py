"""The dispatcher's per-invocation semantics, without Kafka (fake records and producer)."""

from tests.fakes import Record, Txn

from kstatefun import IntType, LongType, StatefulFunctions, ValueSpec
from kstatefun.kafka.partitioner import id_partitioner
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.runtime.dispatcher import Dispatcher
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import (
    decode_dead_letter,
    encode_changelog_key,
    encode_changelog_value,
    encode_invocation,
)
from kstatefun.wire.protobuf import encode_int_wrapper


def make(functions):
    store, timers, metrics, txn = StateStore(), TimerStore(), WorkerMetrics(), Txn()
    store.add_partition(0)
    timers.add_partition(0)
    dlq = DeadLetters("app-dead-letters", txn, metrics)
    d = Dispatcher(
        functions,
        store,
        txn,
        dlq,
        "app-invocations",
        id_partitioner(4, "crc32"),
        {},
        lambda t: True,
        timers,
        metrics,
    )
    return d, store, txn


ONE = encode_int_wrapper(1)


def invoke(d, target="ns/f", id="k", value=ONE):
    d.dispatch(
        Record(
            "app-invocations",
            0,
            0,
            b"k",
            encode_invocation(target, id, None, None, "io.statefun.types/int", value),
        )
    )


def dead_letters(txn):
    return [decode_dead_letter(v) for _, _, v, *_ in txn.of("app-dead-letters")]


def test_a_state_written_with_another_type_is_a_clear_dead_letter():
    functions = StatefulFunctions()

    @functions.bind("ns/f", specs=[ValueSpec("count", LongType)])
    def f(context, message):
        context.storage.count = (context.storage.count or 0) + 1

    d, store, txn = make(functions)
    key = encode_changelog_key("ns/f", "k", "count")
    store.add_partition(0)[key] = encode_changelog_value(IntType.typename, encode_int_wrapper(5))
    invoke(d)
    (letter,) = dead_letters(txn)
    assert letter["reason"] == "function-error"
    assert "holds a value of type 'io.statefun.types/int'" in letter["message"]
    assert "declares 'io.statefun.types/long'" in letter["message"]
    assert not store.has_pending()  # nothing of the failed invocation applied


def test_effects_apply_all_or_nothing():
    functions = StatefulFunctions()

    @functions.bind("ns/f", specs=[ValueSpec("count", IntType)])
    def f(context, message):
        from kstatefun import message_builder

        context.storage.count = 1
        context.send(message_builder("ns/g", "x", int_value=1))
        raise RuntimeError("after the effects")

    d, store, txn = make(functions)
    invoke(d)
    assert [p[0] for p in txn.produced] == ["app-dead-letters"]
    assert not store.has_pending()
    assert d.invocations == 0


def test_an_effect_too_large_to_produce_is_a_dead_letter_not_a_stuck_worker():
    functions = StatefulFunctions()

    @functions.bind("ns/f", specs=[ValueSpec("count", IntType)])
    def f(context, message):
        from kstatefun import message_builder

        context.storage.count = 1
        context.send(message_builder("ns/g", "x", str_value="x" * 999_000))

    d, store, txn = make(functions)
    invoke(d)
    (letter,) = dead_letters(txn)
    assert letter["reason"] == "record-too-large" and "exceeds" in letter["message"]
    assert [p[0] for p in txn.produced] == ["app-dead-letters"]
    assert not store.has_pending()
