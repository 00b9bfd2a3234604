"""Internal topic names and their required settings: the one place for both.

``ensure_internal_topics`` creates what is missing and refuses to run against an existing
topic whose settings would break a guarantee (wrong partition count, changelog not compacted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from kstatefun.errors import TopicError

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


def internal_topic_specs(topics: InternalTopics, partitions: int) -> list[TopicSpec]:
    """The internal topics and why each setting matters.

    invocations/changelog/timers are co-partitioned: partition p of each belongs to the same
    worker. The changelog and timers must be compacted (they are state) and never expire by
    time.
    """
    return [
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
    admin: AdminClient, specs: Iterable[TopicSpec], timeout: float = 30.0
) -> None:
    specs = list(specs)
    metadata = admin.list_topics(timeout=timeout)
    missing = [s for s in specs if s.name not in metadata.topics]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.create_partitions, 1, config=s.config) for s in missing],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                log.info("created topic topic=%s", name)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a racing worker won
                    raise TopicError(f"could not create internal topic '{name}': {e}") from e
        metadata = _await_metadata(admin, [s.name for s in missing], timeout)
    for s in specs:
        _check_existing(admin, s, metadata, timeout)


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


def _check_existing(admin: AdminClient, spec: TopicSpec, metadata, timeout: float) -> None:  # type: ignore[no-untyped-def]
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
    if not spec.must_match:
        return
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
