"""Micro-benchmark of W1's (or W2's) per-event Python without a broker: the worker's record
path (route → direct invoke → the counter → effects apply → produce, and a commit every batch)
on real ``confluent_kafka.Message`` records, with the real ``Transaction`` around a producer
that queues locally and never sends. CPU time of the main thread per event, best of
``--repeat``; ``--instructions`` counts instructions per event under callgrind instead (what
a loaded machine does not move).

    python -m bench.hotpath                     # this checkout
    python -m bench.hotpath --workload w2       # W2: ingress → A → B (B re-keyed), one owner
    python -m bench.hotpath --workload w2-hop   # W2, every message through the topic
    python -m bench.hotpath --workload w2-same  # W2 with B on A's id (in A's transaction)
    python -m bench.hotpath --instructions      # instructions per event (valgrind)
    PYTHONPATH=/path/to/other/service python -m bench.hotpath   # another checkout's kstatefun
    python -m bench.hotpath --profile out.pstats                # cProfile one more pass
    python -m bench.hotpath --against /path/to/other/checkout   # A/B, alternating processes

Each consumed batch goes through ``process_records`` (runtime/router.py), as in
``Worker._process`` (runtime/worker.py), inside the real ``Transaction``; the broker's side
(fetching, delivery, the transaction's round trips) is not in it, so the figure is what the
worker's one Python thread spends per event, not a rate it can reach.

W2 (bench/apps/chain.py) adds B, on another id than A's (``w2``, ``w2-hop``) or on A's
(``w2-same``). Every partition is owned here, so a message runs in A's transaction, as in a
worker that owns every partition (runtime/local.py), except with ``w2-hop`` (the setting
``local_messages`` off: a worker that owns B's partition only in other cases). A message that
takes the hop (``w2-hop``, or a checkout from before runtime/local.py, with ``--against``) is
encoded and produced to <app>-invocations; after each commit the
records produced come back as the consumer would return them (``Message`` records of
<app>-invocations, in batches of 500), and ``process_records`` decodes and dispatches them to B
in transactions of their own.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Message, Producer

import kstatefun
from kstatefun import buildinfo
from kstatefun.config.module.specs import IngressTopic, KafkaEgress, KafkaIngress
from kstatefun.kafka.partitioner import partition_for_key
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime.commit import Transaction
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.runtime.dispatcher import Dispatcher

try:
    from kstatefun.runtime.local import LocalSends
except ImportError:  # an older checkout (--against): every message takes the hop
    LocalSends = None  # type: ignore[assignment,misc]
from kstatefun.runtime.router import IngressRouter, process_records
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore

INGRESS = "bench-in"
EGRESS = "bench-out"
INVOCATIONS = "bench-invocations"
BATCH = 500  # the worker's max_batch_records


class _QueueingProducer:
    """The transactional producer's calls the loop makes: ``produce`` is librdkafka's own (the
    records queue in memory, nothing connects), the transaction calls do nothing."""

    def __init__(self, capture: str | None = None) -> None:
        self._real = Producer(
            {
                "bootstrap.servers": "127.0.0.1:9",  # never reached: nothing is flushed
                "queue.buffering.max.messages": 10_000_000,
                "queue.buffering.max.kbytes": 2_000_000,
                "message.timeout.ms": 3_600_000,
                "linger.ms": 900_000,
                "log_level": 0,  # quiet about the broker it never reaches
            }
        )
        self.produce = self._real.produce
        self.poll = self._real.poll
        # (partition, key, value) of each record produced to ``capture``: what W2 consumes back
        self.captured: list[tuple[int, bytes, bytes]] = []
        if capture is not None:
            real, captured = self._real.produce, self.captured

            def produce(topic: str, value: bytes, key: bytes, partition: int, **kw: Any) -> None:
                if topic == capture:
                    captured.append((partition, key, value))
                real(topic, value, key, partition, **kw)

            self.produce = produce  # type: ignore[assignment]

    def init_transactions(self, *_: Any) -> None: ...

    def begin_transaction(self) -> None: ...

    def flush(self, *_: Any) -> int:
        return 0  # as if acknowledged: the records stay queued, for ``purge``

    def send_offsets_to_transaction(self, *_: Any) -> None: ...

    def commit_transaction(self, *_: Any) -> None: ...

    def abort_transaction(self, *_: Any) -> None: ...

    def purge(self) -> None:
        self._real.purge()
        self._real.poll(0)


class _Consumer:
    def consumer_group_metadata(self) -> None:
        return None

    def seek(self, *_: Any) -> None: ...


def records(events: int, keys: int, partitions: int) -> list[list[Message]]:
    """W1's input as consumed batches: key k<n> placed by librdkafka's default partitioner
    (CRC32) onto ``partitions``, each batch from one partition as a fetch returns them."""
    by_partition: list[list[Message]] = [[] for _ in range(partitions)]
    value = b'{"n": 0, "pad": "xxxxxxxxxxxxxxxxxxxxxxxx"}'
    for i in range(events):
        key = f"k{i % keys}".encode()
        p = partition_for_key(key, partitions, "crc32")
        part = by_partition[p]
        part.append(Message(topic=INGRESS, partition=p, offset=len(part), key=key, value=value))
    batches = []
    for part in by_partition:
        batches += [part[i : i + BATCH] for i in range(0, len(part), BATCH)]
    # interleave the partitions' batches, as a consumer serves its fetches
    per = [[b for b in batches if b[0].partition() == p] for p in range(partitions)]
    out: list[list[Message]] = []
    for i in range(max(len(x) for x in per)):
        out += [x[i] for x in per if i < len(x)]
    return out


def consumed(routed: list[tuple[int, bytes, bytes]], offsets: list[int]) -> list[list[Message]]:
    """The records ``routed`` (partition, key, value) to <app>-invocations as the consumer
    returns them: per partition, in order, in batches of up to 500; ``offsets`` holds each
    partition's next offset."""
    by_partition: dict[int, list[Message]] = {}
    for p, key, value in routed:
        offset = offsets[p]
        offsets[p] = offset + 1
        msg = Message(topic=INVOCATIONS, partition=p, offset=offset, key=key, value=value)
        by_partition.setdefault(p, []).append(msg)
    return [
        part[i : i + BATCH] for part in by_partition.values() for i in range(0, len(part), BATCH)
    ]


