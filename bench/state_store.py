"""Micro-benchmark of the state stores alone (no Kafka): the per-record path of a W1-like
function (read a key's state, write it back) with a fold every ``--batch`` records, and the RSS
after filling ``--keys`` keys as a restore does. Indicative only: one process, one core. The
stores: memory, memory with the local snapshot of a state_dir (snapshot), rocksdb.

    python -m bench.state_store --keys 2000000 --records 500000
    python -m bench.state_store --keys 10000 --records 200000 --batch 50   # W1's keys, 5,000/s

``--catch-up``: how fast a local snapshot writes a restore's rows, as the worker's loop calls
it (``flush_if_due`` once per round, busy and idle), for keys in ascending and in random
order, both ways it can: as a base image (a restore from the changelog's beginning) and as
delta rows (a restore of a tail); the rate and the longest call (the loop's longest stop for
it), and how long loading the partitions back takes.

    python -m bench.state_store --catch-up --keys 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kstatefun.state.rocksdb import RocksStore
from kstatefun.state.snapshot import LocalSnapshot
from kstatefun.state.store import StateStore
from kstatefun.wire.avro import encode_changelog_key, encode_changelog_value

PARTITIONS = 4


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def key_of(i: int) -> bytes:
    return encode_changelog_key("bench/counter", f"user-{i}", "count")


def value_of(n: int) -> bytes:
    return encode_changelog_value("io.statefun.types/int", n.to_bytes(8, "big"))


def measure(store_kind: str, keys: int, records: int, batch: int, directory: Path) -> dict:
    disk = None
    if store_kind == "rocksdb":
        disk = RocksStore(directory / "bench.rocksdb", "bench", PARTITIONS)
    snapshot = LocalSnapshot(directory / "bench.sqlite") if store_kind == "snapshot" else None
    store = StateStore(snapshot, disk=disk)
    base_rss = rss_mb()
    started = time.perf_counter()
    rows = {p: store.add_partition(p) for p in range(PARTITIONS)}
    for i in range(keys):
        rows[i % PARTITIONS][key_of(i)] = value_of(i)
    for p in range(PARTITIONS):
        store.restored(p, keys // PARTITIONS)
    fill_s = time.perf_counter() - started
    filled_rss = rss_mb()

    rng = random.Random(7)
    picks = [rng.randrange(keys) for _ in range(records)]
    work = [(i % PARTITIONS, key_of(i)) for i in picks]
    offset = keys
    started, cpu = time.perf_counter(), time.process_time()
    for n, (p, key) in enumerate(work, 1):
        old = store.get(p, key)
        store.put(p, key, old)  # the same bytes: the cost is the store's, not the encoding's
        if n % batch == 0:
            offset += batch
            store.apply_overlay(dict.fromkeys(range(PARTITIONS), offset))
    store.apply_overlay()
    if snapshot is not None:
        snapshot.close()  # writes what it gathered: part of the cost
    per_record_s = (time.perf_counter() - started) / records
    cpu_per_record_s = (time.process_time() - cpu) / records
    result = {
        "store": store_kind,
        "keys": keys,
        "fill_s": round(fill_s, 2),
        "fill_keys_per_s": round(keys / fill_s),
        "records_per_s": round(1 / per_record_s),
        "cpu_us_per_record": round(cpu_per_record_s * 1e6, 2),
        "rss_before_mb": round(base_rss),
        "rss_filled_mb": round(filled_rss),
        "rss_end_mb": round(rss_mb()),
    }
    if disk is not None:
        disk.close()
        result["disk_mb"] = round(
            sum(f.stat().st_size for f in (directory / "bench.rocksdb").iterdir()) / 2**20
        )
    return result


def catch_up(keys: int, order: str, idle: bool, how: str, directory: Path) -> dict:
    """A restore's ``keys`` rows handed to a fresh snapshot at once, as base images
    (``rebase``, ``how`` "image") or delta rows (``save(adopt=True)``, "delta"), then written
    a ``flush_if_due`` per loop round until none is left."""
    ids = list(range(keys))
    if order == "random":
        random.Random(7).shuffle(ids)
    rows: dict[int, dict[bytes, bytes | None]] = {p: {} for p in range(PARTITIONS)}
    for i in ids:
        rows[i % PARTITIONS][key_of(i)] = value_of(i)
    path = directory / f"catch-up-{order}-{idle}-{how}.sqlite"
    snapshot = LocalSnapshot(path)
    started = time.perf_counter()
    if how == "image":
        for p, partition_rows in rows.items():
            snapshot.rebase(p, partition_rows, keys)
    else:
        snapshot.save(rows, dict.fromkeys(range(PARTITIONS), keys), adopt=True)
    rounds, longest = 0, 0.0
    while snapshot.backlog:
        t = time.perf_counter()
        if not snapshot.flush_if_due(idle):
            snapshot.flush()  # the last slice, which the loop writes once FLUSH_S is due
        longest = max(longest, time.perf_counter() - t)
        rounds += 1
    seconds = time.perf_counter() - started
    snapshot.close()
    loading = time.perf_counter()
    snapshot = LocalSnapshot(path)
    loaded = sum(len(snapshot.load(p)[0]) for p in range(PARTITIONS))
    load_s = time.perf_counter() - loading
    assert loaded == keys, (loaded, keys)
    return {
        "keys": keys,
        "as": how,
        "order": order,
        "idle": idle,
        "load_s": round(load_s, 2),
        "seconds": round(seconds, 2),
        "rows_per_s": round(keys / seconds),
        "rounds": rounds,
        "longest_call_ms": round(longest * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=2_000_000)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=500, help="records per commit (fold)")
    parser.add_argument(
        "--store", choices=["memory", "snapshot", "rocksdb"], help="one store, this process"
    )
    parser.add_argument(
        "--catch-up", action="store_true", help="a restore's rows written to the snapshot"
    )
    args = parser.parse_args()
    if args.catch_up:
        for how in ("image", "delta"):
            for order in ("ascending", "random"):
                for idle in (False, True):
                    with tempfile.TemporaryDirectory() as d:
                        result = catch_up(args.keys, order, idle, how, Path(d))
                        print(json.dumps(result), flush=True)
        return
    if args.store:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(measure(args.store, args.keys, args.records, args.batch, Path(d))))
        return
    for kind in ("memory", "snapshot", "rocksdb"):  # each in a process of its own, for a clean RSS
        cmd = [sys.executable, "-m", "bench.state_store", "--store", kind]
        cmd += ["--keys", str(args.keys), "--records", str(args.records)]
        cmd += ["--batch", str(args.batch)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
