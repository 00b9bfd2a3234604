"""Scale-out under load (``make bench`` part ``scaleout``): two kstatefun workers of the W1 count
app at a steady input rate; a third joins, later leaves. Per rebalance window (from the third
worker's start until ``LEAVE_MARGIN_S`` before its SIGTERM, and from then on), each event's
latency (produce call → its egress record visible to a read_committed reader) is put with its
key's invocations partition:
the partitions whose owner did not change (from the workers' own logs of their callbacks) and
those that moved. Reported: p99 and max latency of each, and the steady p99 before the join.
The moved partitions' longest wait is how long they were stopped, i.e. when they resumed.

The join's window is also split where the group begins to rebalance (the first callback any
worker logs after the third worker's start): before it, the third worker's process is only
starting (imports, clients, its join request), which on a machine without a spare core competes
with the workers and the broker for CPU; from it on, the rebalance itself.

Run once per ``rebalance_protocol`` (cooperative, eager, consumer): the A/B of incremental
rebalancing. The workers are named (static members); the third leaves as a worker stopped for
good does, with ``leave_group_on_stop``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

from confluent_kafka import Producer

from bench.contenders import Kstatefun, Proc
from bench.kafkautil import PACED_LINGER_MS, Reader, keyed_events, produce, wait_group_stable
from bench.workloads import Env, _pct, validate
from kstatefun.kafka.partitioner import id_partitioner

# The events sent this long before the third worker's SIGTERM belong to the leave's window: one
# still on its way to that worker when it stops waits for the leave, not for the join
LEAVE_MARGIN_S = 1.0

# runtime/worker.py logs each rebalance callback with the invocations partitions it names
CALLBACK = re.compile(r"(assigned|revoked) invocations partitions=\[([\d, ]*)\]")
# ... with the time the worker logged it (logging's asctime: local time, milliseconds)
TIMED_CALLBACK = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?(?:assigned|revoked) invocations partitions=",
    re.M,
)


def first_callback(procs: dict[str, Proc], after: float) -> float | None:
    """The wall-clock time of the first rebalance callback any worker logged after ``after``
    (time.time()), or None."""
    times = []
    for proc in procs.values():
        for stamp in TIMED_CALLBACK.findall(proc.log_text()):
            t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t > after:
                times.append(t)
    return min(times, default=None)


def owners(procs: dict[str, Proc]) -> dict[int, str]:
    """Which worker owns each invocations partition, replaying each worker's callbacks."""
    out: dict[int, str] = {}
    for name, proc in procs.items():
        owned: set[int] = set()
        for kind, numbers in CALLBACK.findall(proc.log_text()):
            parts = {int(n) for n in numbers.split(",") if n.strip()}
            owned = owned | parts if kind == "assigned" else owned - parts
        out.update(dict.fromkeys(owned, name))
    return out


class PacedProducer:
    """Produces ``rate`` events/s on ``keys`` fresh keys in a thread, for ``seconds``; keeps
    when each was sent (monotonic) and its key index."""

    def __init__(
        self, bootstrap: str, topic: str, partitioner: str, rate: int, seconds: float, keys: int
    ):
        self.names = [f"S{i}".encode() for i in range(keys)]
        self.sent: list[float] = []
        self._args = (bootstrap, topic, partitioner, rate, seconds)
        self._thread = threading.Thread(target=self._run, name="scaleout-producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        bootstrap, topic, partitioner, rate, seconds = self._args
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": PACED_LINGER_MS,
                "partitioner": partitioner,
            }
        )
        keys, now = len(self.names), time.monotonic
        start = now()
        for j in range(int(rate * seconds)):
            wait = start + j / rate - now()
            if wait > 0:
                time.sleep(wait)
            self.sent.append(now())
            while True:
                try:
                    producer.produce(topic, b'{"seq":%d}' % j, self.names[j % keys])
                    break
                except BufferError:  # a broker slower than the rate: wait for room
                    producer.poll(0.05)
            if j % 64 == 0:
                producer.poll(0)
        producer.flush(30)

    def join(self) -> None:
        self._thread.join()


def warm_up(
    env: Env,
    t: Any,
    reader: Reader,
    procs: dict[str, Proc],
    sent_keys: Counter,
    cfg: Any,
    timeout: float,
) -> None:
    """Events on every partition until their outputs come through (counted in ``sent_keys``),
    then the group of the two workers in ``procs`` settled: nothing is measured before."""
    warm = keyed_events(cfg.warmup_events, cfg.warmup_events, prefix="warm")
    produce(env.bootstrap, t.ingress, warm, env.shape.partitioner)
    sent_keys.update(key for key, _ in warm)
    first, second = procs.values()
    if not reader.wait_for(len(warm), timeout):
        raise RuntimeError(f"warm-up did not come through; {first.log_tail(800)}")
    if not wait_group_stable(env.admin, t.app, 2, cfg.phase_timeout):
        raise RuntimeError(f"the group of two did not settle; {second.log_tail(800)}")