def worker_parts(
    partitions: int, workload: str = "w1"
) -> tuple[Transaction, IngressRouter, Dispatcher, Any]:
    if workload.startswith("w2"):
        from bench.apps.chain import make

        functions = make(rekeyed=workload != "w2-same")
    else:
        from bench.apps.count import functions

    metrics = WorkerMetrics()
    store, timers = StateStore(), TimerStore()
    for p in range(partitions):
        store.add_partition(p)
        store.restored(p, 0)
        timers.add_partition(p)
        timers.restored(p, 0)
    producer = _QueueingProducer(INVOCATIONS if workload.startswith("w2") else None)
    txn = Transaction(
        lambda: producer,  # type: ignore[arg-type,return-value]
        _Consumer(),  # type: ignore[arg-type]
        [("bench-changelog", store), ("bench-timers", timers)],
        metrics,
    )
    dlq = DeadLetters("bench-dead-letters", txn, metrics)
    target = "bench/a" if workload.startswith("w2") else "bench/counter"
    ingress = KafkaIngress("bench/in", (IngressTopic(INGRESS, "bench/Event", (target,)),))
    router = IngressRouter(
        [ingress],
        INVOCATIONS,
        partitions,
        "crc32",
        txn,
        dlq,
        metrics,
        {INGRESS: partitions},
    )
    # every partition owned and restored: as the worker, W2's messages from A to B run in A's
    # transaction (runtime/local.py), unless w2-hop turns that off
    router.owned.update(range(partitions))
    local_on = LocalSends is not None and workload != "w2-hop"
    local = {"local": LocalSends(router.owned)} if local_on else {}
    dispatcher = Dispatcher(
        functions,
        store,
        txn,
        dlq,
        INVOCATIONS,
        router._partition_of,
        {"bench/out": KafkaEgress("bench/out")},
        lambda topic: True,
        timers,
        metrics,
        **local,  # type: ignore[arg-type]
    )
    router.invoke = dispatcher.invoke
    router.direct.update((INGRESS, p) for p in range(partitions))
    return txn, router, dispatcher, producer


def run_once(
    batches: list[list[Message]], partitions: int, workload: str = "w1"
) -> tuple[float, float, int]:
    """(main-thread CPU s, wall s, records produced) for one pass over ``batches``."""
    txn, router, dispatcher, producer = worker_parts(partitions, workload)
    metrics = dispatcher.metrics
    records_in, dispatch, route = metrics.records_in, dispatcher.dispatch, router.route
    routed, offsets = producer.captured, [0] * partitions

    def step(batch: list[Message]) -> None:
        txn._committed_at = -1.0  # no settle pause: nothing to settle without a broker
        txn.begin()
        txn.track(batch)
        # as Worker._process does for each consumed batch
        process_records(batch, INVOCATIONS, dispatch, route, records_in)
        txn.commit()

    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for batch in batches:
        step(batch)
        if routed:  # W2: committed, A's messages to B are there for the consumer
            for hop in consumed(routed, offsets):
                step(hop)
            routed.clear()
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    produced = sum(metrics.records_out.values())
    producer.purge()
    return cpu, wall, produced


