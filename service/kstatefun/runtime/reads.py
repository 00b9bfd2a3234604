"""Records a read took that a rebalance callback of the same read made stale.

librdkafka serves rebalance callbacks inside ``poll`` and ``consume``, so a callback can run in
the middle of the worker's read (runtime/worker.py ``_read``: a poll for the first record, then
a batch), after the read has already taken records that the callback makes stale:

- records of partitions it revoked (or lost): their next owner starts at the offsets committed
  on revoke, which do not cover them, so processed here as well they came out twice (seen in
  the 3-node failover test, a worker joining as another's transaction coordinator was
  killed; confluent-kafka-python #1013 describes the same for ``consume``);
- records of partitions it repositioned: a commit that failed in the callback aborts and seeks
  the partitions back to the transaction's start, and a partition revoked and assigned again
  starts at its committed offset, so the consumer delivers those records again.

librdkafka discards what it fetched before such a change when it serves it (its version
barriers), but not what the read took already. So the callbacks and the transaction's rewind
tell the ``ReadGuard`` what they changed, and the read drops every record of those partitions
and seeks each one still assigned back to where it restarts: records taken after the change
are read again, none is skipped. A read in which no callback ran costs one test of an empty
dict.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import (
    OFFSET_INVALID,
    OFFSET_STORED,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (topic, partition)


class ReadGuard:
    """What the callbacks of the current read changed, per partition: None (no longer
    assigned) or the offset the partition restarts at."""

    def __init__(self) -> None:
        self._changed: dict[Key, int | None] = {}

    def start(self) -> None:
        """A read begins: what changed before it cannot be in it."""
        if self._changed:
            self._changed.clear()

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """``partitions`` were revoked or lost."""
        for tp in partitions:
            self._changed[(tp.topic, tp.partition)] = None

    def restarted(self, positions: Iterable[TopicPartition]) -> None:
        """The consumer was sought to ``positions`` (a rewind)."""
        for tp in positions:
            self._changed[(tp.topic, tp.partition)] = tp.offset

    def assigned(self, start: Iterable[TopicPartition]) -> None:
        """Partitions were assigned at ``start``: those revoked earlier in this read restart
        there (the others were not this worker's when the read took its records)."""
        changed = self._changed
        for tp in start:
            key = (tp.topic, tp.partition)
            if key in changed:
                # left unset, librdkafka starts at the committed offset (worker._start_offsets)
                changed[key] = OFFSET_STORED if tp.offset == OFFSET_INVALID else tp.offset

    def fresh(self, consumer: Consumer, batch: list[Message]) -> list[Message]:
        """``batch`` without the records of the partitions changed during the read; those
        still assigned are sought back to where they restart."""
        changed = self._changed
        if not changed:
            return batch
        keep = []
        dropped: dict[Key, int] = {}
        for msg in batch:
            key = (msg.topic(), msg.partition())
            if key in changed:
                dropped[key] = dropped.get(key, 0) + 1
            else:
                keep.append(msg)
        if not dropped:
            return keep
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for key, count in sorted(dropped.items()):
            topic, partition = key
            offset = changed[key]
            if offset is None or key not in assigned:
                log.info(
                    "dropped records read before their partition was revoked (its next owner "
                    "reads them) topic=%s partition=%d records=%d",
                    topic,
                    partition,
                    count,
                )
                continue
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException:
                # the records are dropped: going on would skip them
                log.error(
                    "could not seek a partition back after a rebalance callback repositioned "
                    "it during a read; stopping, so that none of its records is skipped "
                    "topic=%s partition=%d offset=%d",
                    topic,
                    partition,
                    offset,
                )
                raise
            log.info(
                "dropped records read before their partition was repositioned; reading them "
                "again topic=%s partition=%d records=%d offset=%d",
                topic,
                partition,
                count,
                offset,
            )
        return keep
