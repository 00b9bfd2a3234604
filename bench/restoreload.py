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
from the stop until partition 0 is restored, the restore's records and seconds from the
survivor's log, and partition 0's longest wait (when it resumed). State store ``memory`` (the
default).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from bench.bigstate import big_id
from bench.contenders import Kstatefun, Proc
from bench.kafkautil import Reader, keyed_events, produce, wait_group_stable
from bench.scaleout import PacedProducer, _latencies, _window, owners
from bench.workloads import Env, seeded_app, validate
from kstatefun.kafka.partitioner import id_partitioner

BIG = 0  # the partition that holds the big state
CAUGHT_UP = re.compile(r"local snapshot caught up rows=")  # state/snapshot.py
RESTORED = re.compile(
    r"^(\S+ \S+) INFO .*restored topic=\S+-changelog partitions=(\S+) records=(\d+) "
    r"seconds=([\d.]+)",
    re.M,
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
        warm = keyed_events(cfg.warmup_events, cfg.warmup_events, prefix="warm")
        produce(env.bootstrap, t.ingress, warm, env.shape.partitioner)
        sent_keys.update(key for key, _ in warm)
        if not reader.wait_for(len(warm), cfg.restart_timeout):
            raise RuntimeError(f"warm-up did not come through; {procs['r1'].log_tail(800)}")
        if not wait_group_stable(env.admin, t.app, 2, cfg.phase_timeout):
            raise RuntimeError(f"the group of two did not settle; {procs['r2'].log_tail(800)}")
        owners0 = owners(procs)
        leaver = owners0[BIG]
        # its first restore's rows in its local snapshot: written a slice per loop round, they
        # take a core for a while, which two workers, the broker and this process share here
        _wait_for(procs[leaver], CAUGHT_UP, 0, cfg.restart_timeout)
        time.sleep(cfg.settle_s)
        before = len(reader)
        survivor = next(name for name in procs if name != leaver)
        kept = {p for p, owner in owners0.items() if owner == survivor}
        mark = len(procs[survivor].log_text())
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
        out["steady"] = _window(lat, producer.sent, part, start, stop_at, set())
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


def _wait_for(proc: Proc, pattern: re.Pattern[str], mark: int, timeout: float) -> re.Match[str]:
    """The first match of ``pattern`` in the worker's log past ``mark``, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(proc.log_text()[mark:])
        if found is not None:
            return found
        if not proc.alive():
            raise RuntimeError(f"the worker stopped; {proc.log_tail(800)}")
        time.sleep(0.05)
    raise RuntimeError(f"no {pattern.pattern!r} within {timeout:.0f} s; {proc.log_tail(800)}")


def _wait_restored(proc: Proc, mark: int, timeout: float) -> dict[str, Any]:
    """Until the survivor's log (past ``mark``) shows partition 0's changelog restored: its
    records and seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in RESTORED.finditer(proc.log_text()[mark:]):
            if str(BIG) in m.group(2).split(","):
                return {"records": int(m.group(3)), "seconds": float(m.group(4))}
        if not proc.alive():
            raise RuntimeError(f"the survivor stopped; {proc.log_tail(800)}")
        time.sleep(0.05)
    raise RuntimeError(f"partition {BIG} was not restored within {timeout:.0f} s")
