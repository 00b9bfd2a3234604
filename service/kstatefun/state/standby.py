"""Standby replicas (``standby_replicas: N``, N ≥ 1): a worker keeps warm copies of the changelog
partitions it does not own, so that when one of them becomes its own after a failover, the
restore (state/recovery.py) replays only what the copy has not seen yet.

Where the copies are: every worker copies every invocations partition it does not own, so each
partition has a copy on every other worker (workers - 1 copies, at least N whenever there are
more than N workers), and whichever worker the assignor (librdkafka's, which knows nothing
of copies) gives a failed worker's partition to has one. Placing exactly N copies needs
the group's membership, which only the Admin API's DescribeConsumerGroups offers, and that
aborts the process when a connection drops during the request (librdkafka issue 4605, seen
here in a chaos run with a broker kill); the copies need only the worker's own assignment.

How a copy is kept: a consumer of its own (read_committed, manual assignment, no group) tails
the standby partitions into the worker's RocksDB database (state/rocksdb.py), the rows and the
position of each batch in one WriteBatch, exactly as a restore leaves them. So the copy is
always the changelog's committed records up to its position, and the takeover's restore
continues from that position: nothing extra to trust. A partition becomes the worker's own only
through ``on_assignment``, which stops tailing it first (the same thread: the group consumer's
rebalance callback), so owner and standby never write the same partition.

Timers are not copied: the timer store is in memory with either state store, and a takeover
restores its timer partitions in full (pending delayed messages, usually far fewer than state).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Consumer as KafkaConsumer

from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.state.rocksdb import RocksStore

log = logging.getLogger(__name__)

BATCH = 5_000  # records per step: the loop's other work waits while a batch is written
RETRY_S = 30.0  # a copy that could not start (position outside the topic) is tried again
# An idle copy's position is written again this often once it has read everything, so that
# its age (state/rocksdb.py MAX_AGE_S) says when it was last known complete.
KEEP_FRESH_S = 600.0
# A cooperative rebalance assigns in two rounds: a joining worker is first assigned nothing,
# then, a moment later, the partitions others gave up. Copies start this long after an
# assignment, so the partitions about to become the worker's own are not copied from scratch.
SETTLE_S = 2.0


class Standby:
    """The worker's standby copies: ``on_assignment`` at every assignment (no broker call),
    ``step`` from the loop (a batch of records at most), ``close`` at the end."""

    def __init__(
        self,
        partitions: int,
        consumer_factory: Callable[[], KafkaConsumer],
        topic: str,
        metrics: WorkerMetrics,
    ) -> None:
        self._partitions = partitions  # P: every partition not owned is copied
        self._factory = consumer_factory
        self._consumer: KafkaConsumer | None = None
        self.topic = topic
        self._metrics = metrics
        self._disk: RocksStore | None = None
        self._wanted: set[int] = set()
        self._tailing: dict[int, int] = {}  # partition -> position last written
        self._written_at: dict[int, float] = {}
        self._caught_up: set[int] = set()
        self._told: str | None = None  # the last problem logged (each told once in a row)
        self._start_at = float("inf")  # nothing to copy before the first assignment

    @property
    def partitions(self) -> set[int]:
        """The partitions being tailed."""
        return set(self._tailing)

    def on_assignment(self, owned: set[int], disk: RocksStore | None, settle: bool = False) -> None:
        """The worker now owns ``owned``: stop tailing those (their positions stay in the
        database, where the restore continues from) and copy every other partition (from the
        next ``step``, or ``SETTLE_S`` later with ``settle``, for cooperative rebalancing:
        nothing here waits for a broker). ``disk``: the worker's database."""
        self._disk = disk
        self._wanted = set(range(self._partitions)) - owned if disk is not None else set()
        taken = sorted(p for p in self._tailing if p in owned)
        for p in taken:
            log.info(
                "standby partition=%d taken over by this worker at offset=%d",
                p,
                self._tailing[p],
            )
        self._stop(taken)
        self._start_at = time.monotonic() + SETTLE_S if settle else 0.0

    def step(self) -> bool:
        """Start the copies not started yet and copy one batch; True if more records are
        waiting."""
        if self._disk is None:
            return False
        now = time.monotonic()
        try:
            if now >= self._start_at:
                self._start_at = float("inf")
                before = set(self._tailing)
                self._start(sorted(self._wanted - before))
                if set(self._tailing) != before:
                    log.info(
                        "standby partitions=%s started=%s",
                        sorted(self._tailing),
                        sorted(set(self._tailing) - before),
                    )
                if self._wanted - set(self._tailing):
                    self._start_at = now + RETRY_S
            if not self._tailing:
                return False
            moving = self._copy(now)
            self._told = None
            return moving
        except KafkaException as e:  # the copy stays consistent; tried again next step
            self._trouble(logging.WARNING, "standby copy paused: %s", e)
            self._start_at = min(self._start_at, now + 1.0)
            return False

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _trouble(self, level: int, message: str, error: Exception) -> None:
        """Log a problem once, not at every step while it lasts."""
        if str(error) != self._told:
            self._told = str(error)
            log.log(level, message, error)

    # --- copies -------------------------------------------------------------------------------

    def _start(self, partitions: list[int]) -> None:
        assert self._disk is not None
        if not partitions:
            return
        if self._consumer is None:
            self._consumer = self._factory()
        started: dict[int, tuple[int, int]] = {}  # partition -> (position, end)
        for p in partitions:
            position = self._disk.trusted_position(p)
            tp = TopicPartition(self.topic, p)
            low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            if position and not low <= position <= high:
                # topic recreated, or a leader that has not caught up: the takeover's restore
                # decides (state/restore.py); tried again in RETRY_S
                log.warning(
                    "standby partition=%d of %s: the copy's position %d is outside %d..%d, "
                    "not tailing it now",
                    p,
                    self.topic,
                    position,
                    low,
                    high,
                )
                continue
            started[p] = position, high
        if not started:
            return
        self._consumer.incremental_assign(
            [
                TopicPartition(self.topic, p, position if position else OFFSET_BEGINNING)
                for p, (position, _) in started.items()
            ]
        )
        now = time.monotonic()
        for p, (position, high) in started.items():
            self._tailing[p] = position
            self._written_at[p] = now
            self._metrics.standby_lag[(self.topic, p)] = max(0, high - position)

    def _stop(self, partitions: list[int]) -> None:
        if not partitions:
            return
        if self._consumer is not None:
            self._consumer.incremental_unassign([TopicPartition(self.topic, p) for p in partitions])
        for p in partitions:
            self._tailing.pop(p, None)
            self._written_at.pop(p, None)
            self._caught_up.discard(p)
            self._metrics.standby_lag.pop((self.topic, p), None)

    def _copy(self, now: float) -> bool:
        assert self._consumer is not None and self._disk is not None
        consumer = self._consumer
        messages = consumer.consume(BATCH, timeout=0)
        changes: dict[int, dict[bytes, bytes | None]] = {}
        lost: list[int] = []
        for msg in messages:
            p, err = msg.partition(), msg.error()
            if p is None:
                continue
            if err is not None:
                if err.code() == KafkaError._AUTO_OFFSET_RESET:  # auto.offset.reset=error
                    log.warning(
                        "standby partition=%d of %s: its position is gone from the topic "
                        "(recreated?), not tailing it now: %s",
                        p,
                        self.topic,
                        err,
                    )
                    lost.append(p)
                elif err.code() != KafkaError._PARTITION_EOF:
                    log.warning("standby consumer error: %s", err)
                continue
            key = msg.key()
            if p in self._tailing and key is not None:
                changes.setdefault(p, {})[key] = msg.value()
        if lost:
            self._stop(lost)
            self._start_at = min(self._start_at, now + RETRY_S)
        tailing = self._tailing
        positions: dict[int, int] = {}
        # the next offset to read: past every record returned and every marker and aborted
        # record skipped, so the rows written below are the changelog up to it
        lag = self._metrics.standby_lag
        for tp in consumer.position([TopicPartition(self.topic, p) for p in tailing]):
            p = tp.partition
            if tp.offset < 0:
                continue
            if tp.offset != tailing[p]:
                positions[p] = tp.offset
            elif lag.get((self.topic, p)) == 0 and now - self._written_at[p] >= KEEP_FRESH_S:
                positions[p] = tp.offset  # still complete: say so again
        # rows written with an older position are harmless: a replay from it rewrites them
        if changes or positions:
            self._disk.fold(changes, positions, tailing)
            for p, offset in positions.items():
                tailing[p] = offset
                self._written_at[p] = now
        for p, position in tailing.items():
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            if high < 0:
                continue
            lag[(self.topic, p)] = behind = max(0, high - position)
            if behind == 0 and p not in self._caught_up:
                self._caught_up.add(p)
                log.info("standby partition=%d caught up offset=%d", p, position)
        return len(messages) >= BATCH
