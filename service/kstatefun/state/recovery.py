"""What a worker does with its local stores when it is assigned invocations partitions: the one
place for the rule that no local state is trusted without checking it against its topic.

- A partition no longer owned is dropped.
- A new partition is restored from its topic, from the position a disk-backed store
  (state/rocksdb.py) or a local snapshot (state/snapshot.py) holds, if any.
- A kept partition is *caught up*: every record its topic holds past the store's position is
  replayed before anything is processed. Between a revocation and the next assignment
  (eager rebalancing) a worker owns nothing, and a worker late to the join is left out without
  being told (no "lost" callback: it held nothing). Another worker may then have owned the
  partition and committed to it; replaying its records makes the kept rows current again.
  Records are last-write-wins per key, so replaying records of this worker's own is harmless,
  and a partition nobody else wrote costs one watermark query (state/restore.py).
"""

from __future__ import annotations

import logging

from kstatefun.state.partitioned import PartitionedOverlay, Rows
from kstatefun.state.restore import ChangelogRestorer
from kstatefun.state.snapshot import LocalSnapshot

log = logging.getLogger(__name__)


def recover(
    store: PartitionedOverlay,
    restorer: ChangelogRestorer,
    owned: set[int],
    snapshot: LocalSnapshot | None = None,
) -> list[int]:
    """Make ``store`` hold exactly its topic for every partition in ``owned`` and nothing else;
    returns the partitions restored from scratch (or from the snapshot)."""
    for p in store.partitions() - owned:
        store.drop_partition(p)
    stores: dict[int, Rows] = {}
    starts: dict[int, int] = {}
    for p in store.partitions():
        position = store.position(p)
        if position is not None:
            stores[p], starts[p] = store.rows(p), position
    kept = set(stores)
    fresh = sorted(owned - kept)  # new, or never completed a restore
    for p in fresh:
        stores[p] = store.add_partition(p)
        if store.disk is not None:
            starts[p] = store.local_position(p)
        elif snapshot is not None:
            rows, starts[p] = snapshot.load(p)
            if rows:
                stores[p].update(rows)  # type: ignore[attr-defined]
                log.info(
                    "loaded local snapshot partition=%d keys=%d replaying_from=%d",
                    p,
                    len(rows),
                    starts[p],
                )
    # the snapshot takes every record read; without one, a restore keeps no second copy
    changes: dict[int, dict[bytes, bytes | None]] | None = {} if snapshot is not None else None
    positions = restorer.restore(stores, starts, changes)
    if snapshot is not None and changes is not None:
        snapshot.save(changes, positions)
    for p in fresh:
        store.restored(p, positions[p])
    for p in sorted(kept):
        if positions[p] == starts[p]:
            continue
        read = restorer.last_read.get(p, 0)
        if read:
            log.warning(
                "kept partition=%d of %s has %d records past this worker's last commit: another "
                "worker owned it meanwhile (this one missed a rebalance); replayed offsets %d..%d",
                p,
                restorer.topic,
                read,
                starts[p],
                positions[p],
            )
        store.restored(p, positions[p])  # also rebuilds the due-time index
    return fresh
