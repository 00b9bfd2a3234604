"""Micro-benchmark of W1's per-event Python without a broker: the worker's record path
(route → direct invoke → the counter → effects apply → produce, and a commit every batch) on
real ``confluent_kafka.Message`` records, with the real ``Transaction`` around a producer that
queues locally and never sends. CPU time of the main thread per event, best of ``--repeat``.

    python -m bench.hotpath                     # this checkout
    PYTHONPATH=/path/to/other/service python -m bench.hotpath   # another checkout's kstatefun
    python -m bench.hotpath --profile out.pstats                # cProfile one more pass
    python -m bench.hotpath --against /path/to/other/checkout   # A/B, alternating processes

Each consumed batch goes through ``process_records`` (runtime/router.py), as in
``Worker._process`` (runtime/worker.py), inside the real ``Transaction``; the broker's side
(fetching, delivery, the transaction's round trips) is not in it, so the figure is what the
worker's one Python thread spends per event, not a rate it can reach.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
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
from kstatefun.runtime.router import IngressRouter, process_records
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore

INGRESS = "bench-in"
EGRESS = "bench-out"
BATCH = 500  # the worker's max_batch_records


class _QueueingProducer:
    """The transactional producer's calls the loop makes: ``produce`` is librdkafka's own (the
    records queue in memory, nothing connects), the transaction calls do nothing."""

    def __init__(self) -> None:
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

    def init_transactions(self, *_: Any) -> None: ...

    def begin_transaction(self) -> None: ...

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


def worker_parts(partitions: int) -> tuple[Transaction, IngressRouter, Dispatcher, Any]:
    from bench.apps.count import functions

    metrics = WorkerMetrics()
    store, timers = StateStore(), TimerStore()
    for p in range(partitions):
        store.add_partition(p)
        store.restored(p, 0)
        timers.add_partition(p)
        timers.restored(p, 0)
    producer = _QueueingProducer()
    txn = Transaction(
        lambda: producer,  # type: ignore[arg-type,return-value]
        _Consumer(),  # type: ignore[arg-type]
        [("bench-changelog", store), ("bench-timers", timers)],
        metrics,
    )
    dlq = DeadLetters("bench-dead-letters", txn, metrics)
    ingress = KafkaIngress("bench/in", (IngressTopic(INGRESS, "bench/Event", ("bench/counter",)),))
    router = IngressRouter(
        [ingress],
        "bench-invocations",
        partitions,
        "crc32",
        txn,
        dlq,
        metrics,
        {INGRESS: partitions},
    )
    dispatcher = Dispatcher(
        functions,
        store,
        txn,
        dlq,
        "bench-invocations",
        router._partition_of,
        {"bench/out": KafkaEgress("bench/out")},
        lambda topic: True,
        timers,
        metrics,
    )
    router.invoke = dispatcher.invoke
    router.direct.update((INGRESS, p) for p in range(partitions))
    return txn, router, dispatcher, producer


def run_once(batches: list[list[Message]], partitions: int) -> tuple[float, float, int]:
    """(main-thread CPU s, wall s, records produced) for one pass over ``batches``."""
    txn, router, dispatcher, producer = worker_parts(partitions)
    metrics = dispatcher.metrics
    invocations, records_in = "bench-invocations", metrics.records_in
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for batch in batches:
        txn._committed_at = -1.0  # no settle pause: nothing to settle without a broker
        txn.begin()
        txn.track(batch)
        # as Worker._process does for each consumed batch
        process_records(batch, invocations, dispatcher.dispatch, router.route, records_in)
        txn.commit()
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    produced = sum(metrics.records_out.values())
    producer.purge()
    return cpu, wall, produced


def measure(events: int, keys: int, partitions: int, repeat: int, profile: str | None) -> dict:
    batches = records(events, keys, partitions)
    runs = [run_once(batches, partitions) for _ in range(repeat)]
    cpu_us = [1e6 * cpu / events for cpu, _, _ in runs]
    out: dict[str, Any] = {
        "kstatefun": kstatefun.__file__,
        "build": buildinfo.build(),  # compiled or pure: which kstatefun this measured
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
        run_once(batches, partitions)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", metavar="PSTATS", help="also cProfile one pass into PSTATS")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT", help="A/B with another tree")
    parser.add_argument("--rounds", type=int, default=4, help="with --against: rounds per side")
    args = parser.parse_args(argv)
    if args.against is not None:
        sizes = ["--events", str(args.events), "--keys", str(args.keys)]
        sizes += ["--partitions", str(args.partitions), "--repeat", str(args.repeat)]
        out = against(args.against, args.rounds, sizes)
    else:
        out = measure(args.events, args.keys, args.partitions, args.repeat, args.profile)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
