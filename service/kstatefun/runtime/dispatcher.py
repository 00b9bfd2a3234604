"""Dispatch: run one invocation of <app>-invocations (or a direct one, ``LocalInvocation``)
against its function, and apply its effects to the open transaction.

Owns: finding the function (embedded here, else offered to the remote invoker, else an
``unknown-function`` dead letter), running an embedded function with its ``Context`` and state
reads, turning what it did into ``Effects`` (runtime/effects.py) and the worker's one
``EffectsApplier``, which embedded calls and remote replies (runtime/remote.py) both go through.

Records are dispatched one at a time in partition order, so the invocations of one address run
one after another in arrival order, and messages from one sender to one receiver keep their
order (same producer, same partition). An invocation either applies all of its effects (state
writes to the overlay, messages, egress, delayed messages) or none of them and becomes a
dead letter. A message between functions of partitions owned here that runtime/local.py
lets go direct is invoked here right after its sender (``_cascade``), in the order sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any, Protocol

from confluent_kafka import KafkaException
from confluent_kafka import Message as KafkaMessage
from mypy_extensions import mypyc_attr

from kstatefun.errors import DecodeError, StateStoreError
from kstatefun.model import Address, TypedValue
from kstatefun.observability.metrics import Histogram, WorkerMetrics
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.runtime.effects import (
    Effects,
    EffectsApplier,
    EgressRecord,
    EgressRoutes,
    StateLayout,
    timer_origin,
)
from kstatefun.runtime.local import CASCADE_MAX, LocalSends
from kstatefun.sdk.context import Context
from kstatefun.sdk.functions import FunctionSpec, StatefulFunctions
from kstatefun.sdk.messages import Message
from kstatefun.sdk.storage import Storage, storage_class, storage_mutations
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import decode_invocation, encode_invocation


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the dispatcher derives once per embedded function type."""

    spec: FunctionSpec
    storage: Callable[..., Storage]  # storage_class(...): build with (read)
    layout: StateLayout
    latency: Histogram  # kstatefun_invocation_latency_seconds of the type


# a LocalInvocation's origin field (its doc): None, a string, or (chain's record, n)
_Origin = str | tuple[Any, int] | None


# compiled (kstatefun/buildinfo.py), a class can subclass tuple only as a Python class
@mypyc_attr(native_class=False)
class LocalInvocation(tuple[str, int, int, bytes, "bytes | None", "_Origin", int]):
    """An invocation delivered straight to a target this worker owns, in the open transaction,
    without a round trip through <app>-invocations: an ingress record whose target partition
    this worker owns (runtime/router.py), a fired delayed message (worker.py), or a message
    between functions of partitions owned here (``Dispatcher._cascade``). Quacks like the
    record it came from (topic, offset, key, value: what a dead letter names as its source),
    but its ``partition`` is the target's; ``source_partition`` is the record's. ``origin``
    identifies the invocation uniquely and the same on a replay.

    A tuple (topic, partition, offset, key, value, origin, index), built with ``make_local``
    where it counts. Its origin field is None for an ingress record (``origin`` is made from
    the others), a string for a fired delayed message, and (the record that started the
    chain, n) for the n-th message of a cascade: strings made only when asked for."""

    __slots__ = ()

    def __new__(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes,
        value: bytes | None,
        origin: _Origin = None,
        index: int = 0,
    ) -> LocalInvocation:
        # without an origin: ``index`` is the ingress target's index; with one, the partition
        # of the record it came from
        return tuple.__new__(cls, (topic, partition, offset, key, value, origin, index))

    @property
    def origin(self) -> str:
        # made only when needed (delayed messages, remote calls)
        origin = self[5]
        if origin is None:
            return f"i:{self[0]}:{self[1]}:{self[2]}:{self[6]}"
        if isinstance(origin, str):
            return origin
        chain, n = origin
        return f"{timer_origin(chain)}>{n}"

    def topic(self) -> str:
        return self[0]

    def partition(self) -> int:
        return self[1]

    def source_partition(self) -> int:
        return self[1] if self[5] is None else self[6]

    def offset(self) -> int:
        return self[2]  # -1: not a record of its own (a fired timer)

    def key(self) -> bytes:
        return self[3]

    def value(self) -> bytes | None:
        return self[4]


# ``make_local((topic, partition, offset, key, value, origin, index))``: a LocalInvocation built
# in C, without ``__new__``'s Python frame (the router makes one per direct ingress record)
make_local: Callable[[tuple[str, int, int, bytes, bytes | None, _Origin, int]], LocalInvocation]
make_local = partial(tuple.__new__, LocalInvocation)  # type: ignore[assignment]


# Dispatcher.invoke(source, message, caller)
Invoke = Callable[[KafkaMessage | LocalInvocation, Message, Address | None], None]


class Offload(Protocol):
    """Where invocations of function types not embedded here go (runtime/remote.py)."""

    def serves(self, typename: str) -> bool: ...

    def offer(
        self, record: Any, target: Address, caller: Address | None, argument: TypedValue
    ) -> None: ...


