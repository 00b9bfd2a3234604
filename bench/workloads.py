"""The workloads: what the driver does with one contender, and what it measures.

Times are monotonic seconds in the driver process: an egress record's time is when the driver's
read_committed reader received it (bench/kafkautil.py Reader), an input's time is when the
driver handed it to its producer.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.contenders import PEERS, Contender, Kstatefun, Proc, Topics
from bench.kafkautil import (
    PACED_LINGER_MS,
    Event,
    GroupWatcher,
    Reader,
    create_topics,
    keyed_events,
    produce,
    wait_group_stable,
)
from kstatefun.kafka.clients import TRANSACTIONAL_PRODUCER_TUNING
from kstatefun.kafka.partitioner import DEFAULT_PARTITIONER, LEGACY_PARTITIONER


@dataclass(frozen=True)
class Shape:
    """How the input is produced: onto how many partitions, with which librdkafka partitioner."""

    name: str
    label: str
    partitions: int
    partitioner: str


@dataclass
class Env:
    bootstrap: str
    admin: AdminClient
    run_dir: Path
    run_id: str
    shape: Shape  # of every input topic and of the contenders' own topics
    log: Any  # print-like

    @property
    def partitions(self) -> int:
        return self.shape.partitions

    def topics(
        self, c: Contender, workload: str, ingress: str | None = None, tag: str = ""
    ) -> Topics:
        """Fresh topics for one contender and workload; ``ingress`` shares an existing,
        pre-produced input topic instead of a fresh one (each contender reads it in a group
        of its own); ``tag`` tells them from other runs of the workload (shape, round)."""
        t = Topics.fresh(c.name, workload + tag, self.run_id)
        if ingress is not None:
            t.ingress = ingress
        create_topics(self.admin, [t.egress] if ingress else [t.ingress, t.egress], self.partitions)
        c.prepare(self.admin, t, workload, self.partitions)
        return t


# --- validation ---------------------------------------------------------------------------------


def validate(
    records: Sequence[tuple[float, bytes | None, bytes | None, int]],
    sent: Counter,
    complete: bool,
) -> dict:
    """Exactly-once check of "<key>:<count>" records against the events sent per key.

    Every key must show the counts 1..m once each, with m ≤ the events sent for it; when the
    run was ``complete`` (not stopped by the time cap), m must equal them. A stopped run may
    stop anywhere, but each key's events are in order in one partition, so what is visible is
    always a prefix 1..m: a gap is a lost record."""
    seen: dict[bytes, list[int]] = defaultdict(list)
    malformed = 0
    for _, key, value, _ in records:
        try:
            k, _, c = (value or b"").rpartition(b":")
            seen[k].append(int(c))
            if key is not None and key != k:
                malformed += 1
        except ValueError:
            malformed += 1
    lost = duplicated = wrong = not_reached = 0
    for key, n in sent.items():
        have = seen.pop(key, [])
        distinct = set(have)
        duplicated += len(have) - len(distinct)
        wrong += sum(1 for c in distinct if not 1 <= c <= n)
        top = max((c for c in distinct if c <= n), default=0)
        lost += top - len([c for c in distinct if c <= top])  # gaps below the highest count
        not_reached += n - top
    unexpected = sum(len(v) for v in seen.values())
    if complete:
        lost += not_reached
        not_reached = 0
    ok = not (lost or duplicated or wrong or unexpected or malformed)
    return {
        "exactly_once": ok,
        "lost": lost,
        "duplicated": duplicated,
        "wrong_count": wrong,
        "unexpected": unexpected,
        "malformed": malformed,
        "not_reached_in_time": not_reached,
    }


# --- throughput -----------------------------------------------------------------------------------


def throughput(
    env: Env,
    c: Contender,
    workload: str,
    ingress: str,
    events: int,
    sent: Counter,
    cfg: Any,
    tag: str = "",
) -> dict:
    """One worker on the pre-produced ``ingress``. The clock starts when its consumer group is
    first seen Stable (partitions assigned: processing can start) and stops at the last of the
    ``events`` outputs, or at ``cfg.throughput_cap_s`` (then the rate is what was visible by
    then). Timing from the group, not from the first output, matters for pipelines: a routing
    stage may run far ahead before the first egress record becomes visible. ``tag``: see
    Env.topics."""
    t = env.topics(c, workload, ingress, tag)
    reader = Reader(env.bootstrap, t.egress)
    proc = c.spawn(workload, t, "w0", env.run_dir, env.partitions)
    watcher = GroupWatcher(env.admin, c.group(t), 1)
    result: dict[str, Any] = {"events": events}
    complete = False
    try:
        if reader.wait_for(1, cfg.phase_timeout, proc.alive):
            first = reader.records[0][0]
            start = watcher.stable_at if watcher.stable_at is not None else first
            remaining = start + cfg.throughput_cap_s - time.monotonic()
            complete = reader.wait_for(events, max(0.0, remaining), proc.alive)
            visible = reader.records[:events]
            last = visible[-1][0]
            rate = len(visible) / (last - start) if last > start else None
            result.update(
                complete=complete,
                outputs=len(visible),
                startup_s=round(start - proc.started, 2),
                first_output_s=round(first - proc.started, 2),
                events_per_s=(round(rate) if rate >= 10 else round(rate, 2)) if rate else None,
                measured_s=round(last - start, 2),
                clock_from="group stable" if watcher.stable_at is not None else "first output",
            )
            if not complete and proc.alive():
                result["note"] = (
                    f"stopped at the {cfg.throughput_cap_s:.0f} s cap after {len(visible):,} "
                    f"of {events:,} events"
                )
        if not proc.alive() or not reader.records:
            result["error"] = (
                f"{'exited' if not proc.alive() else 'no output within'} "
                f"{cfg.phase_timeout:.0f} s; log tail: {proc.log_tail(600)}"
            )
        time.sleep(cfg.settle_s)
    finally:
        watcher.close()
        result["exit_code"] = proc.stop()
        reader.close()
    result["validation"] = validate(reader.records, sent, complete)
    return result


def latency(
    env: Env, c: Contender, cfg: Any, max_rate: float | None, detail: dict | None = None
) -> dict:
    """W1 latency: a worker on an empty ingress; after a warm-up has come through, fresh keys
    at each fixed rate. A rate above what the contender sustained in W1 is not run.
    ``detail``, if given, gets the worker's pid, the ingress topic and per rate every event's
    times (see paced_latency), for bench/latency_trace.py."""
    t = env.topics(c, "lat")
    reader = Reader(env.bootstrap, t.egress)
    proc = c.spawn("w1", t, "w0", env.run_dir, env.partitions)
    if detail is not None:
        detail.update(pid=proc.pid, ingress=t.ingress)
    sent: Counter = Counter()
    out: dict[str, Any] = {}
    try:
        warm = keyed_events(cfg.warmup_events, cfg.warmup_events, prefix="warm")
        # placed as the measured events are: a kstatefun worker that starts on this topic
        # takes its partitioner from the records it finds there (the warm-up, if it was quick)
        produce(env.bootstrap, t.ingress, warm, env.shape.partitioner)
        sent.update(k for k, _ in warm)
        if not reader.wait_for(len(warm), cfg.phase_timeout, proc.alive):
            raise RuntimeError(f"warm-up did not come through; {proc.log_tail(800)}")
        for rate in cfg.latency_rates:
            if max_rate is not None and max_rate < rate * 1.2:
                out[str(rate)] = {
                    "rate": rate,
                    "skipped": f"W1 throughput {max_rate:.0f}/s is below 1.2 × {rate}/s: "
                    "the input queue would only grow",
                }
                continue
            time.sleep(0.5)
            out[str(rate)] = paced_latency(
                env,
                proc,
                reader,
                t.ingress,
                rate,
                cfg.latency_seconds,
                cfg.latency_keys,
                sent,
                None if detail is None else detail.setdefault(str(rate), {}),
            )
        time.sleep(cfg.settle_s)
    finally:
        exit_code = proc.stop()
        reader.close()
    out["validation"] = validate(reader.records, sent, True)
    out["exit_code"] = exit_code
    return out


# --- latency --------------------------------------------------------------------------------------


def paced_latency(
    env: Env,
    proc: Proc,
    reader: Reader,
    ingress: str,
    rate: int,
    seconds: float,
    keys: int,
    sent_counter: Counter,
    detail: dict | None = None,
) -> dict:
    """Produce ``rate`` events/s for ``seconds`` on fresh keys and time each one's egress
    record: produce call → visible to the read_committed reader. The egress record's own
    timestamp (when the contender produced it, wall-clock ms) splits that into the time until
    the contender wrote the output and the time until its transaction made it visible.
    ``detail``, if given, gets the keys' prefix, the sending window and every event's
    (seq, sent, visible, egress CreateTime ms), times in wall-clock seconds."""
    prefix = f"L{rate}-"
    n = int(rate * seconds)
    names = [f"{prefix}{i}".encode() for i in range(keys)]
    sent = [0.0] * n
    producer = Producer(
        {
            "bootstrap.servers": env.bootstrap,
            "linger.ms": PACED_LINGER_MS,
            "partitioner": env.shape.partitioner,
            "enable.idempotence": True,
        }
    )
    before = len(reader)
    now = time.monotonic
    start = now() + 0.05
    for j in range(n):
        due = start + j / rate
        wait = due - now()
        if wait > 0:
            time.sleep(wait)
        sent[j] = now()
        producer.produce(ingress, b'{"seq":%d}' % j, names[j % keys])
        if j % 64 == 0:
            producer.poll(0)
    produced_s = now() - start
    producer.flush(30)
    for j in range(n):
        sent_counter[names[j % keys]] += 1
    reader.wait_for(before + n, max(30.0, seconds * 3), proc.alive)
    lat, to_write, to_visible = [], [], []
    events: list[tuple[int, float, float, int]] = []  # detail's
    wall = time.time() - time.monotonic()  # monotonic → wall clock, for CreateTime
    pattern = re.compile(rb"^" + re.escape(prefix.encode()) + rb"(\d+):(\d+)$")
    for t, _key, value, create_ms in reader.records[before:]:
        m = pattern.match(value or b"")
        if m is None:
            continue
        j = (int(m.group(2)) - 1) * keys + int(m.group(1))
        if 0 <= j < n:
            if detail is not None:
                events.append((j, sent[j] + wall, t + wall, create_ms))
            lat.append(t - sent[j])
            if create_ms > 0:
                written = create_ms / 1000 - wall
                to_write.append(written - sent[j])
                to_visible.append(t - written)
    if detail is not None:
        detail["prefix"] = prefix
        detail["window"] = (start + wall, start + produced_s + wall)
        detail["events"] = events
    lat.sort()
    to_write.sort()
    to_visible.sort()
    out: dict[str, Any] = {
        "rate": rate,
        "seconds": seconds,
        "sent": n,
        "received": len(lat),
        "send_rate_achieved": round(n / produced_s) if produced_s > 0 else None,
    }
    if lat:
        out.update(
            p50_ms=round(_pct(lat, 50) * 1000, 1),
            p99_ms=round(_pct(lat, 99) * 1000, 1),
            max_ms=round(lat[-1] * 1000, 1),
        )
    if to_write and _pct(to_write, 50) > 0.0005:  # Quix and Kafka Streams copy the input's
        out.update(
            written_p50_ms=round(_pct(to_write, 50) * 1000, 1),
            visible_after_write_p50_ms=round(_pct(to_visible, 50) * 1000, 1),
        )
    return out


def _pct(sorted_values: Sequence[float], p: float) -> float:
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


# --- scale ----------------------------------------------------------------------------------------


def scale(env: Env, c: Contender, workers: int, events: list[Event], cfg: Any) -> dict:
    """W1 with ``workers`` processes. The workers start on an empty ingress; once a warm-up
    has come through and the group is stable, the burst is produced at once and timed from
    the start of producing it to its last visible output (start-up and rebalances excluded;
    the driver produces several times faster than any contender consumes)."""
    t = env.topics(c, f"s{workers}")
    reader = Reader(env.bootstrap, t.egress)
    procs = [c.spawn("w1", t, f"w{i}", env.run_dir, env.partitions) for i in range(workers)]
    sent: Counter = Counter()
    result: dict[str, Any] = {"workers": workers, "events": len(events)}
    try:
        warm = keyed_events(cfg.warmup_events, cfg.warmup_events, prefix="warm")
        produce(env.bootstrap, t.ingress, warm, env.shape.partitioner)  # as in latency()
        sent.update(k for k, _ in warm)
        alive = lambda: all(p.alive() for p in procs)  # noqa: E731
        if not reader.wait_for(len(warm), cfg.phase_timeout, alive):
            raise RuntimeError(
                f"warm-up did not come through ({len(reader)}/{len(warm)}); "
                f"{procs[0].log_tail(800)}"
            )
        if not wait_group_stable(env.admin, c.group(t), workers, 60):
            result["note"] = "group not reported stable within 60 s; measured anyway"
        time.sleep(1.0)
        before = len(reader)
        started = time.monotonic()
        produce_s = produce(env.bootstrap, t.ingress, events, env.shape.partitioner)
        sent.update(k for k, _ in events)
        done = reader.wait_for(before + len(events), cfg.phase_timeout, alive)
        out = reader.records[before : before + len(events)]
        result.update(
            complete=done,
            outputs=len(out),
            events_per_s=round(len(out) / (out[-1][0] - started)) if out else None,
            produce_s=round(produce_s, 2),
        )
        time.sleep(cfg.settle_s)
    finally:
        for p in procs:
            p.stop()
        reader.close()
    result["validation"] = validate(reader.records, sent, True)
    return result


# --- restart --------------------------------------------------------------------------------------

RESTORED = re.compile(
    r"restored topic=\S+ partitions=\S+ records=(\d+) seconds=([\d.]+) rate=(\d+)"
)

SNAPSHOT_CAUGHT_UP = r"local snapshot caught up rows="  # state/snapshot.py
ASSIGNED = re.compile(r"^(\S+ \S+) INFO .*?assigned invocations partitions=", re.M)


def seed_records(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes, int]], txn_id: str
) -> float:
    """Produce (key, value, partition) ``records`` to ``topic`` in transactions of 50,000, as
    a kstatefun worker's transactional producer would have left them; returns seconds."""
    started = time.monotonic()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    producer.init_transactions(30)
    produce = producer.produce
    in_txn = 0
    for key, value, partition in records:
        if in_txn == 0:
            producer.begin_transaction()
        while True:
            try:
                produce(topic, value, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
        in_txn += 1
        if in_txn == 50_000:
            producer.commit_transaction(60)
            in_txn = 0
    if in_txn:
        producer.commit_transaction(60)
    return time.monotonic() - started


def counter_states(
    partitions: int, keys: int, id_of: Callable[[int], str], partitioner: str
) -> Iterator[tuple[bytes, bytes, int]]:
    """Changelog records (key, value, partition) of bench/counter's state ``count`` = 1 for the
    ids ``id_of(0..keys-1)``, in kstatefun's record format, where ``partitioner`` puts them."""
    from kstatefun.kafka.partitioner import id_partitioner
    from kstatefun.sdk.types import IntType
    from kstatefun.wire.avro import (
        changelog_key_prefix,
        changelog_key_suffix,
        encode_changelog_value,
    )

    value = encode_changelog_value(IntType.typename, IntType.serialize(1))
    suffix = changelog_key_suffix("count")  # encode_changelog_key's last part, encoded once
    partition_of = id_partitioner(partitions, partitioner)
    for rid in map(id_of, range(keys)):
        yield changelog_key_prefix("bench/counter", rid) + suffix, value, partition_of(rid)


def pending_timers(
    partitions: int, timers: int, id_of: Callable[[int], str], partitioner: str
) -> Iterator[tuple[bytes, bytes, int]]:
    """Timers-topic records (key, value, partition): one delayed message per id ``id_of(0..
    timers-1)``, sent by bench/counter to itself, due in a day, in its sender's partition."""
    from kstatefun.kafka.partitioner import id_partitioner
    from kstatefun.wire.avro import encode_timer_key, encode_timer_value

    due_ms = int(time.time() * 1000) + 86_400_000
    partition_of = id_partitioner(partitions, partitioner)
    for rid in map(id_of, range(timers)):
        key = encode_timer_key("bench/counter", rid, "bench", False)
        value = encode_timer_value(due_ms, "bench/counter", rid, "bench/Event", b"{}")
        yield key, value, partition_of(rid)


def seed_changelog(
    bootstrap: str,
    app: str,
    partitions: int,
    keys: int,
    id_of: Callable[[int], str] = "r{}".format,
    partitioner: str = LEGACY_PARTITIONER,
) -> float:
    """Write ``counter_states`` straight into a kstatefun application's changelog, as a
    transactional producer would have left them. ``partitioner``: the one the application
    places its ids with; state topics without a recorded partitioner are an application's from
    before it was recorded, which places ids with murmur2 (the default here); ``seeded_app``
    records another one first. Returns seconds."""
    from kstatefun.kafka.topics import InternalTopics

    records = counter_states(partitions, keys, id_of, partitioner)
    return seed_records(bootstrap, InternalTopics(app).changelog, records, f"{app}-seed")


def seed_timers(
    bootstrap: str,
    app: str,
    partitions: int,
    timers: int,
    id_of: Callable[[int], str],
    partitioner: str = DEFAULT_PARTITIONER,
) -> float:
    """Write ``pending_timers`` into the application's timers topic; returns seconds."""
    from kstatefun.kafka.topics import InternalTopics

    records = pending_timers(partitions, timers, id_of, partitioner)
    return seed_records(bootstrap, InternalTopics(app).timers, records, f"{app}-seed-timers")


def seeded_app(
    bootstrap: str,
    admin: AdminClient,
    app: str,
    partitions: int,
    keys: int,
    id_of: Callable[[int], str],
) -> float:
    """A new kstatefun application whose changelog holds ``keys`` counter states: its
    partitioner recorded first (the default, CRC32: fast to compute for millions of ids),
    then its internal topics created and the changelog seeded. Returns the seeding's seconds."""
    from confluent_kafka import Consumer

    from kstatefun.kafka.topics import (
        InternalTopics,
        app_partitioner,
        ensure_internal_topics,
        internal_topic_specs,
    )

    topics = InternalTopics(app)
    app_partitioner(
        admin,
        topics,
        DEFAULT_PARTITIONER,
        lambda: Consumer({"bootstrap.servers": bootstrap, "group.id": f"{app}-seed"}),
        lambda: Producer({"bootstrap.servers": bootstrap}),
    )
    ensure_internal_topics(admin, internal_topic_specs(topics, partitions))
    return seed_changelog(bootstrap, app, partitions, keys, id_of, DEFAULT_PARTITIONER)


def restart(
    env: Env,
    k: Kstatefun,
    keys: int,
    cfg: Any,
    state_dir: bool,
    static: bool = False,
    caught_up: bool = False,
) -> dict:
    """N keys in state; start, output, kill -9, restart: time to the next output, and the
    restore rate the worker logs. The worker is named (--instance-id), so by default it keeps
    a local snapshot (``state_dir``; else --state-dir none) and is a static group member
    (``static``; else --no-static-membership), which the restarted one needs in order not to
    wait for the killed one's session to expire.

    The first start restores the N keys from the changelog and then writes them into its
    snapshot over the next seconds (state/snapshot.py). The kill comes ``settle_s`` after its
    first output, before that is done: the worst moment, the restart replays from the
    changelog what the snapshot lacks. ``caught_up``: the kill comes ``settle_s`` after the
    snapshot caught up instead, as for a worker that has run a while."""
    from kstatefun.kafka.topics import InternalTopics, ensure_internal_topics, internal_topic_specs

    t = env.topics(
        k, ("rsd" if state_dir else "rs") + ("s" if static else "") + ("c" if caught_up else "")
    )
    ensure_internal_topics(env.admin, internal_topic_specs(InternalTopics(t.app), env.partitions))
    seed_s = seed_changelog(env.bootstrap, t.app, env.partitions, keys)
    env.log(f"    seeded {keys} keys into {t.app}-changelog in {seed_s:.1f}s")
    extra: tuple[str, ...] = () if state_dir else ("--state-dir", "none")
    extra += () if static else ("--no-static-membership",)
    extra += ("--partitions", str(env.partitions))  # those of the changelog seeded above
    reader = Reader(env.bootstrap, t.egress)
    result: dict[str, Any] = {
        "app": t.app,
        "keys": keys,
        "state_dir": state_dir,
        "static_membership": static,
        "killed_after_snapshot_caught_up": caught_up,
        "seed_s": round(seed_s, 1),
    }
    proc = None
    starts: dict[str, int] = {}  # where each phase's log begins
    try:
        for phase, rid in (("first_start", "r0"), ("restart", "r1")):
            before = len(reader)
            log_from = proc.log.stat().st_size if proc is not None else 0
            produce(env.bootstrap, t.ingress, [(rid.encode(), b'{"seq":0}')])
            proc = k.spawn("w1", t, "w0", env.run_dir, env.partitions, extra)
            ok = reader.wait_for(before + 1, cfg.restart_timeout, proc.alive)
            starts[phase] = log_from
            log = proc.log.read_bytes()[log_from:].decode(errors="replace")
            phase_result: dict[str, Any] = {
                "to_next_output_s": round(reader.records[before][0] - proc.started, 2)
                if ok
                else None,
                "output": (reader.records[before][2] or b"").decode() if ok else None,
                "expected": f"{rid}:2",
            }
            assigned = ASSIGNED.search(log)
            if assigned:
                at = datetime.strptime(assigned.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                phase_result["assigned_after_s"] = round(at - proc.started_wall, 2)
            snap = re.findall(r"loaded local snapshot partition=\d+ keys=(\d+)", log)
            if snap:
                phase_result["snapshot_keys_loaded"] = sum(map(int, snap))
            if not ok:
                phase_result["error"] = f"no output; log tail: {proc.log_tail(800)}"
            result[phase] = phase_result
            if not ok:
                break
            if phase == "first_start":
                if caught_up:  # the line after the restore's (partitions may end apart)
                    after_restore = RESTORED.pattern + r"[\s\S]*" + SNAPSHOT_CAUGHT_UP
                    proc.wait_log(after_restore, log_from, cfg.restart_timeout)
                    phase_result["snapshot_caught_up_after_s"] = round(
                        time.monotonic() - proc.started, 2
                    )
                time.sleep(cfg.settle_s)
                proc.kill()  # kill -9
    finally:
        if proc is not None:
            proc.stop()
        reader.close()
    if proc is not None:  # the restore's line comes once every partition is restored: the
        whole = proc.log.read_bytes()  # first output may come before, from one restored sooner
        ends = [*list(starts.values())[1:], len(whole)]
        for (phase, start), end in zip(starts.items(), ends, strict=True):
            restored = RESTORED.findall(whole[start:end].decode(errors="replace"))
            if restored and phase in result:
                records = sum(int(r[0]) for r in restored)
                seconds = sum(float(r[1]) for r in restored)
                result[phase]["restore"] = {
                    "records": records,
                    "seconds": round(seconds, 2),
                    "rate": round(records / max(1e-9, seconds)),
                }
    return result


def bare_restore(env: Env, app: str) -> dict:
    """The limit for restore: a bare consumer reading the same changelog into a dict."""
    from kstatefun.kafka.topics import InternalTopics

    out = subprocess.run(
        [
            sys.executable,
            str(PEERS / "bare.py"),
            "--mode",
            "restore",
            "--bootstrap",
            env.bootstrap,
            "--changelog",
            InternalTopics(app).changelog,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (out.stdout + out.stderr)[-800:]}


# --- the broker's transaction floor ---------------------------------------------------------------


def txn_floor(env: Env, transactions: int = 40) -> dict:
    """Transactions of one record plus its consumed offset, with kstatefun's producer
    settings: what one commit costs on this broker and client, the floor under the latency of
    every hop in every contender. Timed back to back (as a worker under light load commits)
    and with a 25 ms pause between transactions, per step: begin + produce + flush (this
    includes registering the partition with the transaction), send_offsets, commit."""
    from confluent_kafka import Consumer

    topic = f"floor-{env.run_id}"
    create_topics(env.admin, [topic], 1)
    out: dict[str, Any] = {}
    for variant, pause in (("back_to_back", 0.0), ("paused_25ms", 0.025)):
        producer = Producer(
            {
                "bootstrap.servers": env.bootstrap,
                "transactional.id": f"floor-{env.run_id}-{variant}",
                "enable.idempotence": True,
                **TRANSACTIONAL_PRODUCER_TUNING,
            }
        )
        consumer = Consumer({"bootstrap.servers": env.bootstrap, "group.id": f"floor-{env.run_id}"})
        producer.init_transactions(30)
        steps: dict[str, list[float]] = {"produce": [], "send_offsets": [], "commit": []}
        total = []
        try:
            for i in range(transactions + 5):
                t0 = time.monotonic()
                producer.begin_transaction()
                producer.produce(topic, b"x", b"k")
                producer.flush(30)
                t1 = time.monotonic()
                producer.send_offsets_to_transaction(
                    [TopicPartition(topic, 0, i + 1)], consumer.consumer_group_metadata(), 30
                )
                t2 = time.monotonic()
                producer.commit_transaction(30)
                t3 = time.monotonic()
                if i >= 5:  # the first ones find the coordinators
                    steps["produce"].append(t1 - t0)
                    steps["send_offsets"].append(t2 - t1)
                    steps["commit"].append(t3 - t2)
                    total.append(t3 - t0)
                time.sleep(pause)
        finally:
            consumer.close()
        out[variant] = {
            "p50_ms": round(_pct(sorted(total), 50) * 1000, 1),
            "p99_ms": round(_pct(sorted(total), 99) * 1000, 1),
            **{f"{k}_p50_ms": round(_pct(sorted(v), 50) * 1000, 1) for k, v in steps.items()},
        }
    return out
