"""Restore: rebuild a partition's store from its changelog partition, one batch at a time.

Done is decided by the consumer's *position* reaching the end offset sampled at the start.
Comparing the last record's offset with ``high watermark - 1`` would hang whenever a
transaction marker is the last entry in the log; the position moves past markers. The end is
the high watermark, asked by a read_uncommitted consumer (kafka/clients.py says why), so a
transaction left open holds the restore at it until the transaction ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from kstatefun.kafka.errors import watermark_offsets
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.state.partitioned import Rows

log = logging.getLogger(__name__)

# Records applied per step, one step per round of the worker's loop, between which the live
# partitions are served: 5,000 made rounds of 25-60 ms while a partition of 5,000,000 rows was
# restored beside them (single runs of bench/restoreload.py's part alone). The rate stayed:
# make bench's big state part restored 2,000,000 rows at 243,900 / 243,300 records/s in the
# two runs of 778f6fd, 243,600 / 242,700 with 5,000 in those of 5c84c72 (other runs, so not
# a ratio within one)
RESTORE_BATCH = 2_000


# A restore that has read nothing for this long logs a warning (it never gives up: the loop
# keeps serving the other partitions, and the watchdog judges the loop's own progress)
STALL_WARN_S = 60.0


class ChangelogRestorer:
    """Restores partitions of one topic, a batch per ``step`` (so that the worker's loop keeps
    serving its other partitions meanwhile); ``restore`` runs the steps to the end."""

    def __init__(
        self,
        consumer_factory: Callable[[], Consumer],
        topic: str,
        metrics: WorkerMetrics | None = None,
        batch: int = RESTORE_BATCH,
        on_progress: Callable[[], None] | None = None,
        ends_factory: Callable[[], Consumer] | None = None,
    ) -> None:
        self._metrics = metrics or WorkerMetrics()
        self._factory = consumer_factory
        self._consumer: Consumer | None = None
        # asks the partitions' ends (their high watermarks); default: the reading consumer
        self._ends_factory = ends_factory
        self._ends_consumer: Consumer | None = None
        self.topic = topic
        self._batch = batch
        self._on_progress = on_progress or (lambda: None)  # e.g. the watchdog's beat
        self.last_rate = 0.0  # records/s of the last restore, for logs and benchmarks
        self.last_read: dict[int, int] = {}  # records read per partition by the last restore
        self._stores: dict[int, Rows] = {}
        self._ends: dict[int, int] = {}  # partitions still reading -> end offset sampled
        self._changes: dict[int, dict[bytes, bytes | None]] | None = None
        self._read = self._total = 0
        self._started = self._last_log = self._last_read_at = 0.0
        # a partition's local state was found past the changelog's end after the settle wait:
        # the topic was recreated, so its other partitions are not waited for again (a stale
        # state directory would otherwise cost settle_s per partition, one after another)
        self._recreated = False

    @property
    def active(self) -> set[int]:
        """The partitions still being read."""
        return set(self._ends)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._ends_consumer is not None:
            self._ends_consumer.close()
            self._ends_consumer = None

    def restore(
        self,
        stores: dict[int, Rows],
        starts: dict[int, int] | None = None,
        changes: dict[int, dict[bytes, bytes | None]] | None = None,
    ) -> dict[int, int]:
        """``start``, then ``step`` until every partition is done; returns the position reached
        per partition."""
        positions = self.start(stores, starts, changes)
        while self._ends:
            positions.update(self.step(0.2))
        return positions

    def start(
        self,
        stores: dict[int, Rows],
        starts: dict[int, int] | None = None,
        changes: dict[int, dict[bytes, bytes | None]] | None = None,
    ) -> dict[int, int]:
        """Begin bringing each ``stores[p]`` up to date with partition p of the topic, reading
        from ``starts[p]`` (the position the rows are complete up to, see
        state/partitioned.py; default: the beginning). Records read are also put in
        ``changes[p]`` when given. Returns the partitions that need no read, with their
        position; ``step`` reads the others."""
        self.cancel()
        return self.add(stores, starts, changes)

    def add(
        self,
        stores: dict[int, Rows],
        starts: dict[int, int] | None = None,
        changes: dict[int, dict[bytes, bytes | None]] | None = None,
    ) -> dict[int, int]:
        """``start`` for more partitions, while those already being read go on (an incremental
        assignment during a restore); ``changes`` is the dict given to ``start``, if any."""
        positions: dict[int, int] = {}
        if not stores:
            return positions
        if not self._ends:
            self.last_read = {}  # a new restore
        for p in stores:
            self.last_read.pop(p, None)  # counted anew if read
        if self._consumer is None:
            self._consumer = self._factory()
        if self._ends_consumer is None and self._ends_factory is not None:
            self._ends_consumer = self._ends_factory()
        starts = starts or {}
        assignment = []
        firsts: dict[int, int] = {}  # the first offset to read per partition
        reading: set[int] = set()
        for p, store in stores.items():
            start, low, high = self._bounds(p, store, starts.get(p, 0), changes)
            firsts[p] = max(start, low)
            # A committed record is followed by its transaction's marker, so the one offset
            # after a known position (the marker of the store's own last commit) cannot hold
            # anybody's committed record: a kept partition that nobody else wrote costs no read.
            slack = 1 if start > 0 else 0
            if high - firsts[p] > slack:
                self._ends[p] = high
                self._stores[p] = store
                reading.add(p)
                assignment.append(
                    TopicPartition(self.topic, p, start if start > low else OFFSET_BEGINNING)
                )
            else:
                positions[p] = firsts[p]
        if reading:
            self._begin_reading(assignment, {p: firsts[p] for p in reading}, changes)
        return positions

    def remove(self, partitions: Iterable[int]) -> None:
        """Stop reading ``partitions`` (revoked while restoring); the others go on. What was
        read stays in their rows, which have no position (state/recovery.py)."""
        gone = [p for p in partitions if p in self._ends]
        if not gone:
            return
        assert self._consumer is not None
        self._consumer.incremental_unassign([TopicPartition(self.topic, p) for p in gone])
        for p in gone:
            del self._ends[p]
            self._stores.pop(p)

    def _bounds(
        self,
        p: int,
        store: Rows,
        start: int,
        changes: dict[int, dict[bytes, bytes | None]] | None,
    ) -> tuple[int, int, int]:
        """Where partition p's read starts, and the topic's low and high watermarks."""
        ends = self._ends_consumer or self._consumer
        assert ends is not None
        low, high = watermarks(
            ends,
            TopicPartition(self.topic, p),
            at_least=start,
            settle_s=0.0 if self._recreated else SETTLE_S,
            on_wait=self._on_progress,
        )
        if start and not low <= start <= high:
            self._recreated = True
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
        return start, low, high

    def _begin_reading(
        self,
        assignment: list[TopicPartition],
        starts: dict[int, int],
        changes: dict[int, dict[bytes, bytes | None]] | None,
    ) -> None:
        """Read ``assignment`` too (starting from ``starts``), beside what is being read."""
        assert self._consumer is not None
        self._consumer.incremental_assign(assignment)
        now = time.monotonic()
        if len(starts) == len(self._ends):  # nothing else was being read: a new restore
            self._started = self._last_log = self._last_read_at = now
            self._read = self._total = 0
        self._changes = changes
        self._total += sum(self._ends[p] - starts[p] for p in starts)
        for p in starts:
            self.last_read[p] = 0
            self._metrics.restore_total[(self.topic, p)] = self._ends[p] - starts[p]
            self._metrics.restore_read[(self.topic, p)] = 0

    def step(self, timeout_s: float = 0.0, limit: int | None = None) -> dict[int, int]:
        """Read one batch of the restorer's size, or of ``limit`` records if fewer,
        waiting at most ``timeout_s`` for it; returns the partitions it completed, with the
        position reached."""
        if not self._ends:
            return {}
        assert self._consumer is not None
        self._on_progress()
        batch = self._batch if limit is None else min(limit, self._batch)
        read = self._apply(self._consumer.consume(batch, timeout=timeout_s))
        done = {
            tp.partition: tp.offset
            for tp in self._consumer.position([TopicPartition(self.topic, p) for p in self._ends])
            if tp.offset >= self._ends[tp.partition]
        }
        if done:
            self._consumer.incremental_unassign([TopicPartition(self.topic, p) for p in done])
            for p in done:
                del self._ends[p]
                self._stores.pop(p)
        for p, n in self.last_read.items():
            self._metrics.restore_read[(self.topic, p)] = n
        self._log_progress(read)
        return done

    def _apply(self, batch: list) -> int:  # type: ignore[type-arg]
        """Write a batch of records into their partitions' rows; returns how many."""
        stores, changes, per_partition = self._stores, self._changes, self.last_read
        read = 0
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                continue
            p = msg.partition()
            store = stores.get(p)
            if store is None:
                continue  # completed in an earlier step (a record past its end)
            key, value = msg.key(), msg.value()
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
            if changes is not None:
                changes.setdefault(p, {})[key] = value
            per_partition[p] += 1
            read += 1
        return read

    def _log_progress(self, read: int) -> None:
        now = time.monotonic()
        self._read += read
        if read:
            self._last_read_at = now
        if not self._ends:
            elapsed = max(now - self._started, 1e-9)
            self.last_rate = self._read / elapsed
            log.info(
                "restored topic=%s partitions=%s records=%d seconds=%.2f rate=%.0f/s",
                self.topic,
                _plist(self.last_read),
                self._read,
                elapsed,
                self.last_rate,
            )
            self._consumer.unassign()  # type: ignore[union-attr]
            return
        if now - self._last_log < 1.0:
            return
        self._last_log = now
        rate = self._read / max(now - self._started, 1e-9)
        eta = max(self._total - self._read, 0) / rate if rate else float("inf")
        log.info(
            "restoring topic=%s partitions=%s records=%d of about %d (%.0f%%) rate=%.0f/s "
            "eta=%.0fs",
            self.topic,
            _plist(self._ends),
            self._read,
            self._total,
            100 * self._read / max(self._total, 1),
            rate,
            eta,
        )
        stalled_s = now - self._last_read_at
        if stalled_s >= STALL_WARN_S:
            log.warning(
                "restore of topic=%s partitions=%s has read nothing for %.0f s; is the broker "
                "healthy? (the worker's other partitions go on meanwhile)",
                self.topic,
                _plist(self._ends),
                stalled_s,
            )
            self._last_read_at = now  # once per STALL_WARN_S

    def cancel(self) -> None:
        """Stop reading (the partitions were revoked): what was read stays in their rows,
        which have no position yet (state/recovery.py restores them anew)."""
        if self._ends and self._consumer is not None:
            self._consumer.unassign()
        self._ends.clear()
        self._stores.clear()
        self._changes = None


# How long a high watermark below this worker's own position is asked again (watermarks).
SETTLE_S = 30.0


def watermarks(
    consumer: Consumer,
    tp: TopicPartition,
    at_least: int = 0,
    settle_s: float = SETTLE_S,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[], None] = lambda: None,
) -> tuple[int, int]:
    """Low and high watermark, retried while leadership settles (a just-created topic, a
    broker restart): kafka/errors.py decides which errors are transient.

    A high watermark below ``at_least`` (a position this worker's own committed records
    reached) is taken for a leader that has not caught up yet: a newly elected leader learns
    the high watermark from its followers' next fetches. It is asked again for up to
    ``settle_s`` before the caller may conclude that the topic was recreated; ``on_wait`` is
    called at each try (e.g. the watchdog's beat: the wait is bounded)."""
    deadline = time.monotonic() + settle_s
    while True:
        low, high = watermark_offsets(consumer, tp)
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
        on_wait()
        sleep(0.25)


def _plist(partitions: Iterable[int]) -> str:
    return ",".join(map(str, sorted(partitions)))