def measure(
    events: int, keys: int, partitions: int, repeat: int, profile: str | None, workload: str
) -> dict:
    batches = records(events, keys, partitions)
    runs = [run_once(batches, partitions, workload) for _ in range(repeat)]
    cpu_us = [1e6 * cpu / events for cpu, _, _ in runs]
    out: dict[str, Any] = {
        "kstatefun": kstatefun.__file__,
        "build": buildinfo.build(),  # compiled or pure: which kstatefun this measured
        "workload": workload,
        "events": events,
        "produced_per_pass": runs[0][2],
        "cpu_us_per_event_best": round(min(cpu_us), 2),
        "cpu_us_per_event_median": round(statistics.median(cpu_us), 2),
        "cpu_us_per_event_all": [round(x, 2) for x in cpu_us],
        "wall_us_per_event_best": round(1e6 * min(w for _, w, _ in runs) / events, 2),
    }
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_once(batches, partitions, workload)
        profiler.disable()
        profiler.dump_stats(profile)
        # Python-level calls per event: a count that the machine's load does not move
        out["calls_per_event"] = round(pstats.Stats(profile).total_calls / events, 1)  # type: ignore[attr-defined]
        out["profile"] = profile
    return out


def against(other: Path, rounds: int, argv: list[str]) -> dict:
    """Alternate this checkout's kstatefun and ``other``'s in fresh processes, ``rounds`` each;
    the ratio is other's CPU per event over this one's (above 1: this one is cheaper)."""
    mine = str(Path(kstatefun.__file__).resolve().parents[1])
    sides = {"this": mine, "other": str((other / "service").resolve())}
    cpu: dict[str, list[float]] = {"this": [], "other": []}
    builds: dict[str, str] = {}
    for rnd in range(rounds):
        for side in ("this", "other") if rnd % 2 == 0 else ("other", "this"):
            env = {**os.environ, "PYTHONPATH": sides[side]}
            run = subprocess.run(
                [sys.executable, "-m", "bench.hotpath", *argv],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            out = json.loads(run.stdout)
            cpu[side].append(out["cpu_us_per_event_best"])
            builds[side] = out["build"]
    ratios = [o / t for o, t in zip(cpu["other"], cpu["this"], strict=True)]
    return {
        "this": sides["this"],
        "other": sides["other"],
        "builds": builds,
        "cpu_us_per_event": cpu,
        "other_over_this_median": round(statistics.median(ratios), 3),
        "other_over_this_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def instructions(argv: list[str], events: int) -> dict:
    """Instructions per event under callgrind: a pass of ``events`` less a pass of one event
    (start-up, imports), divided by ``events - 1``; one run each, as the load does not move it."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions runs valgrind, which is not on PATH: install it first")
    counts = []
    for n in (1, events):
        with tempfile.NamedTemporaryFile(suffix=".callgrind") as out:
            run = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}"]
                + [sys.executable, "-m", "bench.hotpath", *argv, "--events", str(n)]
                + ["--repeat", "1"],
                capture_output=True,
                text=True,
                check=True,
            )
        found = re.search(r"Collected : (\d+)", run.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count in valgrind's output: {run.stderr[-500:]}")
        counts.append(int(found.group(1)))
        result = json.loads(run.stdout)
    return {
        "kstatefun": result["kstatefun"],
        "build": result["build"],
        "workload": result["workload"],
        "events": events,
        "instructions_per_event": round((counts[1] - counts[0]) / (events - 1)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--workload", choices=("w1", "w2", "w2-hop", "w2-same"), default="w1")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", metavar="PSTATS", help="also cProfile one pass into PSTATS")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT", help="A/B with another tree")
    parser.add_argument("--rounds", type=int, default=4, help="with --against: rounds per side")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instructions per event under valgrind's callgrind (--events 10000 is plenty)",
    )
    args = parser.parse_args(argv)
    shape = ["--workload", args.workload, "--keys", str(args.keys)]
    shape += ["--partitions", str(args.partitions)]
    if args.instructions:
        out = instructions(shape, args.events)
    elif args.against is not None:
        sizes = [*shape, "--events", str(args.events), "--repeat", str(args.repeat)]
        out = against(args.against, args.rounds, sizes)
    else:
        out = measure(
            args.events, args.keys, args.partitions, args.repeat, args.profile, args.workload
        )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