class Producing(Protocol):
    """What the dispatcher uses of the open transaction (``runtime/commit.Transaction``); a
    Protocol, not the class, so that a test's stand-in passes compiled code's argument checks
    too (docs/performance.md, "A compiled hot path")."""

    def produce(
        self, topic: str, value: bytes | None, key: bytes | None, partition: int | None
    ) -> None: ...


class _Produce:
    """The worker's output for effects: messages to <app>-invocations (partitioned by target
    id), egress records as resolved, both into the open transaction. While an embedded
    invocation applies (``embedded``), a message to a target of a partition owned here may be
    queued to run here instead (runtime/local.py)."""

    __slots__ = ("_produce", "_topic", "_partition_of", "local", "embedded")

    def __init__(
        self,
        txn: Producing,
        invocations_topic: str,
        partition_of: Callable[[str], int],
        local: LocalSends | None = None,
    ) -> None:
        self._produce = txn.produce
        self._topic = invocations_topic
        self._partition_of = partition_of  # the application's partitioner
        self.local = local
        self.embedded = False  # an embedded invocation's effects apply

    def send(self, sender: Address, message: Message) -> None:
        dest = message.target
        partition = self._partition_of(dest.id)
        if self.embedded:
            local = self.local
            assert local is not None
            if local.takes(partition, dest):
                local.queue.append((sender, message, partition))
                return
            local.routed(partition, dest)
        self.route(sender, message, partition)

    def route(self, sender: Address, message: Message, partition: int) -> None:
        """Produce ``message`` to <app>-invocations partition ``partition``."""
        dest, argument = message.target, message.typed_value
        envelope = encode_invocation(
            dest.typename, dest.id, sender.typename, sender.id, argument.typename, argument.value
        )
        self._produce(self._topic, envelope, dest.id.encode(), partition)

    def emit(self, sender: Address, egress: str, record: EgressRecord) -> None:
        topic, key, value = record
        self._produce(topic, value, key, None)  # None: the producer's partitioner


