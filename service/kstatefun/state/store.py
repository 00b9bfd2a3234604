"""Local state: the committed store per partition plus the open transaction's overlay.

Keys and values are the changelog's own bytes (wire/avro.py): restoring a record is one dict
assignment, and a commit produces the overlay without re-encoding anything.

Invariant (with runtime/commit.py): ``committed`` == the changelog up to the last committed
transaction; the overlay holds exactly the writes of the open transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kstatefun.state.snapshot import LocalSnapshot

_ABSENT = object()


class StateStore:
    __slots__ = ("_committed", "_overlay", "snapshot")

    def __init__(self, snapshot: LocalSnapshot | None = None) -> None:
        self._committed: dict[int, dict[bytes, bytes]] = {}
        self._overlay: dict[int, dict[bytes, bytes | None]] = {}
        self.snapshot = snapshot

    # --- partitions ---------------------------------------------------------------------------

    def partitions(self) -> set[int]:
        return set(self._committed)

    def add_partition(self, partition: int) -> dict[bytes, bytes]:
        """Start an empty store for ``partition`` (restore fills it) and return it."""
        store: dict[bytes, bytes] = {}
        self._committed[partition] = store
        return store

    def drop_partition(self, partition: int) -> None:
        self._committed.pop(partition, None)
        self._overlay.pop(partition, None)

    def size(self, partition: int) -> int:
        return len(self._committed.get(partition, ()))

    # --- reads and writes ---------------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The value as this transaction sees it: overlay first, then the committed store."""
        overlay = self._overlay.get(partition)
        if overlay is not None:
            value = overlay.get(key, _ABSENT)
            if value is not _ABSENT:
                return value  # type: ignore[return-value]
        return self._committed[partition].get(key)

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Record a write (``None`` deletes) in the open transaction's overlay."""
        overlay = self._overlay.get(partition)
        if overlay is None:
            overlay = self._overlay[partition] = {}
        overlay[key] = value

    # --- transaction boundary -----------------------------------------------------------------

    def pending(self) -> Iterator[tuple[int, dict[bytes, bytes | None]]]:
        """The overlay's writes per partition, coalesced to the last write per key."""
        yield from self._overlay.items()

    def has_pending(self) -> bool:
        return bool(self._overlay)

    def apply_overlay(self, positions: dict[int, int] | None = None) -> None:
        """After a successful commit: fold the overlay into the committed store (and the
        local snapshot, with the changelog ``positions`` the commit reached)."""
        if self.snapshot is not None and (self._overlay or positions):
            self.snapshot.save(self._overlay, positions or {})
        for partition, overlay in self._overlay.items():
            store = self._committed.get(partition)
            if store is None:  # partition revoked while the transaction was open
                continue
            for key, value in overlay.items():
                if value is None:
                    store.pop(key, None)
                else:
                    store[key] = value
        self._overlay.clear()

    def discard_overlay(self) -> None:
        """After an abort: forget the open transaction's writes."""
        self._overlay.clear()
