"""Messages between embedded functions of partitions this worker owns, delivered in the
sending transaction: the one place that decides whether a message an embedded function sends
runs here at once or goes through <app>-invocations.

A message whose target id falls in an invocations partition q (``partition_of(target.id)``)
that this worker owns and has restored is queued here and invoked by the dispatcher right
after its sender's invocation, in the same transaction (runtime/dispatcher.py,
``Dispatcher._cascade``): no produce, no consume, no envelope. Its state writes, messages and
egress commit or abort with the record that started the chain, as every other effect of that
record does. The sender's partition p may be q or any other partition owned here: only the
owner of p runs invocations of p's ids, so messages from a sender in p are sent by whoever owns
p, and within one transaction that is this worker.

Order. Messages from one sender to one target must arrive in the order sent. Two kinds of them
can still wait in the topic when a later one would go at once, and both make it take the hop
too:

- the ones a previous owner of the sender's partition sent: until the consumer has passed the
  end q had when this worker last gained an invocations partition (``floors``, checked between
  batches by runtime/direct.py), every message into q takes the hop. A gained partition p
  floors every partition owned here, not only p: p's previous owner may have sent into any q,
  the ones this worker kept included (``assigned``);
- the ones this worker routed itself meanwhile (``routed``), also while q was assigned here
  but still restoring (``restoring``: above the floor read at its assignment): a target with
  one of those still unconsumed (``blocked``) gets its next messages through the topic as
  well, until the dispatcher has dispatched past it (``seen``). Where it sits is known after
  the commit (``resolve``, with the partition's end then: the message is below the
  transaction's own marker, which is below that end); until then the target waits in any
  case.

An abort rewinds the consumer: the floors go back up to each partition's end and the blocked
targets are forgotten (everything they waited for is below that end). A chain that would not
end (a function messaging itself for good) runs at most ``CASCADE_MAX`` invocations per
consumed record; the rest take the hop, their targets blocked as above. Messages from remote
functions (runtime/remote.py) always take the hop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from kstatefun.model import Address
from kstatefun.sdk.messages import Message

# Invocations one consumed record (or fired delayed message) may start here through messages;
# the messages left then take the hop through <app>-invocations.
CASCADE_MAX = 1_000


class _Pending:
    """This worker's routed messages to one target that may still wait in the topic."""

    __slots__ = ("offset", "unresolved")

    def __init__(self) -> None:
        self.offset = -1  # at or below this offset, once resolved
        self.unresolved = False  # one was produced since the last ``resolve``


class LocalSends:
    """The bookkeeping of messages between functions of partitions owned here (module doc)."""

    __slots__ = ("owned", "restoring", "floors", "blocked", "seen", "queue")

    def __init__(self, owned: set[int]) -> None:
        # invocations partitions owned and restored (the router's set, kept by direct.py)
        self.owned = owned
        # invocations partitions assigned here and not restored yet (``restored`` ends it)
        self.restoring: set[int] = set()
        # q -> the end offset the consumer must pass first; None: to be read (after an abort)
        self.floors: dict[int, int | None] = {}
        # q -> (target type, target id) -> its routed messages that may wait in the topic
        self.blocked: dict[int, dict[tuple[str, str], _Pending]] = {}
        # q -> offset + 1 of the last record of q dispatched (kept while q has blocked targets)
        self.seen: dict[int, int] = {}
        # (sender, message, the target's partition) to invoke here, in the order sent
        self.queue: deque[tuple[Address, Message, int]] = deque()

    def takes(self, q: int, target: Address) -> bool:
        """Whether a message from an embedded invocation to ``target``, in partition ``q``,
        runs here now; False: it takes the hop (then call ``routed``)."""
        if q not in self.owned or q in self.floors:
            return False
        blocked = self.blocked.get(q)
        if blocked:
            key = (target.typename, target.id)
            pending = blocked.get(key)
            if pending is not None:
                if pending.unresolved or self.seen.get(q, -1) <= pending.offset:
                    return False
                del blocked[key]
                if not blocked:
                    del self.blocked[q]
                    self.seen.pop(q, None)
        return True

    def routed(self, q: int, target: Address) -> None:
        """A message to ``target`` in ``q`` from an embedded invocation takes the hop: later
        ones to the same target wait until it is dispatched."""
        if q not in self.owned and q not in self.restoring:
            return
        blocked = self.blocked.get(q)
        if blocked is None:
            blocked = self.blocked[q] = {}
        key = (target.typename, target.id)
        pending = blocked.get(key)
        if pending is None:
            pending = blocked[key] = _Pending()
        pending.unresolved = True

    def unresolved(self) -> list[int]:
        """Partitions with routed messages whose place is not known yet."""
        return [q for q, b in self.blocked.items() if any(p.unresolved for p in b.values())]

    def resolve(self, q: int, end: int) -> None:
        """After a commit: ``end`` is partition ``q``'s end offset now, so each message routed
        there before it sits below its transaction's marker, at ``end - 2`` or lower."""
        for pending in self.blocked.get(q, {}).values():
            if pending.unresolved:
                pending.offset, pending.unresolved = max(pending.offset, end - 2), False

    def dispatched(self, q: int, offset: int) -> None:
        """The dispatcher ran the record at ``offset`` of invocations partition ``q``."""
        self.seen[q] = offset + 1

    # --- the worker's bookkeeping (runtime/direct.py) ----------------------------------------

    def assigned(self, ends: dict[int, int], kept: Iterable[int] = ()) -> None:
        """Invocations partitions were gained, with the end offsets they had then (``ends``);
        ``kept``: the ones this worker held before and still holds. A gained partition's
        previous owner may have sent into any partition, so the kept ones wait too, for the
        end they have when next checked (runtime/direct.py ``check_floors``), which is at
        least the one they have now."""
        for q, end in ends.items():
            self.restoring.add(q)
            self.blocked.pop(q, None)
            self.seen.pop(q, None)
            if end > 0:
                self.floors[q] = end
            else:
                self.floors.pop(q, None)
        if ends:
            for q in kept:
                self.floors[q] = None

    def restored(self, q: int) -> None:
        """Gained partition ``q`` is restored (and in ``owned``)."""
        self.restoring.discard(q)

    def passed(self, positions: dict[int, int]) -> list[int]:
        """The consumer's ``positions`` of partitions with a floor, between batches: drop the
        floors they passed; returns those partitions."""
        done = [
            q
            for q, floor in self.floors.items()
            if floor is not None and positions.get(q, -1) >= floor
        ]
        for q in done:
            del self.floors[q]
        return done

    def aborted(self, owned: set[int]) -> None:
        """The open transaction aborted and the consumer rewound: every ``owned`` invocations
        partition waits again until it is consumed to its present end, and so does every
        one still restoring (its routed messages are no longer ``blocked``)."""
        for q in owned | self.restoring:
            self.floors[q] = None
        self.blocked.clear()
        self.seen.clear()
        self.queue.clear()

    def forget(self, partitions: set[int]) -> None:
        for q in partitions:
            self.restoring.discard(q)
            self.floors.pop(q, None)
            self.blocked.pop(q, None)
            self.seen.pop(q, None)

    def lost(self) -> None:
        self.restoring.clear()
        self.floors.clear()
        self.blocked.clear()
        self.seen.clear()
        self.queue.clear()
