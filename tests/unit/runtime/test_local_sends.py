"""Messages between functions of partitions owned here, invoked in their sender's transaction
(runtime/local.py, Dispatcher._cascade), without Kafka: when they go direct, when they take the
hop so that no earlier message to the same target is overtaken, and what bounds a chain."""

from datetime import timedelta

from tests.fakes import Record, Txn

from kstatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message, message_builder
from kstatefun.kafka.partitioner import id_partitioner
from kstatefun.model import Address
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.runtime.dispatcher import Dispatcher
from kstatefun.runtime.local import CASCADE_MAX, LocalSends
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import decode_dead_letter, decode_invocation, encode_invocation
from kstatefun.wire.protobuf import decode_int_wrapper, encode_int_wrapper

PARTITION_OF = id_partitioner(4, "crc32")
INV = "app-invocations"
Q = PARTITION_OF("k")  # the partition of id "k", where every test's chain runs
OTHER = next(i for i in map(str, range(100)) if PARTITION_OF(i) != Q)  # an id elsewhere


def make(functions, owned=(Q,), timers=None):
    store, metrics, txn = StateStore(), WorkerMetrics(), Txn()
    timers = TimerStore() if timers is None else timers
    for p in range(4):
        store.add_partition(p)
        timers.add_partition(p)
    local = LocalSends(set(owned))
    dlq = DeadLetters("app-dead-letters", txn, metrics)
    d = Dispatcher(
        functions,
        store,
        txn,
        dlq,
        INV,
        PARTITION_OF,
        {"ns/out": None},
        lambda t: True,
        timers,
        metrics,
        local=local,
    )
    return d, local, txn, metrics


def record(offset=0, target="ns/a", id="k", value=1):
    envelope = encode_invocation(
        target, id, None, None, "io.statefun.types/int", encode_int_wrapper(value)
    )
    return Record(INV, PARTITION_OF(id), offset, id.encode(), envelope)


def chain(received):
    """ns/a messages ns/b (same id) with its count; ns/b writes "<id>:<value>" to egress."""
    functions = StatefulFunctions()

    @functions.bind("ns/a", specs=[ValueSpec("count", IntType)])
    def a(context, message):
        count = (context.storage.count or 0) + 1
        context.storage.count = count
        context.send(message_builder("ns/b", context.address.id, int_value=count))

    @functions.bind("ns/b", specs=[ValueSpec("count", IntType)])
    def b(context, message):
        received.append((str(context.caller), message.as_int()))
        context.send_egress(
            kafka_egress_message(
                typename="ns/out", topic="out", key=context.address.id, value=f"{message.as_int()}"
            )
        )

    return functions


def routed(txn):
    return [decode_invocation(v) for _, _, v, *_ in txn.of(INV)]


def test_a_message_to_a_target_of_the_same_partition_runs_in_the_senders_transaction():
    received = []
    d, local, txn, metrics = make(chain(received))
    d.dispatch(record(0))
    d.dispatch(record(1))
    assert received == [("ns/a/k", 1), ("ns/a/k", 2)]  # the caller is the sender
    assert routed(txn) == [] and [v for _, _, v, *_ in txn.of("out")] == [b"1", b"2"]
    assert metrics.messages_local == 2 and d.invocations == 4


def test_a_target_in_another_partition_or_not_restored_here_takes_the_hop():
    received = []
    d, local, txn, _ = make(chain(received), owned=())  # Q not restored here
    d.dispatch(record(0))
    assert received == [] and [(t, i) for t, i, *_ in routed(txn)] == [("ns/b", "k")]
    received2 = []
    functions = chain(received2)

    @functions.bind("ns/c")
    def c(context, message):
        context.send(message_builder("ns/b", OTHER, int_value=1))

    d, local, txn, _ = make(functions)
    d.dispatch(record(0, target="ns/c"))
    assert received2 == [] and [(t, i) for t, i, *_ in routed(txn)] == [("ns/b", OTHER)]


