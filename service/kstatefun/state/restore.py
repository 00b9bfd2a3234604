"""Restore: rebuild a partition's store from its changelog partition.

Done is decided by the consumer's *position* reaching the end offset sampled at the start.
Comparing the last record's offset with ``high watermark - 1`` would hang whenever a
transaction marker is the last entry in the log; the position moves past markers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from kstatefun.kafka.errors import call_with_retry
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.state.partitioned import Rows

log = logging.getLogger(__name__)


class ChangelogRestorer:
    def __init__(
        self,
        consumer_factory: Callable[[], Consumer],
        topic: str,
        metrics: WorkerMetrics | None = None,
        timeout_s: float = 240.0,
        batch: int = 10_000,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._metrics = metrics or WorkerMetrics()
        self._factory = consumer_factory
        self._consumer: Consumer | None = None
        self.topic = topic
        self._timeout_s = timeout_s
        self._batch = batch
        self._on_progress = on_progress or (lambda: None)  # e.g. the watchdog's beat
        self.last_rate = 0.0  # records/s of the last restore, for logs and benchmarks
        self.last_read: dict[int, int] = {}  # records read per partition by the last restore

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def restore(
        self,
        stores: dict[int, Rows],
        starts: dict[int, int] | None = None,
        changes: dict[int, dict[bytes, bytes | None]] | None = None,
    ) -> dict[int, int]:
        """Bring each ``stores[p]`` up to date with changelog partition p, reading from
        ``starts[p]`` (the position the rows are complete up to, see state/partitioned.py;
        default: the beginning). Records read are also put in ``changes[p]`` when given.
        Returns the position reached per partition."""
        positions: dict[int, int] = {}
        self.last_read = {}
        if not stores:
            return positions
        if self._consumer is None:
            self._consumer = self._factory()
        consumer = self._consumer
        starts = starts or {}
        ends: dict[int, int] = {}
        assignment = []
        for p, store in stores.items():
            start = starts.get(p, 0)
            low, high = watermarks(consumer, TopicPartition(self.topic, p), at_least=start)
            if start and not low <= start <= high:
                log.warning(
                    "local state of partition=%d is at offset %d, outside the changelog's "
                    "%d..%d (topic recreated?): restoring from the beginning",
                    p,
                    start,
                    low,
                    high,
                )
                if changes is not None:
                    changes[p] = dict.fromkeys(store)  # make the snapshot forget it all
                store.clear()
                start = 0
            positions[p] = max(start, low)
            # A committed record is followed by its transaction's marker, so the one offset
            # after a known position (the marker of the store's own last commit) cannot hold
            # anybody's committed record: a kept partition that nobody else wrote costs no read.
            slack = 1 if start > 0 else 0
            if high - positions[p] > slack:
                ends[p] = high
                assignment.append(
                    TopicPartition(self.topic, p, start if start > low else OFFSET_BEGINNING)
                )
        if not ends:
            return positions
        started = time.monotonic()
        consumer.assign(assignment)
        total = sum(ends[p] - positions[p] for p in ends)
        read = 0
        last_log = started
        per_partition = self.last_read = {p: 0 for p in ends}
        progress = self._metrics.restore_read
        for p in ends:
            self._metrics.restore_total[(self.topic, p)] = ends[p] - positions[p]
            progress[(self.topic, p)] = 0
        try:
            while ends:
                self._on_progress()
                for msg in consumer.consume(self._batch, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.fatal():
                            raise KafkaException(err)
                        continue
                    p = msg.partition()
                    store = stores[p]
                    key, value = msg.key(), msg.value()
                    if value is None:
                        store.pop(key, None)
                    else:
                        store[key] = value
                    if changes is not None:
                        changes.setdefault(p, {})[key] = value
                    per_partition[p] += 1
                    read += 1
                done = [
                    tp
                    for tp in consumer.position([TopicPartition(self.topic, p) for p in ends])
                    if tp.offset >= ends[tp.partition]
                ]
                if done:
                    consumer.incremental_unassign(done)
                    for tp in done:
                        positions[tp.partition] = tp.offset
                        del ends[tp.partition]
                for p, n in per_partition.items():
                    progress[(self.topic, p)] = n
                now = time.monotonic()
                if now - started > self._timeout_s:
                    raise TimeoutError(
                        f"restoring {self.topic} partitions {sorted(ends)} took longer than "
                        f"{self._timeout_s:.0f}s; is the broker healthy?"
                    )
                if now - last_log >= 1.0 and ends:
                    last_log = now
                    rate = read / (now - started)
                    eta = max(total - read, 0) / rate if rate else float("inf")
                    log.info(
                        "restoring topic=%s partitions=%s records=%d of about %d (%.0f%%) "
                        "rate=%.0f/s eta=%.0fs",
                        self.topic,
                        _plist(ends),
                        read,
                        total,
                        100 * read / max(total, 1),
                        rate,
                        eta,
                    )
        finally:
            consumer.unassign()
        elapsed = max(time.monotonic() - started, 1e-9)
        self.last_rate = read / elapsed
        log.info(
            "restored topic=%s partitions=%s records=%d seconds=%.2f rate=%.0f/s",
            self.topic,
            _plist(stores),
            read,
            elapsed,
            self.last_rate,
        )
        return positions


def watermarks(
    consumer: Consumer,
    tp: TopicPartition,
    at_least: int = 0,
    settle_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int]:
    """Low and high watermark, retried while leadership settles (a just-created topic, a
    broker restart): kafka/errors.py decides which errors are transient.

    A high watermark below ``at_least`` (a position this worker's own committed records
    reached) is taken for a leader that has not caught up yet: a newly elected leader learns
    the high watermark from its followers' next fetches. It is asked again for up to
    ``settle_s`` before the caller may conclude that the topic was recreated."""
    deadline = time.monotonic() + settle_s
    while True:
        low, high = call_with_retry(
            lambda: consumer.get_watermark_offsets(tp, timeout=10, cached=False),
            f"reading the offsets of {tp.topic} partition {tp.partition}",
            lambda: consumer.list_topics(tp.topic, timeout=5),
        )
        if high >= at_least or time.monotonic() >= deadline:
            return low, high
        log.info(
            "waiting for the end of topic=%s partition=%d to reach this store's position=%d "
            "(it is %d: a leader that has not caught up yet?)",
            tp.topic,
            tp.partition,
            at_least,
            high,
        )
        sleep(0.25)


def _plist(partitions: Iterable[int]) -> str:
    return ",".join(map(str, sorted(partitions)))
