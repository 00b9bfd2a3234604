"""Persistent local snapshot of committed state (``--state-dir``), so a restart replays only
the changelog's tail instead of the whole changelog.

Per application and worker, one SQLite file and a directory of *base images* beside it.
Per partition the snapshot is: a base image (optional), the rows written since it (the
*delta*: SQLite rows ``(partition, seq, rows, chunk)``, each chunk the marshalled keys and
values of one slice of a flush, a None value deleting the key), and the changelog offset the
two together are complete up to (the *position*, in SQLite with the base image's
generation). Loading a partition is its base image, then its delta's chunks in ``seq``
order on top. A chunk costs well under a microsecond of CPU a row to write, where a SQLite
row per key cost 3-5 us (``INSERT OR REPLACE`` into a B-tree; docs/performance.md, "The
snapshot's delta in chunks").

- The committed transactions' writes are gathered in memory (last write per key) and written
  to the delta, rows and positions in one SQLite transaction, at most every ``FLUSH_S`` and
  before any read, so a snapshot is always the changelog up to its position, possibly older
  than Kafka: replaying from the position makes it current (records are last-write-wins per
  key, so replaying a record twice is harmless). A kill -9 loses at most ``FLUSH_S`` of
  commits from the snapshot, which the next start replays from the changelog.
- A partition's delta grows with every flush. Once it holds more than ``COMPACT_FACTOR``
  times the partition's keys (and at least ``COMPACT_MIN_ROWS``), the state store hands the
  partition's committed rows to ``compact``, which writes a copy of them as a new base image,
  a chunk per round like a rebase below; once complete, one SQLite transaction makes it the
  partition's base and deletes the chunks it covers (those written before the copy). The
  chunks written meanwhile stay, on top, and so does the position. The copy can be newer
  than the position (commits gathered and not yet written): harmless, as replaying from an
  older position is. A crash before the switch leaves the old base and the whole delta.
- A partition restored from the beginning of its changelog is written as a new base image
  (``rebase``): the restore's rows in chunks of marshalled key and value lists, written to a
  file a slice per round of the loop, about 0.1 us of CPU a row, where inserting them into
  SQLite cost 4 us a row in ascending key order and 27 us in random order (docs/performance.md
  "Restart and the snapshot's write rate"). Only once the file is complete does one SQLite
  transaction switch the partition to it (its delta emptied, its position and generation
  set), so a crash at any moment leaves the old base and delta, or the new; the partition's
  own commits wait in memory meanwhile. Base files are written without fsync, like the
  SQLite file's WAL with synchronous=NORMAL: an OS crash may lose the latest; a base file
  found incomplete makes ``load`` restore the partition from the changelog.

A snapshot older than ``max_age_s`` is ignored: past the changelog's delete.retention.ms,
compaction may have removed tombstones the snapshot never saw, and a deleted value would
come back.

Loading is the longest step of a restart, so a worker reads the whole snapshot on a thread of
its own as it starts (``prefetch``), while it connects and joins its group, which is mostly
waiting on the network; ``load`` then takes a partition's rows from there. Anything written
meanwhile makes what was read stale, and it is dropped.
"""

from __future__ import annotations

import itertools
import logging
import marshal
import os
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

