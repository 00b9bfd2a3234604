"""Local state: the committed store per partition plus the open transaction's overlay.

Keys and values are the changelog's own bytes (wire/avro.py): restoring a record is one dict
assignment, and a commit produces the overlay without re-encoding anything.

Invariant (with runtime/commit.py): ``committed`` == the changelog up to the partition's
position (state/partitioned.py); the overlay holds exactly the writes of the open transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kstatefun.errors import FunctionError
from kstatefun.model import Address
from kstatefun.state.deadlines import DeadlineQueue
from kstatefun.state.partitioned import PartitionedOverlay
from kstatefun.wire.avro import (
    changelog_expire_at,
    changelog_expiries,
    changelog_key_prefix,
    changelog_key_suffix,
    changelog_may_expire,
    changelog_value_of_type,
    decode_changelog_key,
    decode_changelog_value,
    encode_changelog_value,
)

if TYPE_CHECKING:
    from kstatefun.state.rocksdb import RocksStore
    from kstatefun.state.snapshot import LocalSnapshot


_MISSING: Any = object()  # not in the overlay (where None is a deletion)


def is_expired(expire_at_ms: int | None, now_ms: int) -> bool:
    """The TTL rule, for every reader: a value is gone once ``now >= expire_at`` (Flink's
    ``lastAccess + ttl <= now``), even before the sweep (``expire_due``) deletes it."""
    return expire_at_ms is not None and expire_at_ms <= now_ms


# The disk-backed store indexes a partition's TTLs after its assignment, this long per call of
# ``expire_due`` (once per round of the loop), instead of scanning every row before the
# partition serves anything: a takeover from a standby copy would otherwise wait for the scan.
INDEX_SLICE_S = 0.005
# ... and so does the memory store for a partition of more rows than this: indexing 5,000,000
# rows at once stopped every partition of the worker for about 2 s, and slices of 20 ms left
# too little of each round for processing (single runs of bench/restoreload.py's part alone)
INDEX_AT_ONCE = 50_000


def _expire_at(value: bytes) -> int | None:
    """The row's expiry, None without a TTL (the last byte tells most rows without decoding)."""
    return changelog_expire_at(value) if changelog_may_expire(value) else None


