"""The disk-backed store (``state_store: rocksdb``): the committed rows of every partition in one
local RocksDB (through rocksdict), so state is bounded by disk rather than memory and a restart
replays only the changelog's tail.

One database per application and worker: ``<state_dir>/<app>-<instance>.rocksdb``. Keys:

- ``r`` + partition (4 bytes, big-endian) + changelog key → changelog value (the rows);
- ``p`` + partition → ``"<offset>,<saved_at_ms>"``: the changelog offset the partition's rows
  are complete up to (its *position*, state/partitioned.py) and when it was written;
- ``t`` + partition: some row of the partition may carry a TTL (written with the first such row,
  in its WriteBatch; never cleared but with the rows), so a partition without one skips the
  TTL index's scan of every row after its assignment (state/store.py);
- ``m:app``, ``m:partitions``: who the database belongs to; ``m:untrusted``: set after a failed
  write or read, so the next start rebuilds instead of trusting it; ``m:ttl-marked``: the
  database keeps the ``t`` marks (one created before them does not: its partitions are
  scanned).

Rows and positions change in one WriteBatch, after the Kafka commit (runtime/commit.py): the
database is always the changelog up to its positions, possibly older than Kafka, never ahead of
it. Replaying from a position makes a partition current (records are last-write-wins per key).
A restore writes rows first and the position last; rows past an old position are harmless for
the same reason, and a partition without a position is cleared before it is restored.

Faults (the changelog is the truth, the database a cache of it):
- corrupt (RocksDB refuses to open it), or marked untrusted: deleted and rebuilt from the
  changelog, with a warning;
- another application or partition count: refused (ConfigError naming the directory);
- a write or read that fails (full disk, I/O error): StateStoreError, the worker stops; the
  database is marked untrusted when that is still possible, otherwise it is still consistent
  at its older positions (a WriteBatch is atomic).
"""

from __future__ import annotations

import logging
import shutil
import struct
import time
from collections.abc import Container, Iterator, Mapping
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteOptions

from kstatefun.errors import ConfigError, StateStoreError
from kstatefun.wire.avro import changelog_may_expire

log = logging.getLogger(__name__)

# Past the changelog's delete.retention.ms compaction may have removed tombstones this database
# never saw, and a deleted value would come back (the same rule as state/snapshot.py).
MAX_AGE_S = 12 * 3600

_ROWS = b"r"
_POSITION = b"p"
_APP = b"m:app"
_PARTITIONS = b"m:partitions"
_UNTRUSTED = b"m:untrusted"
_TTL = b"t"
_TTL_MARKED = b"m:ttl-marked"
_RESTORE_BATCH = 10_000  # restored records per WriteBatch
# A worker restarted while its predecessor with the same instance id still runs (a zombie) opens
# the database at its first assignment (runtime/worker.py): by then its init_transactions (and,
# with static membership, its group join) fenced the predecessor, which exits at its next
# commit or heartbeat and releases the database's lock. Waited for this long.
LOCK_WAIT_S = 60.0


def _partition_prefix(partition: int) -> bytes:
    return _ROWS + struct.pack(">I", partition)


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_paranoid_checks(True)
    # Bounded memory: RocksDB's defaults allow 64 MB memtables; state that fits in memory
    # belongs in the memory store.
    options.set_write_buffer_size(32 * 1024 * 1024)
    options.set_max_write_buffer_number(2)
    # A key a function reads for the first time is a miss: bloom filters answer those without
    # reading a block, in the memtable too.
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(Cache(64 * 1024 * 1024))
    options.set_block_based_table_factory(table)
    options.set_memtable_prefix_bloom_ratio(0.1)
    options.set_memtable_whole_key_filtering(True)
    return options


