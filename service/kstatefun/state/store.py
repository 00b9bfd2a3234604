"""Local state: the committed store per partition plus the open transaction's overlay.

Keys and values are the changelog's own bytes (wire/avro.py): restoring a record is one dict
assignment, and a commit produces the overlay without re-encoding anything.

Invariant (with runtime/commit.py): ``committed`` == the changelog up to the last committed
transaction; the overlay holds exactly the writes of the open transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from kstatefun.state.deadlines import DeadlineQueue
from kstatefun.wire.avro import changelog_expire_at

if TYPE_CHECKING:
    from kstatefun.state.snapshot import LocalSnapshot

_ABSENT = object()


class StateStore:
    __slots__ = ("_committed", "_overlay", "snapshot", "_expiry")

    def __init__(self, snapshot: LocalSnapshot | None = None) -> None:
        self._committed: dict[int, dict[bytes, bytes]] = {}
        self._overlay: dict[int, dict[bytes, bytes | None]] = {}
        self.snapshot = snapshot
        self._expiry = DeadlineQueue()  # values with a TTL, by expiry time

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
        self._expiry.drop(partition)

    def restored(self, partition: int) -> None:
        """After a restore filled ``partition``: index the expiry of values that have one."""
        self._expiry.rebuild(
            partition,
            [
                (expire_at, key)
                for key, value in self._committed[partition].items()
                if value[-1] != 0 and (expire_at := changelog_expire_at(value)) is not None
            ],
        )

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

    def put(
        self, partition: int, key: bytes, value: bytes | None, expire_at_ms: int | None = None
    ) -> None:
        """Record a write (``None`` deletes) in the open transaction's overlay; a value with a
        TTL passes its ``expire_at_ms`` so that ``expire_due`` finds it."""
        overlay = self._overlay.get(partition)
        if overlay is None:
            overlay = self._overlay[partition] = {}
        overlay[key] = value
        if expire_at_ms is not None:
            self._expiry.push(partition, expire_at_ms, key)

    def next_expiry(self) -> int | None:
        return self._expiry.next_deadline()

    def expire_due(self, now_ms: int) -> int:
        """Delete (in the overlay, so the changelog gets tombstones) every value whose TTL has
        passed at ``now_ms``; returns how many."""
        expired = 0
        for partition, _, key in self._expiry.pop_due(now_ms):
            if partition not in self._committed:
                continue
            value = self.get(partition, key)
            if value is None:
                continue
            expire_at = changelog_expire_at(value)
            if expire_at is not None and expire_at <= now_ms:
                self.put(partition, key, None)
                expired += 1
        return expired

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
        self._expiry.commit()
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
        self._expiry.abort()
