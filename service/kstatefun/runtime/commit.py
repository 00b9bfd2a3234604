"""The commit protocol: one Kafka transaction per commit (docs/architecture.md §4).

1. ``begin``: begin a transaction when the first record of a batch is consumed (or the first
   timer fires).
2. While open: messages, egress and dead letters are produced into it at once; state and timer
   writes go to their store's overlay only. ``track`` remembers, per consumed partition, the
   first offset of the transaction (where to rewind) and the next offset (what to commit).
3. ``commit``: a. produce each overlay, coalesced, to its topic (state → changelog, timers →
   timers topic), and wait until every record of the transaction is acknowledged; b. send the
   next offsets of every consumed partition with the group's
   metadata (KIP-447 fencing) — a transaction that consumed nothing (fired delayed messages,
   TTL deletions) sends the committed offsets of the assigned partitions again, so that a
   zombie whose partitions moved on is refused here too; c. commit the transaction; d. fold
   each overlay into its store.
4. ``abort`` (any failure before 3c completes): abort the transaction, drop the overlays, seek
   every consumed partition back to the transaction's first offset.

Fenced or bumped (``_on_fenced``): librdkafka reports both as a fatal ``_FENCED`` error,
often with its own generic text. A *fence* means another process has run ``init_transactions``
with this worker's transactional id: this one stops (FencedError, exit code 3). A *bumped
epoch* means the coordinator aborted the open transaction itself and bumped the epoch, which it
does only to a transaction open for longer than transaction.timeout.ms (typically across a
coordinator failover). So a fence of a transaction open for less than that, unless the broker
said "old epoch", is a real one; otherwise the transaction is aborted and rewound as after any
failure, a new producer takes over the transactional id and the worker goes on, at most
``MAX_EPOCH_BUMPS`` times within ``EPOCH_BUMP_WINDOW_S``. Kafka Streams treats both alike
(TaskMigratedException).

A stuck producer (``_send_offsets``): librdkafka's ``send_offsets_to_transaction`` waits
without a deadline for the group coordinator (librdkafka #5456: its timeout is never checked;
#5511: a coordinator whose broker left the metadata, as a broker does in a clean restart, stays
cached and is never looked up again), so a broker failover can leave it blocked for good. The
call runs on a helper thread. Once it has blocked for ``STUCK_PROBE_AFTER_S`` (or three times
as long as such calls took lately, on a slow cluster), the group's coordinator is asked for a
committed offset by the worker's consumer (``coordinator_answers``, kafka/groups.py: a real
request, which stale metadata cannot answer); if it answers and the call is still blocked
``STUCK_CONFIRM_S`` later (or twice as long as the answer took), a working call would have
returned (librdkafka retries it every 500 ms), so the producer is stuck. Otherwise (the
coordinator is still moving) the call is waited for until the transaction's own timeout plus a
grace, after which the coordinator has aborted the transaction anyway. Either way the worker
gives the producer up (it is kept, never used again, until its call returns), aborts and
rewinds, and a new producer takes over the transactional id, which fences the old one: its
late requests carry the old epoch and are refused, and no commit was asked of it, so nothing of
it commits. At most ``MAX_ABANDONED_PRODUCERS`` given-up producers may still be blocked at
once; one more and the worker stops (exit 1) to be restarted.

The commit *policy* is ``Committer``'s: when the open transaction commits (the poll drained
what was available, or it has been open for ``commit_interval_ms``), waiting for its remote calls
first, the commit when partitions are revoked, the final commit of a clean stop, and what a
failure does (abort and rewind). The worker's loop only tells it what happened.

Under KIP-848 (rebalance_protocol consumer) a member that gave partitions up acknowledges the
revocation with its next heartbeat, and the group coordinator then bumps its member epoch; a
transaction whose offsets still carry the old epoch is refused (ILLEGAL_GENERATION) and must
abort, and the abort's replay sometimes cost a producer epoch bump as well (librdkafka:
"skipped sequence numbers"). In the scale-out benchmark the first commit after a revocation
came that early nearly every time once the kept partitions were fetched again at once
(kafka/fetchers.py). So after a revocation the policy commits only once the consumer reports a
new epoch, at most ``EPOCH_WAIT_S`` later; meanwhile the transaction stays open and takes more
records.

A refused offset commit: the coordinator also bumps the epoch of a member that only *gains*
partitions (another member left), at its next heartbeat, which no callback announces before
it happens; a commit whose offsets carry the old epoch is refused (ILLEGAL_GENERATION). The
abort then purges whatever records librdkafka had not sent yet, and the purge leaves a gap in
the partitions' sequence numbers: the next transaction fails ("skipped sequence numbers"),
librdkafka bumps the producer epoch, and its InitProducerId meets the abort still completing
(CONCURRENT_TRANSACTIONS) and waits for its fixed 500 ms retry. Both the restore-under-load and
the scale-out benchmark lost 0.55 s to this at a leave. So 3a waits for every record to be
acknowledged before 3b: an abort then purges nothing, and the replay commits at once. A
reproduction on the local broker (a script not in the tree: stale group metadata, 50 records
produced just before the offsets): without the wait 3 of 6 next transactions failed and took
0.52–0.56 s, with it none of 18 (14–45 ms). In four `make bench` runs with it (of d00c558 and
87b1d62), 5 commits were refused and none was followed by a gap. The cost: the offsets are no
longer sent while the records are in flight, at most one send_offsets_to_transaction per
commit (the call takes p50 5–7 ms back to back in the benchmark's ``floor`` part).

Invariant: the local stores equal their topics up to the last committed transaction, and
consumed offsets, state, timers, messages and egress become visible together or not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from kstatefun.errors import FencedError, KafkaUnavailableError
from kstatefun.kafka.errors import call_with_retry, kafka_error
from kstatefun.kafka.groups import member_epoch
from kstatefun.observability.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# A transaction begins no sooner than this after the previous one committed. Meanwhile the
# coordinator is still writing the last one's markers, and a transaction that registers its
# partitions then is refused with CONCURRENT_TRANSACTIONS and waits out librdkafka's retry
# backoffs. Measured with a worker at 1,000 events/s on the local broker: commits took 26 ms
# on average back to back, 10 ms with this pause (docs/performance.md).
SETTLE_S = 0.003

_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}

# More epoch bumps than this within the window: something keeps taking the transactional id
# (or every transaction outlives its timeout); stop rather than loop.
MAX_EPOCH_BUMPS = 5
EPOCH_BUMP_WINDOW_S = 600.0

_TRANSACTIONAL_ID = "this worker's transactional id"


# How long past the transaction timeout a send_offsets_to_transaction may still return before
# its producer is given up as stuck, when the group coordinator's answer did not show it earlier.
# librdkafka caps the call's own timeout at the transaction's remaining time, so a call that
# works returns before the grace begins.
STUCK_GRACE_S = 5.0
# A blocked send_offsets_to_transaction: after this long, ask the group coordinator whether it
# answers (a call normally takes milliseconds; one that follows a moved coordinator, 0.5 to 1 s),
# or after STUCK_SLOW_FACTOR times the recent calls' average on a slow cluster (0.5 to 3.7 s at
# a load average of 30 to 45 on the 2-core test machine); the question may take up to
# STUCK_PROBE_TIMEOUT_S.
STUCK_PROBE_AFTER_S = 2.0
STUCK_SLOW_FACTOR = 3.0
STUCK_PROBE_TIMEOUT_S = 2.0
# The coordinator answered: the call is stuck if it is still blocked this much later, or twice
# as long as the answer took, whichever is longer (an answer slower than half of this is timed
# again: the first may have waited for the coordinator to load the group).
STUCK_CONFIRM_S = 1.0
# Why a producer given up before the transaction timeout was (in its log line, which
# tests/chaos counts)
COORDINATOR_ANSWERED = "the group's coordinator answered the consumer"
# Given-up producers whose call has not returned yet (each keeps its threads and connections):
# one more than this and the worker stops so that a fresh process takes over. A rolling restart
# makes at most one per move of the group's coordinator, which moves only between the replicas
# of its __consumer_offsets partition (3), whatever the cluster's size, and a given-up producer
# is released once its call returns (any connection of it going up or down wakes it).
MAX_ABANDONED_PRODUCERS = 8


class OverlayStore(Protocol):
    """A local store whose open-transaction writes are produced to a topic at commit."""

    def pending(self) -> Iterator[tuple[int, dict[bytes, bytes | None]]]: ...

    def apply_overlay(self, positions: dict[int, int] | None = None) -> None: ...

    def discard_overlay(self) -> None: ...


def fenced_error(
    what: str, err: KafkaError, why: str = "it was taken over by another process"
) -> FencedError:
    """The one FencedError (the worker exits with code 3): ``what`` — this worker's
    transactional id, or its static group member — was fenced, for the reason ``why``; ``err``
    is the client's error. Every worker needs its own --instance-id, hence the fix."""
    return FencedError(
        f"{what} was fenced: {why}; if two workers run with the same --instance-id, give each "
        f"its own; stopping ({err.str()})"
    )