class RocksRows:
    """The committed rows of one partition: the mapping methods the overlay (reads) and the
    restorer (writes) use. Restored writes are batched; ``flush`` writes them."""

    __slots__ = ("_store", "_db", "_prefix", "_batch", "_ttl_marked")

    def __init__(self, store: RocksStore, partition: int) -> None:
        self._store = store
        self._db = store.db
        self._prefix = _partition_prefix(partition)
        self._batch: WriteBatch | None = None
        self._ttl_marked = False  # this object wrote the partition's TTL mark

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        try:
            value = self._db.get(self._prefix + key)
        except Exception as e:  # rocksdict raises plain Exception for RocksDB errors
            raise self._store.failed("reading", e) from e
        return default if value is None else value

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        batch = self._batched()
        batch.put(self._prefix + key, value)
        if not self._ttl_marked and changelog_may_expire(value):
            batch.put(_TTL + self._prefix[1:], b"1")
            self._ttl_marked = True

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """Delete ``key`` (a restored tombstone); returns ``default`` (the old value is not read:
        the restorer never needs it)."""
        self._batched().delete(self._prefix + key)
        return default

    def update(self, rows: Mapping[bytes, bytes]) -> None:
        for key, value in rows.items():
            self[key] = value

    def clear(self) -> None:
        """Forget every row and the position (a restore starts over from the beginning)."""
        self._batch = None
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(self._prefix, _partition_prefix(self._partition + 1))
        batch.delete(_POSITION + self._prefix[1:])
        batch.delete(_TTL + self._prefix[1:])
        self._ttl_marked = False
        self._store.write(batch)

    @property
    def _partition(self) -> int:
        return int(struct.unpack(">I", self._prefix[1:])[0])

    def _batched(self) -> WriteBatch:
        batch = self._batch
        if batch is None:
            batch = self._batch = WriteBatch(raw_mode=True)
        elif batch.len() >= _RESTORE_BATCH:
            self._store.write(batch)
            batch = self._batch = WriteBatch(raw_mode=True)
        return batch

    def flush(self, position: int | None = None) -> None:
        """Write the batched restored records, and ``position`` with the last of them."""
        batch, self._batch = self._batch, None
        if batch is None:
            if position is None:
                return
            batch = WriteBatch(raw_mode=True)
        if position is not None:
            batch.put(_POSITION + self._prefix[1:], _position_value(position))
        self._store.write(batch)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        prefix, n = self._prefix, len(self._prefix)
        try:
            for key, value in self._db.items(from_key=prefix):
                assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
                if not key.startswith(prefix):
                    return
                yield key[n:], value
        except Exception as e:
            raise self._store.failed("reading", e) from e

    def keys(self) -> Iterator[bytes]:
        return (key for key, _ in self.items())

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def __len__(self) -> int:
        """A scan: for tools and tests, not for the record path."""
        return sum(1 for _ in self.items())


def _position_value(position: int) -> bytes:
    return f"{position},{int(time.time() * 1000)}".encode()


