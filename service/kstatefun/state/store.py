"""Local state: the committed store per partition plus the open transaction's overlay.

Keys and values are the changelog's own bytes (wire/avro.py): restoring a record is one dict
assignment, and a commit produces the overlay without re-encoding anything.

Invariant (with runtime/commit.py): ``committed`` == the changelog up to the partition's
position (state/partitioned.py); the overlay holds exactly the writes of the open transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kstatefun.state.deadlines import DeadlineQueue
from kstatefun.state.partitioned import PartitionedOverlay
from kstatefun.wire.avro import changelog_expire_at

if TYPE_CHECKING:
    from kstatefun.state.rocksdb import RocksStore
    from kstatefun.state.snapshot import LocalSnapshot


class StateStore(PartitionedOverlay):
    __slots__ = ("snapshot", "_expiry")

    def __init__(
        self, snapshot: LocalSnapshot | None = None, disk: RocksStore | None = None
    ) -> None:
        super().__init__(disk)
        self.snapshot = snapshot  # memory store only: the disk-backed one is its own snapshot
        self._expiry = DeadlineQueue()  # values with a TTL, by expiry time

    def _reindex(self, partition: int) -> None:
        self._expiry.rebuild(
            partition,
            [
                (expire_at, key)
                for key, value in self._committed[partition].items()
                if value[-1] != 0 and (expire_at := changelog_expire_at(value)) is not None
            ],
        )

    def _drop_index(self, partition: int) -> None:
        self._expiry.drop(partition)

    def size(self, partition: int) -> int:
        return len(self._committed.get(partition, ()))

    # --- reads and writes ---------------------------------------------------------------------

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

    def apply_overlay(self, positions: dict[int, int] | None = None) -> None:
        """After a successful commit: fold the overlay into the committed store (and the
        local snapshot, with the changelog ``positions`` the commit reached)."""
        if self.snapshot is not None and (self._overlay or positions):
            self.snapshot.save(self._overlay, positions or {})
        self._expiry.commit()
        super().apply_overlay(positions)

    def discard_overlay(self) -> None:
        super().discard_overlay()
        self._expiry.abort()
