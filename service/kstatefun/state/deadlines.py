"""Per-partition min-heaps of (deadline ms, key): what is due next, for delayed messages and
state expiry.

Entries are never removed eagerly: the owner checks a popped entry against the current value
(lazy deletion), so cancelling, re-writing or aborting costs nothing here. Entries popped while
a transaction is open are remembered and pushed back if it aborts, because the values they
point to are then still pending.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator


class DeadlineQueue:
    __slots__ = ("_heaps", "_popped")

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, bytes]]] = {}
        self._popped: list[tuple[int, int, bytes]] = []

    def push(self, partition: int, deadline_ms: int, key: bytes) -> None:
        heap = self._heaps.get(partition)
        if heap is None:
            heap = self._heaps[partition] = []
        heapq.heappush(heap, (deadline_ms, key))

    def rebuild(self, partition: int, entries: list[tuple[int, bytes]]) -> None:
        heapq.heapify(entries)
        self._heaps[partition] = entries

    def drop(self, partition: int) -> None:
        self._heaps.pop(partition, None)
        self._popped = [e for e in self._popped if e[0] != partition]

    def next_deadline(self) -> int | None:
        tops = [heap[0][0] for heap in self._heaps.values() if heap]
        return min(tops) if tops else None

    def pop_due(self, now_ms: int) -> Iterator[tuple[int, int, bytes]]:
        """(partition, deadline, key) of every entry due at ``now_ms``, earliest first per
        partition; each is remembered until ``commit`` or ``abort``."""
        for partition, heap in self._heaps.items():
            while heap and heap[0][0] <= now_ms:
                deadline, key = heapq.heappop(heap)
                self._popped.append((partition, deadline, key))
                yield partition, deadline, key

    def commit(self) -> None:
        self._popped.clear()

    def abort(self) -> None:
        for partition, deadline, key in self._popped:
            if partition in self._heaps:
                heapq.heappush(self._heaps[partition], (deadline, key))
        self._popped.clear()

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
