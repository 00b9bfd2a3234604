"""What the state store and the timer store share: per partition, the committed rows (the
topic's own key and value bytes), the open transaction's overlay, and the topic offset the
committed rows are complete up to.

That offset (the *position*) is what makes kept state checkable: after a commit it is the offset
after this worker's last record in the partition, after a restore the offset the restore reached.
Whoever else appends to the partition moves its end past the position (state/recovery.py).

The committed rows of a partition are a ``Rows`` mapping: a plain dict for the memory store
(the record path reads it directly), ``RocksRows`` for the disk-backed one (state/rocksdb.py),
which then also takes each commit's writes and positions in one WriteBatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kstatefun.state.rocksdb import RocksStore

_ABSENT = object()


class Rows(Protocol):
    """The committed rows of one partition, as the overlay reads them and a restore writes them
    (``dict[bytes, bytes]`` is one)."""

    def get(self, key: bytes, /) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes, /) -> None: ...

    def pop(self, key: bytes, default: None, /) -> bytes | None: ...

    def clear(self) -> None: ...

    def items(self) -> Iterable[tuple[bytes, bytes]]: ...

    def __iter__(self) -> Iterator[bytes]: ...

    def __len__(self) -> int: ...


class PartitionedOverlay:
    __slots__ = ("_committed", "_overlay", "_positions", "_local_starts", "disk")

    def __init__(self, disk: RocksStore | None = None) -> None:
        self._committed: dict[int, Rows] = {}
        self._overlay: dict[int, dict[bytes, bytes | None]] = {}
        self._positions: dict[int, int] = {}
        self._local_starts: dict[int, int] = {}
        self.disk = disk  # None: the rows live in memory

    # --- partitions ---------------------------------------------------------------------------

    def partitions(self) -> set[int]:
        return set(self._committed)

    def add_partition(self, partition: int, loaded: dict[bytes, bytes] | None = None) -> Rows:
        """Start a partition (a restore fills it) and return its committed rows: in memory,
        ``loaded`` (a local snapshot's rows, taken as they are) or none; on disk, what the
        disk holds up to ``local_position``."""
        self._positions.pop(partition, None)
        rows: Rows
        if self.disk is None:
            rows = dict[bytes, bytes]() if loaded is None else loaded
        else:
            rows, self._local_starts[partition] = self.disk.open_partition(partition)
        self._committed[partition] = rows
        return rows

    def local_position(self, partition: int) -> int:
        """The offset the rows ``add_partition`` returned are complete up to (0: none)."""
        return self._local_starts.get(partition, 0)

    def rows(self, partition: int) -> Rows:
        """The committed rows of ``partition`` (a catch-up writes into them)."""
        return self._committed[partition]

    def position(self, partition: int) -> int | None:
        """The topic offset the committed rows of ``partition`` are complete up to (None:
        unknown, e.g. never restored)."""
        return self._positions.get(partition)

    def restored(self, partition: int, position: int) -> None:
        """After a restore or catch-up filled ``partition`` up to ``position``."""
        if self.disk is not None:
            self._committed[partition].flush(position)  # type: ignore[attr-defined]
        self._positions[partition] = position
        self._reindex(partition)

    def suspend(self, partition: int) -> None:
        """The partition is being caught up with its topic (state/recovery.py): nothing is
        due from it until ``restored`` rebuilds its index."""
        self._drop_index(partition)

    def drop_partition(self, partition: int) -> None:
        """Forget the partition (a disk keeps its rows and position for a later assignment)."""
        self._committed.pop(partition, None)
        self._local_starts.pop(partition, None)
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
        if self.disk is not None:
            self._fold_to_disk(positions or {})
            return
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

    def _fold_to_disk(self, positions: dict[int, int]) -> None:
        committed = self._committed
        overlay, self._overlay = self._overlay, {}  # gone even if the write fails: stopping
        self.disk.fold(overlay, positions, committed)  # type: ignore[union-attr]
        for partition, offset in positions.items():
            if partition in committed:
                self._positions[partition] = offset

    def discard_overlay(self) -> None:
        """After an abort: forget the open transaction's writes."""
        self._overlay.clear()