def epoch_bumped(err: KafkaError, open_s: float, timeout_s: float) -> bool:
    """True when a fence-class error, for a transaction open for ``open_s``, means that the
    coordinator bumped the producer's epoch after aborting the transaction (it outlived its
    ``timeout_s``) rather than that a newer producer took the transactional id. librdkafka
    folds both into ``_FENCED``; the broker's "old epoch" survives in some messages only."""
    if err.code() == KafkaError.INVALID_PRODUCER_EPOCH or "old epoch" in err.str():
        return True
    return open_s >= timeout_s


class Transaction:
    """Owns the transactional producer and the boundaries of every transaction."""

    def __init__(
        self,
        producer_factory: Callable[[], Producer],
        consumer: Consumer,
        stores: Sequence[tuple[str, OverlayStore]],
        metrics: WorkerMetrics,
        op_timeout_s: float = 30.0,
        transaction_timeout_s: float = 10.0,
        coordinator_answers: Callable[[Sequence[TopicPartition], float], bool] | None = None,
    ) -> None:
        self.metrics = metrics
        self._out = metrics.records_out
        self._producer_factory = producer_factory
        self._consumer = consumer
        self._stores = list(stores)  # (topic, store): state → changelog, timers → timers
        self.on_abort: list[Callable[[], None]] = []  # e.g. forget remote calls in flight
        # told where an abort sought the consumer back to (runtime/reads.py)
        self.on_rewind: Callable[[list[TopicPartition]], None] = lambda positions: None
        # called before each bounded wait of the commit protocol (a call to the producer):
        # the worker's watchdog beat, so that it waits for one such call, not for a chain
        self.on_progress: Callable[[], None] = lambda: None
        self._timeout = op_timeout_s
        self._txn_timeout_s = transaction_timeout_s
        self._start: dict[tuple[str, int], int] = {}
        self._next: dict[tuple[str, int], int] = {}
        # the committed offsets of the assigned partitions (the worker sets them on assignment;
        # each commit updates them): what a transaction that consumed nothing commits again
        self.fence_offsets: dict[tuple[str, int], int] = {}
        self.is_open = False
        self.opened_at = 0.0
        self._committed_at = 0.0
        self._bumps: list[float] = []  # when the epoch was last found bumped (monotonic)
        # whether the group's coordinator answers a request about the given partitions within
        # the given seconds (kafka/groups.py); None: a stuck producer is found by the
        # transaction timeout
        self._coordinator_answers = coordinator_answers
        self._offsets_s = 0.0  # how long send_offsets_to_transaction took lately (average)
        # given-up producers with the thread of their blocked call: never destroyed while
        # that call may still return (released by _release_returned)
        self._abandoned: list[tuple[Producer, threading.Thread]] = []
        # the producer that takes over from a stuck one, created once a call looks stuck
        # (_prepare_spare); it has not run init_transactions, so it fences nothing yet
        self._spare: Producer | None = None
        self._clock = time.monotonic
        self.producer = self._new_producer()

    @property
    def transaction_timeout_s(self) -> float:
        return self._txn_timeout_s

    @property
    def longest_call_s(self) -> float:
        """The longest one call of the commit protocol may block (the watchdog waits longer)."""
        return max(self._timeout, min(self._timeout, self._txn_timeout_s) + STUCK_GRACE_S)

    def member_epoch(self) -> int | None:
        """The member epoch (generation) the next commit's offsets would carry."""
        return member_epoch(self._consumer.consumer_group_metadata())

    def use_consumer(
        self,
        consumer: Consumer,
        coordinator_answers: Callable[[Sequence[TopicPartition], float], bool] | None,
    ) -> None:
        """Take the worker's new group consumer (one that the group refused was replaced, before
        it was assigned anything): its group metadata is what the next commit sends."""
        assert not self.is_open, "the group consumer changed under an open transaction"
        self._consumer = consumer
        self._coordinator_answers = coordinator_answers

    def _new_producer(self) -> Producer:
        self.on_progress()
        # not ``or``: a Producer with nothing queued is falsy (its len is its out queue)
        producer = self._spare if self._spare is not None else self._producer_factory()
        self._spare = None
        # Aborts whatever a crashed predecessor with the same transactional id left open; waits
        # out a coordinator that is moving or loading its state.
        call_with_retry(
            lambda: producer.init_transactions(self._timeout), "initializing the producer"
        )
        return producer

    def _on_fenced(self, err: KafkaError) -> None:
        """After a fence-class error: raise FencedError for a real fence, else (the epoch was
        bumped) take the transactional id back with a new producer."""
        open_s = self._clock() - self.opened_at  # this (or the last) transaction's age
        if not epoch_bumped(err, open_s, self._txn_timeout_s):
            raise fenced_error(_TRANSACTIONAL_ID, err)
        now = self._clock()
        self._bumps = [t for t in self._bumps if now - t < EPOCH_BUMP_WINDOW_S] + [now]
        if len(self._bumps) > MAX_EPOCH_BUMPS:
            why = (
                f"its epoch was bumped {len(self._bumps)} times within "
                f"{EPOCH_BUMP_WINDOW_S:.0f} s: another process keeps taking it over, or "
                "transactions keep outliving transaction_timeout_ms"
            )
            raise fenced_error(_TRANSACTIONAL_ID, err, why)
        log.warning(
            "producer epoch bumped by the transaction coordinator (it aborted the open "
            "transaction, e.g. after transaction_timeout_ms across a coordinator failover); "
            "recreating the producer and replaying bump=%d max=%d window_s=%.0f "
            "transaction_open_s=%.1f error=%s",
            len(self._bumps),
            MAX_EPOCH_BUMPS,
            EPOCH_BUMP_WINDOW_S,
            open_s,
            err.str(),
        )
        self.metrics.epoch_bumps += 1
        self.producer = self._new_producer()

    # --- 1. and 2. ----------------------------------------------------------------------------

    def begin(self) -> None:
        if not self.is_open:
            wait_s = self._committed_at + SETTLE_S - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            try:
                self.producer.begin_transaction()
            except KafkaException as e:
                err = kafka_error(e)
                if err is None or not err.fatal():
                    raise
                if err.code() in _FENCED:
                    self._on_fenced(err)
                else:
                    log.warning("producer failed fatally, recreating it error=%s", err)
                    self.producer = self._new_producer()
                self.producer.begin_transaction()
            self.is_open = True
            self.opened_at = self._clock()

    def track(self, batch: Sequence[Message]) -> None:
        """Record the consumed offsets of ``batch``; call before processing any of it."""
        start, nxt = self._start, self._next
        for msg in batch:
            tp = (msg.topic(), msg.partition())
            offset = msg.offset()
            if tp not in start:
                start[tp] = offset
            nxt[tp] = offset + 1

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Any = None,
    ) -> None:
        out = self._out
        out[topic] = out.get(topic, 0) + 1
        if partition is None:
            partition = -1  # librdkafka's "unassigned": the producer's partitioner decides
        self._produce_waiting(topic, value, key, partition, headers, on_delivery)

    def _produce_waiting(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int,
        headers: list[tuple[str, bytes]] | None,
        on_delivery: Any,
    ) -> None:
        """Produce, waiting for room in the producer's local queue while it is full."""
        while True:
            try:
                self.producer.produce(
                    topic, value, key, partition, on_delivery=on_delivery, headers=headers
                )
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self.producer.poll(0.05)

    # --- 3. -----------------------------------------------------------------------------------

    def commit(self) -> None:
        """Commit the open transaction; on failure abort it, rewind, and re-raise."""
        if not self.is_open:
            return
        started = time.perf_counter()
        positions: dict[str, dict[int, int]] = {topic: {} for topic, _ in self._stores}

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                positions[msg.topic()][msg.partition()] = msg.offset() + 1

        try:
            produce = self.producer.produce  # self.produce's, inline: once per state written
            for topic, store in self._stores:
                for partition, writes in store.pending():
                    last = len(writes) - 1
                    self._out[topic] = self._out.get(topic, 0) + last + 1
                    for i, (key, value) in enumerate(writes.items()):
                        # the last record's offset tells a local snapshot how far it is complete
                        on_delivery = delivered if i == last else None
                        try:
                            produce(topic, value, key, partition, on_delivery=on_delivery)
                        except BufferError:  # the queue is full: wait for room
                            self._produce_waiting(topic, value, key, partition, None, on_delivery)
            consumed = self._next or self.fence_offsets
            if consumed:
                self._flush()
                self._send_offsets([TopicPartition(t, p, o) for (t, p), o in consumed.items()])
            self._commit_with_retry()
        except Exception:
            self.abort()
            raise
        self.producer.poll(0)  # serve the delivery reports behind ``positions``
        # Committed: a fold that fails (a disk-backed store's write error) must not abort it.
        self.is_open = False
        for topic, store in self._stores:
            store.apply_overlay(positions[topic])
        self.fence_offsets.update(self._next)
        self._start.clear()
        self._next.clear()
        self.metrics.commits += 1
        self._committed_at = time.monotonic()
        self.metrics.commit_latency.observe(time.perf_counter() - started)

    def _flush(self) -> None:
        """Wait until every record of the open transaction is acknowledged (3b's precondition,
        module doc: a refused offset commit)."""
        self.on_progress()
        left = self.producer.flush(self._timeout)
        if left:  # commit_transaction waits for them again, bounded by its own timeout
            log.warning("records still unacknowledged before sending offsets count=%d", left)

    def _send_offsets(self, offsets: list[TopicPartition]) -> None:
        """``send_offsets_to_transaction``, bounded (module doc: a stuck producer)."""
        self.on_progress()
        if self._abandoned:
            self._release_returned()
        producer = self.producer
        metadata = self._consumer.consumer_group_metadata()
        limit_s = min(self._timeout, self._txn_timeout_s)
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                producer.send_offsets_to_transaction(offsets, metadata, limit_s)
                outcome.append(None)
            except BaseException as e:  # noqa: BLE001 - re-raised by the caller's thread
                outcome.append(e)

        helper = threading.Thread(target=call, name="kstatefun-send-offsets", daemon=True)
        started = self._clock()
        helper.start()
        why = self._wait_or_diagnose(helper, offsets, started, limit_s + STUCK_GRACE_S)
        if outcome:
            if outcome[0] is not None:
                raise outcome[0]
            # a moving average of how long the call takes (a slow cluster is probed later)
            self._offsets_s += 0.2 * (self._clock() - started - self._offsets_s)
            return
        self._give_up_stuck_producer(helper, self._clock() - started, why)

    @property
    def probe_after_s(self) -> float:
        """How long a send_offsets_to_transaction may block before the coordinator is asked."""
        return max(STUCK_PROBE_AFTER_S, STUCK_SLOW_FACTOR * self._offsets_s)

    def _wait_or_diagnose(
        self,
        helper: threading.Thread,
        offsets: Sequence[TopicPartition],
        started: float,
        limit_s: float,
    ) -> str:
        """Wait for the call on ``helper`` (sending ``offsets``) at most ``limit_s`` after
        ``started``; once it has blocked for ``probe_after_s``, ask whether the group
        coordinator answers (again every ``STUCK_CONFIRM_S`` until it does). Returns "" as soon
        as the call returns, else why its producer is stuck."""
        answered_at: float | None = None
        confirm_s = STUCK_CONFIRM_S
        took = 0.0  # how long the coordinator's answer took
        probe = self._coordinator_answers
        next_probe = self.probe_after_s if probe is not None else limit_s
        while True:
            elapsed = self._clock() - started
            until = next_probe if answered_at is None else answered_at + confirm_s
            helper.join(max(0.0, min(until, limit_s) - elapsed))
            if not helper.is_alive():
                return ""
            elapsed = self._clock() - started
            if elapsed >= limit_s:
                waited = f"transaction_timeout_ms + {STUCK_GRACE_S:.0f} s passed"
                if probe is None:
                    return waited
                return f"{waited} without an answer from the group's coordinator"
            if answered_at is not None:
                if elapsed >= answered_at + confirm_s:
                    return (
                        f"{COORDINATOR_ANSWERED} (in {took:.1f} s), so a call that works would "
                        "have returned"
                    )
            elif probe is not None and elapsed >= next_probe:
                self._prepare_spare()
                self.on_progress()  # the question is bounded on its own
                asked = self._clock()
                if probe(offsets, STUCK_PROBE_TIMEOUT_S):
                    took = self._clock() - asked
                    if took > STUCK_CONFIRM_S / 2:
                        # a slow first answer may have waited for the coordinator to load the
                        # group (1.9 s after a clean restart, which made the wait 3.8 s): a
                        # second question times the coordinator itself
                        self.on_progress()
                        asked = self._clock()
                        if probe(offsets, STUCK_PROBE_TIMEOUT_S):
                            took = self._clock() - asked
                    answered_at = self._clock() - started
                    confirm_s = max(STUCK_CONFIRM_S, 2 * took)
                else:  # still moving: ask again a little later
                    next_probe = self._clock() - started + STUCK_CONFIRM_S

    def _prepare_spare(self) -> None:
        """Create the producer that would take over from a stuck one before it is needed: it
        connects and learns the cluster's brokers while the coordinator is asked, so that its
        init_transactions finds the transaction coordinator at once. Created at the give-up,
        one spent up to 1.7 s on that (its first lookup went through a bootstrap connection
        that was being replaced; docs/guarantees.md). It touches nothing on the brokers before
        its init_transactions; when the call returns after all, it waits for the next
        take-over."""
        if self._spare is None:
            self._spare = self._producer_factory()

    def _give_up_stuck_producer(self, helper: threading.Thread, waited_s: float, why: str) -> None:
        """The open transaction's producer is stuck in ``send_offsets_to_transaction`` (on
        ``helper``): abort the transaction (locally; the new producer's init_transactions aborts
        it on the broker) and raise."""
        self._abandoned.append((self.producer, helper))
        self.is_open = False  # abort() must not ask the stuck producer
        self.metrics.aborts += 1
        self._release_returned()
        blocked = len(self._abandoned)
        what = (
            f"send_offsets_to_transaction did not return within {waited_s:.1f} s and {why} "
            "(librdkafka #5456/#5511)"
        )
        if blocked > MAX_ABANDONED_PRODUCERS:
            raise KafkaUnavailableError(
                f"{what}; {blocked} producers given up are still blocked: stopping so that a "
                "fresh process takes over; check the brokers"
            )
        log.warning(
            "%s: giving the producer up, aborting the transaction and taking the "
            "transactional id over with a new producer blocked=%d max=%d",
            what,
            blocked,
            MAX_ABANDONED_PRODUCERS,
        )
        self.metrics.stuck_producers += 1
        self.producer = self._new_producer()
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, what, retriable=True))

    def _release_returned(self) -> None:
        """Drop the given-up producers whose blocked call has returned, which frees their
        threads and connections."""
        blocked = [(p, t) for p, t in self._abandoned if t.is_alive()]
        released = len(self._abandoned) - len(blocked)
        self._abandoned = blocked
        if released:
            log.info(
                "released given-up producers whose call returned released=%d still_blocked=%d",
                released,
                len(blocked),
            )

    def _commit_with_retry(self) -> None:
        for attempt in range(5):
            self.on_progress()
            try:
                self.producer.commit_transaction(self._timeout)
                return
            except KafkaException as e:
                err = kafka_error(e)
                if err is None or not err.retriable() or err.txn_requires_abort() or attempt == 4:
                    raise
                log.warning("commit retry attempt=%d error=%s", attempt + 1, err)

    # --- 4. -----------------------------------------------------------------------------------

    def abort(self, rewind: bool = True) -> None:
        """Abort the open transaction, drop the overlay and (by default) rewind the consumer."""
        was_open = self.is_open
        self.is_open = False
        for _, store in self._stores:
            store.discard_overlay()
        for hook in self.on_abort:
            hook()
        if was_open:
            self.on_progress()  # what led here was bounded; so is the abort, anew
            try:
                self.producer.abort_transaction(self._timeout)
            except KafkaException as e:
                err = kafka_error(e)
                if err is not None and err.code() in _FENCED:
                    self._on_fenced(err)
                else:
                    # Fatal producer state: a new producer's init_transactions aborts for us.
                    log.warning("abort failed, recreating the producer error=%s", err or e)
                    self.producer = self._new_producer()
            self.metrics.aborts += 1
        if rewind:
            self._rewind()
        self._start.clear()
        self._next.clear()

    def _rewind(self) -> None:
        sought = []
        for (topic, partition), offset in self._start.items():
            tp = TopicPartition(topic, partition, offset)
            try:
                self._consumer.seek(tp)
                sought.append(tp)
            except KafkaException as e:  # partition no longer assigned: its new owner resumes
                log.info("not rewinding topic=%s partition=%d: %s", topic, partition, e)
        if sought:
            self.on_rewind(sought)