class RocksStore:
    """The database of one worker: opened (or rebuilt, or refused) at start."""

    def __init__(
        self,
        path: Path,
        app_id: str,
        partitions: int,
        max_age_s: float = MAX_AGE_S,
        lock_wait_s: float = LOCK_WAIT_S,
    ) -> None:
        self.path = path
        self._max_age_ms = int(max_age_s * 1000)
        self._write_options = WriteOptions()  # WAL on, no fsync: a process crash loses nothing
        self.db = self._open(app_id, partitions, lock_wait_s)

    def _open(self, app_id: str, partitions: int, lock_wait_s: float) -> Rdict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        deadline = time.monotonic() + lock_wait_s
        while True:
            try:
                db = Rdict(str(self.path), _options())
                break
            except Exception as e:
                text = str(e)
                if "lock" not in text.lower():
                    db = self._open_failed(e)
                    fresh = True
                    break
                if time.monotonic() >= deadline:
                    raise ConfigError(
                        f"the local state store {self.path} is in use by another process "
                        "(another worker with the same --app-id, --instance-id and state_dir, "
                        f"still running after {lock_wait_s:.0f} s): stop it, or give each worker "
                        f"its own --instance-id or state_dir ({text})"
                    ) from e
                log.info(
                    "waiting for the local state store, in use by another process (a "
                    "predecessor with this instance id that has not stopped yet?) path=%s",
                    self.path,
                )
                time.sleep(1.0)
        return self._check(db, app_id, partitions, fresh)

    def _open_failed(self, e: Exception) -> Rdict:
        """A database RocksDB will not open: rebuilt if corrupt, else the worker stops."""
        text = str(e)
        if "corrupt" not in text.lower():
            raise StateStoreError(
                f"cannot open the local state store {self.path}: {text}. Check the disk and "
                "the directory's permissions, or delete the directory: the worker rebuilds it "
                "from the changelog"
            ) from e
        log.warning(
            "local state store is corrupt, rebuilding it from the changelog path=%s error=%s",
            self.path,
            text,
        )
        return self._recreate(None)

    def _check(self, db: Rdict, app_id: str, partitions: int, fresh: bool) -> Rdict:
        """Rebuild an untrusted database; refuse one of another application."""
        if db.get(_UNTRUSTED) is not None:
            log.warning(
                "local state store was marked untrusted after a failed write or read, "
                "rebuilding it from the changelog path=%s",
                self.path,
            )
            db = self._recreate(db)
            fresh = True
        owner = db.get(_APP)
        if owner is None:
            if not fresh and next(iter(db.keys()), None) is not None:
                log.warning("local state store has no owner, rebuilding it path=%s", self.path)
                db = self._recreate(db)
            db[_APP] = app_id.encode()
            db[_PARTITIONS] = str(partitions).encode()
            db[_TTL_MARKED] = b"1"
            return db
        stored_partitions = int(db.get(_PARTITIONS) or b"0")
        if owner != app_id.encode() or stored_partitions != partitions:
            db.close()
            raise ConfigError(
                f"the local state store {self.path} belongs to application "
                f"{owner.decode(errors='replace')!r} with {stored_partitions} partitions, not to "
                f"{app_id!r} with {partitions}: set state_dir to another directory, or delete "
                f"{self.path} (the worker rebuilds it from the changelog)"
            )
        return db

    def _recreate(self, db: Rdict | None) -> Rdict:
        if db is not None:
            db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        return Rdict(str(self.path), _options())

    def close(self) -> None:
        self.db.close()

    # --- partitions ---------------------------------------------------------------------------

    def open_partition(self, partition: int) -> tuple[RocksRows, int]:
        """The partition's rows and the changelog offset to replay from (0: restore it all)."""
        offset = self.trusted_position(partition)
        if offset:  # 0: an empty partition, or nothing to load
            log.info("loaded local state store partition=%d replaying_from=%d", partition, offset)
        return RocksRows(self, partition), offset

    def trusted_position(self, partition: int) -> int:
        """The changelog offset the partition's rows are complete up to; rows without a
        position (an unfinished restore) or with one too old to trust are deleted first (0)."""
        saved = self.db.get(_POSITION + struct.pack(">I", partition))
        if saved is not None:
            offset, saved_at_ms = (int(x) for x in saved.split(b","))
            if time.time() * 1000 - saved_at_ms <= self._max_age_ms:
                return offset
            log.info(
                "local state store too old, restoring from the changelog partition=%d", partition
            )
        RocksRows(self, partition).clear()
        return 0

    def may_expire(self, partition: int) -> bool:
        """Whether some row of the partition may carry a TTL (False: none does)."""
        if self.db.get(_TTL_MARKED) is None:
            return True  # a database from before the marks
        return self.db.get(_TTL + struct.pack(">I", partition)) is not None

    # --- writes -------------------------------------------------------------------------------

    def fold(
        self,
        changes: Mapping[int, Mapping[bytes, bytes | None]],
        positions: Mapping[int, int],
        partitions: Container[int],
    ) -> None:
        """One committed transaction's writes and positions, for the ``partitions`` still
        owned, in one WriteBatch."""
        batch = WriteBatch(raw_mode=True)
        for partition, writes in changes.items():
            if partition not in partitions:
                continue  # revoked while the transaction was open: keep the older position
            prefix = _partition_prefix(partition)
            ttl = False
            for key, value in writes.items():
                if value is None:
                    batch.delete(prefix + key)
                else:
                    batch.put(prefix + key, value)
                    ttl = ttl or changelog_may_expire(value)
            if ttl:
                batch.put(_TTL + prefix[1:], b"1")
        for partition, offset in positions.items():
            if partition in partitions:
                batch.put(_POSITION + struct.pack(">I", partition), _position_value(offset))
        if not batch.is_empty():
            self.write(batch)

    def write(self, batch: WriteBatch) -> None:
        try:
            self.db.write(batch, self._write_options)
        except Exception as e:
            raise self.failed("writing", e) from e

    def failed(self, doing: str, error: Exception) -> StateStoreError:
        """Mark the database untrusted (if the disk still takes that) and describe the failure:
        the committed transaction is in the changelog, so the next start rebuilds from it."""
        try:
            self.db.put(_UNTRUSTED, b"1")
        except Exception as e:  # noqa: BLE001 - the older positions are still consistent
            log.warning("could not mark the local state store untrusted: %s", e)
        return StateStoreError(
            f"{doing} the local state store {self.path} failed: {error}. Stopping: free disk "
            "space or fix the disk; the next start rebuilds the store from the changelog "
            "(nothing committed is lost: the changelog holds it)"
        )
