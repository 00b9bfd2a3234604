"""Persistent local snapshot of committed state (``--state-dir``), so a restart replays only
the changelog's tail instead of the whole changelog.

One SQLite file per application and worker: rows ``(partition, changelog key, changelog
value)`` plus, per partition, the changelog offset the rows are complete up to. The committed
transactions' writes are gathered in memory (last write per key) and written, rows and
positions in one SQLite transaction, at most every ``FLUSH_S`` and before any read or
replacement, so a snapshot is always the changelog up to its position, possibly older than
Kafka: replaying from the position makes it current (records are last-write-wins per key, so
replaying a record twice is harmless). A kill -9 loses at most ``FLUSH_S`` of commits from the
snapshot, which the next start replays from the changelog.

A snapshot older than ``max_age_s`` is ignored: past the changelog's delete.retention.ms,
compaction may have removed tombstones the snapshot never saw, and a deleted value would
come back.

Loading is the longest step of a restart (about a second per million rows), so a worker
reads the whole file on a thread of its own as it starts (``prefetch``), while it connects
and joins its group, which is mostly waiting on the network; ``load`` then takes a
partition's rows from there. Anything written to the file meanwhile makes what was read
stale, and it is dropped.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

# Gathering commits cuts the rows written: a busy worker updates the same keys many times a
# second. Written after every commit, the snapshot cost 6-13 us of CPU per record over 10,000
# keys, gathered 1-3.5 us (bench/state_store.py, docs/performance.md).
FLUSH_S = 0.5
# ... and a flush writes for at most this long (in slices of _SLICE_ROWS rows), the rest in the
# next rounds of the worker's loop, and a partition's position only once all its rows are
# written. A restore hands over every row it read: 5,000,000 rows written at once stopped the
# worker, every partition, for 13-16 s; in slices of 10,000 rows (and 10 ms) every round the
# writing left too little of the loop for processing (single runs of bench/restoreload.py's
# part alone, docs/performance.md "Restore under load").
FLUSH_SLICE_S = 0.005
# ... or this long while the worker is idle (nothing consumed for IDLE_S): after a restart's
# restore, say, when no record waits for the loop and a kill -9 before the snapshot caught up
# means replaying from the changelog what it lacks
IDLE_FLUSH_SLICE_S = 0.05
# Rows per slice: as many as the last flushes wrote in a slice's time, within these bounds. In
# ascending key order a row costs about 4 us; in random order about 27 us, as SQLite rewrites
# a page per row, and a fixed 1,000 rows made a 5 ms slice 72 ms (bench/state_store.py
# --catch-up, 1,000,000 rows, one run; docs/performance.md "Restart and the snapshot's write
# rate")
_SLICE_ROWS = 1_000
_MIN_SLICE_ROWS = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    partition INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (partition, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS position (
    partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL, saved_at_ms INTEGER NOT NULL);
"""


