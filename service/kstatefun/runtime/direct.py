"""When an ingress partition may take the direct path (runtime/router.py says what it is), and
the flow control between ingress and invocations: the worker's bookkeeping of both.

An ingress partition goes direct only once its invocations partition (same number, owned
here) has been consumed past everything that was in it at assignment, so a record still
waiting in the topic is never overtaken: until then the ingress partition is paused
(*draining*), and it waits for the restore first when its invocations partition restores
(runtime/assignment.py calls ``restored``). An abort rewinds the consumer, so what was drained
must be drained again (``redrain``). Ingress partitions assigned before any invocations
partition wait, paused, for one (``pair``: the group coordinator has not seen a just-created
invocations topic yet). Independently, ingress partitions are *held* (paused)
while the worker's own invocations partitions lag (``balance``). Each resume asks for the
consumer's fetchers to be woken (``wake_due``, kafka/fetchers.py), which the worker's loop does
before its next read. It also keeps the floors of the messages between functions of partitions
owned here (runtime/local.py): set when a partition is gained, passed between batches
(``check_floors``), raised again by an abort. The worker calls this from its loop and from
its rebalance callbacks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition

from kstatefun.runtime.assignment import Assignment
from kstatefun.runtime.local import LocalSends
from kstatefun.runtime.router import IngressRouter
from kstatefun.state.restore import watermarks

log = logging.getLogger(__name__)

# Flow control between ingress and invocations (DirectPath.balance), in records.
INVOCATIONS_LAG_HIGH = 5_000
INVOCATIONS_LAG_LOW = 1_000
HOLD_MAX_S = 0.5  # the longest ingress stays held by one decision
DRAIN_CHECK_S = 0.02  # how often the loop asks how far the draining partitions are consumed
# The longest ingress partitions assigned before any invocations partition wait for theirs
# (DirectPath.pair): a group coordinator that has not seen a just-created invocations topic
# yet assigns the ingress partitions alone and the rest at a later heartbeat (1 s later with
# the bench's broker, up to group.consumer.heartbeat.interval.ms, 5 s by default, later).
PAIR_WAIT_S = 6.0

Key = tuple[str, int]  # (topic, partition)


class DirectPath:
    """The drains and holds of one worker's ingress partitions (module doc)."""

    def __init__(
        self,
        consumer: Consumer,
        invocations: str,
        router: IngressRouter,
        assignment: Assignment,
        local: LocalSends | None = None,
    ) -> None:
        self.consumer = consumer
        self.invocations = invocations
        self.router = router
        self.assignment = assignment
        self.local = local if local is not None else LocalSends(router.owned)
        self._floors_checked = 0.0
        # ingress partitions that went direct -> the invocations end they drained to
        self.drain_ends: dict[Key, int] = {}
        # ingress partitions of a restoring partition -> invocations end offset at assignment
        self.drain_plan: dict[Key, int] = {}
        # ingress partitions paused until invocations partition p is consumed up to this offset
        self.draining: dict[Key, int] = {}
        self._drain_checked = 0.0
        # ingress partitions paused because the worker's own invocations lag (balance)
        self.held: set[Key] = set()
        # ingress partitions paused until an invocations partition is assigned (pair) -> since
        self.unpaired: dict[Key, float] = {}
        self._held_since = 0.0
        # partitions were resumed (a rebalance, a restore, a drain, a hold): kafka/fetchers.py
        self.wake_due = False

    def use_consumer(self, consumer: Consumer) -> None:
        """The worker replaced its consumer (a refused static member joins again)."""
        self.consumer = consumer

    def balance(self) -> None:
        """Messages between functions before new ingress: a backlog of ingress records that go
        direct would otherwise fill the consumer's queue, and the invocations they produce (a
        chain A -> B) would wait until the whole backlog is consumed. After each commit, pause
        every ingress partition while the owned invocations partitions lag by more than
        INVOCATIONS_LAG_HIGH records (cached high watermark - position), resume below
        INVOCATIONS_LAG_LOW or after HOLD_MAX_S, whichever comes first. Partitions paused
        for a restore (runtime/assignment.py) are neither counted nor paused or resumed."""
        consumer, inv = self.consumer, self.invocations
        restoring = self.assignment.paused()
        assigned = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) not in restoring]
        owned = [tp for tp in assigned if tp.topic == inv]
        if not owned:
            return
        lag = 0
        for tp in consumer.position(owned):
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            # nothing consumed yet (the case that matters: invocations stuck behind ingress)
            at = tp.offset if tp.offset >= 0 else low
            if high >= 0 and at >= 0:
                lag += max(0, high - at)
        now = time.monotonic()
        if not self.held and lag > INVOCATIONS_LAG_HIGH:
            held = {(tp.topic, tp.partition) for tp in assigned if tp.topic != inv}
            held -= set(self.draining)  # already paused until drained
            if held:
                consumer.pause([TopicPartition(t, p) for t, p in held])
                self.held, self._held_since = held, now
        elif self.held and (lag < INVOCATIONS_LAG_LOW or now - self._held_since > HOLD_MAX_S):
            # bounded: records the consumer never returns (aborted transactions, another
            # worker's open one) count in the lag, and a hold must not outlive them
            resume = self.held - set(self.draining) - restoring
            self.held = set()
            if resume:
                try:
                    consumer.resume([TopicPartition(t, p) for t, p in resume])
                    self.wake_due = True
                except KafkaException as e:  # no longer assigned: the next assignment starts over
                    log.info("not resuming held ingress: %s", e)

    def pair(
        self,
        added: list[TopicPartition],
        assigned: list[TopicPartition],
        partitions: int,
        pause: list[TopicPartition],
    ) -> list[TopicPartition]:
        """After an assignment that ``added`` partitions and is now ``assigned``: while it
        holds no invocations partition, the added ingress partitions whose number has one
        (< ``partitions``) are added to ``pause``: their records would take the hop
        (runtime/router.py) and their invocations partition then drain, when the group
        coordinator only lags (PAIR_WAIT_S); kept ones, already flowing, go on. Once one is
        assigned, or after PAIR_WAIT_S (``check_unpaired``), returns those to resume: the
        ones the assignment paused for their restore are the restore's
        (runtime/assignment.py)."""
        inv = self.invocations
        if any(tp.topic == inv for tp in assigned):
            paused = {(tp.topic, tp.partition) for tp in pause}
            free = [TopicPartition(*key) for key in self.unpaired if key not in paused]
            if self.unpaired:
                log.info("invocations partitions assigned: ingress partitions wait no more")
            self.unpaired.clear()
            return free
        now = time.monotonic()
        for tp in added:
            key = (tp.topic, tp.partition)
            if tp.partition < partitions and key not in self.unpaired:
                self.unpaired[key] = now
                pause.append(TopicPartition(*key))
        if self.unpaired:
            log.info(
                "ingress partitions assigned before any invocations partition: paused until "
                "one is, at most %.0f s (a group coordinator that has not seen the topic yet) "
                "partitions=%s",
                PAIR_WAIT_S,
                sorted(self.unpaired),
            )
        return []

    def check_unpaired(self) -> list[TopicPartition]:
        """The ingress partitions that waited PAIR_WAIT_S for an invocations partition in
        vain: resumed by the caller, their records take the hop."""
        now = time.monotonic()
        done = [key for key, since in self.unpaired.items() if now - since >= PAIR_WAIT_S]
        for key in done:
            del self.unpaired[key]
        if done:
            log.info("no invocations partition assigned: ingress goes on partitions=%s", done)
            self.wake_due = True
        return [TopicPartition(*key) for key in done]

    def check_drained(self) -> None:
        """Turn on direct dispatch for ingress partitions whose invocations partition has been
        consumed past everything that was in it at assignment (at most every DRAIN_CHECK_S)."""
        now = time.monotonic()
        if now - self._drain_checked < DRAIN_CHECK_S:
            return
        self._drain_checked = now
        positions = self.consumer.position(
            [TopicPartition(self.invocations, p) for p in {p for _, p in self.draining}]
        )
        reached = {tp.partition: tp.offset for tp in positions}
        done = [
            (topic, p) for (topic, p), end in self.draining.items() if reached.get(p, -1) >= end
        ]
        if done:
            self.consumer.resume([TopicPartition(topic, p) for topic, p in done])
            self.wake_due = True
            for key in done:
                self.drain_ends[key] = self.draining.pop(key)
                self.router.direct.add(key)
            self._note_caught_up({p for _, p in done})

    def check_floors(self, ends: Consumer, committed: Mapping[Key, int]) -> None:
        """Drop the floors (runtime/local.py) of invocations partitions consumed past them,
        at most every DRAIN_CHECK_S; a floor an abort raised is read first (``ends``: a
        consumer that reads high watermarks). ``committed``: the committed offsets, which
        the consumer is never behind."""
        now = time.monotonic()
        if now - self._floors_checked < DRAIN_CHECK_S:
            return
        self._floors_checked = now
        floors, inv = self.local.floors, self.invocations
        for q in [q for q, floor in floors.items() if floor is None]:
            floors[q] = watermarks(ends, TopicPartition(inv, q))[1]
        positions = self.consumer.position([TopicPartition(inv, q) for q in floors])
        reached = {
            tp.partition: max(tp.offset, committed.get((inv, tp.partition), -1)) for tp in positions
        }
        done = self.local.passed(reached)
        if done:
            log.debug("messages between functions go direct partitions=%s", done)

    def resolve_blocked(self, ends: Consumer) -> None:
        """After a commit: where the messages routed to blocked targets sit (runtime/local.py),
        from the end of their partitions (``ends``: a consumer that reads high watermarks)."""
        for q in self.local.unresolved():
            self.local.resolve(q, watermarks(ends, TopicPartition(self.invocations, q))[1])

    def _note_caught_up(self, partitions: set[int]) -> None:
        waiting = {p for _, p in self.draining}
        for p in partitions - waiting:
            self.assignment.caught_up(p)

    def redrain(self) -> None:
        """After an abort the consumer rewinds: invocations it had read to enable the direct
        path are unread again, so go back to draining before taking the direct path; the
        messages between functions of partitions owned here wait for their present end again
        (runtime/local.py)."""
        self.local.aborted(self.router.owned)
        again = [key for key in self.router.direct if key in self.drain_ends]
        if not again:
            return
        for key in again:
            self.router.direct.discard(key)
            self.draining[key] = self.drain_ends[key]
            self.assignment.catching_up(key[1])
        try:
            self.consumer.pause([TopicPartition(topic, p) for topic, p in again])
        except KafkaException as e:  # no longer assigned: the next assignment starts over
            log.info("not pausing after abort: %s", e)

    def plan(
        self,
        ends: Consumer,
        added: list[TopicPartition],
        kept: list[TopicPartition] = [],  # noqa: B006 - never mutated
    ) -> dict[Key, int]:
        """Per ingress partition that may now take the direct path (it, or the invocations
        partition of the same number, was just ``added``; both are assigned): the end offset
        of that invocations partition, which must be consumed first, asked of ``ends`` (a
        consumer that reads high watermarks). The plans of partitions whose ownership did not
        change stand."""
        inv = self.invocations
        new = {tp.partition for tp in added if tp.topic == inv}
        owned = new | {tp.partition for tp in kept if tp.topic == inv}
        added_keys = {(tp.topic, tp.partition) for tp in added}
        # retried: a just-created topic's leaders may not be serving yet
        end_of = {p: watermarks(ends, TopicPartition(inv, p))[1] for p in sorted(new)}
        plan = {}
        for tp in [*added, *kept]:
            key = (tp.topic, tp.partition)
            if tp.topic == inv or tp.partition not in owned:
                continue
            if key not in added_keys and tp.partition not in new:
                continue  # both kept: nothing changed for it
            if tp.partition not in end_of:  # a kept invocations partition
                _, end_of[tp.partition] = watermarks(ends, TopicPartition(inv, tp.partition))
            plan[key] = end_of[tp.partition]
        self.local.assigned({p: end_of[p] for p in new}, owned - new)
        return plan

    def assigned(
        self, plan: Mapping[Key, int], restoring: set[Key], pause: list[TopicPartition]
    ) -> None:
        """Apply an assignment's ``plan``: an ingress partition whose invocations partition is
        processing here already waits only for the drain (added to ``pause``); one whose
        invocations partition restores (in ``restoring``) waits for both."""
        for key, end in plan.items():
            if key in restoring:
                self.drain_plan[key] = end
            elif end == 0:
                self.router.direct.add(key)  # nothing can be waiting
            else:
                self.draining[key] = end
                self.assignment.catching_up(key[1])
                pause.append(TopicPartition(*key))

    def restored(self, p: int, ingress: list[TopicPartition]) -> None:
        """Invocations partition ``p`` is restored and consumed again (runtime/assignment.py);
        its ingress partitions ``ingress``, still paused, go direct at once when nothing was
        waiting in it at assignment, else once that is consumed (``check_drained``)."""
        self.router.owned.add(p)
        self.local.restored(p)
        direct = []
        for tp in ingress:
            key = (tp.topic, tp.partition)
            end = self.drain_plan.pop(key, 0)
            if end == 0:
                self.router.direct.add(key)  # nothing can be waiting
                direct.append(tp)
            else:
                self.draining[key] = end
        if direct:
            self.consumer.resume(direct)
        self.wake_due = True  # also for the invocations partition the restore resumed
        self._note_caught_up({p})

    def forget(self, partitions: list[TopicPartition]) -> set[Key]:
        """Drop the notes about revoked ``partitions``; returns the kept ingress partitions
        that were paused only to drain a revoked invocations partition."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        numbers = {p for t, p in gone if t == self.invocations}
        left = {key for key in self.draining if key[1] in numbers and key not in gone}

        def dropped(key: Key) -> bool:
            return key in gone or key[1] in numbers

        for notes in (self.draining, self.drain_ends, self.drain_plan, self.unpaired):
            for key in [k for k in notes if dropped(k)]:
                del notes[key]
        self.router.direct -= {k for k in self.router.direct if dropped(k)}
        self.router.owned -= numbers
        self.local.forget(numbers)
        self.held -= gone
        return left - self.assignment.paused()

    def lost(self) -> None:
        """Every partition was lost: nothing goes direct, nothing drains or is held."""
        self.router.direct.clear()
        self.router.owned.clear()
        self.local.lost()
        self.draining.clear()
        self.drain_plan.clear()
        self.drain_ends.clear()
        self.unpaired.clear()
        self.held = set()
