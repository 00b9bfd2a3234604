"""Internal topic names and their required settings: the one place for both.

``ensure_internal_topics`` creates what is missing and refuses to run against an existing
topic whose settings would break a guarantee (wrong partition count, changelog not compacted).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from kstatefun.errors import TopicError
from kstatefun.kafka.errors import is_retriable, watermark_offsets
from kstatefun.kafka.partitioner import (
    DEFAULT_PARTITIONER,
    LEGACY_PARTITIONER,
    PARTITIONERS,
    PLACEMENT_SAMPLE,
    placement_agrees,
    placement_verdict,
)

log = logging.getLogger(__name__)

# A new application without ingress topics of its own (only HTTP playground ingresses).
DEFAULT_PARTITIONS: Final = 8


@dataclass(frozen=True, slots=True)
class InternalTopics:
    """Names of an application's internal topics, all prefixed by the app id."""

    app_id: str

    @property
    def invocations(self) -> str:
        return f"{self.app_id}-invocations"

    @property
    def changelog(self) -> str:
        return f"{self.app_id}-changelog"

    @property
    def timers(self) -> str:
        return f"{self.app_id}-timers"

    @property
    def dead_letters(self) -> str:
        return f"{self.app_id}-dead-letters"

    @property
    def meta(self) -> str:
        """What the application decided once and for all (its partitioner)."""
        return f"{self.app_id}-meta"

    @property
    def state(self) -> tuple[str, str, str]:
        """The co-partitioned topics: partition p of each belongs to the same worker."""
        return (self.invocations, self.changelog, self.timers)

    def playground(self, topic: str) -> str:
        """Where the playground egress keeps the records of its topic ``topic``."""
        return f"{self.app_id}-playground-{topic}"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int | None  # None: any count is fine for an existing topic
    create_partitions: int
    config: dict[str, str] = field(default_factory=dict)
    must_match: tuple[str, ...] = ()  # config keys an existing topic must have equal
    why: str = ""  # what breaks when must_match does not hold
    replication_factor: int = -1  # -1: the cluster's default.replication.factor