def test_a_target_in_another_owned_partition_runs_there_in_the_senders_transaction():
    received = []
    functions = chain(received)

    @functions.bind("ns/c")
    def c(context, message):
        context.send(message_builder("ns/a", OTHER, int_value=1))

    d, local, txn, metrics = make(functions, owned=(Q, PARTITION_OF(OTHER)))
    d.dispatch(record(0, target="ns/c"))
    # ns/a/OTHER ran here and so did its message to ns/b/OTHER; its state is OTHER's partition's
    assert received == [(f"ns/a/{OTHER}", 1)] and routed(txn) == []
    assert metrics.messages_local == 2
    key = d.store.key_of(Address("ns/a", OTHER))
    assert d.store.read(PARTITION_OF(OTHER), key, "count", 0, IntType.typename) is not None
    assert d.store.read(Q, key, "count", 0, IntType.typename) is None


def test_a_dead_letter_of_a_message_run_in_another_partition_names_the_record_that_sent_it():
    functions = StatefulFunctions()

    @functions.bind("ns/c")
    def c(context, message):
        context.send(message_builder("ns/boom", OTHER, int_value=1))

    @functions.bind("ns/boom")
    def boom(context, message):
        raise RuntimeError("boom")

    d, local, txn, _ = make(functions, owned=(Q, PARTITION_OF(OTHER)))
    d.dispatch(record(7, target="ns/c"))
    [dead] = [decode_dead_letter(v) for _, _, v, *_ in txn.of("app-dead-letters")]
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (INV, Q, 7)
    assert dead["target_id"] == OTHER


def test_until_the_end_at_assignment_is_consumed_every_message_takes_the_hop():
    received = []
    d, local, txn, _ = make(chain(received))
    local.assigned({Q: 10})
    d.dispatch(record(3))
    assert received == [] and len(routed(txn)) == 1
    assert local.passed({Q: 9}) == [] and local.passed({Q: 10}) == [Q]
    d.dispatch(record(11, id="k"))  # a target of its own: ns/b/k waits for its routed message
    assert received == [] and len(routed(txn)) == 2


def test_a_target_with_a_routed_message_in_the_topic_gets_the_next_ones_after_it():
    received = []
    d, local, txn, _ = make(chain(received))
    local.assigned({Q: 5})
    d.dispatch(record(0))  # before the floor: routed, and ns/b/k blocked until it comes back
    assert local.unresolved() == [Q] and not local.takes(Q, Address("ns/b", "k"))
    local.resolve(Q, 9)  # committed: the partition ends at 9, the message is at 7 or below
    assert local.unresolved() == [] and local.passed({Q: 5}) == [Q]
    d.dispatch(record(5))  # past the floor, but its message would overtake offset 7's
    assert received == [] and len(routed(txn)) == 2
    assert not local.takes(Q, Address("ns/b", "k"))  # not committed yet: blocked
    local.resolve(Q, 10)  # the second one sits at 8 or below
    d.dispatch(record(7, target="ns/b", value=1))  # the first routed one comes back
    assert not local.takes(Q, Address("ns/b", "k"))  # offset 8 still waits
    assert local.takes(Q, Address("ns/b", "other"))  # another target does not
    d.dispatch(record(8, target="ns/b", value=2))
    d.dispatch(record(9))  # both dispatched: ns/b/k is free again
    assert received == [("None", 1), ("None", 2), ("ns/a/k", 3)] and len(routed(txn)) == 2
    assert Q not in local.blocked


def test_a_message_routed_while_its_partition_restores_here_blocks_the_next_ones():
    """The worker keeps the sender's partition and gains the target's: a message sent while
    the target's partition restores takes the hop and lands above the floor read at the
    assignment; the next one to that target must wait for it (make chaos, seed 440034)."""
    owned: set[int] = set()
    local = LocalSends(owned)
    target = Address("ns/b", "k")
    local.assigned({Q: 4}, kept=[Q + 1])  # the sender's partition, kept
    assert not local.takes(Q, target)  # restoring: the hop
    local.routed(Q, target)
    local.resolve(Q, 7)  # committed: at offset 5 or below, above the floor
    owned.add(Q)
    local.restored(Q)
    assert local.passed({Q: 4}) == [Q]  # the floor is passed ...
    assert not local.takes(Q, target)  # ... but the routed message is still in the topic
    assert local.takes(Q, Address("ns/b", "other"))
    local.dispatched(Q, 5)
    assert local.takes(Q, target)


def test_an_abort_makes_a_restoring_partition_wait_for_its_end_too():
    local = LocalSends(set())
    local.assigned({Q: 0})  # nothing in it at the assignment: no floor
    local.routed(Q, Address("ns/b", "k"))
    local.aborted(set())
    assert local.floors == {Q: None} and not local.blocked