# Gathering commits cuts the rows written: a busy worker updates the same keys many times a
# second. Written after every commit, the snapshot cost 6-13 us of CPU per record over 10,000
# keys, gathered 1-3.5 us (bench/state_store.py, docs/performance.md).
FLUSH_S = 0.5
# ... and a flush writes for at most this long (in slices of _SLICE_ROWS rows, or chunks of a
# base image), the rest in the next rounds of the worker's loop, and a partition's position
# only once all its rows are written. A restore hands over every row it read: 5,000,000 rows
# written at once stopped the worker, every partition, for 13-16 s; in slices of 10,000 rows
# (and 10 ms) every round the writing left too little of the loop for processing (single runs
# of bench/restoreload.py's part alone, docs/performance.md "Restore under load").
FLUSH_SLICE_S = 0.005
# ... or this long while the worker is idle (nothing consumed for IDLE_S): after a restart's
# restore, say, when no record waits for the loop and a kill -9 before the snapshot caught up
# means replaying from the changelog what it lacks
IDLE_FLUSH_SLICE_S = 0.05
# Rows per slice of the delta (a chunk each): as many as the last flushes wrote in a slice's
# time, within these bounds. As SQLite rows, one per key, a row cost about 4 us in ascending
# key order and 27 us in random order, and a fixed 1,000 rows made a 5 ms slice 72 ms
# (bench/state_store.py --catch-up, docs/performance.md "Restart and the snapshot's write
# rate"); as chunks, a fraction of a microsecond
_SLICE_ROWS = 50_000
_MIN_SLICE_ROWS = 1_000
_ROW_S_GUESS = 1e-6  # before the first measurement: a busy loop's slices of 1,250 rows
# A backlog above this many rows (a restore's, handed over) is written a slice per round of
# the loop without waiting for FLUSH_S, and logged as ``local snapshot caught up`` when done
BACKLOG_ROWS = 1_000
# A partition's delta is compacted into a new base image once it holds more rows than this
# many times the partition's keys, and at least COMPACT_MIN_ROWS: loading reads at most about
# (1 + COMPACT_FACTOR) rows per key, and the copy ``compact`` takes (about 40 ns a key, on the
# worker's thread) comes once per COMPACT_FACTOR times the partition's size in writes
COMPACT_FACTOR = 2
COMPACT_MIN_ROWS = 100_000
# Rows per chunk of a base image: about 1.5 ms of marshalling and writing
_CHUNK_ROWS = 8_192

# The SQLite file's layout; a file of another version is emptied (it is a cache of the
# changelog: the partitions are restored from there)
# (chunks are marshalled, whose format may change between Python versions: a file written by
# another Python is emptied too)
_VERSION = 30_000 + 100 * sys.version_info[0] + sys.version_info[1]
_SCHEMA = """
CREATE TABLE delta (
    partition INTEGER NOT NULL, seq INTEGER NOT NULL, rows INTEGER NOT NULL, chunk BLOB NOT NULL,
    PRIMARY KEY (partition, seq)) WITHOUT ROWID;
CREATE TABLE position (
    partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL, saved_at_ms INTEGER NOT NULL,
    base INTEGER NOT NULL);
"""
# A partition's position, keeping its base image's generation
_SET_POSITION = (
    "INSERT INTO position VALUES (?, ?, ?, 0) ON CONFLICT (partition) DO UPDATE SET "
    "next_offset = excluded.next_offset, saved_at_ms = excluded.saved_at_ms"
)
# A base image file: this header (marshal's format may change between Python versions), then
# chunks, each its length (4 bytes) and the marshalled (keys, values) lists, then a length of
# 0 and the rows in all (8 bytes)
_BASE_MAGIC = b"KSFBASE1" + bytes(sys.version_info[:2])
_LENGTH = struct.Struct("<I")
_TOTAL = struct.Struct("<Q")


def base_dir_of(path: Path) -> Path:
    """The directory of base images beside the snapshot's SQLite file ``path``."""
    return path.with_name(path.name + ".base")


def _base_file(base_dir: Path, partition: int, generation: int) -> Path:
    return base_dir / f"p{partition}-g{generation}.bin"


