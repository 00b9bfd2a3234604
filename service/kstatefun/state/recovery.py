"""What a worker does with its local stores when it is assigned invocations partitions: the one
place for the rule that no local state is trusted without checking it against its topic.

- A partition no longer owned is dropped.
- A new partition is restored from its topic, from the position a disk-backed store
  (state/rocksdb.py) or a local snapshot (state/snapshot.py) holds, if any.
- A kept partition is *caught up*: every record its topic holds past the store's position is
  replayed before anything of it is processed, fires or expires. Between a revocation and the
  next assignment (eager rebalancing) a worker owns nothing, and a worker late to the join is
  left out without being told (no "lost" callback: it held nothing). Another worker may then
  have owned the partition and committed to it; replaying its records makes the kept rows
  current again.
  Records are last-write-wins per key, so replaying records of this worker's own is harmless,
  and a partition nobody else wrote costs one watermark query (state/restore.py).
"""

from __future__ import annotations

import logging

from kstatefun.state.partitioned import PartitionedOverlay, Rows
from kstatefun.state.restore import ChangelogRestorer
from kstatefun.state.snapshot import LocalSnapshot

log = logging.getLogger(__name__)


class Recovery:
    """The recovery of one store (state, or timers) for one assignment, step by step: ``begin``
    drops what is no longer owned and starts the restores, each ``step`` reads one batch, and
    a complete partition waits in ``ready`` until ``hand_over`` gives it to the store
    (``restored``: its position set, its due-time index built). Until then nothing fires or
    expires from it. The caller hands a partition over once all of its stores are complete
    (runtime/assignment.py): a timer fired while the partition's state still restores would
    take the hop to an invocations partition not live here yet, and a later timer fired once
    it is live would overtake it."""

    def __init__(
        self,
        store: PartitionedOverlay,
        restorer: ChangelogRestorer,
        snapshot: LocalSnapshot | None = None,
    ) -> None:
        self.store = store
        self.restorer = restorer
        self.snapshot = snapshot
        self.pending: set[int] = set()  # owned partitions not restored yet
        self.fresh: list[int] = []  # restored from scratch (or the snapshot)
        self.ready: dict[int, int] = {}  # complete, not handed over yet: their positions
        self._starts: dict[int, int] = {}
        self._changes: dict[int, dict[bytes, bytes | None]] | None = None

    def begin(self, owned: set[int]) -> set[int]:
        """Make the store hold exactly the partitions in ``owned``, and start restoring
        them; returns those complete already (nothing to read)."""
        self.cancel()
        return self.add(owned, owned)

    def add(self, partitions: set[int], owned: set[int]) -> set[int]:
        """Start restoring ``partitions`` beside the restores in progress (an incremental
        assignment), after dropping what is not in ``owned`` (every partition the worker now
        owns); returns those complete already. A partition the store still holds with a
        position (kept across an eager rebalance) is caught up; any other starts afresh."""
        store = self.store
        for p in store.partitions() - owned:
            store.drop_partition(p)
        stores: dict[int, Rows] = {}
        for p in partitions:
            position = store.position(p)
            if position is not None:
                stores[p], self._starts[p] = store.rows(p), position
        fresh = sorted(partitions - set(stores))  # new, or never completed a restore
        self.fresh += fresh
        for p in fresh:
            stores[p], self._starts[p] = self._local_start(p)
        if self.snapshot is not None:
            self.snapshot.drop_prefetched()  # what is left belongs to no partition owned
        # the snapshot takes every record read; without one, a restore keeps no second copy
        if self._changes is None and self.snapshot is not None:
            self._changes = {}
        self.pending |= partitions
        complete = self.restorer.add(stores, {p: self._starts[p] for p in stores}, self._changes)
        for p in (self.restorer.active & partitions) - set(fresh):
            store.suspend(p)  # a kept partition fires nothing before its catch-up
        return self._finish(complete)

    def release(self, partitions: set[int]) -> None:
        """``partitions`` were revoked while the others stay (an incremental rebalance): stop
        restoring them and drop them from the store, so nothing of them fires or expires
        here (a disk keeps their rows and positions for a later assignment)."""
        self.restorer.remove(partitions)
        self.pending -= partitions
        for p in partitions:
            self.ready.pop(p, None)
        self.fresh = [p for p in self.fresh if p not in partitions]
        for p in partitions & self.store.partitions():
            self.store.drop_partition(p)

    def _local_start(self, p: int) -> tuple[Rows, int]:
        """A fresh partition's rows in the store and where its restore starts: a disk's or a
        snapshot's position (0: the beginning)."""
        if self.store.disk is not None or self.snapshot is None:
            return self.store.add_partition(p), self.store.local_position(p)
        loaded, start = self.snapshot.load(p)
        if loaded:
            log.info(
                "loaded local snapshot partition=%d keys=%d replaying_from=%d",
                p,
                len(loaded),
                start,
            )
        return self.store.add_partition(p, loaded), start

    def step(self, timeout_s: float = 0.0, limit: int | None = None) -> set[int]:
        """Read one batch (of at most ``limit`` records); returns the partitions it
        completed."""
        if not self.restorer.active:
            return set()
        return self._finish(self.restorer.step(timeout_s, limit))

    def cancel(self) -> None:
        """The assignment ends before its restores do: stop reading. The unfinished
        partitions have no position, so the next ``begin`` restores them anew."""
        self.restorer.cancel()
        self.pending = set()
        self.ready = {}
        self._changes = None
        self._starts = {}
        self.fresh = []

    def _finish(self, positions: dict[int, int]) -> set[int]:
        if self.snapshot is not None and self._changes is not None:
            for p, position in positions.items():
                changes = self._changes.pop(p, {})
                if changes and p in self.fresh and self._starts[p] == 0:
                    # read from the changelog's beginning: the whole partition
                    self.snapshot.rebase(p, changes, position)
                else:  # a tail: written a slice per loop round
                    self.snapshot.save({p: changes}, {p: position}, adopt=True)
        for p, position in positions.items():
            if p in self.fresh or position != self._starts[p]:  # else: kept, nothing to read
                self._note_catch_up(p, position)
                self.ready[p] = position
        self.pending -= set(positions)
        return set(positions)

    def hand_over(self, partitions: set[int]) -> None:
        """Give the complete ``partitions`` to the store: their positions set, their due-time
        indexes rebuilt (from now on they fire and expire)."""
        for p in sorted(partitions & set(self.ready)):
            self.store.restored(p, self.ready.pop(p))

    def _note_catch_up(self, p: int, position: int) -> None:
        start = self._starts[p]
        if p in self.fresh:
            return
        read = self.restorer.last_read.get(p, 0)
        if read:
            log.warning(
                "kept partition=%d of %s has %d records past this worker's last commit: another "
                "worker owned it meanwhile (this one missed a rebalance); replayed offsets %d..%d",
                p,
                self.restorer.topic,
                read,
                start,
                position,
            )


def recover(
    store: PartitionedOverlay,
    restorer: ChangelogRestorer,
    owned: set[int],
    snapshot: LocalSnapshot | None = None,
) -> list[int]:
    """Make ``store`` hold exactly its topic for every partition in ``owned`` and nothing else,
    at once (``Recovery`` run to the end); returns the partitions restored from scratch (or
    from the snapshot)."""
    recovery = Recovery(store, restorer, snapshot)
    recovery.begin(owned)
    while recovery.pending:
        recovery.step(0.2)
    recovery.hand_over(owned)
    return recovery.fresh