class Dispatcher:
    def __init__(
        self,
        functions: StatefulFunctions,
        store: StateStore,
        txn: Producing,
        dead_letters: DeadLetters,
        invocations_topic: str,
        partition_of: Callable[[str], int],
        egresses: Mapping[str, Any],
        topic_exists: Callable[[str], bool],
        timers: TimerStore,
        metrics: WorkerMetrics,
        remote: Callable[[Dispatcher], Offload] | None = None,
        playground_egress: Callable[[TypedValue], EgressRecord] | None = None,
        local: LocalSends | None = None,
    ) -> None:
        """``remote`` makes the offload for function types served by endpoints (given this
        dispatcher, whose check and apply it uses: runtime/remote.py); ``playground_egress``
        builds io.statefun.playground/egress records (kstatefun/playground/); ``local``: the
        messages between functions of partitions owned here that may go direct (runtime/local.py;
        None: every message takes the hop)."""
        self._metrics = self.metrics = metrics
        self._functions = functions
        self._store = self.store = store
        self._read = store.read
        self._key_of = store.key_of
        self._plans: dict[str, _Plan] = {}
        self._dlq = self.dead_letters = dead_letters
        self._local = local
        self._out = _Produce(txn, invocations_topic, partition_of, local)
        self.effects = EffectsApplier(
            EgressRoutes(egresses, topic_exists), store, timers, self._out
        )
        self.effects.routes.playground = playground_egress
        self._loop = asyncio.new_event_loop()
        self.invocations = 0
        self.remote: Offload | None = None if remote is None else remote(self)

    def close(self) -> None:
        self._loop.close()

    def dispatch(self, record: KafkaMessage) -> None:
        """Run the invocation in a record of <app>-invocations."""
        try:
            ftype, fid, caller_type, caller_id, typename, value = decode_invocation(record.value())
        except DecodeError as e:
            self._dlq.write(record, dl.UNDECODABLE_VALUE, f"not a kstatefun invocation: {e}", e)
            return
        caller = None if caller_type is None else Address(caller_type, caller_id or "")
        local = self._local
        if local is not None and local.blocked:  # runtime/local.py waits for a routed message
            partition = record.partition()
            if partition in local.blocked:
                local.dispatched(partition, record.offset())
        target = Address(ftype, fid)
        self.invoke(record, Message(target, TypedValue(typename, value)), caller)

    def invoke(
        self, record: KafkaMessage | LocalInvocation, message: Message, caller: Address | None
    ) -> None:
        """Run one invocation: ``message`` to its target, from ``caller`` (None: ingress);
        ``record`` is where it came from (its partition is the target's partition). A message
        a function sent here (``_cascade``) is passed on as it was built."""
        target = message.target
        plan = self._plans.get(target.typename)
        if plan is None:
            spec = self._functions.for_typename(target.typename)
            if spec is None:
                self._not_embedded(record, target, caller, message.typed_value)
                return
            plan = self._plan(spec)
        partition = record.partition()
        now_ms = int(time.time() * 1000)
        # The embedded call, inline (this runs for every invocation): its state is read as of
        # now_ms, on first access; its effects are checked before any of them applies.
        store_read, typenames = self._read, plan.layout.typenames
        try:
            key = self._key_of(target)

            def read(name: str) -> bytes | None:
                return store_read(partition, key, name, now_ms, typenames[name])

            storage = plan.storage(read)
            context = Context(target, caller, storage)
            spec = plan.spec
            started = perf_counter()
            result = spec.fun(context, message)
            if result is not None and (spec.is_async or asyncio.iscoroutine(result)):
                self._loop.run_until_complete(result)
            plan.latency.observe(perf_counter() - started)
            fx = Effects(
                target,
                plan.layout,
                storage_mutations(storage),
                context.outgoing,
                context.egress,
                context.delayed,
                1,
                key,
            )
            self.effects.check(fx, partition)
        except (KafkaException, StateStoreError):
            raise  # a broker or local disk problem is not the input's fault
        except Exception as e:
            self._failed(record, e, target, caller, message.typed_value)
            return
        if not fx.outgoing or self._local is None:
            self.apply(fx, partition, now_ms, timer_origin(record) if fx.delayed else "")
        else:
            self._apply_sending(record, fx, partition, now_ms)

    def _apply_sending(
        self, record: KafkaMessage | LocalInvocation, fx: Effects, partition: int, now_ms: int
    ) -> None:
        """Apply ``fx``, whose messages to targets of partitions owned here may queue to run
        here (runtime/local.py); then run them, unless a cascade running this one will."""
        out = self._out
        top = not out.embedded  # not itself run by a cascade
        out.embedded = True
        try:
            self.apply(fx, partition, now_ms, timer_origin(record) if fx.delayed else "")
        finally:
            if top:
                out.embedded = False
        if top and self._local is not None and self._local.queue:
            self._cascade(record)

    def _cascade(self, record: KafkaMessage | LocalInvocation) -> None:
        """Invoke the messages queued by ``record``'s invocation (runtime/local.py), and those
        they queue in turn, in the order sent, at most CASCADE_MAX; the rest take the hop."""
        local = self._local
        assert local is not None
        queue, out, metrics = local.queue, self._out, self._metrics
        topic, offset = record.topic(), record.offset()
        at = getattr(record, "source_partition", record.partition)()
        n = 0
        out.embedded = True
        try:
            while queue:
                sender, message, partition = queue.popleft()
                if n >= CASCADE_MAX:
                    local.routed(partition, message.target)
                    out.route(sender, message, partition)
                    continue
                n += 1
                # the target's partition; names the record that started it (a dead letter's
                # source; with n, a unique origin)
                source = make_local(
                    (topic, partition, offset, message.target.id.encode(), None, (record, n), at)
                )
                self.invoke(source, message, sender)
        finally:
            metrics.messages_local += n
            out.embedded = False
            queue.clear()

    def _failed(
        self,
        record: KafkaMessage | LocalInvocation,
        e: Exception,
        target: Address,
        caller: Address | None,
        argument: TypedValue,
    ) -> None:
        """The embedded function (or the check of its effects) raised ``e``: dead-letter the
        invocation, none of its effects applied."""
        reason, text, exc = dl.function_failure(e, target)
        self._dlq.write(
            record,
            reason,
            text,
            exc,
            target=target,
            caller=caller,
            typename=argument.typename,
            value=argument.value,
        )

    def _not_embedded(
        self,
        record: KafkaMessage | LocalInvocation,
        target: Address,
        caller: Address | None,
        argument: TypedValue,
    ) -> None:
        """Offer an invocation of a type not embedded here to its endpoint, if one serves it;
        else it is an ``unknown-function`` dead letter."""
        remote = self.remote
        if remote is not None and remote.serves(target.typename):
            remote.offer(record, target, caller, argument)
            return
        self._dlq.write(
            record,
            dl.UNKNOWN_FUNCTION,
            f"no function is registered for type '{target.typename}'",
            target=target,
            caller=caller,
            typename=argument.typename,
            value=argument.value,
        )

    def check(self, fx: Effects, partition: int) -> None:
        """``EffectsApplier.check``: raise ``Rejected`` unless ``fx`` can apply in full."""
        self.effects.check(fx, partition)

    def apply(self, fx: Effects, partition: int, now_ms: int, origin: str = "") -> None:
        """Apply checked effects (``self.effects.check``) to the open transaction, and count
        the invocations they stand for."""
        self.invocations += 1
        counts = self._metrics.invocations
        ftype = fx.target.typename
        counts[ftype] = counts.get(ftype, 0) + fx.count
        self.effects.apply(fx, partition, now_ms, origin)

    def _plan(self, spec: FunctionSpec) -> _Plan:
        plan = _Plan(
            spec,
            storage_class(spec.typename, spec.specs),
            StateLayout.of(spec),
            self._metrics.latency(spec.typename),
        )
        self._plans[spec.typename] = plan
        return plan