def _window(
    lat: dict[int, float],
    sent: list[float],
    part: list[int],
    start: float,
    end: float,
    moved: set[int],
) -> dict[str, Any]:
    """Latency of the events sent in [start, end), split by whether their partition moved."""
    kept, went = [], []
    for j, t in enumerate(sent):
        if start <= t < end and j in lat:
            (went if part[j] in moved else kept).append(lat[j])
    out: dict[str, Any] = {"moved_partitions": sorted(moved)}
    for name, values in (("unmoved", sorted(kept)), ("moved", sorted(went))):
        if values:
            out[name] = {
                "events": len(values),
                "p99_ms": round(_pct(values, 99) * 1000, 1),
                "max_ms": round(values[-1] * 1000, 1),
            }
    return out


def scaleout(env: Env, k: Kstatefun, cfg: Any, protocol: str) -> dict[str, Any]:
    """One run of the scale-out part with ``rebalance_protocol`` ``protocol``."""
    t = env.topics(k, "scaleout", tag=f"-{protocol}")
    reader = Reader(env.bootstrap, t.egress)
    setting = {"KSTATEFUN_REBALANCE_PROTOCOL": protocol}
    # crc32: where the input's producer (librdkafka's default) puts each key, so by_key holds
    pin = ("--partitioner", "crc32")

    def spawn(name: str, leaves: bool = False) -> Proc:
        # the third worker is stopped for good (scale-in): a named worker then leaves the group
        # at once (leave_group_on_stop) rather than when its session ends
        more = {"KSTATEFUN_LEAVE_GROUP_ON_STOP": "true"} if leaves else {}
        return k.spawn("w1", t, name, env.run_dir, env.partitions, pin, {**setting, **more})

    procs = {"s1": spawn("s1"), "s2": spawn("s2")}
    sent_keys: Counter = Counter()
    out: dict[str, Any] = {"protocol": protocol, "rate": cfg.scaleout_rate}
    try:
        warm_up(env, t, reader, procs, sent_keys, cfg, cfg.phase_timeout)
        time.sleep(cfg.settle_s)
        before = len(reader)
        owners0 = owners(procs)
        lead, window = cfg.scaleout_lead_s, cfg.scaleout_window_s
        producer = PacedProducer(
            env.bootstrap,
            t.ingress,
            env.shape.partitioner,
            cfg.scaleout_rate,
            lead + 2 * window,
            cfg.latency_keys,
        )
        start = time.monotonic()
        time.sleep(lead)
        join_at = time.monotonic()
        join_wall = time.time()
        procs["s3"] = spawn("s3", leaves=True)
        time.sleep(window)
        owners1 = owners(procs)
        leave_at = time.monotonic()
        out["s3_exit_code"] = procs["s3"].stop()
        producer.join()
        owners2 = owners(procs)
        n = len(producer.sent)
        keys = len(producer.names)
        sent_keys.update(producer.names[j % keys] for j in range(n))
        reader.wait_for(before + n, cfg.phase_timeout)
        lat = _latencies(reader.records[before:], producer.sent, keys)
        partition_of = id_partitioner(env.partitions, "crc32")
        by_key = [partition_of(name.decode()) for name in producer.names]
        part = [by_key[j % keys] for j in range(n)]
        moved_join = {p for p in owners1 if owners1.get(p) != owners0.get(p)}
        moved_leave = {p for p in owners1 if owners2.get(p) != owners1.get(p)}
        out["steady"] = _window(lat, producer.sent, part, start, join_at, set())
        split = leave_at - LEAVE_MARGIN_S
        out["join"] = _window(lat, producer.sent, part, join_at, split, moved_join)
        out["leave"] = _window(lat, producer.sent, part, split, leave_at + window, moved_leave)
        began = first_callback(procs, join_wall)
        if began is not None:
            rebalance_at = join_at + (began - join_wall)
            out["join_phases"] = {
                "starting_s": round(rebalance_at - join_at, 2),
                "starting": _window(lat, producer.sent, part, join_at, rebalance_at, moved_join),
                "rebalancing": _window(lat, producer.sent, part, rebalance_at, split, moved_join),
            }
        out["received"] = len(lat)
        out["sent"] = n
        out["owners"] = {"before": owners0, "joined": owners1, "left": owners2}
        out["revoked"] = {
            name: sum(1 for kind, _ in CALLBACK.findall(p.log_text()) if kind == "revoked")
            for name, p in procs.items()
        }
    finally:
        for proc in procs.values():
            proc.stop()
        reader.close()
    out["validation"] = validate(reader.records, sent_keys, True)
    return out


def _latencies(
    records: list[tuple[float, bytes | None, bytes | None, int]], sent: list[float], keys: int
) -> dict[int, float]:
    """Event index → seconds from its produce call to its egress record, from the W1 app's
    "S<key>:<count>" values (the count-th event of key i is event (count - 1) * keys + i)."""
    pattern = re.compile(rb"^S(\d+):(\d+)$")
    lat = {}
    for t, _key, value, _create_ms in records:
        m = pattern.match(value or b"")
        if m is None:
            continue
        j = (int(m.group(2)) - 1) * keys + int(m.group(1))
        if 0 <= j < len(sent):
            lat[j] = t - sent[j]
    return lat
