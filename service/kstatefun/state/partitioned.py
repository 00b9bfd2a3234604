"""What the state store and the timer store share: per partition, the committed rows (the
topic's own key and value bytes), the open transaction's overlay, and the topic offset the
committed rows are complete up to.

That offset (the *position*) is what makes kept state checkable: after a commit it is the offset
after this worker's last record in the partition, after a restore the offset the restore reached.
Whoever else appends to the partition moves its end past the position (state/recovery.py).
"""

from __future__ import annotations

from collections.abc import Iterator

_ABSENT = object()


class PartitionedOverlay:
    __slots__ = ("_committed", "_overlay", "_positions")

    def __init__(self) -> None:
        self._committed: dict[int, dict[bytes, bytes]] = {}
        self._overlay: dict[int, dict[bytes, bytes | None]] = {}
        self._positions: dict[int, int] = {}

    # --- partitions ---------------------------------------------------------------------------

    def partitions(self) -> set[int]:
        return set(self._committed)

    def add_partition(self, partition: int) -> dict[bytes, bytes]:
        """Start an empty partition (a restore fills it) and return its committed rows."""
        rows: dict[bytes, bytes] = {}
        self._committed[partition] = rows
        self._positions.pop(partition, None)
        return rows

    def rows(self, partition: int) -> dict[bytes, bytes]:
        """The committed rows of ``partition`` (a catch-up writes into them)."""
        return self._committed[partition]

    def position(self, partition: int) -> int | None:
        """The topic offset the committed rows of ``partition`` are complete up to (None:
        unknown, e.g. never restored)."""
        return self._positions.get(partition)

    def restored(self, partition: int, position: int) -> None:
        """After a restore or catch-up filled ``partition`` up to ``position``."""
        self._positions[partition] = position
        self._reindex(partition)

    def drop_partition(self, partition: int) -> None:
        self._committed.pop(partition, None)
        self._overlay.pop(partition, None)
        self._positions.pop(partition, None)
        self._drop_index(partition)

    def _reindex(self, partition: int) -> None:
        """Rebuild the partition's due-time index from its committed rows."""

    def _drop_index(self, partition: int) -> None:
        """Forget the partition's due-time index."""

    # --- reads and writes ---------------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The value as the open transaction sees it: overlay first, then the committed rows."""
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

    # --- transaction boundary (runtime/commit.py) ---------------------------------------------

    def pending(self) -> Iterator[tuple[int, dict[bytes, bytes | None]]]:
        """The overlay's writes per partition, coalesced to the last write per key."""
        yield from self._overlay.items()

    def has_pending(self) -> bool:
        return bool(self._overlay)

    def apply_overlay(self, positions: dict[int, int] | None = None) -> None:
        """After a successful commit: fold the overlay into the committed rows; ``positions``
        are the offsets after the commit's last record per partition written."""
        for partition, overlay in self._overlay.items():
            rows = self._committed.get(partition)
            if rows is None:  # partition revoked while the transaction was open
                continue
            for key, value in overlay.items():
                if value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = value
        if positions:
            for partition, offset in positions.items():
                if partition in self._committed:
                    self._positions[partition] = offset
        self._overlay.clear()

    def discard_overlay(self) -> None:
        """After an abort: forget the open transaction's writes."""
        self._overlay.clear()
