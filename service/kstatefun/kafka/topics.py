"""Internal topic names and their required settings: the one place for both.

``ensure_internal_topics`` creates what is missing and refuses to run against an existing
topic whose settings would break a guarantee (wrong partition count, changelog not compacted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from kstatefun.errors import TopicError

log = logging.getLogger(__name__)


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
            f"with partitions={spec.partitions}: internal topics must be co-partitioned. Set "
            f"--partitions {actual} (KSTATEFUN_PARTITIONS), or use a new --app-id"
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
