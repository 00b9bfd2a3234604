"""Read partitions of a topic up to their end, with read_committed, correctly.

The end of a partition is its end offset sampled when the read starts, and a partition is done
when the consumer's *position* reaches it. Every transaction leaves a commit or abort marker
that takes an offset, so the last record of a partition is usually not at ``end - 1``; the
position moves past markers and aborted records (docs/architecture.md, Restore). Records
committed after the sample are not read: the result is a consistent cut of each partition.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from kstatefun.errors import KStatefunError, TopicError


class PartitionReader:
    """Reads ranges of one topic's partitions through a consumer it assigns manually."""

    def __init__(self, consumer: Consumer, topic: str, timeout: float) -> None:
        self._consumer = consumer
        self.topic = topic
        self._timeout = timeout

    def bounds(self, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
        """``{partition: (first offset, end offset)}``, asked of the broker now."""
        out: dict[int, tuple[int, int]] = {}
        for p in partitions:
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=self._timeout, cached=False
                )
            except KafkaException as e:
                raise KStatefunError(
                    f"cannot read the offsets of topic '{self.topic}' partition {p}: {e.args[0]}"
                ) from e
            out[p] = (low, high)
        return out

    def read_to_end(self, partitions: Iterable[int]) -> tuple[list[Message], dict[int, int]]:
        """Every committed record of ``partitions``, and the end offset each was read to."""
        bounds = self.bounds(partitions)
        records = list(self.read({p: b for p, b in bounds.items()}))
        return records, {p: high for p, (_, high) in bounds.items()}

    def read(self, ranges: Mapping[int, tuple[int, int]]) -> Iterator[Message]:
        """Committed records of partition p with ``start <= offset < end`` for each
        ``p: (start, end)``, in offset order per partition.

        Raises when a partition makes no progress for ``timeout`` seconds: a transaction left
        open by a crashed worker holds read_committed readers back until it times out.
        """
        ends = {p: end for p, (start, end) in ranges.items() if end > start}
        if not ends:
            return
        consumer = self._consumer
        consumer.assign([TopicPartition(self.topic, p, max(ranges[p][0], 0)) for p in sorted(ends)])
        pending = dict(ends)
        progress: dict[int, int] = {}
        last_progress = time.monotonic()
        try:
            while pending:
                for msg in consumer.consume(1000, timeout=0.1):
                    err = msg.error()
                    if err is not None:
                        self._raise_if_fatal(err)
                        continue
                    p, offset = msg.partition(), msg.offset()
                    if p is not None and offset is not None and offset < ends.get(p, -1):
                        yield msg
                positions = consumer.position([TopicPartition(self.topic, p) for p in pending])
                done = []
                for tp in positions:
                    if tp.offset >= pending[tp.partition]:
                        done.append(tp)
                    elif tp.offset > progress.get(tp.partition, -1):
                        progress[tp.partition] = tp.offset
                        last_progress = time.monotonic()
                if done:
                    consumer.incremental_unassign(done)
                    for tp in done:
                        del pending[tp.partition]
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > self._timeout:
                    stuck = ", ".join(
                        f"partition {p} at offset {progress.get(p, ranges[p][0])} of {end}"
                        for p, end in sorted(pending.items())
                    )
                    raise KStatefunError(
                        f"reading topic '{self.topic}' made no progress for "
                        f"{self._timeout:.0f}s ({stuck}): a transaction left open by a stopped "
                        "worker holds read_committed readers back until it times out; try again "
                        "later, or pass a longer --timeout"
                    )
        finally:
            consumer.unassign()

    def follow(self, positions: Mapping[int, int]) -> Iterator[Message]:
        """Committed records from ``positions`` on, forever (until the caller stops)."""
        consumer = self._consumer
        consumer.assign([TopicPartition(self.topic, p, o) for p, o in sorted(positions.items())])
        try:
            while True:
                for msg in consumer.consume(1000, timeout=0.5):
                    err = msg.error()
                    if err is not None:
                        self._raise_if_fatal(err)
                        continue
                    yield msg
        finally:
            consumer.unassign()

    def _raise_if_fatal(self, err: KafkaError) -> None:
        if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION):
            raise TopicError(f"topic '{self.topic}' or one of its partitions is gone: {err}")
        if err.fatal():
            raise KStatefunError(f"reading topic '{self.topic}' failed: {err}")
