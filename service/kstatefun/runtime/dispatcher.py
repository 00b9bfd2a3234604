"""Dispatch: run one invocation from <app>-invocations against its function and apply its
effects to the open transaction.

Records are dispatched one at a time in partition order, so the invocations of one address run
one after another in arrival order, and messages from one sender to one receiver keep their
order (same producer, same partition). An invocation either applies all of its effects (state
writes to the overlay, messages, egress, delayed messages) or none of them and becomes a
dead letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException
from confluent_kafka import Message as KafkaMessage

from kstatefun.config.module import PLAYGROUND_EGRESS_ID, KafkaEgress
from kstatefun.errors import DecodeError, FunctionError
from kstatefun.kafka.clients import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES
from kstatefun.model import Address, TypedValue
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.commit import Transaction
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.sdk.context import CancelDelayed, Context, DelayedMessage
from kstatefun.sdk.functions import FunctionSpec, StatefulFunctions
from kstatefun.sdk.messages import EgressMessage, Message
from kstatefun.sdk.storage import Storage, storage_class, storage_mutations
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import (
    changelog_key_prefix,
    changelog_key_suffix,
    changelog_value_of_type,
    decode_changelog_value,
    decode_invocation,
    encode_changelog_value,
    encode_invocation,
    encode_timer_key,
    encode_timer_value,
)

if TYPE_CHECKING:
    from kstatefun.runtime.remote import RemoteInvoker
from kstatefun.wire.protobuf import KAFKA_PRODUCER_RECORD_TYPENAME, decode_kafka_producer_record

_Egress = tuple[str, bytes | None, bytes]  # topic, key, value


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the dispatcher derives once per embedded function type."""

    storage: Callable[..., Storage]  # storage_class(...): build with (read)
    ttl_ms: dict[str, int]  # state name → TTL, for states that have one
    after_call: tuple[str, ...]  # states whose TTL every invocation refreshes


class LocalInvocation:
    """An invocation delivered straight to a target this worker owns, in the open transaction,
    without a round trip through <app>-invocations: an ingress record whose target partition
    this worker owns (runtime/router.py), or a fired delayed message. Quacks like the record it
    came from (topic, partition, offset, key, value: what a dead letter names as its source);
    ``origin`` identifies the invocation uniquely and the same on a replay."""

    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_origin", "_index")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes,
        value: bytes | None,
        origin: str | None = None,
        index: int = 0,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value = key, value
        self._origin, self._index = origin, index  # without an origin: the ingress target index

    @property
    def origin(self) -> str:
        if self._origin is None:  # made only when needed (delayed messages)
            self._origin = f"i:{self._topic}:{self._partition}:{self._offset}:{self._index}"
        return self._origin

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset  # -1: not a record of its own (a fired timer)

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value


# Dispatcher.invoke(source, function type, id, caller, argument typename, argument value)
Invoke = Callable[
    [KafkaMessage | LocalInvocation, str, str, Address | None, str, bytes | None], None
]


