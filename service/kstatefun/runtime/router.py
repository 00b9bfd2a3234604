"""Ingress routing, and the one place that decides whether an invocation this worker makes
(an ingress record's, a fired delayed message's) runs here at once or goes through
<app>-invocations.

A record on an ingress topic becomes one invocation per listed target.

The record key (UTF-8) is the target id; the value passes through unchanged, typed with the
topic's ``valueType``; there is no caller. Invocations go to <app>-invocations, partition
hash(id) mod P with the application's partitioner (kafka/partitioner.py), inside the open
transaction.

Shortcut: when the record sits in ingress partition p, its id's invocations partition is also
p, and this worker owns both (``direct`` holds (topic, p)), the invocation is dispatched at
once in the same transaction instead of taking a round trip through <app>-invocations. The
worker enables it for an ingress partition only after it has consumed everything that was in
invocations partition p when it got the assignment (runtime/worker.py), so an earlier record
of the same id still waiting in the topic can never be overtaken: per-id order holds.

A fired delayed message (``fire``) runs at once when its target's invocations partition is one
this worker owns and has restored (``owned``): delayed messages have no order to keep.

A record takes the shortcut only if its producer placed it as the application's partitioner
would, onto a topic of P partitions. The router samples the first records of each ingress
topic and warns, once per topic, when their placement shows that it does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import Message

from kstatefun.config.module import KafkaIngress
from kstatefun.errors import DecodeError
from kstatefun.kafka.clients import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES
from kstatefun.kafka.partitioner import (
    PLACEMENT_SAMPLE,
    id_partitioner,
    placement_agrees,
    placement_verdict,
)
from kstatefun.model import Address, TypedValue
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.commit import Transaction
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.runtime.dispatcher import Invoke, LocalInvocation, make_local
from kstatefun.sdk.messages import Message as SdkMessage  # Message: a Kafka record here
from kstatefun.wire.avro import encode_invocation
from kstatefun.wire.protobuf import decode_string_wrapper

log = logging.getLogger(__name__)

STRING_TYPENAME = "io.statefun.types/string"

# the most an ingress record's key and value may take: the rest of a record is the envelope's
_ROOM = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES


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


class PlacementCheck:
    """Tells from an ingress topic's first keyed records which partitioner placed them, and
    warns once when that is not the application's: those records can never go direct."""

    __slots__ = ("topic", "count", "partitions", "partitioner", "seen", "crc32", "murmur2")

    def __init__(self, topic: str, count: int, partitions: int, partitioner: str) -> None:
        self.topic = topic
        self.count = count  # the ingress topic's partitions
        self.partitions = partitions  # P
        self.partitioner = partitioner
        self.seen = self.crc32 = self.murmur2 = 0

    def add(self, key: bytes, partition: int) -> bool:
        """Count one record; True once the sample is complete (then it has been judged)."""
        crc, mm = placement_agrees(key, partition, self.count)
        self.seen += 1
        self.crc32 += crc
        self.murmur2 += mm
        if self.seen < PLACEMENT_SAMPLE:
            return False
        self.judge()
        return True

    def observed(self) -> str:
        return placement_verdict(self.seen, self.crc32, self.murmur2, self.count)

    def judge(self) -> None:
        observed = self.observed()
        placement = (
            f"of its first {self.seen} keyed records, {self.crc32} sit where crc32 puts their "
            f"key and {self.murmur2} where murmur2 does, over its {self.count} partitions"
        )
        if observed == "neither":
            log.warning(
                "ingress topic=%s is not partitioned by key with crc32 or murmur2 (%s): its "
                "records take the hop through <app>-invocations. For the direct path, produce "
                "keyed by the target id with the default partitioner",
                self.topic,
                placement,
            )
        elif observed not in ("unknown", self.partitioner):
            log.warning(
                "ingress topic=%s is partitioned with %s (%s) but this application's "
                "partitioner is %s: its records take the hop through <app>-invocations. The "
                "partitioner setting (KSTATEFUN_PARTITIONER) is fixed when an application is "
                "created: a new --app-id with partitioner=%s would dispatch them directly",
                self.topic,
                observed,
                placement,
                self.partitioner,
                observed,
            )
        elif self.count != self.partitions and self.count > 1:
            log.warning(
                "ingress topic=%s has %d partitions but the application's internal topics "
                "have %d: most of its records take the hop through <app>-invocations. A new "
                "--app-id with --partitions %d would dispatch them directly",
                self.topic,
                self.count,
                self.partitions,
                self.count,
            )