def test_an_abort_makes_every_owned_partition_wait_for_its_end_again():
    d, local, txn, _ = make(chain([]))
    local.routed(Q, Address("ns/b", "k"))
    local.aborted({Q})
    assert local.floors == {Q: None} and not local.blocked
    assert not local.takes(Q, Address("ns/b", "z"))
    assert local.passed({Q: 100}) == []  # a floor not read yet is never passed
    local.floors[Q] = 100
    assert local.passed({Q: 100}) == [Q] and local.takes(Q, Address("ns/b", "z"))


def test_messages_run_in_the_order_sent_breadth_first():
    order = []
    functions = StatefulFunctions()

    @functions.bind("ns/a")
    def a(context, message):
        order.append("a")
        context.send(message_builder("ns/b", "k", int_value=1))
        context.send(message_builder("ns/c", "k", int_value=2))

    @functions.bind("ns/b")
    def b(context, message):
        order.append(f"b{message.as_int()}")
        context.send(message_builder("ns/c", "k", int_value=3))

    @functions.bind("ns/c")
    def c(context, message):
        order.append(f"c{message.as_int()}")

    d, *_ = make(functions)
    d.dispatch(record(0))
    assert order == ["a", "b1", "c2", "c3"]  # as through the topic: each in its send order


def test_a_chain_that_would_not_end_runs_at_most_cascade_max_here_then_takes_the_hop():
    functions = StatefulFunctions()

    @functions.bind("ns/a", specs=[ValueSpec("n", IntType)])
    def a(context, message):
        context.storage.n = (context.storage.n or 0) + 1
        context.send(message_builder("ns/a", "k", int_value=message.as_int() + 1))

    d, local, txn, metrics = make(functions)
    d.dispatch(record(0))
    assert metrics.messages_local == CASCADE_MAX
    ((target, id, caller_type, _, _, value),) = routed(txn)
    assert (target, id, caller_type) == ("ns/a", "k", "ns/a")
    assert decode_int_wrapper(value) == CASCADE_MAX + 2  # sent by the last one run here
    assert local.unresolved() == [Q]  # the next ones wait for it
    d.dispatch(record(1))
    assert len(routed(txn)) == 2 and metrics.messages_local == CASCADE_MAX


def test_a_failing_target_is_a_dead_letter_naming_the_record_that_started_the_chain():
    functions = StatefulFunctions()

    @functions.bind("ns/a", specs=[ValueSpec("count", IntType)])
    def a(context, message):
        context.storage.count = 1
        context.send(message_builder("ns/b", "k", int_value=7))
        context.send_after(timedelta(seconds=1), message_builder("ns/a", "k", int_value=0))

    @functions.bind("ns/b")
    def b(context, message):
        context.send_after(timedelta(seconds=1), message_builder("ns/a", "k", int_value=0))
        context.send_after(timedelta(seconds=1), message_builder("ns/a", "k", int_value=0))
        raise ValueError("b fails")

    d, local, txn, _ = make(functions)
    d.dispatch(record(42))
    (letter,) = [decode_dead_letter(v) for _, _, v, *_ in txn.of("app-dead-letters")]
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        INV,
        Q,
        42,
    )
    assert (letter["target_type"], letter["caller_type"], letter["reason"]) == (
        "ns/b",
        "ns/a",
        "function-error",
    )
    assert d.invocations == 1  # a's effects applied, b's none


def test_delayed_messages_of_invocations_run_here_get_keys_of_their_own():
    functions = StatefulFunctions()

    @functions.bind("ns/a")
    def a(context, message):
        context.send_after(timedelta(seconds=1), message_builder("ns/x", "k", int_value=0))
        if message.as_int() < 3:
            context.send(message_builder("ns/a", "k", int_value=message.as_int() + 1))

    def run():
        timers = TimerStore()
        d, local, txn, metrics = make(functions, timers=timers)
        d.dispatch(record(0, value=1))
        assert metrics.messages_local == 2
        (writes,) = [w for p, w in timers.pending() if p == Q]
        return writes

    writes = run()
    assert len(writes) == 3  # three delayed messages, none overwriting another
    assert run().keys() == writes.keys()  # and a replay writes the same keys again
