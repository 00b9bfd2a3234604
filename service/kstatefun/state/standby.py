"""Standby replicas (``standby_replicas: N``): a worker keeps warm copies of changelog partitions
it does not own, so that when one of them becomes its own after a failover, the restore
(state/recovery.py) replays only what the copy has not seen yet.

Where the copies are: every member computes the same placement from the group's description
(``standby_partitions``): for each invocations partition, the N members that rank first by a
hash of (member, partition), leaving out its owner (rendezvous hashing: a member joining or
leaving moves only the copies it held or ranks first for). The assignor (librdkafka's eager
range) does not know about standbys, so with 3 or more workers a partition may move to a
worker without its copy; with N = workers - 1 every worker holds every partition it does not
own.

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

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka.admin import AdminClient

from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.state.rocksdb import RocksStore

log = logging.getLogger(__name__)

BATCH = 5_000  # records per step: the loop's other work waits while a batch is written
REFRESH_S = 30.0  # the placement is asked again this often (and at every assignment)
RETRY_S = 0.5  # ... and this soon while the group is rebalancing
# An idle copy's position is written again this often once it has read everything, so that
# its age (state/rocksdb.py MAX_AGE_S) says when it was last known complete.
KEEP_FRESH_S = 600.0


def _rank(member: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{member}/{partition}".encode(), digest_size=8).digest()


def standby_partitions(owners: Mapping[str, set[int]], me: str, replicas: int) -> set[int]:
    """The partitions ``me`` keeps a copy of, given each member's owned partitions
    (``owners``, every member of the group, also those that own nothing): for each owned
    partition, the ``replicas`` members other than its owner that rank first by
    ``_rank(member, partition)``. Never a partition ``me`` owns; every member computes the
    same."""
    mine: set[int] = set()
    if me not in owners:
        return mine
    for owner, partitions in owners.items():
        others = [m for m in owners if m != owner]
        for p in partitions:
            if me in sorted(others, key=lambda m: _rank(m, p))[:replicas]:
                mine.add(p)
    return mine - owners[me]


class Standby:
    """The worker's standby copies: ``on_assignment`` at every assignment, ``step`` from the
    loop (never blocking on the group; a batch of records at most), ``close`` at the end."""

    def __init__(
        self,
        replicas: int,
        consumer_factory: Callable[[], KafkaConsumer],
        admin: AdminClient,
        group_id: str,
        member_id: Callable[[], str | None],
        topics: tuple[str, str],
        metrics: WorkerMetrics,
    ) -> None:
        self._replicas = replicas
        self._factory = consumer_factory
        self._consumer: KafkaConsumer | None = None
        self._admin = admin
        self._group = group_id
        self._member_id = member_id
        self._invocations, self.topic = topics  # placement by the first, copies of the second
        self._metrics = metrics
        self._disk: RocksStore | None = None
        self._owned: set[int] = set()
        self._tailing: dict[int, int] = {}  # partition -> position last written
        self._written_at: dict[int, float] = {}
        self._caught_up: set[int] = set()
        self._asked: Future | None = None  # type: ignore[type-arg]
        self._told: str | None = None  # the last problem logged (each told once in a row)
        self._ask_at = float("inf")  # nothing to place before the first assignment

    @property
    def partitions(self) -> set[int]:
        """The partitions being tailed."""
        return set(self._tailing)

    def on_assignment(self, owned: set[int], disk: RocksStore | None) -> None:
        """The worker now owns ``owned``: stop tailing those (their positions stay in the
        database, where the restore continues from), and ask for the new placement. ``disk``:
        the worker's database (None: no copies)."""
        self._disk = disk
        self._owned = set(owned)
        taken = sorted(p for p in self._tailing if p in owned)
        for p in taken:
            log.info(
                "standby partition=%d taken over by this worker at offset=%d",
                p,
                self._tailing[p],
            )
        self._stop(taken)
        self._asked = None  # an answer about the previous generation
        self._ask_at = 0.0

    def step(self) -> bool:
        """Follow the placement and copy one batch; True if more records are waiting."""
        if self._disk is None:
            return False
        now = time.monotonic()
        try:
            if self._asked is not None and self._asked.done():
                self._placed(self._asked)
            elif self._asked is None and now >= self._ask_at:
                self._asked = self._admin.describe_consumer_groups(
                    [self._group], request_timeout=10
                )[self._group]
            if not self._tailing:
                return False
            return self._copy(now)
        except KafkaException as e:  # the copy stays consistent; tried again next step
            self._trouble(logging.WARNING, "standby copy paused: %s", e)
            self._ask_at = now + RETRY_S
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

    # --- placement ----------------------------------------------------------------------------

    def _placed(self, asked: Future) -> None:  # type: ignore[type-arg]
        self._asked = None
        self._ask_at = time.monotonic() + RETRY_S
        try:
            group = asked.result()
        except KafkaException as e:
            self._trouble(logging.INFO, "standby placement not known yet: %s", e)
            return
        me = self._member_id()
        owners: dict[str, set[int]] = {}
        key_of_me = None
        for member in group.members:
            key = member.group_instance_id or member.member_id
            owners[key] = {
                tp.partition
                for tp in member.assignment.topic_partitions
                if tp.topic == self._invocations
            }
            if member.member_id == me:
                key_of_me = key
        # the group still rebalancing, or its description older than this worker's assignment
        if (
            group.state != ConsumerGroupState.STABLE
            or key_of_me is None
            or owners[key_of_me] != self._owned
        ):
            return
        self._told = None
        self._ask_at = time.monotonic() + REFRESH_S
        wanted = standby_partitions(owners, key_of_me, self._replicas) - self._owned
        stop = sorted(set(self._tailing) - wanted)
        start = sorted(wanted - set(self._tailing))
        if not stop and not start:
            return
        self._stop(stop)
        self._start(start)
        log.info(
            "standby partitions=%s started=%s stopped=%s members=%d replicas=%d",
            sorted(self._tailing),
            start,
            stop,
            len(owners),
            self._replicas,
        )

    def _start(self, partitions: list[int]) -> None:
        assert self._disk is not None
        if not partitions:
            return
        if self._consumer is None:
            self._consumer = self._factory()
        assign = []
        for p in partitions:
            position = self._disk.trusted_position(p)
            tp = TopicPartition(self.topic, p)
            low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            if position and not low <= position <= high:
                # topic recreated, or a leader that has not caught up: the takeover's restore
                # decides (state/restore.py); asked again at the next placement
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
            tp.offset = position if position else OFFSET_BEGINNING
            assign.append(tp)
            self._tailing[p] = position
            self._written_at[p] = time.monotonic()
            self._metrics.standby_lag[(self.topic, p)] = max(0, high - position)
        if assign:
            self._consumer.incremental_assign(assign)

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

    # --- copying ------------------------------------------------------------------------------

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
        self._stop(lost)
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