class StateStore(PartitionedOverlay):
    __slots__ = ("snapshot", "_expiry", "_indexing")

    def __init__(
        self, snapshot: LocalSnapshot | None = None, disk: RocksStore | None = None
    ) -> None:
        super().__init__(disk)
        self.snapshot = snapshot  # memory store only: the disk-backed one is its own snapshot
        self._expiry = DeadlineQueue()  # values with a TTL, by expiry time
        # partitions whose rows are still being indexed (``_index_some``): disk-backed ones,
        # and big ones in memory
        self._indexing: dict[int, Iterator[tuple[bytes, bytes]]] = {}

    def _reindex(self, partition: int) -> None:
        committed = self._committed[partition]
        if self.disk is None and len(committed) <= INDEX_AT_ONCE:
            self._expiry.rebuild(partition, changelog_expiries(committed.items()))
            return
        # Until the scan is done a due value may be found late: it is deleted later, never
        # served (reads apply the TTL rule, is_expired). A write meanwhile pushes its own
        # entry; an entry the scan finds for a value since overwritten is checked when due.
        self._expiry.rebuild(partition, [])
        if self.disk is None:  # the keys as they are now; each value as it is when scanned
            keys = list(committed)
            self._indexing[partition] = ((k, v) for k in keys if (v := committed.get(k)))
        elif self.disk.may_expire(partition):  # else no row has a TTL: nothing to scan for
            self._indexing[partition] = iter(committed.items())

    def _index_some(self) -> bool:
        """Index rows of the partitions still being indexed, for at most ``INDEX_SLICE_S``;
        True when every partition is indexed."""
        if not self._indexing:
            return True
        deadline = time.monotonic() + INDEX_SLICE_S
        push = self._expiry.push
        for partition, rows in list(self._indexing.items()):
            for n, (key, value) in enumerate(rows):
                if (expire_at := _expire_at(value)) is not None:
                    push(partition, expire_at, key)
                if n % 256 == 255 and time.monotonic() >= deadline:
                    return False
            del self._indexing[partition]
            if time.monotonic() >= deadline:
                return not self._indexing
        return True

    def _drop_index(self, partition: int) -> None:
        self._expiry.drop(partition)
        self._indexing.pop(partition, None)

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

    # --- function state by address and name (encoded here, via wire/avro.py) ----------------

    @staticmethod
    def key_of(address: Address) -> bytes:
        """The changelog key prefix of ``address``'s states: computed once per invocation."""
        return changelog_key_prefix(address.typename, address.id)

    def read(
        self, partition: int, key: bytes, name: str, now_ms: int, declared: str | None = None
    ) -> bytes | None:
        """The live value of state ``name`` of the address whose ``key_of`` is ``key``, or None
        (absent or expired). With ``declared``, a value stored with another type name raises
        FunctionError (an embedded function's ValueSpec changed type)."""
        full = key + changelog_key_suffix(name)
        overlay = self._overlay.get(partition)  # get(), inline: once per state read
        raw = _MISSING if overlay is None else overlay.get(full, _MISSING)
        if raw is _MISSING:
            raw = self._committed[partition].get(full)
        if raw is None:
            return None
        if declared is None:
            value = decode_changelog_value(raw)
            data, expire_at = value.value, value.expire_at_ms
        else:
            found = changelog_value_of_type(raw, declared)
            if found is None:
                raise _type_changed(raw, full, declared)
            data, expire_at = found
        if expire_at is None:  # the usual value: no TTL
            return data
        return None if is_expired(expire_at, now_ms) else data

    def write(
        self,
        partition: int,
        key: bytes,
        name: str,
        typename: str,
        value: bytes | None,
        expire_at_ms: int | None,
    ) -> None:
        """Write (``value`` None: delete) state ``name`` of the address ``key`` in the overlay."""
        full = key + changelog_key_suffix(name)
        overlay = self._overlay.get(partition)  # put(), inline: once per state write
        if overlay is None:
            overlay = self._overlay[partition] = {}
        if value is None:
            overlay[full] = None
            return
        overlay[full] = encode_changelog_value(typename, value, expire_at_ms)
        if expire_at_ms is not None:
            self._expiry.push(partition, expire_at_ms, full)

    def refresh(
        self, partition: int, key: bytes, name: str, now_ms: int, expire_at_ms: int
    ) -> None:
        """Move the expiry of a live value to ``expire_at_ms`` (absent or expired: nothing)."""
        full = key + changelog_key_suffix(name)
        raw = self.get(partition, full)
        if raw is None:
            return
        value = decode_changelog_value(raw)
        if is_expired(value.expire_at_ms, now_ms):
            return  # the sweep deletes it
        self.put(
            partition,
            full,
            encode_changelog_value(value.typename, value.value, expire_at_ms),
            expire_at_ms,
        )

    # --- expiry ---------------------------------------------------------------------------------

    def next_expiry(self) -> int | None:
        if self._indexing:
            return 0  # rows left to index (expire_due): due at once, the loop comes back soon
        return self._expiry.next_deadline()

    def expire_due(self, now_ms: int) -> int:
        """Delete (in the overlay, so the changelog gets tombstones) every value whose TTL has
        passed at ``now_ms``; returns how many."""
        expired = 0
        self._index_some()
        for partition, _, key in self._expiry.pop_due(now_ms):
            if partition not in self._committed:
                continue
            value = self.get(partition, key)
            if value is None:
                continue
            if is_expired(changelog_expire_at(value), now_ms):
                self.put(partition, key, None)
                expired += 1
        return expired

    # --- transaction boundary -----------------------------------------------------------------

    def apply_overlay(self, positions: dict[int, int] | None = None) -> None:
        """After a successful commit: fold the overlay into the committed store (and the
        local snapshot, with the changelog ``positions`` the commit reached)."""
        snapshot = self.snapshot
        if snapshot is not None and (self._overlay or positions):
            snapshot.save(self._overlay, positions or {})
        self._expiry.commit()
        super().apply_overlay(positions)
        if snapshot is not None:
            for partition in snapshot.compactable():
                # a restored partition's rows hold all the snapshot has of it (a partition
                # being restored has no position: its rows may still lack some)
                if self._positions.get(partition) is not None:
                    snapshot.compact(partition, self._committed[partition])  # type: ignore[arg-type]

    def discard_overlay(self) -> None:
        super().discard_overlay()
        self._expiry.abort()


def _type_changed(raw: bytes, full_key: bytes, declared: str) -> FunctionError:
    ftype, fid, name = decode_changelog_key(full_key)
    return FunctionError(
        f"state '{name}' of '{ftype}/{fid}' holds a value of type "
        f"'{decode_changelog_value(raw).typename}' but its ValueSpec declares "
        f"'{declared}': migrate or delete the old value before changing a "
        "ValueSpec's type"
    )
