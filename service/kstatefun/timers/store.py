"""Pending delayed messages (``send_after``): the committed timers per partition, the open
transaction's overlay, and a due-time index (docs/architecture.md, "Delayed messages").

A timer lives in its sender's partition of <app>-timers, keyed by (sender, token): tokens are
scoped to the sender. Keys and values are the timers topic's own bytes (wire/avro.py), as in
StateStore. Firing a timer writes its tombstone into the overlay, so the delivery and the
removal commit together; an abort re-arms it.
"""

from __future__ import annotations

from collections.abc import Iterator

from kstatefun.state.deadlines import DeadlineQueue
from kstatefun.wire.avro import timer_due

_ABSENT = object()


class TimerStore:
    __slots__ = ("_committed", "_overlay", "_due")

    def __init__(self) -> None:
        self._committed: dict[int, dict[bytes, bytes]] = {}
        self._overlay: dict[int, dict[bytes, bytes | None]] = {}
        self._due = DeadlineQueue()

    # --- partitions ---------------------------------------------------------------------------

    def partitions(self) -> set[int]:
        return set(self._committed)

    def add_partition(self, partition: int) -> dict[bytes, bytes]:
        timers: dict[bytes, bytes] = {}
        self._committed[partition] = timers
        return timers

    def restored(self, partition: int) -> None:
        """After a restore filled ``partition``: index its timers by due time."""
        self._due.rebuild(
            partition, [(timer_due(v), k) for k, v in self._committed[partition].items()]
        )

    def drop_partition(self, partition: int) -> None:
        self._committed.pop(partition, None)
        self._overlay.pop(partition, None)
        self._due.drop(partition)

    def pending_count(self) -> int:
        return sum(len(t) for t in self._committed.values())

    # --- reads and writes ---------------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        overlay = self._overlay.get(partition)
        if overlay is not None:
            value = overlay.get(key, _ABSENT)
            if value is not _ABSENT:
                return value  # type: ignore[return-value]
        return self._committed[partition].get(key)

    def _write(self, partition: int, key: bytes, value: bytes | None) -> None:
        overlay = self._overlay.get(partition)
        if overlay is None:
            overlay = self._overlay[partition] = {}
        overlay[key] = value

    def schedule(self, partition: int, key: bytes, value: bytes, due_ms: int) -> None:
        self._write(partition, key, value)
        self._due.push(partition, due_ms, key)

    def cancel(self, partition: int, key: bytes) -> None:
        if self.get(partition, key) is not None:
            self._write(partition, key, None)

    def next_due(self) -> int | None:
        return self._due.next_deadline()

    def pop_due(self, now_ms: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(partition, key, value) of every timer due at ``now_ms``; each is tombstoned in the
        overlay as it is yielded."""
        for partition, due, key in self._due.pop_due(now_ms):
            if partition not in self._committed:
                continue
            value = self.get(partition, key)
            if value is None or timer_due(value) != due:
                continue  # cancelled, already fired, or re-scheduled (its own entry remains)
            self._write(partition, key, None)
            yield partition, key, value

    # --- transaction boundary (same contract as StateStore) -----------------------------------

    def pending(self) -> Iterator[tuple[int, dict[bytes, bytes | None]]]:
        yield from self._overlay.items()

    def has_pending(self) -> bool:
        return bool(self._overlay)

    def apply_overlay(self, positions: dict[int, int] | None = None) -> None:
        for partition, overlay in self._overlay.items():
            timers = self._committed.get(partition)
            if timers is None:
                continue
            for key, value in overlay.items():
                if value is None:
                    timers.pop(key, None)
                else:
                    timers[key] = value
        self._overlay.clear()
        self._due.commit()

    def discard_overlay(self) -> None:
        self._overlay.clear()
        self._due.abort()
