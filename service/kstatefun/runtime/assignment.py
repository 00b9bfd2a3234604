"""The lifecycle of each invocations partition a worker is assigned, and which of its consumer
partitions are paused meanwhile: the one place that decides when a partition may process.

    restoring → catching up → live → revoking

- **restoring**: its state (<app>-changelog) and timers (<app>-timers) partitions are read into
  the local stores (state/recovery.py), one batch per round of the worker's loop, so that the
  worker's other partitions keep processing. Its invocations partition, and the ingress
  partitions of the same number (whose records may take the direct path into it), are paused:
  nothing of it is processed before both restores are complete, and its delayed messages fire
  (its state expires) only once their own partition is complete. There is no
  deadline: the watchdog (runtime/watchdog.py) judges the loop, and every restore step is
  progress.
- **catching up**: its state is complete and its invocations partition is consumed; the ingress
  partitions of the same number wait until the invocations that were waiting in it at
  assignment are consumed (the direct path's order rule, runtime/router.py).
- **live**: everything of it is processed.
- **revoking**: the rebalance callback is committing before it gives the partition up.

With incremental rebalancing (rebalance_protocol consumer, the default, or cooperative,
kafka/clients.py) an assignment adds partitions and a revocation takes some away, and the
partitions that stay never leave their state; partitions added while others restore join the
restore in progress. With eager rebalancing every assignment starts from a revocation of
everything, so each partition starts over; a kept partition's restore is then a catch-up
that usually reads nothing.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, TopicPartition

from kstatefun.state.recovery import Recovery

log = logging.getLogger(__name__)

# How long one restore step waits for records (the restore consumer prefetches, so a step
# usually finds a full batch at once): a round of the loop takes at most this longer for the
# partitions that are processing meanwhile. A busy step does not wait.
STEP_WAIT_S = 0.01
# Records one restore step applies per store while the live partitions have traffic (the loop
# read records within the last IDLE_S): every round of the loop pays for its step, so a
# smaller one keeps the kept partitions' rounds short; an idle worker reads the restorer's
# whole batch (state/restore.py RESTORE_BATCH). Two full make bench runs of 87b1d62: the kept
# partitions' p99 while 5,000,000 states restored 69.4 / 61.7 ms, against 220.2 / 343.2 ms
# with whole batches in those of d00c558 (other runs on the same machine, so not a comparison
# within one run); the restore took 56 / 55 s instead of 47 / 37 s (docs/performance.md)
BUSY_STEP_RECORDS = 500


class PartitionState(enum.Enum):
    RESTORING = "restoring"
    CATCHING_UP = "catching-up"
    LIVE = "live"
    REVOKING = "revoking"


class Assignment:
    """The worker's invocations partitions and their states; ``assign``/``revoke``/``lose``
    come from the rebalance callbacks, ``step`` from the loop."""

    def __init__(
        self,
        consumer: Consumer,
        invocations_topic: str,
        recoveries: Sequence[Recovery],
        on_restored: Callable[[int, list[TopicPartition]], None],
    ) -> None:
        self._consumer = consumer
        self._topic = invocations_topic
        self._recoveries = list(recoveries)  # state, timers
        # the worker's: what to do with a restored partition's ingress partitions (still paused)
        self._on_restored = on_restored
        self.states: dict[int, PartitionState] = {}
        self._held: dict[int, list[TopicPartition]] = {}  # paused while restoring
        self._adding: set[int] = set()  # assigned, their restores not begun yet
        self._begun = True
        self.assigned = False  # False while the worker owns no invocations partition

    @property
    def restoring(self) -> bool:
        """Some partition is not restored yet (or its restore has not begun)."""
        return self.assigned and (not self._begun or bool(self._held))

    @property
    def starting(self) -> bool:
        """Assigned, and the last assignment's restores not begun yet: the stores may still
        hold partitions no longer owned, and kept ones not checked against their topics;
        nothing may fire."""
        return self.assigned and not self._begun

    @property
    def ready(self) -> bool:
        """Assigned, and every partition restored (the readiness probe)."""
        return self.assigned and not self.restoring

    def paused(self) -> set[tuple[str, int]]:
        """The consumer partitions paused until their restore completes: nothing else may
        resume them."""
        return {(tp.topic, tp.partition) for held in self._held.values() for tp in held}

    def partitions(self, state: PartitionState) -> list[int]:
        return sorted(p for p, s in self.states.items() if s is state)

    def state_names(self) -> dict[int, str]:
        """Each partition's state (the kstatefun_partition_state metric)."""
        return {p: s.value for p, s in dict(self.states).items()}

    def summary(self) -> dict[str, list[int]]:
        """The partitions per state (/readyz)."""
        return {s.value: self.partitions(s) for s in PartitionState if self.partitions(s)}

    def assign(
        self, added: Sequence[TopicPartition], assigned: Sequence[TopicPartition] | None = None
    ) -> list[TopicPartition]:
        """Partitions ``added`` to the assignment, which is now ``assigned`` (the kept ones
        too; default: only ``added``): its new invocations partitions start restoring,
        beside any restore in progress. Returns the consumer partitions to pause until
        their restore completes (the caller pauses them right after assigning): each
        restoring partition's own and the ingress partitions of the same number, kept ones
        included."""
        new = {tp.partition for tp in added if tp.topic == self._topic} - set(self.states)
        for p in new:
            self.states[p] = PartitionState.RESTORING
            self._held[p] = []
        held = self.paused()
        pause = []
        for tp in added if assigned is None else assigned:
            if tp.partition in self._held and (tp.topic, tp.partition) not in held:
                pause.append(TopicPartition(tp.topic, tp.partition))
                self._held[tp.partition].append(pause[-1])
        self._adding |= new
        self._begun = False  # the loop's next step begins (a callback must not block long)
        self.assigned = True
        return pause

    def use_consumer(self, consumer: Consumer) -> None:
        """Take the worker's new group consumer (it replaced one the group refused, before
        anything was assigned)."""
        assert not self.assigned, "the group consumer changed under an assignment"
        self._consumer = consumer

    def step(self, busy: bool = False) -> None:
        """Begin the restores of the partitions added since the last step (dropping from the
        stores what is no longer owned), or advance the restores by one batch (a smaller one
        when ``busy``: other partitions have records waiting); partitions whose state and
        timers are both complete are resumed."""
        if not self.restoring:
            return
        if not self._begun:
            self._begun = True
            adding, self._adding = self._adding, set()
            owned = set(self.states)
            for recovery in self._recoveries:
                recovery.add(adding, owned)
        else:
            wait_s, limit = (0.0, BUSY_STEP_RECORDS) if busy else (STEP_WAIT_S, None)
            for recovery in self._recoveries:
                recovery.step(wait_s, limit)
        done = [p for p in self._held if all(p not in r.pending for r in self._recoveries)]
        for recovery in self._recoveries:  # state and timers together (state/recovery.py)
            recovery.hand_over(set(done))
        for p in sorted(done):
            held = self._held.pop(p)
            self._consumer.resume([tp for tp in held if tp.topic == self._topic])
            self.states[p] = PartitionState.CATCHING_UP
            self._on_restored(p, [tp for tp in held if tp.topic != self._topic])
        if done:
            log.info(
                "restored invocations partitions=%s still_restoring=%s",
                sorted(done),
                sorted(set(self._held) - set(done)),
            )

    def unheld(self, batch: list) -> list:  # type: ignore[type-arg]
        """``batch`` without records of partitions still paused for a restore (none, unless
        the consumer fetched before the pause took hold): those partitions are sought back
        to their first such record, to be read again once restored."""
        held = self.paused()
        keep, rewind = [], dict[tuple[str, int], int]()
        for msg in batch:
            tp = (msg.topic(), msg.partition())
            if tp in held:
                rewind.setdefault(tp, msg.offset())
            else:
                keep.append(msg)
        for (topic, partition), offset in rewind.items():
            log.warning("read partition=%s/%d before its restore; seeking back", topic, partition)
            self._consumer.seek(TopicPartition(topic, partition, offset))
        return keep

    def caught_up(self, p: int) -> None:
        """Partition ``p``'s ingress partitions go direct (or have nothing to wait for)."""
        if self.states.get(p) is PartitionState.CATCHING_UP:
            self.states[p] = PartitionState.LIVE

    def catching_up(self, p: int) -> None:
        """An abort rewound partition ``p``'s invocations: its ingress waits again."""
        if self.states.get(p) is PartitionState.LIVE:
            self.states[p] = PartitionState.CATCHING_UP

    def revoke(self, partitions: Sequence[TopicPartition] | None = None) -> None:
        """The revocation callback begins: ``partitions`` (default: all) are being given up."""
        gone = self._numbers(partitions)
        for p in gone & set(self.states):
            self.states[p] = PartitionState.REVOKING
        if not set(self.states) - gone:
            self.assigned = False

    def revoked(self, partitions: Sequence[TopicPartition] | None = None) -> list[TopicPartition]:
        """The revocation callback has committed. When nothing is left (eager rebalancing,
        or the worker leaves): stop restoring, own nothing; the stores keep their partitions
        until the next assignment checks them. Otherwise the revoked partitions' restores
        stop and the stores drop them (nothing of them may fire here any more). Returns the
        kept partitions that were paused only for a revoked partition's restore (its ingress
        partitions, which now take the hop through <app>-invocations): the caller resumes
        them."""
        if not self.assigned:
            self.states, self._held, self._adding, self._begun = {}, {}, set(), True
            for recovery in self._recoveries:
                recovery.cancel()
            return []
        assert partitions is not None  # None is all: the branch above
        gone = self._numbers(partitions)
        released = {(tp.topic, tp.partition) for tp in partitions}
        resume = []
        for p in gone:
            self.states.pop(p, None)
            self._adding.discard(p)
            resume += [
                tp for tp in self._held.pop(p, []) if (tp.topic, tp.partition) not in released
            ]
        for p, held in self._held.items():
            self._held[p] = [tp for tp in held if (tp.topic, tp.partition) not in released]
        for recovery in self._recoveries:
            recovery.release(gone)
        return resume

    def _numbers(self, partitions: Sequence[TopicPartition] | None) -> set[int]:
        """The invocations partitions among ``partitions`` (None: all of them)."""
        if partitions is None:
            return set(self.states)
        return {tp.partition for tp in partitions if tp.topic == self._topic}
