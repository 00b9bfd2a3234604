"""Dispatch: run one invocation from <app>-invocations against its function and apply its
effects to the open transaction.

Records are dispatched one at a time in partition order, so the invocations of one address run
one after another in arrival order, and messages from one sender to one receiver keep their
order (same producer, same partition). An invocation either applies all of its effects (state
writes to the overlay, messages, egress) or none of them and becomes a dead letter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka import Message as KafkaMessage

from kstatefun.config.module import KafkaEgress
from kstatefun.errors import DecodeError
from kstatefun.kafka.partitioner import partition_for_id
from kstatefun.model import Address, TypedValue
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.commit import Transaction
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.sdk.context import Context
from kstatefun.sdk.functions import StatefulFunctions
from kstatefun.sdk.messages import EgressMessage, Message
from kstatefun.sdk.storage import Storage, storage_mutations
from kstatefun.state.store import StateStore
from kstatefun.wire.avro import (
    decode_changelog_value,
    decode_invocation,
    encode_changelog_key,
    encode_changelog_value,
    encode_invocation,
)
from kstatefun.wire.protobuf import KAFKA_PRODUCER_RECORD_TYPENAME, decode_kafka_producer_record

_Egress = tuple[str, bytes | None, bytes]  # topic, key, value


class _Rejected(Exception):
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
    ) -> None:
        self._functions = functions
        self._store = store
        self._txn = txn
        self._dlq = dead_letters
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

        def read(name: str) -> bytes | None:
            raw = store.get(partition, encode_changelog_key(ftype, fid, name))
            return None if raw is None else decode_changelog_value(raw).value

        storage = Storage(ftype, spec.specs, read)
        context = Context(target, caller, storage)
        message = Message(target, TypedValue(env.typename, env.value))
        try:
            result = spec.fun(context, message)
            if spec.is_async or asyncio.iscoroutine(result):
                self._loop.run_until_complete(result)
            mutations = storage_mutations(storage)
            egress = [self._resolve_egress(e) for e in context.egress]
            if context.delayed:
                raise _Rejected(
                    dl.FUNCTION_ERROR,
                    f"function '{target}' used send_after/cancel_delayed_message, which the "
                    "runtime does not deliver yet (delayed-messages issue #4)",
                )
        except KafkaException:
            raise  # a broker problem aborts the transaction; it is not the input's fault
        except Exception as e:
            if isinstance(e, _Rejected):
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
                e,
                target=target,
                caller=caller,
                typename=env.typename,
                value=env.value,
            )
            return

        self.invocations += 1
        for name, value in mutations.items():
            key = encode_changelog_key(ftype, fid, name)
            if value is None:
                store.put(partition, key, None)
            else:
                store.put(
                    partition, key, encode_changelog_value(spec.specs[name].type.typename, value)
                )
        produce = self._txn.produce
        for out in context.outgoing:
            dest = out.target
            produce(
                self._topic,
                encode_invocation(
                    dest.typename,
                    dest.id,
                    ftype,
                    fid,
                    out.typed_value.typename,
                    out.typed_value.value,
                ),
                dest.id.encode(),
                partition_for_id(dest.id, self._partitions),
            )
        for topic, key, value in egress:
            produce(topic, value, key)

    def _resolve_egress(self, msg: EgressMessage) -> _Egress:
        if msg.typename not in self._egresses:
            declared = ", ".join(sorted(self._egresses)) or "none"
            raise _Rejected(
                dl.UNKNOWN_EGRESS,
                f"egress '{msg.typename}' is not declared in module.yaml (declared: {declared}); "
                "add an io.statefun.kafka.v1/egress document with that id",
            )
        tv = msg.typed_value
        if tv.typename != KAFKA_PRODUCER_RECORD_TYPENAME or tv.value is None:
            raise _Rejected(
                dl.UNKNOWN_EGRESS,
                f"egress '{msg.typename}' is a Kafka egress and takes records built with "
                f"kafka_egress_message(), got a value of type '{tv.typename}'",
            )
        topic, key, value = decode_kafka_producer_record(tv.value)
        if not self._topic_exists(topic):
            raise _Rejected(
                dl.UNKNOWN_EGRESS,
                f"egress '{msg.typename}' names topic '{topic}', which does not exist; create it",
            )
        return topic, None if key is None else key.encode(), value
