"""Whether a consumer group's coordinator answers, asked with a real request to it: what the
worker checks to tell a producer stuck in ``send_offsets_to_transaction`` from a coordinator
still moving. Also the group's KIP-848 session timeout, and how long a static member the group
refused keeps trying to join (:class:`Rejoin`), and the member epoch a transaction's offsets
carry (:func:`member_epoch`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

log = logging.getLogger(__name__)


class OffsetsClient(Protocol):
    def committed(
        self, partitions: list[TopicPartition], timeout: float = ...
    ) -> list[TopicPartition]: ...


def coordinator_answers(
    consumer: OffsetsClient, partitions: Sequence[TopicPartition], timeout_s: float
) -> bool:
    """True when the group's coordinator answered, within ``timeout_s``, the committed offset of
    the first of ``partitions`` asked by the group's own ``consumer`` (an OffsetFetch request):
    it has loaded the group and serves its offsets, so a transactional offset commit for it
    would be answered too.

    The answer must come from the coordinator itself. Metadata did not do: the surviving brokers
    name a killed broker as the leader of the group's ``__consumer_offsets`` partition until the
    controller fences it (``broker.session.timeout.ms``), and a check that believed them gave
    producers up seconds before the coordinator moved (chaos seed 1205). librdkafka sends the
    request to the coordinator the consumer found (it looks it up again when a heartbeat fails)
    and retries a coordinator that is loading or not the coordinator until the timeout.

    Not an answer (False): no reply in time (the coordinator is down, frozen or moving), or
    the partition's offset is unstable, a transactional commit to it pending (librdkafka asks
    for stable offsets under read_committed and retries an unstable one until the timeout, then
    reports it on the partition): a producer's request then reached the coordinator, so its
    call is not stuck looking for it. The worker then waits as if the coordinator were still
    moving.
    """
    ask = [TopicPartition(tp.topic, tp.partition) for tp in partitions[:1]]
    if not ask:
        return False
    try:
        answer = consumer.committed(ask, timeout=timeout_s)
    except KafkaException as e:
        log.info("the group coordinator did not answer timeout_s=%.1f error=%s", timeout_s, e)
        return False
    for tp in answer:
        if tp.error is not None and tp.error.code() != KafkaError.NO_ERROR:
            log.info(
                "the group coordinator answered with an error topic=%s partition=%d error=%s",
                tp.topic,
                tp.partition,
                tp.error,
            )
            return False
    return True


_METADATA_MAGIC = b"CGMDv2:"


def member_epoch(metadata: bytes) -> int | None:
    """The generation (classic protocols) or member epoch (KIP-848) in the group metadata that
    ``Consumer.consumer_group_metadata()`` returns and a transaction's offsets carry: librdkafka's
    serialization, its magic then the epoch as a big-endian int32. None for another format."""
    if not isinstance(metadata, bytes) or not metadata.startswith(_METADATA_MAGIC):
        return None
    at = len(_METADATA_MAGIC)
    raw = metadata[at : at + 4]
    return int.from_bytes(raw, "big", signed=True) if len(raw) == 4 else None


# Kafka's group.consumer.session.timeout.ms: assumed when the cluster does not say
DEFAULT_SESSION_TIMEOUT_S = 45.0
# A refused static member tries again this often: a restart after kill -9 is admitted within
# this of the killed member's release, and the group coordinator answers each try at once.
REJOIN_RETRY_S = 1.0
# ... for this many of the group's session timeouts after the first refusal: a killed member
# is released within one, so a refusal that outlasts them all comes from a running member.
REJOIN_SESSIONS = 3


def group_session_timeout_s(admin: Any, group: str, timeout_s: float = 5.0) -> float | None:
    """The session timeout of KIP-848 ``group`` (its config consumer.session.timeout.ms, else
    the brokers' group.consumer.session.timeout.ms: DescribeConfigs answers either), or None
    when the cluster does not say (no permission to describe the group, a broker older than
    4.0)."""
    resource = ConfigResource(ResourceType.GROUP, group)
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout_s)
        return int(entries["consumer.session.timeout.ms"].value) / 1000
    except Exception as e:  # noqa: BLE001 - any failure: the caller assumes Kafka's default
        log.info("the group's session timeout is unknown group=%s error=%s", group, e)
        return None


class Rejoin:
    """A static member that the group refused because another member still holds its
    group.instance.id (KIP-848 UNRELEASED_INSTANCE_ID): when it tries to join again, and when
    it gives up. A member killed without leaving holds the id until the group's session times
    out, so the newcomer tries every ``retry_s`` for ``sessions`` session timeouts, counted from
    the first refusal; after that the holder is a running member."""

    def __init__(
        self,
        session_timeout_s: float,
        retry_s: float = REJOIN_RETRY_S,
        sessions: int = REJOIN_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session_timeout_s = session_timeout_s
        self.sessions = sessions
        self.give_up_after_s = sessions * session_timeout_s
        self.refusals = 0
        self.retry_s = retry_s
        self._clock = clock
        self._sleep = sleep
        self._started = clock()

    @property
    def waited_s(self) -> float:
        """Since the first refusal."""
        return self._clock() - self._started

    def wait(self, stopping: Callable[[], bool], beat: Callable[[], object]) -> bool:
        """Count one refusal and wait before the next try, calling ``beat`` (the watchdog's)
        at least every 0.1 s and returning early once ``stopping()``; False, without waiting,
        once the tries are over (give up)."""
        self.refusals += 1
        until = self._started + self.give_up_after_s
        if self._clock() + self.retry_s > until:
            return False
        wake = self._clock() + self.retry_s
        while not stopping():
            beat()
            left = wake - self._clock()
            if left <= 0:
                break
            self._sleep(min(0.1, left))
        return True
