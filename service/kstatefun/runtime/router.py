"""Ingress routing: a record on an ingress topic becomes one invocation per listed target.

The record key (UTF-8) is the target id; the value passes through unchanged, typed with the
topic's ``valueType``; there is no caller. Invocations go to <app>-invocations, partition
murmur2(id) mod P, inside the open transaction.

Shortcut: when the record sits in ingress partition p, its id's invocations partition is also
p, and this worker owns both (``direct`` holds (topic, p)), the invocation is dispatched at
once in the same transaction instead of taking a round trip through <app>-invocations. The
worker enables it for an ingress partition only after it has consumed everything that was in
invocations partition p when it got the assignment (runtime/worker.py), so an earlier record
of the same id still waiting in the topic can never be overtaken: per-id order holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Message

from kstatefun.config.module import KafkaIngress
from kstatefun.errors import DecodeError
from kstatefun.kafka.clients import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES
from kstatefun.kafka.partitioner import partition_for_id
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.commit import Transaction
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.runtime.dispatcher import Invoke, LocalInvocation
from kstatefun.wire.avro import encode_invocation
from kstatefun.wire.protobuf import decode_string_wrapper

STRING_TYPENAME = "io.statefun.types/string"


def ingress_value_problem(topic: str, typename: str, value: bytes) -> str | None:
    """Why an ingress value cannot be of its topic's ``valueType``, when that can be told
    up front: a value on an ``io.statefun.types/string`` topic must be StateFun's protobuf
    StringWrapper, and plain text (a console producer's) is the usual mistake."""
    if typename != STRING_TYPENAME:
        return None
    try:
        decode_string_wrapper(value)
        return None
    except DecodeError:
        return (
            f"ingress topic '{topic}' has valueType {STRING_TYPENAME}, but this value is not "
            "one (StateFun's string type is a protobuf StringWrapper, not plain text). For "
            "plain UTF-8 text give the topic a raw type of its own, e.g. 'valueType: "
            "example/Text', and read it with message.raw_value().decode()"
        )


class IngressRouter:
    __slots__ = ("_routes", "_txn", "_dlq", "_topic", "_partitions", "direct", "invoke")

    def __init__(
        self,
        ingresses: Iterable[KafkaIngress],
        invocations_topic: str,
        partitions: int,
        txn: Transaction,
        dead_letters: DeadLetters,
    ) -> None:
        self._routes: dict[str, tuple[str, tuple[str, ...]]] = {}
        for ingress in ingresses:
            for t in ingress.topics:
                self._routes[t.topic] = (t.value_type, tuple(t.targets))
        self._topic = invocations_topic
        self._partitions = partitions
        self._txn = txn
        self._dlq = dead_letters
        self.direct: set[tuple[str, int]] = set()  # (ingress topic, partition): see above
        self.invoke: Invoke | None = None  # Dispatcher.invoke, for the direct path

    @property
    def topics(self) -> list[str]:
        return list(self._routes)

    def route(self, msg: Message) -> None:
        key = msg.key()
        if key is None:
            self._dlq.write(msg, dl.NULL_KEY, "ingress record has no key; the key is the target id")
            return
        if not key:
            self._dlq.write(msg, dl.INVALID_KEY, "ingress key is empty; the key is the target id")
            return
        try:
            id = key.decode()
        except UnicodeDecodeError as e:
            self._dlq.write(msg, dl.INVALID_KEY, f"ingress key is not valid UTF-8: {e}", e)
            return
        value = msg.value()
        if value is None:
            self._dlq.write(msg, dl.NULL_VALUE, "ingress record has no value (a tombstone?)")
            return
        if len(value) + len(key) > MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES:
            self._dlq.write(
                msg,
                dl.RECORD_TOO_LARGE,
                f"ingress record of {len(value) + len(key)} bytes leaves no room for the "
                f"invocation envelope (limit {MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES} bytes)",
            )
            return
        topic = msg.topic()
        typename, targets = self._routes[topic]
        problem = ingress_value_problem(topic, typename, value)
        if problem is not None:
            self._dlq.write(msg, dl.UNDECODABLE_VALUE, problem)
            return
        partition = partition_for_id(id, self._partitions)
        if partition == msg.partition() and (topic, partition) in self.direct:
            invoke = self.invoke
            assert invoke is not None
            for i, target in enumerate(targets):
                source = LocalInvocation(topic, partition, msg.offset(), key, value, None, i)
                invoke(source, target, id, None, typename, value)
            return
        for target in targets:
            envelope = encode_invocation(target, id, None, None, typename, value)
            self._txn.produce(self._topic, envelope, key, partition)
