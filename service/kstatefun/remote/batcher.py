"""Per-address batching of remote invocations, with the bounds the runtime uses to push back.

StateFun's rule: per address at most one request is in flight; what arrives for the address
meanwhile waits and goes, in arrival order, as the next batch (at most ``maxNumBatchRequests``
invocations). :class:`AddressBatcher` keeps that rule for the worker's main thread. It is a
plain data structure: no I/O, no threads, no clock.

On top of it, two bounds keep memory bounded (docs/architecture.md, "Remote functions"):

- ``max_in_flight``: requests in flight at once across all addresses. An address whose turn
  comes while every slot is taken waits in a first-come queue for a free slot.
- ``max_backlog``: invocations waiting per address, and ``max_pending`` in total. Past either,
  :attr:`AddressBatcher.saturated` turns true and the runtime stops consuming until it falls
  back. :meth:`offer` never refuses (the record has been consumed already), so what is held
  past a bound is at most one consumed batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any, NamedTuple

from kstatefun.model import Address, TypedValue

__all__ = ["AddressBatcher", "Batch", "BatchItem"]


class BatchItem(NamedTuple):
    """One invocation waiting for or riding in a batch.

    ``ref`` is opaque to the batcher: the runtime's handle on where the invocation came from
    (the Kafka record), kept so that results and failures can be traced back to it.
    """

    caller: Address | None
    argument: TypedValue
    ref: Any = None


@dataclass(slots=True, eq=False)
class Batch:
    """The invocations of one request to one address, in arrival order.

    ``id`` is unique within the batcher (use it as the transport's request id). ``attempts``
    is free for the runtime, e.g. to count missing-state round trips.
    """

    id: int
    address: Address
    items: list[BatchItem]
    attempts: int = 0

    def invocations(self) -> Iterator[tuple[Address | None, TypedValue]]:
        """``(caller, argument)`` per invocation, as :func:`~kstatefun.remote.protocol.
        encode_batch` takes them."""
        for item in self.items:
            yield item.caller, item.argument

    def __len__(self) -> int:
        return len(self.items)


@dataclass(slots=True)
class _Queue:
    items: deque[BatchItem] = field(default_factory=deque)
    in_flight: Batch | None = None
    waiting_for_slot: bool = False


class AddressBatcher:
    """Per-address queues with at most one batch in flight each; see the module docstring.

    Every method is O(1) per invocation moved and none blocks. Use from one thread.
    """

    def __init__(
        self,
        batch_limit: Callable[[str], int] | int = 1000,
        *,
        max_in_flight: int = 1000,
        max_backlog: int = 10_000,
        max_pending: int = 100_000,
    ) -> None:
        """``batch_limit`` is the largest batch, or a function of the target's function type
        returning it (the endpoint's ``maxNumBatchRequests``)."""
        if max_in_flight < 1 or max_backlog < 1 or max_pending < 1:
            raise ValueError("max_in_flight, max_backlog and max_pending must be at least 1")
        if isinstance(batch_limit, int):
            limit = batch_limit
            if limit < 1:
                raise ValueError(f"batch_limit must be at least 1, got {limit}")
            self._limit_of: Callable[[str], int] = lambda _typename: limit
        else:
            self._limit_of = batch_limit
        self._limits: dict[str, int] = {}
        self.max_in_flight = max_in_flight
        self.max_backlog = max_backlog
        self.max_pending = max_pending
        self._queues: dict[Address, _Queue] = {}
        self._slot_wait: deque[Address] = deque()  # addresses with items, none in flight
        self._in_flight = 0
        self._pending = 0  # items queued, not in flight
        self._full = 0  # addresses whose backlog is at max_backlog or more
        self._ids = count(1)

    # --- state --------------------------------------------------------------------------------

    def in_flight_count(self) -> int:
        """Batches sent and not yet completed."""
        return self._in_flight

    def pending_count(self) -> int:
        """Invocations queued behind an in-flight batch or waiting for a slot."""
        return self._pending

    def backlog(self, address: Address) -> int:
        """Invocations of ``address`` queued (not counting its batch in flight)."""
        q = self._queues.get(address)
        return 0 if q is None else len(q.items)

    def in_flight(self, address: Address) -> Batch | None:
        """The batch of ``address`` in flight, if any."""
        q = self._queues.get(address)
        return None if q is None else q.in_flight

    def is_full(self, address: Address) -> bool:
        """Whether ``address`` has reached ``max_backlog`` queued invocations."""
        return self.backlog(address) >= self.max_backlog

    @property
    def saturated(self) -> bool:
        """True while the runtime should stop consuming: too much is queued in total, or
        some address's backlog is full."""
        return self._pending >= self.max_pending or self._full > 0

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing queued."""
        return self._in_flight == 0 and self._pending == 0

    # --- moves --------------------------------------------------------------------------------

    def offer(self, address: Address, item: BatchItem) -> Batch | None:
        """Queue one invocation; returns a batch to send now when ``address`` was idle and a
        slot was free, else ``None`` (it goes with a later batch)."""
        q = self._queues.get(address)
        if q is None:
            q = self._queues[address] = _Queue()
        if q.in_flight is None and not q.waiting_for_slot:
            if self._in_flight < self.max_in_flight:
                return self._start(address, q, [item])
            q.waiting_for_slot = True
            self._slot_wait.append(address)
        q.items.append(item)
        self._pending += 1
        if len(q.items) == self.max_backlog:
            self._full += 1
        return None

    def complete(self, address: Address) -> Batch | None:
        """The in-flight batch of ``address`` is done (succeeded, or given up on).

        Returns the next batch to send now, or ``None``: the next batch of ``address`` if it
        has a backlog, or, when addresses are waiting for a free slot, the next of those
        (fairly: ``address`` then queues behind them).
        """
        q = self._queues.get(address)
        if q is None or q.in_flight is None:
            raise KeyError(f"no batch of {address} is in flight")
        q.in_flight = None
        self._in_flight -= 1
        if q.items:
            if not self._slot_wait:
                return self._start(address, q, self._take(q, address.typename))
            q.waiting_for_slot = True
            self._slot_wait.append(address)
        else:
            del self._queues[address]
        return self._next_waiting()

    def clear(self) -> list[BatchItem]:
        """Forget everything, in flight and queued (e.g. after a transaction abort rewound the
        input); returns the queued items. Completions of earlier batches must be ignored."""
        dropped = [item for q in self._queues.values() for item in q.items]
        self._queues.clear()
        self._slot_wait.clear()
        self._in_flight = self._pending = self._full = 0
        return dropped

    # --- internals ----------------------------------------------------------------------------

    def _next_waiting(self) -> Batch | None:
        if self._slot_wait and self._in_flight < self.max_in_flight:
            address = self._slot_wait.popleft()
            q = self._queues[address]
            q.waiting_for_slot = False
            return self._start(address, q, self._take(q, address.typename))
        return None

    def _take(self, q: _Queue, typename: str) -> list[BatchItem]:
        limit = self._limits.get(typename)
        if limit is None:
            limit = self._limits[typename] = max(1, self._limit_of(typename))
        items = q.items
        before = len(items)
        if before <= limit:
            taken = list(items)
            items.clear()
        else:
            taken = [items.popleft() for _ in range(limit)]
        self._pending -= len(taken)
        if before >= self.max_backlog > len(items):
            self._full -= 1
        return taken

    def _start(self, address: Address, q: _Queue, items: list[BatchItem]) -> Batch:
        batch = Batch(next(self._ids), address, items)
        q.in_flight = batch
        self._in_flight += 1
        return batch