class LocalSnapshot:
    def __init__(self, path: Path, max_age_s: float = 12 * 3600) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max_age_ms = int(max_age_s * 1000)
        self._db = sqlite3.connect(path, isolation_level=None)
        # WAL + NORMAL: a process crash loses nothing; an OS crash may lose the latest
        # commits, which leaves an older but consistent snapshot.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._rows: dict[int, dict[bytes, bytes | None]] = {}  # committed, not yet written
        self._positions: dict[int, int] = {}
        self._due = time.monotonic() + FLUSH_S
        self._prefetch: _Prefetch | None = None
        self._catching_up: tuple[int, float] | None = None  # (rows, since) of a restore's rows
        self._row_s = 0.0  # seconds a row took in the last flushes (0: not measured yet)

    def close(self) -> None:
        self.flush(everything=True)
        self._prefetch = None
        self._db.close()

    def prefetch(self) -> None:
        """Start reading every partition the file holds on a thread of its own, for the
        ``load`` calls of the first assignment (the module doc says why)."""
        if self._prefetch is None:
            self._prefetch = _Prefetch(self.path, self._max_age_ms)

    def drop_prefetched(self) -> None:
        """Forget what ``prefetch`` read and ``load`` did not take (partitions this worker
        was not assigned): it is memory, and stale after the next write."""
        self._prefetch = None

    def load(self, partition: int) -> tuple[dict[bytes, bytes], int]:
        """The partition's rows and the changelog offset to replay from (0: no snapshot)."""
        self.flush(everything=True)
        found = self._prefetched(partition)
        position = (
            self._db.execute(
                "SELECT next_offset, saved_at_ms FROM position WHERE partition = ?", (partition,)
            ).fetchone()
            if found is None
            else found[1]
        )
        if position is None:
            # rows without a position: a backlog cut short (a crash): not to be trusted
            with self._transaction():
                self._db.execute("DELETE FROM state WHERE partition = ?", (partition,))
            return {}, 0
        next_offset, saved_at_ms = position
        if time.time() * 1000 - saved_at_ms > self._max_age_ms:
            log.info("snapshot too old, restoring from the changelog partition=%d", partition)
            self.discard(partition)
            return {}, 0
        return (_read_rows(self._db, partition) if found is None else found[0]), next_offset

    def _prefetched(self, partition: int) -> tuple[dict[bytes, bytes], tuple[int, int]] | None:
        """The partition's rows and (position, saved at) as ``prefetch`` read them, waiting
        for it; each partition once. None: not read ahead (no prefetch, it failed, the file
        had no such partition, or it was taken already): read it from the file."""
        prefetch = self._prefetch
        if prefetch is None:
            return None
        result = prefetch.result()
        if result is None:  # it failed (logged)
            self._prefetch = None
            return None
        positions, rows = result
        position = positions.pop(partition, None)
        if position is None:
            return None
        return rows.pop(partition, {}), position

    def discard(self, partition: int) -> None:
        self._prefetch = None  # a write: what was read may be stale
        self._rows.pop(partition, None)
        self._positions.pop(partition, None)
        with self._transaction():
            self._db.execute("DELETE FROM state WHERE partition = ?", (partition,))
            self._db.execute("DELETE FROM position WHERE partition = ?", (partition,))

    def save(
        self,
        changes: Mapping[int, Mapping[bytes, bytes | None]],
        positions: Mapping[int, int],
        adopt: bool = False,
    ) -> None:
        """Take one committed transaction's writes (or a restore's rows) and the partitions'
        new positions; written with the others gathered at most ``FLUSH_S`` later, for at
        most ``FLUSH_SLICE_S`` at a time. ``adopt``: ``changes``' dicts are the caller's no
        more, and are kept as they are (a restore's millions of rows, not copied)."""
        rows = self._rows
        if adopt:
            big = sum(len(writes) for writes in changes.values())
            if big > _SLICE_ROWS:  # a restore's rows: written over many rounds, logged when done
                rows_before, since = self._catching_up or (0, time.monotonic())
                self._catching_up = (rows_before + big, since)
        for partition, writes in changes.items():
            gathered = rows.get(partition)
            if gathered is None:
                rows[partition] = writes if adopt and isinstance(writes, dict) else dict(writes)
            else:
                gathered.update(writes)
        self._positions.update(positions)
        if time.monotonic() >= self._due:
            self.flush()

    @property
    def backlog(self) -> int:
        """Rows gathered and not written yet."""
        return sum(len(writes) for writes in self._rows.values())

    def flush_if_due(self, idle: bool = False) -> bool:
        """Write what was gathered once ``FLUSH_S`` has passed, or at once while more than a
        slice waits: called by the worker's loop, so that a worker that fell idle after its
        last commit still writes it, and a restore's rows go out a slice per round (a longer
        one while the worker is ``idle``). True while more than a slice still waits (the loop
        should come back at once)."""
        if not self._rows and not self._positions:
            return False
        if time.monotonic() >= self._due or self.backlog > _SLICE_ROWS:
            self.flush(slice_s=IDLE_FLUSH_SLICE_S if idle else FLUSH_SLICE_S)
        return bool(self._rows) and self.backlog > _SLICE_ROWS

    def flush(self, everything: bool = False, slice_s: float | None = None) -> None:
        """Write what ``save`` gathered, rows and positions in one SQLite transaction: for at
        most ``slice_s`` (default ``FLUSH_SLICE_S``; ``everything``: all), taking rows from
        the gathered dicts,
        which keep the rest (a later ``save`` of a key replaces its pending value there, so
        the newer value is the one written). A partition's position is written only with its
        last rows: until then the file holds its older position, from which a restart replays
        what it lacks (records are last-write-wins per key), or none, and ``load`` drops the
        rows."""
        clock = time.monotonic
        self._due = clock() + FLUSH_S
        if not self._rows and not self._positions:
            return
        self._prefetch = None  # a write: what was read may be stale
        slice_s = FLUSH_SLICE_S if slice_s is None else slice_s
        started = clock()
        deadline = None if everything else started + slice_s
        rows = self._slice_rows(slice_s)
        now_ms = int(time.time() * 1000)
        written: list[tuple[int, dict[bytes, bytes | None]]] = []
        try:
            with self._transaction():
                for partition in list(self._rows):
                    writes = self._rows[partition]
                    # at least one slice per flush, then until the deadline
                    while writes and (deadline is None or not written or clock() < deadline):
                        if deadline is None or len(writes) <= rows:
                            taken, writes = writes, {}
                        else:
                            keys = list(itertools.islice(writes, rows))
                            taken = {k: writes.pop(k) for k in keys}
                        written.append((partition, taken))
                        self._write(partition, taken)
                    if writes:
                        self._rows[partition] = writes
                        break  # out of time
                    del self._rows[partition]
                ready = {p: o for p, o in self._positions.items() if p not in self._rows}
                self._db.executemany(
                    "INSERT OR REPLACE INTO position VALUES (?, ?, ?)",
                    [(p, offset, now_ms) for p, offset in ready.items()],
                )
        except BaseException:
            for partition, taken in written:  # a failed write keeps what it held
                pending = self._rows.setdefault(partition, {})
                for key, value in taken.items():
                    pending.setdefault(key, value)
            raise
        for p in ready:
            del self._positions[p]
        count = sum(len(taken) for _, taken in written)
        if count >= _MIN_SLICE_ROWS:  # the transaction's cost included: it grows with the rows
            row_s = (clock() - started) / count
            self._row_s = row_s if not self._row_s else self._row_s + 0.3 * (row_s - self._row_s)
        if self._catching_up is not None and not self._rows:
            rows, since = self._catching_up
            self._catching_up = None
            log.info(
                "local snapshot caught up rows=%d seconds=%.1f", rows, time.monotonic() - since
            )

    def _slice_rows(self, slice_s: float) -> int:
        """Rows per slice: what the last flushes wrote in ``slice_s`` (``_SLICE_ROWS``)."""
        if not self._row_s:
            return _SLICE_ROWS
        return max(_MIN_SLICE_ROWS, min(_SLICE_ROWS, int(slice_s / self._row_s)))

    def _write(self, partition: int, writes: Mapping[bytes, bytes | None]) -> None:
        upserts = [(partition, k, v) for k, v in writes.items() if v is not None]
        deletes = [(partition, k) for k, v in writes.items() if v is None]
        if upserts:
            self._db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?)", upserts)
        if deletes:
            self._db.executemany("DELETE FROM state WHERE partition = ? AND key = ?", deletes)

    def replace(self, partition: int, rows: Mapping[bytes, bytes], next_offset: int) -> None:
        """Store a whole partition after a restore from the changelog."""
        self.flush(everything=True)
        self._prefetch = None  # a write: what was read may be stale
        with self._transaction():
            self._db.execute("DELETE FROM state WHERE partition = ?", (partition,))
            self._db.executemany(
                "INSERT INTO state VALUES (?, ?, ?)", [(partition, k, v) for k, v in rows.items()]
            )
            self._db.execute(
                "INSERT OR REPLACE INTO position VALUES (?, ?, ?)",
                (partition, next_offset, int(time.time() * 1000)),
            )

    def _transaction(self) -> _Txn:
        return _Txn(self._db)


