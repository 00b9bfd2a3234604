"""Where a consumer group's coordinator is, from the cluster's metadata: what the worker checks
to tell a producer stuck in ``send_offsets_to_transaction`` from a coordinator still moving."""

from __future__ import annotations

import logging
from typing import Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import ClusterMetadata

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"


class MetadataClient(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata: ...


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, 32-bit overflow)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(key: str, partitions: int) -> int:
    """The partition of ``__consumer_offsets`` (a group id) or ``__transaction_state`` (a
    transactional id) whose leader coordinates ``key``: the broker's
    ``Utils.abs(key.hashCode) % partitions``."""
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def coordinator_elected(client: MetadataClient, group_id: str, timeout_s: float) -> bool:
    """True when fresh metadata, asked of ``client`` within ``timeout_s``, shows a leader for
    the ``__consumer_offsets`` partition of ``group_id`` among the live brokers: the group has a
    coordinator in place (it loads the group within moments of its election).

    Metadata is asked of any broker and answered afresh, where a client's cached coordinator may
    be one whose broker has gone (librdkafka #5511). An error (no answer, no permission to
    describe ``__consumer_offsets``) is False: the worker then waits as if the coordinator were
    still moving.
    """
    try:
        md = client.list_topics(OFFSETS_TOPIC, timeout=timeout_s)
    except KafkaException as e:
        log.info("no metadata for the group coordinator group=%s error=%s", group_id, e)
        return False
    topic = md.topics.get(OFFSETS_TOPIC)
    if topic is None or topic.error is not None or not topic.partitions:
        return False
    partition = topic.partitions.get(coordinator_partition(group_id, len(topic.partitions)))
    return partition is not None and partition.leader >= 0 and partition.leader in md.brokers