class RemoteCalls(Protocol):
    """What the commit policy needs of the remote invoker (runtime/remote.py): the open
    transaction's calls must complete before it commits."""

    @property
    def idle(self) -> bool: ...

    def wait_idle(self, timeout_s: float | None = None) -> None: ...

    def settled(self) -> None: ...

    def too_slow(self) -> int: ...


class Transactional(Protocol):
    """What the commit policy uses of the ``Transaction``: a Protocol, not the class, so that
    the policy's tests drive it with a stand-in in the compiled build too (compiled code checks
    an argument declared as a class against that class)."""

    fence_offsets: dict[tuple[str, int], int]
    is_open: bool
    opened_at: float

    @property
    def transaction_timeout_s(self) -> float: ...

    @property
    def longest_call_s(self) -> float: ...

    def member_epoch(self) -> int | None: ...

    def commit(self) -> None: ...

    def abort(self, rewind: bool = True) -> None: ...


EPOCH_WAIT_S = 1.0
"""How long a commit after a KIP-848 revocation waits for the new member epoch (module doc):
the heartbeat's round trip, normally milliseconds; after this the commit goes ahead."""

EPOCH_POLL_S = 0.002
"""The pause of a loop round that consumed nothing while that wait holds the commit."""


class Committer:
    """The commit policy around one ``Transaction`` (module doc): the worker's loop calls
    ``after_batch`` once per round, ``on_revoke``/``on_lost`` from its rebalance callbacks,
    ``failed`` when processing raised, and ``final`` when it stops."""

    def __init__(
        self,
        txn: Transactional,
        remote: RemoteCalls | None,
        commit_interval_s: float,
        max_batch_records: int,
        epoch_bumps_after_revoke: bool = False,
    ) -> None:
        self.txn = txn
        self.remote = remote
        self._interval_s = commit_interval_s
        self._max_batch = max_batch_records
        # KIP-848: the member epoch a commit must wait to change (module doc), and since when
        self._epoch_bumps = epoch_bumps_after_revoke
        self._stale_epoch: int | None = None
        self._stale_since = 0.0
        # remote calls may hold a commit back until half the transaction timeout: a slower
        # transaction would be aborted by the coordinator and this worker fenced
        self.remote_limit_s = txn.transaction_timeout_s / 2

    @property
    def longest_wait_s(self) -> float:
        """The longest one bounded wait of the policy or the protocol (for the watchdog)."""
        return max(self.txn.longest_call_s, self.remote_limit_s)

    def assigned(self, committed: Sequence[TopicPartition]) -> None:
        """Partitions were added to the assignment; ``committed`` are their committed offsets
        (step 3b's fence offsets, kept per partition)."""
        self.txn.fence_offsets.update(
            {(c.topic, c.partition): c.offset for c in committed if c.offset >= 0}
        )

    def after_batch(self, consumed: int) -> bool:
        """One round of the loop consumed ``consumed`` records: commit when the poll drained
        what was available (fewer than a full batch) or the transaction is due. Returns
        whether it committed."""
        txn = self.txn
        if not txn.is_open:
            return False
        due = time.monotonic() - txn.opened_at >= self._interval_s
        if consumed >= self._max_batch and not due:
            return False
        if self._stale_epoch is not None and self._epoch_pending():
            if not consumed:
                time.sleep(EPOCH_POLL_S)  # the loop would spin until the heartbeat's answer
            return False
        remote = self.remote
        try:
            if remote is not None:
                if not remote.idle and not due:
                    return False  # commit once the calls whose records it covers complete
                if not self._wait_remote(rewind=True):
                    return False
            txn.commit()
        except KafkaException as e:
            self.failed(e, "commit")
            return False
        return True

    def failed(self, e: KafkaException, phase: str) -> None:
        """Processing or committing raised: abort and rewind (a fenced producer is decided by
        the abort: FencedError, or a new producer)."""
        log.warning("transaction aborted during %s, rewinding: %s", phase, e)
        # Also when no transaction is open (begin itself failed): the overlays may hold writes
        # (a fired timer's tombstone) that must not reach the next commit.
        self.txn.abort()

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        """``partitions`` are being revoked: commit what is open, so that their next owner
        starts exactly where this worker stopped. A failed commit has aborted: the partitions
        kept are rewound (their records come again here), the revoked ones are redone by
        their next owner."""
        self.commit_open("on revoke")
        for tp in partitions:
            self.txn.fence_offsets.pop((tp.topic, tp.partition), None)
        if self._epoch_bumps and partitions:
            self._stale_epoch = self.txn.member_epoch()
            self._stale_since = time.monotonic()

    def _epoch_pending(self) -> bool:
        """After a KIP-848 revocation: True while the consumer still reports the epoch it had
        then, for at most ``EPOCH_WAIT_S``."""
        if (
            self.txn.member_epoch() == self._stale_epoch
            and time.monotonic() - self._stale_since < EPOCH_WAIT_S
        ):
            return True
        self._stale_epoch = None
        return False

    def on_lost(self) -> None:
        """Partitions were lost (another member owns them already): nothing may commit."""
        self.txn.fence_offsets = {}
        self.txn.abort(rewind=False)

    def final(self, clean: bool) -> None:
        """The worker stops: commit the open transaction after a clean stop, else abort it
        (after an error it may cover records consumed but not processed)."""
        if clean:
            self.commit_open("on stop", rewind=False)
        if self.txn.is_open:
            self.txn.abort(rewind=False)

    def commit_open(self, when: str, rewind: bool = True) -> None:
        """Commit the open transaction once its remote calls are done (before partitions
        change hands). A failure aborts it and, with ``rewind``, rewinds the consumer: the
        partitions that stay are read again, those given up go to their next owner."""
        txn = self.txn
        if not txn.is_open:
            return
        try:
            if self.remote is None or self._wait_remote(rewind=rewind):
                txn.commit()
        except KafkaException as e:
            log.warning("commit %s failed, work will be redone: %s", when, e)
            if txn.is_open:
                txn.abort(rewind=rewind)

    def _wait_remote(self, rewind: bool) -> bool:
        """Before a commit: wait for the open transaction's remote calls, at most until
        ``remote_limit_s`` after it opened. Past that, abort it here (the records come again,
        in smaller transactions) and return False."""
        assert self.remote is not None
        txn = self.txn
        try:
            self.remote.wait_idle(self.remote_limit_s - (time.monotonic() - txn.opened_at))
            self.remote.settled()
            return True
        except TimeoutError:
            budget = self.remote.too_slow()
            log.warning(
                "remote calls of the open transaction are not done after %.1f s (half of "
                "transaction_timeout_ms): aborting it; the next transactions offer at most %d "
                "invocations",
                self.remote_limit_s,
                budget,
            )
            txn.abort(rewind=rewind)
            return False