def _read_rows(db: sqlite3.Connection, partition: int) -> dict[bytes, bytes]:
    return dict(db.execute("SELECT key, value FROM state WHERE partition = ?", (partition,)))


class _Prefetch:
    """Every partition's rows and position, read in one SQLite read transaction (so each
    partition's rows match its position) on a thread with its own connection; partitions
    older than ``max_age_ms`` are left to ``load``, which discards them."""

    __slots__ = ("_thread", "_result")

    def __init__(self, path: Path, max_age_ms: int) -> None:
        self._result: tuple[dict[int, tuple[int, int]], dict[int, dict[bytes, bytes]]] | None
        self._result = None
        self._thread = threading.Thread(
            target=self._read,
            args=(path, max_age_ms),
            name="kstatefun-snapshot-prefetch",
            daemon=True,
        )
        self._thread.start()

    def _read(self, path: Path, max_age_ms: int) -> None:
        started = time.monotonic()
        oldest_ms = time.time() * 1000 - max_age_ms
        try:
            db = sqlite3.connect(path, isolation_level=None)
            try:
                db.execute("BEGIN")
                positions = {
                    p: (offset, saved)
                    for p, offset, saved in db.execute("SELECT * FROM position")
                    if saved >= oldest_ms
                }
                rows = {p: _read_rows(db, p) for p in positions}
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.Error as e:
            log.warning("could not read the local snapshot ahead, reading it later: %s", e)
            return
        self._result = positions, rows
        log.info(
            "read local snapshot ahead partitions=%d keys=%d seconds=%.2f",
            len(rows),
            sum(map(len, rows.values())),
            time.monotonic() - started,
        )

    def result(
        self,
    ) -> tuple[dict[int, tuple[int, int]], dict[int, dict[bytes, bytes]]] | None:
        """What was read (waiting until it is), None if reading failed."""
        self._thread.join()
        return self._result


class _Txn:
    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