def process_records(
    batch: Iterable[Message],
    invocations_topic: str,
    dispatch: Callable[[Message], None],
    route: Callable[[Message], None],
    records_in: dict[str, int],
) -> None:
    """The worker's per-record step (Worker._process, and bench/hotpath.py measures this very
    function): count each consumed record in ``records_in``, then hand a record of
    <app>-invocations to ``dispatch`` (Dispatcher.dispatch) and an ingress record to ``route``
    (IngressRouter.route)."""
    for msg in batch:
        topic = msg.topic()
        records_in[topic] = records_in.get(topic, 0) + 1
        if topic == invocations_topic:
            dispatch(msg)
        else:
            route(msg)


class IngressRouter:
    __slots__ = (
        "_routes",
        "_txn",
        "_dlq",
        "_topic",
        "_partition_of",
        "_metrics",
        "_checks",
        "direct",
        "owned",
        "invoke",
    )

    def __init__(
        self,
        ingresses: Iterable[KafkaIngress],
        invocations_topic: str,
        partitions: int,
        partitioner: str,
        txn: Transaction,
        dead_letters: DeadLetters,
        metrics: WorkerMetrics | None = None,
        ingress_counts: Mapping[str, int] | None = None,
        invoke: Invoke | None = None,
        owned: set[int] | None = None,
    ) -> None:
        """``invoke`` runs an invocation here (Dispatcher.invoke): the direct path; ``owned``:
        the set to keep the owned invocations partitions in (shared with runtime/local.py)."""
        # topic -> (value type, targets, whether a value can be told wrong up front)
        self._routes: dict[str, tuple[str, tuple[str, ...], bool]] = {}
        for ingress in ingresses:
            for t in ingress.topics:
                checked = t.value_type == STRING_TYPENAME  # see ingress_value_problem
                self._routes[t.topic] = (t.value_type, tuple(t.targets), checked)
        self._topic = invocations_topic
        self._partition_of = id_partitioner(partitions, partitioner)
        self._metrics = metrics if metrics is not None else WorkerMetrics()
        # ingress topic -> its placement check while it samples (ingress_counts: partitions)
        self._checks = {
            t: PlacementCheck(t, n, partitions, partitioner)
            for t, n in (ingress_counts or {}).items()
        }
        self._txn = txn
        self._dlq = dead_letters
        self.direct: set[tuple[str, int]] = set()  # (ingress topic, partition): see above
        # invocations partitions owned and restored: see above
        self.owned: set[int] = set() if owned is None else owned
        self.invoke = invoke

    @property
    def topics(self) -> list[str]:
        return list(self._routes)

    def route(self, msg: Message) -> None:
        key = msg.key()
        if not key:
            if key is None:
                self._dlq.write(
                    msg, dl.NULL_KEY, "ingress record has no key; the key is the target id"
                )
            else:
                self._dlq.write(
                    msg, dl.INVALID_KEY, "ingress key is empty; the key is the target id"
                )
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
        if len(value) + len(key) > _ROOM:
            self._dlq.write(
                msg,
                dl.RECORD_TOO_LARGE,
                f"ingress record of {len(value) + len(key)} bytes leaves no room for the "
                f"invocation envelope (limit {_ROOM} bytes)",
            )
            return
        topic = msg.topic()
        typename, targets, checked = self._routes[topic]
        if checked:
            problem = ingress_value_problem(topic, typename, value)
            if problem is not None:
                self._dlq.write(msg, dl.UNDECODABLE_VALUE, problem)
                return
        partition = self._partition_of(id)
        placed = msg.partition()
        checks = self._checks
        if checks and topic in checks and checks[topic].add(key, placed):
            del checks[topic]
        if partition == placed and (topic, partition) in self.direct:
            invoke = self.invoke
            assert invoke is not None
            self._metrics.ingress_direct += 1
            offset = msg.offset()
            argument = TypedValue(typename, value)
            if len(targets) == 1:  # the usual case: no enumerate
                source = make_local((topic, partition, offset, key, value, None, 0))
                invoke(source, SdkMessage(Address(targets[0], id), argument), None)
                return
            for i, target in enumerate(targets):
                source = make_local((topic, partition, offset, key, value, None, i))
                invoke(source, SdkMessage(Address(target, id), argument), None)
            return
        self._metrics.ingress_routed += 1
        for target in targets:
            envelope = encode_invocation(target, id, None, None, typename, value)
            self._txn.produce(self._topic, envelope, key, partition)

    def fire(
        self,
        source: LocalInvocation,
        target: Address,
        caller: Address,
        typename: str,
        value: bytes | None,
    ) -> None:
        """Deliver a fired delayed message from ``caller`` to ``target`` in the open
        transaction; ``source`` names the firing, in the target id's partition."""
        partition = source.partition()
        if partition in self.owned:
            invoke = self.invoke
            assert invoke is not None
            invoke(source, SdkMessage(target, TypedValue(typename, value)), caller)
            return
        envelope = encode_invocation(
            target.typename, target.id, caller.typename, caller.id, typename, value
        )
        self._txn.produce(self._topic, envelope, source.key(), partition)