def internal_topic_specs(
    topics: InternalTopics,
    partitions: int,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
) -> list[TopicSpec]:
    """The internal topics and why each setting matters.

    invocations/changelog/timers are co-partitioned: partition p of each belongs to the same
    worker. The changelog and timers must be compacted (they are state) and never expire by
    time. Replication factor and min.insync.replicas are the cluster's defaults unless given.
    """
    specs = [
        TopicSpec(
            topics.invocations,
            partitions,
            partitions,
            {"cleanup.policy": "delete"},
            must_match=("cleanup.policy",),
            why="compaction would drop pending invocations that share a target id",
        ),
        TopicSpec(
            topics.changelog,
            partitions,
            partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
            must_match=("cleanup.policy",),
            why="it holds the application's state",
        ),
        TopicSpec(
            topics.timers,
            partitions,
            partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
            must_match=("cleanup.policy",),
            why="it holds pending delayed messages",
        ),
        TopicSpec(
            topics.dead_letters,
            None,
            1,
            {"cleanup.policy": "delete"},
            must_match=("cleanup.policy",),
            why="a compacted topic rejects the dead letters of records without a key",
        ),
    ]
    isr = {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
    rf = -1 if replication_factor is None else replication_factor
    return [replace(s, config={**s.config, **isr}, replication_factor=rf) for s in specs]


def meta_topic_spec(topics: InternalTopics, replication_factor: int | None = None) -> TopicSpec:
    """<app>-meta: one partition whose first record of a key is the application's decision.
    It never expires, so the decision outlives every record placed by it."""
    return TopicSpec(
        topics.meta,
        1,
        1,
        {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
        must_match=("cleanup.policy", "retention.ms"),
        why="it records the application's partitioner for as long as its state lives",
        replication_factor=-1 if replication_factor is None else replication_factor,
    )


_PARTITIONER_KEY: Final = b"partitioner"


def read_partitioner(consumer: Consumer, topic: str, timeout: float = 30.0) -> str | None:
    """The partitioner recorded in the meta topic ``topic``: its first record (the first
    writer wins a race), or None when nothing is recorded. Closes ``consumer``."""
    try:
        tp = TopicPartition(topic, 0)
        low, high = watermark_offsets(consumer, tp, timeout)
        if high <= low:
            return None
        consumer.assign([TopicPartition(topic, 0, low)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return None
                raise KafkaException(err)
            offset = msg.offset() or 0
            if msg.key() == _PARTITIONER_KEY:
                return _parse_partitioner(topic, offset, msg.value())
            if offset >= high - 1:
                return None
        raise TopicError(f"could not read '{topic}' within {timeout:.0f} s")
    finally:
        consumer.close()


def _parse_partitioner(topic: str, offset: int, value: bytes | None) -> str:
    try:
        name = json.loads(value or b"")["partitioner"]
    except (ValueError, KeyError, TypeError) as e:
        raise TopicError(
            f"topic '{topic}' offset {offset} is not a partitioner record ({e}): it is "
            "kstatefun's, do not write to it"
        ) from e
    if name not in PARTITIONERS:
        raise TopicError(
            f"topic '{topic}' records partitioner {name!r}, which this version does not know "
            f"(it knows {', '.join(PARTITIONERS)}): run a kstatefun version that does"
        )
    return str(name)


def sample_placement(
    consumer: Consumer, counts: dict[str, int], timeout: float = 5.0
) -> tuple[str, str] | None:
    """The partitioner that placed the records already on the ingress topics (``counts``: each
    topic's partitions), told from up to PLACEMENT_SAMPLE keyed records of each, and what it
    was told from; None when they tell nothing (empty topics, single partitions, topics that
    disagree). Closes ``consumer``."""
    try:
        assign, ends = [], {}
        for topic, count in counts.items():
            if count < 2:
                continue
            for p in range(count):
                low, high = watermark_offsets(consumer, TopicPartition(topic, p), timeout)
                if high > low:
                    assign.append(TopicPartition(topic, p, low))
                    ends[(topic, p)] = high - 1
        if not assign:
            return None
        consumer.assign(assign)
        tally = {t: [0, 0, 0] for t in counts}  # seen, crc32 agrees, murmur2 agrees
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error():
                    continue
                topic, partition, key = str(msg.topic()), msg.partition() or 0, msg.key()
                if (msg.offset() or 0) >= ends.get((topic, partition), -1):
                    ends.pop((topic, partition), None)
                t = tally[topic]
                if key and t[0] < PLACEMENT_SAMPLE:
                    crc, mm = placement_agrees(key, partition, counts[topic])
                    t[0], t[1], t[2] = t[0] + 1, t[1] + crc, t[2] + mm
            if all(tally[t][0] >= PLACEMENT_SAMPLE for t, _ in ends):
                break
    finally:
        consumer.close()
    verdicts = {
        t: placement_verdict(seen, crc, mm, counts[t]) for t, (seen, crc, mm) in tally.items()
    }
    found = {v for v in verdicts.values() if v in PARTITIONERS}
    if len(found) != 1:
        return None
    (name,) = found
    told = sorted(t for t, v in verdicts.items() if v == name)
    return name, f"the placement of {sum(tally[t][0] for t in told)} records on {', '.join(told)}"


def record_partitioner(
    topics: InternalTopics,
    given: str | None,
    existing_app: Callable[[], bool],
    consumer: Callable[[], Consumer],
    producer: Callable[[], Producer],
    timeout: float = 30.0,
    sample: Callable[[], tuple[str, str] | None] = lambda: None,
) -> tuple[str, str]:
    """The application's partitioner, and what decided it. The meta topic must exist.

    The first worker of an application records it before any state topic exists: ``given``
    (the partitioner setting), else the one that placed the records already on its ingress
    topics (``sample``), else DEFAULT_PARTITIONER. An application whose state topics
    hold records but no record of the partitioner placed them with LEGACY_PARTITIONER, which
    is then recorded. Every later worker and restart reads it back, so all of them place every id
    alike; a ``given`` that differs from the record is refused, since it would move ids away
    from their state.
    """
    recorded = read_partitioner(consumer(), topics.meta, timeout)
    proposal: str
    source = f"recorded in {topics.meta}"
    if recorded is None:
        if existing_app():
            proposal, source = LEGACY_PARTITIONER, "the state topics' (older than the record)"
        elif given is not None:
            proposal, source = given, "the partitioner setting"
        else:
            proposal, source = sample() or (DEFAULT_PARTITIONER, "the default")
        p = producer()
        errors: list[KafkaError] = []
        p.produce(
            topics.meta,
            json.dumps({"partitioner": proposal}).encode(),
            _PARTITIONER_KEY,
            partition=0,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
        if p.flush(timeout) or errors:
            raise TopicError(
                f"could not record the partitioner in '{topics.meta}': "
                f"{errors[0] if errors else 'not delivered in time'}"
            )
        recorded = read_partitioner(consumer(), topics.meta, timeout)
        if recorded != proposal:  # another worker recorded first: its choice holds
            source = f"recorded in {topics.meta}"
        assert recorded is not None
    if given is not None and given != recorded:
        raise TopicError(
            f"partitioner={given} (KSTATEFUN_PARTITIONER) but application '{topics.app_id}' "
            f"places its ids with {recorded} ({source}): changing it would separate ids from "
            f"their state. Unset partitioner or set it to {recorded}, or use a new --app-id"
        )
    return recorded, source


def app_partitioner(
    admin: AdminClient,
    topics: InternalTopics,
    given: str | None,
    consumer: Callable[[], Consumer],
    producer: Callable[[], Producer],
    replication_factor: int | None = None,
    timeout: float = 30.0,
    ingress_topics: Iterable[str] = (),
) -> tuple[str, str, dict[str, int]]:
    """Create <app>-meta if missing, then ``record_partitioner`` (which samples the ingress
    topics for a new application); returns its answer and the ingress topics' partition
    counts. Runs before the state topics are created, so that state topics that hold records
    but no record of the partitioner are an application's from before the record."""
    metadata = admin.list_topics(timeout=timeout)
    counts = {
        t: len(metadata.topics[t].partitions) for t in set(ingress_topics) if t in metadata.topics
    }
    ensure_internal_topics(admin, [meta_topic_spec(topics, replication_factor)], timeout)
    name, source = record_partitioner(
        topics,
        given,
        lambda: _has_written(consumer(), metadata, topics.state, timeout),
        consumer,
        producer,
        timeout,
        lambda: sample_placement(consumer(), counts),
    )
    return name, source, counts


def _has_written(consumer: Consumer, metadata: Any, names: Iterable[str], timeout: float) -> bool:
    """Whether any partition of the topics ``names`` ever held a record: state topics created
    empty beforehand (operations.md) place nothing yet. Closes ``consumer``."""
    try:
        for name in names:
            t = metadata.topics.get(name)
            if t is None or t.error is not None:
                continue
            for p in t.partitions:
                _, high = watermark_offsets(consumer, TopicPartition(name, p), timeout)
                if high > 0:
                    return True
        return False
    finally:
        consumer.close()


def replication_problems(
    replicas: int, min_isr: int | None, brokers: int, wanted: int | None
) -> list[tuple[str, str]]:
    """What is wrong with an internal topic's replication, each with its consequence: fewer
    replicas than ``wanted`` (the replication_factor setting), a single replica on a cluster of
    several brokers, or no more replicas than min.insync.replicas (one broker down stops every
    commit)."""
    problems = []
    if wanted is not None and replicas < wanted:
        problems.append(
            (
                f"has replication factor {replicas} but replication_factor is {wanted}",
                "losing a broker loses more of this topic than the application was set up for",
            )
        )
    elif replicas == 1 and brokers > 1:
        problems.append(
            (
                f"has replication factor 1 on a cluster of {brokers} brokers",
                "losing the broker that holds a partition loses that partition's records",
            )
        )
    if min_isr is not None and 1 < replicas <= min_isr:
        problems.append(
            (
                f"has replication factor {replicas} and min.insync.replicas {min_isr}",
                "one broker down makes every transaction that writes to it fail",
            )
        )
    return problems


def choose_partitions(
    admin: AdminClient,
    topics: InternalTopics,
    given: int | None,
    ingress_topics: Iterable[str],
    timeout: float = 30.0,
) -> tuple[int, str]:
    """The partition count P of the application's internal topics, and what decided it.

    An application that exists keeps its count: an unset ``given`` takes it from the internal
    topics (a ``given`` that differs is refused by ``ensure_internal_topics``). A new
    application takes ``given``, else the largest partition count of its ingress topics, as
    Kafka Streams sizes its internal topics from their sources: an ingress record keyed by the
    target id then sits in the partition its invocations go to, so the worker owning both can
    dispatch it without the round trip through <app>-invocations (runtime/router.py). Without
    ingress topics: DEFAULT_PARTITIONS.
    """
    metadata = admin.list_topics(timeout=timeout)
    for name in (topics.invocations, topics.changelog, topics.timers):
        t = metadata.topics.get(name)
        if t is not None and t.error is None and t.partitions:
            if given is None:
                return len(t.partitions), f"existing topic {name}"
            return given, "--partitions"
    if given is not None:
        return given, "--partitions"
    counts = {
        name: len(metadata.topics[name].partitions)
        for name in set(ingress_topics)
        if name in metadata.topics and metadata.topics[name].partitions
    }
    if not counts:
        return DEFAULT_PARTITIONS, "the default (no ingress topics)"
    largest = max(counts.values())
    source = f"ingress topic {min(n for n, c in counts.items() if c == largest)}"
    return largest, source


def playground_topic_specs(topics: InternalTopics, names: Iterable[str]) -> list[TopicSpec]:
    """One single-partition topic per playground egress topic: the HTTP egress hands its
    records out in order and remembers how far it got as one committed offset."""
    return [
        TopicSpec(
            topics.playground(name),
            1,
            1,
            {"cleanup.policy": "delete"},
            must_match=("cleanup.policy",),
            why="compaction would drop records of the same key",
        )
        for name in names
    ]


def ensure_internal_topics(
    admin: AdminClient,
    specs: Iterable[TopicSpec],
    timeout: float = 30.0,
    replication_factor: int | None = None,
) -> None:
    """Create the missing topics, refuse wrong settings, warn about weak replication
    (``replication_factor`` is the setting, None when the cluster's default applies)."""
    specs = list(specs)
    metadata = admin.list_topics(timeout=timeout)
    missing = [s for s in specs if s.name not in metadata.topics]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.create_partitions, s.replication_factor, config=s.config)
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                log.info("created topic topic=%s", name)
            except KafkaException as e:
                if is_retriable(e):  # e.g. the controller is moving: the caller may retry
                    raise
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a racing worker won
                    raise TopicError(f"could not create internal topic '{name}': {e}") from e
        metadata = _await_metadata(admin, [s.name for s in missing], timeout)
    for s in specs:
        configs = _check_existing(admin, s, metadata, timeout)
        replicas = min(len(p.replicas) for p in metadata.topics[s.name].partitions.values())
        isr = configs.get("min.insync.replicas")
        min_isr = int(isr.value) if isr is not None and isr.value is not None else None
        for problem, why in replication_problems(
            replicas, min_isr, len(metadata.brokers), replication_factor
        ):
            log.warning(
                "internal topic %s %s: %s (kstatefun topics check shows the fix)",
                s.name,
                problem,
                why,
            )


def _await_metadata(admin: AdminClient, names: list[str], timeout: float):  # type: ignore[no-untyped-def]
    """Metadata once every topic in ``names`` shows up with all its partitions' leaders;
    a just-created topic can be missing from the next metadata response."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout)
        ready = all(
            n in metadata.topics
            and metadata.topics[n].error is None
            and all(p.leader >= 0 for p in metadata.topics[n].partitions.values())
            for n in names
        )
        if ready or time.monotonic() > deadline:
            return metadata
        time.sleep(0.1)


def _check_existing(admin: AdminClient, spec: TopicSpec, metadata, timeout: float):  # type: ignore[no-untyped-def]
    """The topic's configuration, once it is known to keep the guarantees."""
    topic = metadata.topics.get(spec.name)
    if topic is None:
        raise TopicError(f"internal topic '{spec.name}' does not exist after creating it")
    actual = len(topic.partitions)
    if spec.partitions is not None and actual != spec.partitions:
        raise TopicError(
            f"topic '{spec.name}' has {actual} partitions but this application is configured "
            f"with partitions={spec.partitions}: internal topics must be co-partitioned. Leave "
            f"--partitions (KSTATEFUN_PARTITIONS) unset or set it to {actual}, or use a new "
            "--app-id"
        )
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    configs = admin.describe_configs([resource], request_timeout=timeout)[resource].result()
    for key in spec.must_match:
        have = configs[key].value if key in configs else None
        if have != spec.config[key]:
            raise TopicError(
                f"topic '{spec.name}' has {key}={have} but needs {key}={spec.config[key]} "
                f"({spec.why}). Fix it with kafka-configs --alter "
                f"--entity-type topics --entity-name {spec.name} --add-config "
                f"{key}={spec.config[key]}, or use a new --app-id"
            )
    return configs


def require_topics_exist(
    admin: AdminClient, names: Iterable[str], what: str, timeout: float = 30.0
) -> None:
    metadata = admin.list_topics(timeout=timeout)
    absent = sorted(n for n in set(names) if n not in metadata.topics)
    if absent:
        raise TopicError(
            f"{what} topic(s) {', '.join(absent)} do not exist on the cluster: create them "
            "first (kstatefun creates only its internal topics)"
        )
