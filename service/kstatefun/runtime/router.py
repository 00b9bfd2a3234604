"""Ingress routing: a record on an ingress topic becomes one invocation per listed target.

The record key (UTF-8) is the target id; the value passes through unchanged, typed with the
topic's ``valueType``; there is no caller. Invocations go to <app>-invocations, partition
murmur2(id) mod P, inside the open transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Message

from kstatefun.config.module import KafkaIngress
from kstatefun.kafka.partitioner import partition_for_id
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.commit import Transaction
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.wire.avro import encode_invocation


class IngressRouter:
    __slots__ = ("_routes", "_txn", "_dlq", "_topic", "_partitions")

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
        typename, targets = self._routes[msg.topic()]
        partition = partition_for_id(id, self._partitions)
        for target in targets:
            self._txn.produce(
                self._topic,
                encode_invocation(target, id, None, None, typename, value),
                key,
                partition,
            )
