"""Per-partition min-heaps of (deadline ms, key): what is due next, for delayed messages and
state expiry.

Entries are never removed eagerly: the owner checks a popped entry against the current value
(lazy deletion), so cancelling, re-writing or aborting costs nothing here. Entries popped while
a transaction is open are remembered and pushed back if it aborts, because the values they
point to are then still pending.
"""

from __future__ import annotations

import heapq
import itertools

_Entry = tuple[int, int, bytes]  # deadline ms, sequence (ties keep push order), key


class DeadlineQueue:
    __slots__ = ("_heaps", "_popped", "_seq")

    def __init__(self) -> None:
        self._heaps: dict[int, list[_Entry]] = {}
        self._popped: list[tuple[int, _Entry]] = []
        self._seq = itertools.count()

    def push(self, partition: int, deadline_ms: int, key: bytes) -> None:
        heap = self._heaps.get(partition)
        if heap is None:
            heap = self._heaps[partition] = []
        heapq.heappush(heap, (deadline_ms, next(self._seq), key))

    def rebuild(self, partition: int, entries: list[tuple[int, bytes]]) -> None:
        heap = [(deadline, next(self._seq), key) for deadline, key in entries]
        heapq.heapify(heap)
        self._heaps[partition] = heap

    def drop(self, partition: int) -> None:
        self._heaps.pop(partition, None)
        self._popped = [item for item in self._popped if item[0] != partition]

    def next_deadline(self) -> int | None:
        tops = [heap[0][0] for heap in self._heaps.values() if heap]
        return min(tops) if tops else None

    def pop_due(self, now_ms: int) -> list[tuple[int, int, bytes]]:
        """(partition, deadline, key) of every entry due at ``now_ms``, across partitions in
        due order (ties in push order); each is remembered until ``commit`` or ``abort``."""
        due: list[tuple[int, _Entry]] = []
        for partition, heap in self._heaps.items():
            while heap and heap[0][0] <= now_ms:
                due.append((partition, heapq.heappop(heap)))
        if not due:
            return []
        due.sort(key=lambda item: item[1])
        self._popped.extend(due)
        return [(partition, entry[0], entry[2]) for partition, entry in due]

    def commit(self) -> None:
        self._popped.clear()

    def abort(self) -> None:
        for partition, entry in self._popped:
            if partition in self._heaps:
                heapq.heappush(self._heaps[partition], entry)
        self._popped.clear()

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
