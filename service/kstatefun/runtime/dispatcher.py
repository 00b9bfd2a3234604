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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException
from confluent_kafka import Message as KafkaMessage

from kstatefun.config.module import KafkaEgress
from kstatefun.errors import DecodeError, FunctionError
from kstatefun.kafka.clients import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES
from kstatefun.kafka.partitioner import partition_for_id
from kstatefun.model import Address, TypedValue
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.commit import Transaction
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.sdk.context import CancelDelayed, Context, DelayedMessage
from kstatefun.sdk.functions import FunctionSpec, StatefulFunctions
from kstatefun.sdk.messages import EgressMessage, Message
from kstatefun.sdk.storage import Storage, storage_mutations
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import (
    decode_changelog_value,
    decode_invocation,
    encode_changelog_key,
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
class _TtlPlan:
    ttl_ms: dict[str, int]  # state name → TTL, for states that have one
    after_call: tuple[str, ...]  # states whose TTL every invocation refreshes


class LocalInvocation:
    """An invocation delivered straight to a target this worker owns, in the open transaction,
    without a round trip through <app>-invocations: a fired delayed message, or an ingress
    record whose target partition this worker owns (runtime/router.py). Quacks like the
    consumed record the dispatcher otherwise gets; ``origin`` identifies it uniquely and the
    same on a replay."""

    __slots__ = ("_topic", "_partition", "_key", "_value", "origin")

    def __init__(self, topic: str, partition: int, key: bytes, value: bytes, origin: str) -> None:
        self._topic, self._partition, self._key, self._value = topic, partition, key, value
        self.origin = origin

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return -1  # not a record of its own: it commits with the record or timer it came from

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


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
        partitions: int,
        egresses: Mapping[str, KafkaEgress],
        topic_exists: Any,
        timers: TimerStore,
        metrics: WorkerMetrics,
    ) -> None:
        self._metrics = self.metrics = metrics
        self.remote: RemoteInvoker | None = None  # set by the worker when endpoints exist
        self._functions = functions
        self._store = self.store = store
        self._timers = timers
        self._ttl: dict[str, _TtlPlan] = {}
        self._txn = txn
        self._dlq = self.dead_letters = dead_letters
        self._topic = invocations_topic
        self._partitions = partitions
        self._egresses = egresses
        self._topic_exists = topic_exists
        self._loop = asyncio.new_event_loop()
        self.invocations = 0

    def close(self) -> None:
        self._loop.close()

    def dispatch(self, record: KafkaMessage) -> None:
        try:
            env = decode_invocation(record.value())
        except DecodeError as e:
            self._dlq.write(record, dl.UNDECODABLE_VALUE, f"not a kstatefun invocation: {e}", e)
            return
        target = Address(env.target_type, env.target_id)
        caller = None if env.caller_type is None else Address(env.caller_type, env.caller_id or "")
        spec = self._functions.for_typename(env.target_type)
        if spec is None and self.remote is not None and self.remote.serves(env.target_type):
            self.remote.offer(record, target, caller, TypedValue(env.typename, env.value))
            return
        if spec is None:
            self._dlq.write(
                record,
                dl.UNKNOWN_FUNCTION,
                f"no function is registered for type '{env.target_type}'",
                target=target,
                caller=caller,
                typename=env.typename,
                value=env.value,
            )
            return

        partition = record.partition()
        store = self._store
        ftype, fid = env.target_type, env.target_id
        now_ms = int(time.time() * 1000)

        def read(name: str) -> bytes | None:
            raw = store.get(partition, encode_changelog_key(ftype, fid, name))
            if raw is None:
                return None
            value = decode_changelog_value(raw)
            if value.expire_at_ms is not None and value.expire_at_ms <= now_ms:
                return None  # expired: never returned, even before the sweep deletes it
            declared = spec.specs[name].type.typename
            if value.typename != declared:
                raise FunctionError(
                    f"state '{name}' of '{target}' holds a value of type '{value.typename}' but "
                    f"its ValueSpec declares '{declared}': migrate or delete the old value "
                    "before changing a ValueSpec's type"
                )
            return value.value

        storage = Storage(ftype, spec.specs, read)
        context = Context(target, caller, storage)
        message = Message(target, TypedValue(env.typename, env.value))
        started = time.perf_counter()
        try:
            result = spec.fun(context, message)
            if spec.is_async or asyncio.iscoroutine(result):
                self._loop.run_until_complete(result)
            self._metrics.latency(ftype).observe(time.perf_counter() - started)
            mutations = storage_mutations(storage)
            egress = [self.resolve_egress(e) for e in context.egress]
            self.check_sizes(
                [v for v in mutations.values() if v is not None],
                [out.typed_value.value for out in context.outgoing],
                egress,
                [
                    op.message.typed_value.value
                    for op in context.delayed
                    if isinstance(op, DelayedMessage)
                ],
            )
            timer_ops = (
                self.plan_timers(
                    context.delayed,
                    target,
                    partition,
                    getattr(record, "origin", None) or f"{partition}-{record.offset()}",
                    now_ms,
                )
                if context.delayed
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
                typename=env.typename,
                value=env.value,
            )
            return

        ttl = self._ttl.get(ftype) or self._ttl_plan(spec)
        writes = [
            (name, spec.specs[name].type.typename, value, ttl.ttl_ms.get(name))
            for name, value in mutations.items()
        ]
        refresh = [(n, ttl.ttl_ms[n]) for n in ttl.after_call if n not in mutations]
        outgoing = [(out.target, out.typed_value) for out in context.outgoing]
        self.apply(partition, target, writes, refresh, outgoing, egress, timer_ops, now_ms)

    def check_sizes(
        self,
        state_values: list[bytes],
        argument_values: list[bytes | None],
        egress: list[_Egress],
        delayed_values: Sequence[bytes | None] = (),
    ) -> None:
        """Refuse (before anything applies) an effect too large to produce."""
        limit = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES
        sizes = [
            *(len(v) for v in state_values),
            *(len(v) for v in argument_values if v),
            *(len(v) for v in delayed_values if v),
            *(len(value) + len(key or b"") for _, key, value in egress),
        ]
        if sizes and max(sizes) > limit:
            raise Rejected(
                dl.RECORD_TOO_LARGE,
                f"an effect of {max(sizes)} bytes exceeds the {limit}-byte limit of a record "
                "(state value, message, delayed message or egress record)",
            )

    def apply(
        self,
        partition: int,
        target: Address,
        writes: list[tuple[str, str, bytes | None, int | None]],
        refresh: list[tuple[str, int]],
        outgoing: list[tuple[Address, TypedValue]],
        egress: list[_Egress],
        timer_ops: list[tuple[bytes, bytes | None, int]] | tuple[()],
        now_ms: int,
    ) -> None:
        """Apply one invocation's (or one remote batch's) checked effects to the transaction:
        state writes ``(name, typename, value or None to delete, ttl ms or None)``, TTL refreshes
        of unwritten ``expire_after_call`` states, messages (caller = ``target``), egress and
        timer writes."""
        ftype, fid = target.typename, target.id
        self.invocations += 1
        counts = self._metrics.invocations
        counts[ftype] = counts.get(ftype, 0) + 1
        store = self._store
        for name, typename, value, ttl_ms in writes:
            key = encode_changelog_key(ftype, fid, name)
            if value is None:
                store.put(partition, key, None)
            else:
                expire_at = now_ms + ttl_ms if ttl_ms else None
                store.put(
                    partition, key, encode_changelog_value(typename, value, expire_at), expire_at
                )
        for name, ttl_ms in refresh:
            self._refresh(partition, encode_changelog_key(ftype, fid, name), now_ms, ttl_ms)
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
                partition_for_id(dest.id, self._partitions),
            )
        for topic, key, value in egress:
            produce(topic, value, key)

    def _ttl_plan(self, spec: FunctionSpec) -> _TtlPlan:
        plan = _TtlPlan(
            {n: v.duration for n, v in spec.specs.items() if v.duration},
            tuple(n for n, v in spec.specs.items() if v.after_call),
        )
        self._ttl[spec.typename] = plan
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