class Rejected(Exception):
    """An invocation's effects cannot be applied; carries the dead-letter reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Dispatcher:
    def __init__(
        self,
        functions: StatefulFunctions,
        store: StateStore,
        txn: Transaction,
        dead_letters: DeadLetters,
        invocations_topic: str,
        partition_of: Callable[[str], int],
        egresses: Mapping[str, KafkaEgress],
        topic_exists: Any,
        timers: TimerStore,
        metrics: WorkerMetrics,
    ) -> None:
        self._metrics = self.metrics = metrics
        self.remote: RemoteInvoker | None = None  # set by the worker when endpoints exist
        # set by the worker with an io.statefun.playground.v1/egress (kstatefun/playground/)
        self.playground_egress: Callable[[TypedValue], _Egress] | None = None
        self._functions = functions
        self._store = self.store = store
        self._timers = timers
        self._plans: dict[str, _Plan] = {}
        self._txn = txn
        self._dlq = self.dead_letters = dead_letters
        self._topic = invocations_topic
        self._partition_of = partition_of  # the application's partitioner
        self._egresses = egresses
        self._topic_exists = topic_exists
        self._loop = asyncio.new_event_loop()
        self.invocations = 0

    def close(self) -> None:
        self._loop.close()

    def dispatch(self, record: KafkaMessage) -> None:
        """Run the invocation in a record of <app>-invocations."""
        try:
            env = decode_invocation(record.value())
        except DecodeError as e:
            self._dlq.write(record, dl.UNDECODABLE_VALUE, f"not a kstatefun invocation: {e}", e)
            return
        caller = None if env.caller_type is None else Address(env.caller_type, env.caller_id or "")
        self.invoke(record, env.target_type, env.target_id, caller, env.typename, env.value)

    def invoke(
        self,
        record: KafkaMessage | LocalInvocation,
        ftype: str,
        fid: str,
        caller: Address | None,
        typename: str,
        value: bytes | None,
    ) -> None:
        """Run one invocation of ``ftype/fid`` with the argument ``typename``/``value``;
        ``record`` is where it came from (its partition is the target's partition)."""
        target = Address(ftype, fid)
        spec = self._functions.for_typename(ftype)
        if spec is None:
            if self.remote is not None and self.remote.serves(ftype):
                self.remote.offer(record, target, caller, TypedValue(typename, value))
                return
            self._dlq.write(
                record,
                dl.UNKNOWN_FUNCTION,
                f"no function is registered for type '{ftype}'",
                target=target,
                caller=caller,
                typename=typename,
                value=value,
            )
            return

        partition = record.partition()
        store_get = self._store.get
        specs = spec.specs
        now_ms = int(time.time() * 1000)

        key_prefix = changelog_key_prefix(ftype, fid)

        def read(name: str) -> bytes | None:
            raw = store_get(partition, key_prefix + changelog_key_suffix(name))
            if raw is None:
                return None
            declared = specs[name].type.typename
            found = changelog_value_of_type(raw, declared)
            if found is None:
                raise FunctionError(
                    f"state '{name}' of '{target}' holds a value of type "
                    f"'{decode_changelog_value(raw).typename}' but its ValueSpec declares "
                    f"'{declared}': migrate or delete the old value before changing a "
                    "ValueSpec's type"
                )
            data, expire_at = found
            if expire_at is not None and expire_at <= now_ms:
                return None  # expired: never returned, even before the sweep deletes it
            return data

        plan = self._plans.get(ftype) or self._plan(spec)
        storage = plan.storage(read)
        context = Context(target, caller, storage)
        started = time.perf_counter()
        try:
            result = spec.fun(context, Message(target, TypedValue(typename, value)))
            if result is not None and (spec.is_async or asyncio.iscoroutine(result)):
                self._loop.run_until_complete(result)
            self._metrics.latency(ftype).observe(time.perf_counter() - started)
            mutations = storage_mutations(storage)
            egress = [self.resolve_egress(e) for e in context.egress] if context.egress else []
            outgoing = context.outgoing
            delayed = context.delayed
            self.check_sizes(
                [v for v in mutations.values() if v is not None],
                [out.typed_value.value for out in outgoing] if outgoing else [],
                egress,
                [op.message.typed_value.value for op in delayed if isinstance(op, DelayedMessage)]
                if delayed
                else (),
            )
            timer_ops = (
                self.plan_timers(
                    delayed,
                    target,
                    partition,
                    getattr(record, "origin", None) or f"{partition}-{record.offset()}",
                    now_ms,
                )
                if delayed
                else ()
            )
        except KafkaException:
            raise  # a broker problem aborts the transaction; it is not the input's fault
        except Exception as e:
            if isinstance(e, Rejected):
                reason, text = e.reason, str(e)
            elif isinstance(e, DecodeError):
                reason, text = dl.UNDECODABLE_VALUE, str(e)
            else:
                reason = dl.FUNCTION_ERROR
                text = f"function '{target}' raised {type(e).__name__}: {e}"
            self._dlq.write(
                record,
                reason,
                text,
                None if isinstance(e, Rejected) else e,  # a rejection is no exception of theirs
                target=target,
                caller=caller,
                typename=typename,
                value=value,
            )
            return

        ttl_ms = plan.ttl_ms
        writes = [
            (name, specs[name].type.typename, data, ttl_ms.get(name) if ttl_ms else None)
            for name, data in mutations.items()
        ]
        refresh = [(n, ttl_ms[n]) for n in plan.after_call if n not in mutations]
        self.apply(
            partition,
            target,
            writes,
            refresh,
            [(out.target, out.typed_value) for out in outgoing] if outgoing else (),
            egress,
            timer_ops,
            now_ms,
            key_prefix,
        )

    def check_sizes(
        self,
        state_values: list[bytes],
        argument_values: list[bytes | None],
        egress: list[_Egress],
        delayed_values: Sequence[bytes | None] = (),
    ) -> None:
        """Refuse (before anything applies) an effect too large to produce."""
        limit = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES
        largest = 0
        for v in state_values:
            if len(v) > largest:
                largest = len(v)
        for v in (*argument_values, *delayed_values):
            if v and len(v) > largest:
                largest = len(v)
        for _, key, value in egress:
            if len(value) + len(key or b"") > largest:
                largest = len(value) + len(key or b"")
        if largest > limit:
            raise Rejected(
                dl.RECORD_TOO_LARGE,
                f"an effect of {largest} bytes exceeds the {limit}-byte limit of a record "
                "(state value, message, delayed message or egress record)",
            )

    def apply(
        self,
        partition: int,
        target: Address,
        writes: list[tuple[str, str, bytes | None, int | None]],
        refresh: list[tuple[str, int]],
        outgoing: Sequence[tuple[Address, TypedValue]],
        egress: list[_Egress],
        timer_ops: list[tuple[bytes, bytes | None, int]] | tuple[()],
        now_ms: int,
        key_prefix: bytes | None = None,
    ) -> None:
        """Apply one invocation's (or one remote batch's) checked effects to the transaction:
        state writes ``(name, typename, value or None to delete, ttl ms or None)``, TTL refreshes
        of unwritten ``expire_after_call`` states, messages (caller = ``target``), egress and
        timer writes. ``key_prefix``: ``changelog_key_prefix`` of ``target``, if at hand."""
        ftype, fid = target.typename, target.id
        if key_prefix is None:
            key_prefix = changelog_key_prefix(ftype, fid)
        self.invocations += 1
        counts = self._metrics.invocations
        counts[ftype] = counts.get(ftype, 0) + 1
        store = self._store
        for name, typename, value, ttl_ms in writes:
            key = key_prefix + changelog_key_suffix(name)
            if value is None:
                store.put(partition, key, None)
            else:
                expire_at = now_ms + ttl_ms if ttl_ms else None
                store.put(
                    partition, key, encode_changelog_value(typename, value, expire_at), expire_at
                )
        for name, ttl_ms in refresh:
            self._refresh(partition, key_prefix + changelog_key_suffix(name), now_ms, ttl_ms)
        for key, timer, due in timer_ops:
            if timer is None:
                self._timers.cancel(partition, key)
            else:
                self._timers.schedule(partition, key, timer, due)
        produce = self._txn.produce
        for dest, argument in outgoing:
            produce(
                self._topic,
                encode_invocation(
                    dest.typename, dest.id, ftype, fid, argument.typename, argument.value
                ),
                dest.id.encode(),
                self._partition_of(dest.id),
            )
        for topic, key, value in egress:
            produce(topic, value, key)

    def _plan(self, spec: FunctionSpec) -> _Plan:
        plan = _Plan(
            storage_class(spec.typename, spec.specs),
            {n: v.duration for n, v in spec.specs.items() if v.duration},
            tuple(n for n, v in spec.specs.items() if v.after_call),
        )
        self._plans[spec.typename] = plan
        return plan

    def _refresh(self, partition: int, key: bytes, now_ms: int, ttl_ms: int) -> None:
        raw = self._store.get(partition, key)
        if raw is None:
            return
        value = decode_changelog_value(raw)
        if value.expire_at_ms is not None and value.expire_at_ms <= now_ms:
            return  # already expired: the sweep deletes it
        expire_at = now_ms + ttl_ms
        self._store.put(
            partition,
            key,
            encode_changelog_value(value.typename, value.value, expire_at),
            expire_at,
        )

    def plan_timers(
        self,
        ops: list[DelayedMessage | CancelDelayed],
        sender: Address,
        partition: int,
        origin: str,
        now_ms: int,
    ) -> list[tuple[bytes, bytes | None, int]]:
        """Timer writes of one invocation, in call order, checked before anything applies: a
        token that is still pending cannot be scheduled again (the invocation is rejected).
        ``origin`` identifies the invocation uniquely and the same on a replay (e.g.
        "<partition>-<offset>" of its record); timers without a token are keyed by it."""
        planned: list[tuple[bytes, bytes | None, int]] = []
        pending: dict[bytes, bool] = {}  # this invocation's own schedules and cancels
        for i, op in enumerate(ops):
            if isinstance(op, CancelDelayed):
                key = encode_timer_key(sender.typename, sender.id, op.cancellation_token, False)
                planned.append((key, None, 0))
                pending[key] = False
                continue
            token = op.cancellation_token
            if token:
                key = encode_timer_key(sender.typename, sender.id, token, False)
                if pending.get(key, self._timers.get(partition, key) is not None):
                    raise Rejected(
                        dl.DUPLICATE_TOKEN,
                        f"function '{sender}' scheduled a delayed message with cancellation "
                        f"token '{token}', which is still pending: cancel it first or use "
                        "another token",
                    )
            else:  # unique and deterministic: a replay after an abort writes the same key
                key = encode_timer_key(sender.typename, sender.id, f"{origin}-{i}", True)
            due = now_ms + op.delay_ms
            m = op.message
            planned.append(
                (
                    key,
                    encode_timer_value(
                        due,
                        m.target.typename,
                        m.target.id,
                        m.typed_value.typename,
                        m.typed_value.value,
                    ),
                    due,
                )
            )
            pending[key] = True
        return planned

    def resolve_egress(self, msg: EgressMessage) -> _Egress:
        if msg.typename == PLAYGROUND_EGRESS_ID and self.playground_egress is not None:
            try:
                return self.playground_egress(msg.typed_value)
            except ValueError as e:
                raise Rejected(dl.UNKNOWN_EGRESS, str(e)) from e
        if msg.typename not in self._egresses:
            declared = ", ".join(sorted(self._egresses)) or "none"
            raise Rejected(
                dl.UNKNOWN_EGRESS,
                f"egress '{msg.typename}' is not declared in module.yaml (declared: {declared}); "
                "add an io.statefun.kafka.v1/egress document with that id",
            )
        record: _Egress
        if msg.kafka_record is not None:  # built in-process: no protobuf round trip
            record = msg.kafka_record
        else:
            tv = msg.typed_value
            if tv.typename != KAFKA_PRODUCER_RECORD_TYPENAME or tv.value is None:
                raise Rejected(
                    dl.UNKNOWN_EGRESS,
                    f"egress '{msg.typename}' is a Kafka egress and takes records built with "
                    f"kafka_egress_message(), got a value of type '{tv.typename}'",
                )
            topic, text_key, value = decode_kafka_producer_record(tv.value)
            record = (topic, None if text_key is None else text_key.encode(), value)
        if not self._topic_exists(record[0]):
            raise Rejected(
                dl.UNKNOWN_EGRESS,
                f"egress '{msg.typename}' names topic '{record[0]}', which does not exist; "
                "create it",
            )
        return record