class LocalSnapshot:
    def __init__(self, path: Path, max_age_s: float = 12 * 3600) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.base_dir = base_dir_of(path)
        self._max_age_ms = int(max_age_s * 1000)
        self._db = sqlite3.connect(path, isolation_level=None)
        # WAL + NORMAL: a process crash loses nothing; an OS crash may lose the latest
        # commits, which leaves an older but consistent snapshot.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._create_schema()
        self._rows: dict[int, dict[bytes, bytes | None]] = {}  # committed, not yet written
        self._positions: dict[int, int] = {}
        # partitions with a base image: its generation (file names; the next is one more)
        self._bases: dict[int, int] = dict(
            self._db.execute("SELECT partition, base FROM position WHERE base > 0")
        )
        self._next_base = max(self._bases.values(), default=0) + 1
        self._remove_stray_bases()
        self._writers: dict[int, _BaseWriter] = {}  # base images being written
        # the next chunk's seq, and the rows of each partition's delta
        self._seq = 1 + self._db.execute("SELECT coalesce(max(seq), 0) FROM delta").fetchone()[0]
        self._delta_rows: dict[int, int] = dict(
            self._db.execute("SELECT partition, sum(rows) FROM delta GROUP BY partition")
        )
        self._due = time.monotonic() + FLUSH_S
        self._prefetch: _Prefetch | None = None
        self._catching_up: tuple[int, float] | None = None  # (rows, since) of a restore's rows
        self._row_s = 0.0  # seconds a delta row took in the last flushes (0: not measured yet)

    def _create_schema(self) -> None:
        if self._db.execute("PRAGMA user_version").fetchone()[0] == _VERSION:
            return
        tables = [
            n for (n,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        if tables:
            log.info(
                "local snapshot of an older layout emptied, its partitions restore from the "
                "changelog path=%s",
                self.path,
            )
        with self._transaction():
            for table in tables:
                self._db.execute(f'DROP TABLE "{table}"')
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {_VERSION}")

    def _remove_stray_bases(self) -> None:
        """Delete base image files no position names: a rebase cut short, or replaced."""
        if not self.base_dir.is_dir():
            return
        kept = {_base_file(self.base_dir, p, g).name for p, g in self._bases.items()}
        for file in self.base_dir.iterdir():
            if file.name not in kept:
                file.unlink(missing_ok=True)

    def close(self) -> None:
        self.flush(everything=True)
        self._prefetch = None
        self._db.close()

    def prefetch(self) -> None:
        """Start reading every partition the snapshot holds on a thread of its own, for the
        ``load`` calls of the first assignment (the module doc says why)."""
        if self._prefetch is None:
            self._prefetch = _Prefetch(self.path, self.base_dir, self._max_age_ms)

    def drop_prefetched(self) -> None:
        """Forget what ``prefetch`` read and ``load`` did not take (partitions this worker
        was not assigned): it is memory, and stale after the next write."""
        self._prefetch = None

    def load(self, partition: int) -> tuple[dict[bytes, bytes], int]:
        """The partition's rows and the changelog offset to replay from (0: no snapshot)."""
        self.flush(everything=True)
        found = self._prefetched(partition)
        if found is None:
            position = self._db.execute(
                "SELECT next_offset, saved_at_ms, base FROM position WHERE partition = ?",
                (partition,),
            ).fetchone()
        else:
            position = found[1]
        if position is None:
            # rows without a position: a backlog cut short (a crash): not to be trusted
            with self._transaction():
                self._db.execute("DELETE FROM delta WHERE partition = ?", (partition,))
            self._delta_rows.pop(partition, None)
            return {}, 0
        next_offset, saved_at_ms, base = position
        if time.time() * 1000 - saved_at_ms > self._max_age_ms:
            log.info("snapshot too old, restoring from the changelog partition=%d", partition)
            self.discard(partition)
            return {}, 0
        rows = (
            _read_partition(self._db, self.base_dir, partition, base) if found is None else found[0]
        )
        if rows is None:
            log.warning(
                "local snapshot's base image of partition=%d is missing or incomplete (an OS "
                "crash?), restoring it from the changelog",
                partition,
            )
            self.discard(partition)
            return {}, 0
        return rows, next_offset

    def _prefetched(
        self, partition: int
    ) -> tuple[dict[bytes, bytes] | None, tuple[int, int, int]] | None:
        """The partition's rows (None: its base image is unreadable) and (position, saved at,
        base) as ``prefetch`` read them, waiting for it; each partition once. None: not read
        ahead (no prefetch, it failed, the file had no such partition, or it was taken
        already): read it from the file."""
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
        return rows.pop(partition, None), position

    def discard(self, partition: int) -> None:
        self._prefetch = None  # a write: what was read may be stale
        self._rows.pop(partition, None)
        self._positions.pop(partition, None)
        self._forget(partition)

    def _forget(self, partition: int) -> None:
        """Remove the partition from the files: rows, position, base image."""
        writer = self._writers.pop(partition, None)
        if writer is not None:
            writer.abandon()
        with self._transaction():
            self._db.execute("DELETE FROM delta WHERE partition = ?", (partition,))
            self._db.execute("DELETE FROM position WHERE partition = ?", (partition,))
        self._delta_rows.pop(partition, None)
        base = self._bases.pop(partition, 0)
        if base:
            _base_file(self.base_dir, partition, base).unlink(missing_ok=True)

    def save(
        self,
        changes: Mapping[int, Mapping[bytes, bytes | None]],
        positions: Mapping[int, int],
        adopt: bool = False,
    ) -> None:
        """Take one committed transaction's writes (or a restore's rows) and the partitions'
        new positions; written with the others gathered at most ``FLUSH_S`` later, for at
        most ``FLUSH_SLICE_S`` at a time. ``adopt``: ``changes``' dicts are the caller's no
        more, and are kept as they are (a restore's rows, not copied)."""
        rows = self._rows
        if adopt:
            self._note_backlog(sum(len(writes) for writes in changes.values()))
        for partition, writes in changes.items():
            gathered = rows.get(partition)
            if gathered is None:
                rows[partition] = writes if adopt and isinstance(writes, dict) else dict(writes)
            else:
                gathered.update(writes)
        self._positions.update(positions)
        if time.monotonic() >= self._due:
            self.flush()

    def rebase(self, partition: int, rows: dict[bytes, bytes | None], position: int) -> None:
        """Write ``rows``, the whole partition at changelog offset ``position`` (a restore
        from the changelog's beginning; a None value: a deleted key), as the partition's new
        base image, a chunk at a time from the next flush on. ``rows`` is the snapshot's from
        now on: nobody may change it. Until the image is complete the file holds nothing of
        the partition, and the partition's commits wait in memory."""
        self._prefetch = None  # a write: what was read may be stale
        self._forget(partition)
        generation = self._next_base
        self._next_base += 1
        self._writers[partition] = _BaseWriter(
            _base_file(self.base_dir, partition, generation), generation, rows, position
        )
        self._note_backlog(len(rows))

    def compactable(self) -> list[int]:
        """Partitions whose delta holds ``COMPACT_MIN_ROWS`` rows or more and no base image is
        being written for: the state store offers their rows to ``compact``."""
        return [
            p
            for p, rows in self._delta_rows.items()
            if rows >= COMPACT_MIN_ROWS and p not in self._writers
        ]

    def compact(self, partition: int, rows: Mapping[bytes, bytes]) -> bool:
        """If the partition's delta holds more than ``COMPACT_FACTOR`` times as many rows as
        ``rows`` (its committed rows, everything the snapshot holds of it and maybe newer),
        start writing a copy of them as its new base image, a chunk per flush; it replaces the
        base and the delta chunks written so far once complete (the module doc). True if it
        started."""
        delta = self._delta_rows.get(partition, 0)
        if (
            delta < COMPACT_MIN_ROWS
            or delta <= COMPACT_FACTOR * len(rows)
            or partition in self._writers
        ):
            return False
        generation = self._next_base
        self._next_base += 1
        self._writers[partition] = _BaseWriter(
            _base_file(self.base_dir, partition, generation),
            generation,
            dict(rows),
            0,
            covers=self._seq - 1,
        )
        log.info(
            "compacting the local snapshot partition=%d keys=%d delta_rows=%d",
            partition,
            len(rows),
            delta,
        )
        return True

    def _held(self) -> set[int]:
        """Partitions whose rows wait in memory for their base image (a rebase's)."""
        return {p for p, writer in self._writers.items() if writer.covers is None}

    def _note_backlog(self, rows: int) -> None:
        if rows > BACKLOG_ROWS:  # a restore's rows: written over many rounds, logged when done
            rows_before, since = self._catching_up or (0, time.monotonic())
            self._catching_up = (rows_before + rows, since)

    @property
    def backlog(self) -> int:
        """Rows gathered or handed over and not written yet."""
        return sum(len(writes) for writes in self._rows.values()) + sum(
            writer.left for writer in self._writers.values()
        )

    def flush_if_due(self, idle: bool = False) -> bool:
        """Write what was gathered once ``FLUSH_S`` has passed, or at once while more than
        ``BACKLOG_ROWS`` or a base image waits: called by the worker's loop, so that a worker
        that fell idle after its last commit still writes it, and a restore's rows go out a
        slice per round (a longer one while the worker is ``idle``). True while more still
        waits (the loop should come back at once)."""
        if not self._rows and not self._positions and not self._writers:
            return False
        if time.monotonic() >= self._due or self._writers or self.backlog > BACKLOG_ROWS:
            self.flush(slice_s=IDLE_FLUSH_SLICE_S if idle else FLUSH_SLICE_S)
        return bool(self._writers) or (bool(self._rows) and self.backlog > BACKLOG_ROWS)

    def flush(self, everything: bool = False, slice_s: float | None = None) -> None:
        """Write base images in progress, then what ``save`` gathered, for at most
        ``slice_s`` (default ``FLUSH_SLICE_S``; ``everything``: all of it)."""
        self._due = time.monotonic() + FLUSH_S
        if not self._rows and not self._positions and not self._writers:
            return
        self._prefetch = None  # a write: what was read may be stale
        slice_s = FLUSH_SLICE_S if slice_s is None else slice_s
        deadline = None if everything else time.monotonic() + slice_s
        if self._writers:
            self._write_bases(deadline)
        held = self._held()
        if any(p not in held for p in self._rows) or any(p not in held for p in self._positions):
            self._write_delta(deadline, slice_s)  # else all of it waits for its base image
        if self._catching_up is not None and not self._rows and not self._writers:
            rows, since = self._catching_up
            self._catching_up = None
            log.info(
                "local snapshot caught up rows=%d seconds=%.1f", rows, time.monotonic() - since
            )

    def _write_bases(self, deadline: float | None) -> None:
        """Write chunks of the base images in progress until ``deadline`` (at least one);
        switch a partition to its image once it is complete."""
        for partition, writer in list(self._writers.items()):
            try:
                if writer.write(deadline):
                    if writer.covers is None:
                        with self._transaction():
                            self._db.execute("DELETE FROM delta WHERE partition = ?", (partition,))
                            self._db.execute(
                                "INSERT OR REPLACE INTO position VALUES (?, ?, ?, ?)",
                                (
                                    partition,
                                    writer.position,
                                    int(time.time() * 1000),
                                    writer.generation,
                                ),
                            )
                        self._delta_rows.pop(partition, None)
                        self._bases[partition] = writer.generation
                    else:
                        self._switch_to_compacted(partition, writer)
                    del self._writers[partition]
            except BaseException:
                if writer.covers is not None:  # a compaction: the delta stays as it was
                    del self._writers[partition]
                    writer.abandon()
                    raise
                # the rows go the slower way, as delta rows (the file holds nothing of the
                # partition), under the commits gathered meanwhile
                del self._writers[partition]
                writer.abandon()
                rows = writer.rows
                rows.update(self._rows.get(partition, {}))
                self._rows[partition] = rows
                self._positions.setdefault(partition, writer.position)
                raise
            if deadline is not None and time.monotonic() >= deadline:
                return

    def _switch_to_compacted(self, partition: int, writer: _BaseWriter) -> None:
        """Make a compaction's complete image the partition's base, and delete the delta
        chunks it covers; a partition that has no position (any more) keeps none of it."""
        assert writer.covers is not None
        with self._transaction():
            adopted = (
                self._db.execute(
                    "UPDATE position SET base = ? WHERE partition = ?",
                    (writer.generation, partition),
                ).rowcount
                == 1
            )
            if adopted:
                self._db.execute(
                    "DELETE FROM delta WHERE partition = ? AND seq <= ?",
                    (partition, writer.covers),
                )
                left = self._db.execute(
                    "SELECT coalesce(sum(rows), 0) FROM delta WHERE partition = ?",
                    (partition,),
                ).fetchone()[0]
        if not adopted:
            writer.abandon()
            return
        self._prefetch = None  # a write: what was read may be stale
        old = self._bases.get(partition, 0)
        self._bases[partition] = writer.generation
        self._delta_rows[partition] = left
        if old:
            _base_file(self.base_dir, partition, old).unlink(missing_ok=True)

    def _write_delta(self, deadline: float | None, slice_s: float) -> None:
        """Write the gathered rows, rows and positions in one SQLite transaction, until
        ``deadline`` (at least one slice), taking rows from the gathered dicts, which keep the
        rest (a later ``save`` of a key replaces its pending value there, so the newer value
        is the one written). A partition's position is written only with its last rows: until
        then the file holds its older position, from which a restart replays what it lacks
        (records are last-write-wins per key), or none, and ``load`` drops the rows. The rows
        of a partition whose base image is being written wait for it."""
        clock = time.monotonic
        started = clock()
        rows = self._slice_rows(slice_s)
        now_ms = int(time.time() * 1000)
        written: list[tuple[int, dict[bytes, bytes | None]]] = []
        held = self._held()
        try:
            with self._transaction():
                for partition in list(self._rows):
                    if partition in held:
                        continue
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
                ready = {
                    p: o
                    for p, o in self._positions.items()
                    if p not in self._rows and p not in held
                }
                self._db.executemany(
                    _SET_POSITION, [(p, offset, now_ms) for p, offset in ready.items()]
                )
        except BaseException:
            for partition, taken in written:  # a failed write keeps what it held
                pending = self._rows.setdefault(partition, {})
                for key, value in taken.items():
                    pending.setdefault(key, value)
            raise
        for p in ready:
            del self._positions[p]
        delta_rows = self._delta_rows
        for partition, taken in written:
            delta_rows[partition] = delta_rows.get(partition, 0) + len(taken)
        count = sum(len(taken) for _, taken in written)
        if count >= _MIN_SLICE_ROWS:  # the transaction's cost included: it grows with the rows
            row_s = (clock() - started) / count
            self._row_s = row_s if not self._row_s else self._row_s + 0.3 * (row_s - self._row_s)

    def _slice_rows(self, slice_s: float) -> int:
        """Rows per slice: a quarter of what the last flushes wrote in ``slice_s`` (before any
        was measured, ``_ROW_S_GUESS`` a row), so that the slice begun just before the
        deadline overshoots it by little."""
        row_s = self._row_s or _ROW_S_GUESS
        return min(_SLICE_ROWS, max(_MIN_SLICE_ROWS, int(slice_s / row_s / 4)))

    def _write(self, partition: int, writes: Mapping[bytes, bytes | None]) -> None:
        """One chunk of the partition's delta (in the open SQLite transaction)."""
        seq = self._seq
        self._seq = seq + 1
        chunk = marshal.dumps((list(writes), list(writes.values())))
        self._db.execute(
            "INSERT INTO delta VALUES (?, ?, ?, ?)", (partition, seq, len(writes), chunk)
        )

    def _transaction(self) -> _Txn:
        return _Txn(self._db)


class _BaseWriter:
    """One base image being written: chunks of the rows' keys and values, marshalled, to a
    temporary file, renamed once complete."""

    __slots__ = (
        "path",
        "generation",
        "rows",
        "position",
        "covers",
        "left",
        "_keys",
        "_values",
        "_file",
    )

    def __init__(
        self,
        path: Path,
        generation: int,
        rows: dict[bytes, bytes | None],
        position: int,
        covers: int | None = None,
    ) -> None:
        """``covers``: a compaction's, the last delta chunk (seq) ``rows`` include, and
        ``position`` is not used; None: a rebase's, ``rows`` the whole partition at
        ``position``."""
        self.path = path
        self.generation = generation
        self.rows = rows
        self.position = position
        self.covers = covers
        self.left = len(rows)
        self._keys = iter(rows)  # the two walk the dict in the same order
        self._values = iter(rows.values())
        self._file: BinaryIO | None = None

    def write(self, deadline: float | None) -> bool:
        """Write chunks until ``deadline`` (at least one; None: all); True once the image is
        complete and in place."""
        file = self._file
        if file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            file = self._file = open(self._tmp, "wb")  # noqa: SIM115 (closed in write/abandon)
            file.write(_BASE_MAGIC)
        while keys := list(itertools.islice(self._keys, _CHUNK_ROWS)):
            blob = marshal.dumps((keys, list(itertools.islice(self._values, len(keys)))))
            file.write(_LENGTH.pack(len(blob)))
            file.write(blob)
            self.left -= len(keys)
            if self.left and deadline is not None and time.monotonic() >= deadline:
                return False
        file.write(_LENGTH.pack(0) + _TOTAL.pack(len(self.rows)))
        file.close()
        self._file = None
        os.replace(self._tmp, self.path)
        return True

    @property
    def _tmp(self) -> Path:
        return self.path.with_suffix(".tmp")

    def abandon(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)


def _read_base(path: Path) -> dict[bytes, bytes] | None:
    """A base image's rows; None if the file is missing, incomplete or another Python's."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(_BASE_MAGIC):
        return None
    view = memoryview(data)
    rows: dict[bytes, bytes] = {}
    at, total = len(_BASE_MAGIC), 0
    try:
        while length := _LENGTH.unpack_from(data, at)[0]:
            keys, values = marshal.loads(view[at + 4 : at + 4 + length])
            at += 4 + length
            rows.update(zip(keys, values, strict=True))
            total += len(keys)
            if None in values:  # deleted keys of a restore
                for key, value in zip(keys, values, strict=True):
                    if value is None:
                        del rows[key]
        at += 4
        complete = _TOTAL.unpack_from(data, at)[0] == total and at + _TOTAL.size == len(data)
    except (struct.error, ValueError, EOFError, TypeError):
        return None
    return rows if complete else None


def _read_partition(
    db: sqlite3.Connection, base_dir: Path, partition: int, base: int
) -> dict[bytes, bytes] | None:
    """A partition's base image (if any) and delta; None if the image (or a chunk of the
    delta) is unreadable."""
    rows = _read_base(_base_file(base_dir, partition, base)) if base else {}
    if rows is None:
        return None
    chunks = db.execute("SELECT chunk FROM delta WHERE partition = ? ORDER BY seq", (partition,))
    try:
        for (chunk,) in chunks:
            keys, values = marshal.loads(chunk)
            rows.update(zip(keys, values, strict=True))
            if None in values:  # deleted keys
                for key, value in zip(keys, values, strict=True):
                    if value is None:
                        del rows[key]
    except (ValueError, EOFError, TypeError):
        return None
    return rows


def read_snapshot(
    path: Path, base_dir: Path, oldest_ms: float = 0
) -> tuple[dict[int, tuple[int, int, int]], dict[int, dict[bytes, bytes] | None]]:
    """Every partition a snapshot holds, saved at ``oldest_ms`` or later, read in one SQLite
    read transaction (so each partition's rows match its position) on a connection of its
    own: per partition its (position, saved at, base) and its rows (None: its base image is
    unreadable). A worker's ``prefetch``; tests read a running worker's snapshot with it."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        positions = {
            p: (offset, saved, base)
            for p, offset, saved, base in db.execute("SELECT * FROM position")
            if saved >= oldest_ms
        }
        rows = {p: _read_partition(db, base_dir, p, positions[p][2]) for p in positions}
        db.execute("COMMIT")
    finally:
        db.close()
    return positions, rows


class _Prefetch:
    """``read_snapshot`` on a thread; partitions older than ``max_age_ms`` are left to
    ``load``, which discards them."""

    __slots__ = ("_thread", "_result")

    def __init__(self, path: Path, base_dir: Path, max_age_ms: int) -> None:
        self._result: (
            tuple[dict[int, tuple[int, int, int]], dict[int, dict[bytes, bytes] | None]] | None
        ) = None
        self._thread = threading.Thread(
            target=self._read,
            args=(path, base_dir, max_age_ms),
            name="kstatefun-snapshot-prefetch",
            daemon=True,
        )
        self._thread.start()

    def _read(self, path: Path, base_dir: Path, max_age_ms: int) -> None:
        started = time.monotonic()
        try:
            positions, rows = read_snapshot(path, base_dir, time.time() * 1000 - max_age_ms)
        except sqlite3.Error as e:
            log.warning("could not read the local snapshot ahead, reading it later: %s", e)
            return
        self._result = positions, rows
        log.info(
            "read local snapshot ahead partitions=%d keys=%d seconds=%.2f",
            len(rows),
            sum(len(r) for r in rows.values() if r is not None),
            time.monotonic() - started,
        )

    def result(
        self,
    ) -> tuple[dict[int, tuple[int, int, int]], dict[int, dict[bytes, bytes] | None]] | None:
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
