"""Restore under load (``make bench`` part ``restoreload``), issue 15's last goal: a worker
that gains a partition holding a big state keeps its other partitions at p99 ≤ 100 ms while it
restores that one.

The W1 count app with its internal topics' partition 0 seeded with ``restore_keys`` counter
states (bench/workloads.py ``seeded_app``: ids chosen so that they all land in partition 0),
the rest empty. Two named workers (``leave_group_on_stop``, so the leave moves partitions at
once) restore and serve; once the owner of partition 0 has written its restore into its local
snapshot (``local snapshot caught up``), events at ``scaleout_rate`` on ``latency_keys`` fresh
keys over every partition; after ``scaleout_lead_s`` the owner of partition 0 stops. The other
worker gains its partitions and restores partition 0 while it keeps serving its own.
Reported: the kept partitions' p99 and max latency (produce call → egress record visible)
from the stop until partition 0 is restored, and in the steady window before the stop; the
restore's records and seconds from the survivor's log, and partition 0's longest wait (when
it resumed). State store ``memory`` (the default).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from bench.bigstate import big_id
from bench.contenders import Kstatefun, Proc
from bench.kafkautil import Reader
from bench.scaleout import PacedProducer, _latencies, _window, owners, warm_up
from bench.workloads import SNAPSHOT_CAUGHT_UP, Env, seeded_app, validate
from kstatefun.kafka.partitioner import id_partitioner

BIG = 0  # the partition that holds the big state
# state/restore.py's line for a restore that included partition BIG
RESTORED_BIG = (
    rf"restored topic=\S+-changelog partitions=(?:\d+,)*{BIG}(?:,\d+)* records=(\d+) "
    r"seconds=([\d.]+)"
)


def ids_in(partition: int, partitions: int, count: int) -> list[str]:
    """``count`` ids of bigstate's form that the app's partitioner (crc32) puts in
    ``partition``."""
    partition_of = id_partitioner(partitions, "crc32")
    out: list[str] = []
    i = 0
    while len(out) < count:
        name = big_id(i)
        if partition_of(name) == partition:
            out.append(name)
        i += 1
    return out


def restore_under_load(env: Env, k: Kstatefun, cfg: Any) -> dict[str, Any]:
    t = env.topics(k, "restoreload")
    keys = cfg.restore_keys
    ids = ids_in(BIG, env.partitions, keys)
    seed_s = seeded_app(env.bootstrap, env.admin, t.app, env.partitions, keys, ids.__getitem__)
    env.log(
        f"    seeded {keys:,} states into partition {BIG} of {t.app}-changelog in {seed_s:.1f}s"
    )
    reader = Reader(env.bootstrap, t.egress)
    extra = ("--partitioner", "crc32", "--partitions", str(env.partitions))
    leave = {"KSTATEFUN_LEAVE_GROUP_ON_STOP": "true"}

    def spawn(name: str) -> Proc:
        return k.spawn("w1", t, name, env.run_dir, env.partitions, extra, leave)

    procs = {"r1": spawn("r1"), "r2": spawn("r2")}
    out: dict[str, Any] = {"keys": keys, "partition": BIG, "seed_s": round(seed_s, 1)}
    sent_keys: Counter = Counter()
    try:
        # every partition answers (partition 0 once restored) before anything is measured
        warm_up(env, t, reader, procs, sent_keys, cfg, cfg.restart_timeout)
        owners0 = owners(procs)
        leaver = owners0[BIG]
        # its first restore's rows in its local snapshot: written a slice per loop round, they
        # take a core for a while, which two workers, the broker and this process share here
        procs[leaver].wait_log(SNAPSHOT_CAUGHT_UP, 0, cfg.restart_timeout)
        time.sleep(cfg.settle_s)
        before = len(reader)
        survivor = next(name for name in procs if name != leaver)
        kept = {p for p, owner in owners0.items() if owner == survivor}
        mark = procs[survivor].log.stat().st_size
        lead = cfg.scaleout_lead_s
        producer = PacedProducer(
            env.bootstrap,
            t.ingress,
            env.shape.partitioner,
            cfg.scaleout_rate,
            lead + cfg.restore_window_s,
            cfg.latency_keys,
        )
        start = time.monotonic()
        time.sleep(lead)
        stop_at = time.monotonic()
        out["leaver_exit_code"] = procs[leaver].stop()
        restored = _wait_restored(procs[survivor], mark, cfg.restart_timeout)
        restored_at = time.monotonic()
        producer.join()
        n, names = len(producer.sent), producer.names
        sent_keys.update(names[j % len(names)] for j in range(n))
        reader.wait_for(before + n, cfg.phase_timeout)
        lat = _latencies(reader.records[before:], producer.sent, len(names))
        partition_of = id_partitioner(env.partitions, "crc32")
        by_key = [partition_of(name.decode()) for name in names]
        part = [by_key[j % len(names)] for j in range(n)]
        moved = set(range(env.partitions)) - kept
        # split as the restore window is: the leaver's partitions' last events before its stop
        # wait for their new owner's restore, which is not what the kept partitions saw
        out["steady"] = _window(lat, producer.sent, part, start, stop_at, moved)
        out["restore"] = _window(lat, producer.sent, part, stop_at, restored_at, moved)
        out["restored"] = restored
        out["restore_window_s"] = round(restored_at - stop_at, 2)
        out["kept"] = sorted(kept)
        out["received"], out["sent"] = len(lat), n
    finally:
        for proc in procs.values():
            proc.stop()
        reader.close()
    out["validation"] = validate(reader.records, sent_keys, True)
    return out


def _wait_restored(proc: Proc, mark: int, timeout: float) -> dict[str, Any]:
    """Until the survivor's log (past byte ``mark``) shows partition 0's changelog restored:
    its records and seconds."""
    found = re.search(RESTORED_BIG, proc.wait_log(RESTORED_BIG, mark, timeout))
    assert found is not None
    return {"records": int(found.group(1)), "seconds": float(found.group(2))}
