"""The chaos runner: three workers of the chaos application under a steady input while faults
are injected at random (seeded), then a read_committed verification.

    python -m tests.chaos.run --minutes 10 --seed 42

It starts its own single-node broker (a LocalKafka on a data directory it owns, because one
fault kills the broker), the application's remote functions with the real StateFun SDK 3.3.0
(tests/chaos/sdk_app.py in the SDK's cached virtualenv), and the workers. While the input
runs, one fault at a time, chosen by the seed:

- ``kill9``: SIGKILL a worker, restart it with the same instance id;
- ``sigterm``: SIGTERM a worker (it must commit, leave the group and exit 0), restart it;
- ``zombie``: SIGSTOP a worker for longer than its session timeout (10 s: the dev broker's
  group.consumer.session.timeout.ms, or session.timeout.ms of the classic protocols), so the group
  moves its partitions and the broker aborts its open transaction, then SIGCONT it: nothing
  it writes may commit (it is fenced, loses its partitions, or exits 3 and is restarted);
- ``late``: SIGTERM and restart one worker (a rebalance) and SIGSTOP another as soon as it logs
  its revocation, for longer than the session timeout: the group goes on without it and others
  write its partitions. Under eager rebalancing it owns nothing then and may get some of them
  back without having been told it lost them (issue 17: it must catch their state up, never
  go on from its own); under the incremental protocols (consumer, the default, and
  cooperative) it still holds the partitions it keeps, so the group fences it while it holds
  them: on waking it must learn that it lost them, and nothing it commits for them may count;
- ``broker``: SIGKILL the broker and start it again on its data directory;
- ``remote``: SIGSTOP the SDK server for a few seconds (within its call budget), then SIGCONT.

With ``--brokers 3`` it runs a 3-node cluster (kstatefun.devkafka.cluster: replication factor
3, min.insync.replicas 2) instead, and ``broker`` kills the node leading most partitions; more
kinds join:

- ``coordinator``: SIGKILL the node coordinating a random worker's transactional id, restart it;
- ``controller``: SIGKILL the active controller (the KRaft quorum leader), restart it;
- ``rolling``: SIGTERM and restart every node in turn, the next once the restarted one is back
  in every in-sync replica set.

Every fault is timed, and the run reports per kind the longest pause of the output (the
longest gap between egress records a read_committed reader saw, from the fault's start to the
next fault's), of all of it and of the egress partition that paused longest.

Then every worker is stopped cleanly and tests/chaos/verify.py checks the output against what
the committed input implies. The run prints the figures and exits 1 on any violation (2 when
it could not run). Logs stay in the work directory when the run fails (or with ``--keep``).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from kstatefun.devkafka import LocalKafka
from kstatefun.devkafka.cluster import LocalKafkaCluster
from kstatefun.runtime.commit import COORDINATOR_ANSWERED
from tests import cluster as cluster_faults
from tests import kafka_fixture
from tests.chaos import verify
from tests.harness import owned_partitions
from tests.remote import sdk_env

ROOT = Path(__file__).resolve().parents[2]
# the runner's own Kafka clients keep quiet while the broker is down on purpose
QUIET = logging.getLogger("tests.chaos.kafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
QUIET.setLevel(logging.CRITICAL + 1)
HERE = Path(__file__).resolve().parent
SDK_APP = HERE / "sdk_app.py"
MODULE_TEMPLATE = HERE / "module.template.yaml"
APP_ID = "chaos"
TTL_MS = 2000  # CHAOS_TTL_MS of functions.py and sdk_app.py (their default)
# devkafka TUNING group.consumer.session.timeout.ms (KIP-848), kafka/clients.py (classic)
SESSION_TIMEOUT_S = 10.0
FAULT_KINDS = ("kill9", "sigterm", "zombie", "late", "broker", "remote")
CLUSTER_FAULT_KINDS = (*FAULT_KINDS, "coordinator", "controller", "rolling")
BAD_KINDS = ("null-key", "null-value", "invalid-key", "boom", "stray", "rboom")
Exit = tuple[str, int | None, str, str]  # worker, exit code (None: hung), when, cause
DELAY_MS = 1500  # one delay per stream, so that per-key order is the order of the input
RDELAY_MS = 800
DEFAULT_RATE = 40.0  # events per second
DEFAULT_KEYS = 120
# broker loggers a replicated run also logs at INFO, to tell its pauses apart: partition
# leader and ISR changes, the transaction coordinators (loading, aborts, markers), the group
# coordinators' loading, and each node's controlled shutdown
BROKER_INFO_LOGGERS = (
    "kafka.cluster.Partition",
    "kafka.coordinator.transaction",
    "org.apache.kafka.coordinator.common.runtime",
    "kafka.server.BrokerLifecycleManager",
)


@dataclass
class ChaosConfig:
    seconds: float = 600.0  # how long the input (and the faults) run
    seed: int = 0
    rate: float = DEFAULT_RATE
    keys: int = DEFAULT_KEYS
    workers: int = 3
    partitions: int = 6
    faults: tuple[str, ...] | None = None  # a fixed sequence; None: each kind once, then random
    gap_s: tuple[float, float] = (3.0, 8.0)  # quiet time between two faults
    zombie_s: tuple[float, float] = (12.0, 15.0)  # > SESSION_TIMEOUT_S
    remote_outage_s: tuple[float, float] = (2.0, 4.0)  # < the remote call budget
    broker_down_s: tuple[float, float] = (0.0, 3.0)
    brokers: int = 1  # 3 or more: a replicated cluster, and the cluster fault kinds
    # how long a restarted node may take to rejoin: on a loaded 2-core host (load average
    # about 30) restarts took up to 103 s, and the former 120 s bound ended a 38-minute run
    node_start_s: float = 300.0
    remote_call_budget: str = "8s"
    bad_each: int = 2  # injected bad records of each kind
    kafka_debug: str = ""  # librdkafka ``debug`` contexts for the workers' clients
    kafka_properties: dict[str, str] = field(default_factory=dict)  # KSTATEFUN_KAFKA_PROPERTIES
    zombie_lull: float = 0.5  # probability that the input pauses for 1 s before a zombie
    drain_timeout_s: float = 240.0
    work_dir: Path | None = None
    keep: bool = False
    # the workers' state_store, or "snapshot": memory with a state_dir in work_dir (its local
    # snapshot; rocksdb: its database there)
    state_store: str = "memory"
    standby_replicas: int = 0  # the workers' standby_replicas (needs rocksdb)
    rebalance_protocol: str | None = None  # the workers' rebalance_protocol (None: default)
    # finish a run that died in its fault phase: restart its kept cluster (work_dir) and new
    # workers, let them process the committed input, then verify; no input, no faults
    resume: bool = False
    say: Callable[[str], None] = lambda text: print(text, flush=True)


@dataclass
class ChaosReport:
    seed: int
    events: int = 0
    valid: int = 0
    bad: int = 0
    delivery_failures: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    # worker exits the runner did not ask for, as (worker, exit code or None for "still
    # running when the SIGTERM's patience ran out", when, cause: exit_cause()): code 3
    # (fenced) is reported, not a violation; a hang or any other code is
    exits: list[Exit] = field(default_factory=list)
    verdict: verify.Verdict | None = None
    expected_egress: int = 0
    wall_s: float = 0.0
    setup_s: float = 0.0
    drain_s: float = 0.0
    drained: bool = True  # the egress topic reached the expected count within the drain timeout
    work_dir: str = ""
    error: str | None = None
    log_counts: Counter[str] = field(default_factory=Counter)
    kinds: tuple[str, ...] = FAULT_KINDS
    # per fault kind, the longest pause of the output around one such fault (s): of all the
    # output, and of the egress partition that paused longest
    stalls: dict[str, float] = field(default_factory=dict)
    partition_stalls: dict[str, float] = field(default_factory=dict)

    @property
    def bad_exits(self) -> list[Exit]:
        return [e for e in self.exits if e[1] != 3]

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.verdict is not None
            and self.verdict.ok
            and not self.bad_exits
        )

    @property
    def exit_causes(self) -> Counter[str]:
        return Counter(cause for *_, cause in self.exits)

    def lines(self) -> list[str]:
        v = self.verdict or verify.Verdict()
        faults = " ".join(f"{k}={self.faults[k]}" for k in self.kinds)
        out = [
            f"seed: {self.seed}",
            f"events: {self.events} (valid {self.valid}, bad {self.bad}; "
            f"input delivery failures {self.delivery_failures})",
            f"faults: {faults}",
            f"egress: expected {self.expected_egress}, read {v.egress_read}"
            + ("" if self.drained else " (the output stopped coming: missing ones count as lost)"),
            f"lost: {v.lost}",
            f"duplicated: {v.duplicated}",
            f"out of order: {v.out_of_order}",
            f"unexpected egress: {v.unexpected}",
            f"state: {v.state_checked} values checked, {v.state_wrong} wrong, "
            f"{v.ttl_not_purged} expired but not purged; pending timers wrong: {v.timers_wrong}",
            f"dead letters: {dict(sorted(v.letters.items()))}, wrong {v.letters_wrong}",
            f"open transactions (stuck partitions): {v.stuck_partitions}",
            f"worker exits not caused by a fault: {len(self.exits)}, of which hung or crashed "
            f"{len(self.bad_exits)}"
            + (
                " ("
                + "; ".join(
                    f"{n} {'hung (still running after SIGTERM)' if c is None else f'exit {c}'}"
                    f" {when} ({cause})"
                    for n, c, when, cause in self.exits[:8]
                )
                + ")"
                if self.exits
                else ""
            ),
            "worker exits by cause: "
            + (" ".join(f"{k}={n}" for k, n in sorted(self.exit_causes.items())) or "none"),
            f"worker exits caused by retriable errors: {self.exit_causes['retriable']}",
            f"worker log: {dict(sorted(self.log_counts.items()))}",
            "longest output pause per fault kind: "
            + (" ".join(f"{k}={v:.1f}s" for k, v in sorted(self.stalls.items())) or "-"),
            "longest pause of one egress partition per fault kind: "
            + (" ".join(f"{k}={v:.1f}s" for k, v in sorted(self.partition_stalls.items())) or "-"),
            f"wall time: {self.wall_s:.0f} s "
            f"(setup {self.setup_s:.0f} s, drain {self.drain_s:.0f} s)",
        ]
        if self.error:
            out.append(f"error: {self.error}")
        out += [f"problem: {p}" for p in v.problems[:40]]
        out.append(f"RESULT: {'PASS' if self.ok else 'FAIL'}")
        return out

    def figures(self) -> dict[str, object]:
        v = self.verdict or verify.Verdict()
        return {
            "seed": self.seed,
            "events": self.events,
            "faults": dict(self.faults),
            "lost": v.lost,
            "duplicated": v.duplicated,
            "out_of_order": v.out_of_order,
            "unexpected": v.unexpected,
            "state_wrong": v.state_wrong,
            "timers_wrong": v.timers_wrong,
            "letters_wrong": v.letters_wrong,
            "stuck_partitions": v.stuck_partitions,
            "exits": [list(e) for e in self.exits],
            "exit_causes": dict(self.exit_causes),
            "wall_s": round(self.wall_s),
            "stalls_s": {k: round(v, 1) for k, v in sorted(self.stalls.items())},
            "partition_stalls_s": {
                k: round(v, 1) for k, v in sorted(self.partition_stalls.items())
            },
            "drained": self.drained,
            "ok": self.ok,
        }


# --- the input --------------------------------------------------------------------------------


def make_input(cfg: ChaosConfig) -> list[tuple[bytes | None, bytes | None]]:
    """The whole input, from the seed: valid events with random flags, and ``bad_each`` bad
    records of each kind spread over it."""
    rng = random.Random(f"input-{cfg.seed}")
    total = max(1, int(cfg.seconds * cfg.rate))
    events: list[tuple[bytes | None, bytes | None]] = []
    for seq in range(total):
        key = f"k{rng.randrange(cfg.keys)}".encode()
        event: dict[str, object] = {"seq": seq}
        if rng.random() < 0.10:
            event["cycle"] = rng.choice((2, 3, 4, 6))
        if rng.random() < 0.12:
            event["delay"] = DELAY_MS
        if rng.random() < 0.08:
            event["rdelay"] = RDELAY_MS
        if rng.random() < 0.10:
            event["ttl"] = True
        if rng.random() < 0.05:
            event["hold"] = True
        events.append((key, json.dumps(event).encode()))
    bad = [kind for kind in BAD_KINDS for _ in range(cfg.bad_each)]
    rng.shuffle(bad)
    for i, kind in enumerate(bad):
        seq = total + i
        key = f"k{rng.randrange(cfg.keys)}".encode()
        record: tuple[bytes | None, bytes | None]
        if kind == "null-key":
            record = (None, json.dumps({"seq": seq}).encode())
        elif kind == "null-value":
            record = (key, None)
        elif kind == "invalid-key":
            record = (b"\xff\xfe" + str(seq).encode(), json.dumps({"seq": seq}).encode())
        else:
            record = (key, json.dumps({"seq": seq, kind: True}).encode())
        # spread over the middle of the run, where the faults are
        position = int(len(events) * (0.1 + 0.8 * (i + 0.5) / len(bad)))
        events.insert(position, record)
    return events


class InputThread(threading.Thread):
    """Produces the input at a steady rate with an idempotent producer that outlives broker
    restarts (records wait in its queue while the broker is down)."""

    def __init__(self, bootstrap: str, topic: str, events: list, rate: float) -> None:
        super().__init__(name="chaos-input", daemon=True)
        self.bootstrap, self.topic, self.events, self.rate = bootstrap, topic, events, rate
        self.failures = 0
        self.produced = 0
        self.last_at: float | None = None  # when the last record was produced (monotonic)
        self.error: BaseException | None = None
        self.go = threading.Event()  # cleared: the input pauses (and then catches up)
        self.go.set()

    def _delivered(self, err, msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            self.failures += 1

    def run(self) -> None:
        try:
            producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "message.timeout.ms": 300_000,
                    "partitioner": "consistent_random",  # the app's default crc32: the direct path
                    "logger": QUIET,
                }
            )
            started = time.monotonic()
            for i, (key, value) in enumerate(self.events):
                if not self.go.is_set():
                    paused = time.monotonic()
                    while not self.go.wait(0.1):
                        producer.poll(0)
                    started += time.monotonic() - paused  # no burst after a pause
                # poll returns early when it serves a delivery report: wait out the rest, or
                # the input runs ahead of its rate and ends before the last faults
                while (wait := started + i / self.rate - time.monotonic()) > 0:
                    producer.poll(wait)
                while True:
                    try:
                        producer.produce(self.topic, value, key, on_delivery=self._delivered)
                        break
                    except BufferError:
                        producer.poll(0.1)
                self.produced += 1
                producer.poll(0)
            self.last_at = time.monotonic()
            left = producer.flush(300)
            self.failures += left
        except BaseException as e:  # noqa: BLE001 - reported by the runner
            self.error = e


class EgressWatch(threading.Thread):
    """Notes when egress records become visible to a read_committed reader, to time the
    output's pauses around each fault (the reader's own failover is part of what it sees)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="chaos-egress-watch", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.arrivals: list[float] = []
        # per egress partition: one worker's stall shows here even while the others write
        self.by_partition: dict[int, list[float]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"chaos-watch-{time.monotonic_ns()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                "logger": QUIET,
            }
        )
        try:
            consumer.subscribe([self.topic])
            while not self.done.is_set():
                batch = consumer.consume(1000, timeout=0.1)
                now = time.monotonic()
                partitions = {m.partition() for m in batch if m.error() is None}
                if partitions:
                    self.arrivals.append(now)
                for p in partitions:
                    self.by_partition.setdefault(p, []).append(now)
        finally:
            consumer.close()

    def longest_pause(self, start: float, end: float, partition: int | None = None) -> float:
        """The longest pause of arrivals (on any partition, or on ``partition``) around a fault:
        see longest_pause()."""
        times = self.arrivals if partition is None else self.by_partition[partition]
        return longest_pause(times, start, end)


def longest_pause(times: list[float], start: float, end: float) -> float:
    """The longest gap between sorted ``times`` from the last one before ``start`` up to
    ``end`` (or, with none after ``start``, until ``end``)."""
    i = bisect.bisect_right(times, start)
    window = times[max(i - 1, 0) : bisect.bisect_right(times, end)]
    if not window:
        return end - start
    gaps = [b - a for a, b in zip(window, window[1:], strict=False)]
    if window[-1] <= start:
        gaps.append(end - window[-1])
    return max(gaps, default=0.0)


# --- processes --------------------------------------------------------------------------------


class Workers:
    """The application's worker processes, each restarted under its own instance id."""

    def __init__(self, bootstrap: str, module: Path, egress: str, cfg: ChaosConfig, logs: Path):
        self.bootstrap, self.module, self.egress, self.cfg, self.logs = (
            bootstrap,
            module,
            egress,
            cfg,
            logs,
        )
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped: set[str] = set()  # SIGSTOPped right now
        self.down: set[str] = set()  # killed or terminated by the runner, not restarted yet
        self.exits: list[Exit] = []
        self.t0 = time.monotonic()
        self.expect_exit: dict[str, set[int]] = {}

    def start(self, name: str) -> None:
        self.down.discard(name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KSTATEFUN_")}
        env.update(CHAOS_EGRESS_TOPIC=self.egress, PYTHONUNBUFFERED="1", CHAOS_TTL_MS=str(TTL_MS))
        properties = dict(self.cfg.kafka_properties)
        if self.cfg.kafka_debug:
            properties["debug"] = self.cfg.kafka_debug
        if properties:
            env["KSTATEFUN_KAFKA_PROPERTIES"] = json.dumps(properties)
        # named workers default to static membership and a state dir in $HOME: keep the
        # dynamic membership and changelog restores these runs were designed around
        env.update(KSTATEFUN_STATIC_MEMBERSHIP="false", KSTATEFUN_STATE_DIR="none")
        if self.cfg.state_store != "memory":
            if self.cfg.state_store != "snapshot":  # else the memory store, with a snapshot
                env["KSTATEFUN_STATE_STORE"] = self.cfg.state_store
            env["KSTATEFUN_STATE_DIR"] = str(self.logs.parent / "state")
        if self.cfg.standby_replicas:
            env["KSTATEFUN_STANDBY_REPLICAS"] = str(self.cfg.standby_replicas)
        if self.cfg.rebalance_protocol:
            env["KSTATEFUN_REBALANCE_PROTOCOL"] = self.cfg.rebalance_protocol
        log = open(self.logs / f"worker-{name}.log", "ab")  # noqa: SIM115 - owned by the child
        log.write(f"==== start {time.strftime('%H:%M:%S')} ====\n".encode())
        log.flush()
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kstatefun.cli",
                "run",
                "--module",
                str(self.module),
                "--bootstrap-servers",
                self.bootstrap,
                "--app-id",
                APP_ID,
                "--instance-id",
                name,
                "--partitions",
                str(self.cfg.partitions),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def check(self, say: Callable[[str], None]) -> None:
        """Restart any worker that exited on its own (and record it)."""
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or name in self.down:
                continue
            allowed = self.expect_exit.pop(name, set())
            if code not in allowed:
                when = f"at {time.monotonic() - self.t0:.0f} s"
                self.exits.append((name, code, when, self.cause(name, code)))
                say(f"worker {name} exited with code {code} on its own; restarting it")
            else:
                say(f"worker {name} exited with code {code} (expected); restarting it")
            self.stopped.discard(name)
            self.start(name)

    def cause(self, name: str, code: int | None) -> str:
        return exit_cause(self.logs / f"worker-{name}.log", code)

    def has_started(self, name: str) -> bool:
        """Whether the worker logged ``worker started`` since the runner last started it."""
        text = (self.logs / f"worker-{name}.log").read_text("utf-8", "replace")
        return "worker started" in text.rsplit("==== start", 1)[-1]

    def signal(self, name: str, sig: signal.Signals) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)

    def kill(self, name: str) -> int:
        self.down.add(name)
        proc = self.procs[name]
        proc.kill()
        return proc.wait(30)

    def terminate(self, name: str, timeout: float = 30.0) -> int | None:
        self.down.add(name)
        proc = self.procs[name]
        proc.send_signal(signal.SIGCONT)  # a stopped process could not act on SIGTERM
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            return None

    def dump_stacks(self) -> None:
        """Make every running worker print its threads' stacks into its log (SIGUSR1)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGUSR1)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


# --- the run ----------------------------------------------------------------------------------


class Run:
    def __init__(self, cfg: ChaosConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"faults-{cfg.seed}")
        self.report = ChaosReport(seed=cfg.seed)
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        self.cfg.say(f"[{time.monotonic() - self.t0:6.1f}s] {text}")

    def sleep(self, seconds: float) -> None:
        """Sleep while restarting workers that died on their own."""
        end = time.monotonic() + seconds
        while True:
            self.workers.check(self.say)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.2, left))

    # faults

    def _pick_worker(self) -> str:
        # from every worker, running or not, so that the seed alone decides the fault sequence
        return self.rng.choice(sorted(self.workers.procs))

    def fault_kill9(self) -> None:
        name = self._pick_worker()
        self.workers.kill(name)
        self.say(f"fault kill9: SIGKILL {name}")
        self.sleep(self.rng.uniform(0.0, 2.0))
        self.workers.start(name)
        self.say(f"  {name} restarted")

    def fault_sigterm(self) -> None:
        name = self._pick_worker()
        started = time.monotonic()
        code = self._terminate(name, 20.0, "20 s after the SIGTERM fault")
        self.say(f"fault sigterm: {name} exited {code} after {time.monotonic() - started:.1f} s")
        self.sleep(self.rng.uniform(0.0, 2.0))
        self.workers.start(name)
        self.say(f"  {name} restarted")

    def fault_zombie(self) -> None:
        name = self._pick_worker()
        pause = self.rng.uniform(*self.cfg.zombie_s)
        lull = self.rng.random() < self.cfg.zombie_lull
        if lull:
            # Let the workers catch up first, so that this one is most likely between
            # transactions when it stops, with delayed messages and TTLs falling due while
            # it sleeps: a zombie without an open transaction is not fenced by the broker's
            # transaction timeout, and what it commits without consumed offsets is not
            # fenced by the group generation (KIP-447).
            self.feed.go.clear()
            self.sleep(1.0)
        self.workers.signal(name, signal.SIGSTOP)
        self.workers.stopped.add(name)
        self.say(f"fault zombie: SIGSTOP {name} for {pause:.1f} s{' after a lull' if lull else ''}")
        self.feed.go.set()
        self.sleep(pause)
        # a fenced zombie may stop with exit code 3; anything else is reported
        self.workers.expect_exit[name] = {0, 3}
        self.workers.signal(name, signal.SIGCONT)
        self.workers.stopped.discard(name)
        self.say(f"  SIGCONT {name}")

    def fault_late(self) -> None:
        late = self._pick_worker()
        other = self.rng.choice(sorted(set(self.workers.procs) - {late}))
        pause = self.rng.uniform(*self.cfg.zombie_s)
        log = self.logs / f"worker-{late}.log"
        revoked = log.read_bytes().count(b"revoked invocations")
        # leaves the group: a rebalance
        self._terminate(other, 20.0, "20 s after the SIGTERM of the late fault")
        self.workers.start(other)
        deadline = time.monotonic() + 20.0
        while log.read_bytes().count(b"revoked invocations") == revoked:
            if time.monotonic() > deadline or late not in self.workers.procs:
                self.say(f"fault late: {late} was not revoked within 20 s; no pause")
                return
            time.sleep(0.002)
        self.workers.signal(late, signal.SIGSTOP)
        self.workers.stopped.add(late)
        # eager: nothing (it misses the rebalance); incremental: what it kept, which the group
        # takes from it while it sleeps
        held = sorted(owned_partitions(log.read_text("utf-8", "replace")))
        self.say(
            f"fault late: restarted {other}; SIGSTOP {late} after its revocation, {pause:.1f} s, "
            f"holding invocations partitions {held}"
        )
        self.sleep(pause)
        self.workers.expect_exit[late] = {0, 3}
        self.workers.signal(late, signal.SIGCONT)
        self.workers.stopped.discard(late)
        self.say(f"  SIGCONT {late}")

    def fault_broker(self) -> None:
        down = self.rng.uniform(*self.cfg.broker_down_s)
        if self.cluster is not None:
            topics = [self.ingress, self.egress] + [
                f"{APP_ID}-{t}" for t in ("invocations", "changelog", "timers")
            ]
            node, led = cluster_faults.partition_leaders(self.admin, topics).most_common(1)[0]
            self._kill_node(node, down, f"broker: SIGKILL node {node} (leads {led} partitions)")
            return
        self.broker.kill()
        self.say(f"fault broker: SIGKILL the broker, down for {down:.1f} s")
        self.sleep(down)
        started = time.monotonic()
        self.broker.start(timeout=120)
        self.say(f"  broker restarted in {time.monotonic() - started:.1f} s")

    def _kill_node(self, node: int, down: float, what: str) -> None:
        assert self.cluster is not None
        cluster_faults.kill_node(self.cluster, node)
        self.say(f"fault {what}, down for {down:.1f} s")
        self.sleep(down)
        started = time.monotonic()
        cluster_faults.start_node(self.cluster, node, self.cfg.node_start_s)
        self.say(f"  node {node} restarted in {time.monotonic() - started:.1f} s")

    def fault_coordinator(self) -> None:
        name = self._pick_worker()
        node = cluster_faults.coordinator_of(self.admin, f"{APP_ID}-{name}")
        down = self.rng.uniform(*self.cfg.broker_down_s)
        self._kill_node(node, down, f"coordinator: SIGKILL node {node}, {name}'s coordinator")

    def fault_controller(self) -> None:
        assert self.cluster is not None
        node = self.cluster.active_controller()
        down = self.rng.uniform(*self.cfg.broker_down_s)
        self._kill_node(node, down, f"controller: SIGKILL node {node}, the active controller")

    def fault_rolling(self) -> None:
        assert self.cluster is not None
        started = time.monotonic()
        self.say("fault rolling: SIGTERM and restart every node in turn")
        for node in self.cluster.nodes:
            cluster_faults.stop_node(self.cluster, node.node_id)
            cluster_faults.start_node(self.cluster, node.node_id, self.cfg.node_start_s)
            self.say(f"  node {node.node_id} restarted")
            # as an operator would (docs/operations.md, Production cluster): the next node
            # stops once this one is back in every in-sync replica set, else partitions drop
            # below min.insync.replicas and refuse writes until it has caught up
            caught_up = time.monotonic()
            self.cluster.await_in_sync(self.cfg.node_start_s)
            self.say(f"  node {node.node_id} in sync after {time.monotonic() - caught_up:.1f} s")
            self.sleep(2.0)
        self.say(f"  rolling restart done in {time.monotonic() - started:.1f} s")

    def fault_remote(self) -> None:
        outage = self.rng.uniform(*self.cfg.remote_outage_s)
        pid = self.sdk.process.pid
        os.kill(pid, signal.SIGSTOP)
        self.say(f"fault remote: SIGSTOP the SDK server for {outage:.1f} s")
        try:
            self.sleep(outage)
        finally:
            os.kill(pid, signal.SIGCONT)
        self.say("  SIGCONT the SDK server")

    # phases

    def setup(self, work: Path, resume: bool = False) -> None:
        cfg = self.cfg
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        if cfg.brokers > 1:
            self.cluster = self.broker = LocalKafkaCluster(
                work / "kafka", cfg.brokers, info_loggers=BROKER_INFO_LOGGERS
            )
            self.broker.start(timeout=240)
        else:
            self.broker = LocalKafka(work / "kafka")
            self.broker.start(timeout=120)
        self.bootstrap = self.broker.bootstrap_servers
        self.say(f"kafka up at {self.bootstrap} (data dir {self.broker.data_dir})")
        admin = self.admin = AdminClient({"bootstrap.servers": self.bootstrap, "logger": QUIET})
        if resume:  # the kept data directory has them
            self.ingress, self.egress = "chaos-in", "chaos-out"
        else:
            self.ingress = kafka_fixture.create_topic(admin, "chaos-in", cfg.partitions)
            self.egress = kafka_fixture.create_topic(admin, "chaos-out", cfg.partitions)
        python = sdk_env.ensure_sdk_venv()
        self.sdk = sdk_env.start_sdk_server(python, script=SDK_APP)
        self.say(f"StateFun SDK server up at {self.sdk.base_url} (pid {self.sdk.process.pid})")
        module = work / "module.yaml"
        module.write_text(
            MODULE_TEMPLATE.read_text().format(
                url=self.sdk.url("statefun"),
                remote_call_budget=cfg.remote_call_budget,
                ingress=self.ingress,
            )
        )
        self.workers = Workers(self.bootstrap, module, self.egress, cfg, self.logs)
        for i in range(cfg.workers):
            self.workers.start(f"w{i + 1}")
        self._wait_assigned()

    def _wait_assigned(self, timeout: float = 60.0) -> None:
        """Until every worker logged an assignment (the group has formed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.workers.check(self.say)
            logs = [(self.logs / f"worker-{n}.log") for n in self.workers.procs]
            if all(
                p.exists() and "assigned invocations" in p.read_text("utf-8", "replace")
                for p in logs
            ):
                self.say(f"{len(logs)} workers joined the group")
                return
            time.sleep(0.2)
        raise TimeoutError("the workers did not all get an assignment within 60 s")

    def chaos(self, feed: InputThread) -> None:
        """Inject faults one at a time while the input runs. A fixed plan runs to its end even
        if the input ends first; otherwise each kind once in random order, then random kinds,
        until the input ends."""
        cfg = self.cfg
        end = time.monotonic() + cfg.seconds
        if cfg.faults is not None:
            plan = list(cfg.faults)
        else:
            plan = list(self.report.kinds)
            self.rng.shuffle(plan)
        i = 0
        self.sleep(self.rng.uniform(*cfg.gap_s) / 2)
        while True:
            if cfg.faults is not None:
                if i >= len(plan):
                    break
                kind = plan[i]
            else:
                if time.monotonic() >= end - 2.0:
                    break
                kind = plan[i] if i < len(plan) else self.rng.choice(self.report.kinds)
            i += 1
            started = time.monotonic()
            getattr(self, f"fault_{kind}")()
            self.report.faults[kind] += 1
            self.sleep(self.rng.uniform(*cfg.gap_s))
            self.timed.append((kind, started))
        while feed.is_alive():
            self.sleep(0.5)
        last = (feed.last_at or time.monotonic()) - self.t0
        self.say(f"input done: {feed.produced} records produced, the last at {last:.1f}s")

    def drain(self, expected: int) -> bool:
        """Wait (bounded) until the egress topic holds at least what the input implies."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"chaos-drain-{time.monotonic_ns()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "logger": QUIET,
            }
        )
        md = consumer.list_topics(self.egress, timeout=30)
        consumer.assign(
            [TopicPartition(self.egress, p, 0) for p in md.topics[self.egress].partitions]
        )
        seen = 0
        started = time.monotonic()
        deadline = started + self.cfg.drain_timeout_s
        last_say = started
        said = -1  # the count at the last report: the group is described when it stands still
        try:
            while seen < expected and time.monotonic() < deadline:
                self.workers.check(self.say)
                seen += sum(1 for m in consumer.consume(1000, timeout=0.5) if m.error() is None)
                if time.monotonic() - last_say > 15:
                    last_say = time.monotonic()
                    self.say(f"draining: {seen}/{expected} egress records")
                    if seen == said:
                        self.describe_group()
                    said = seen
        finally:
            consumer.close()
        self.report.drain_s = time.monotonic() - started
        self.say(f"drained {seen}/{expected} egress records in {self.report.drain_s:.1f} s")
        return seen >= expected

    def describe_group(self) -> None:
        """The workers' group as its coordinator sees it: each member's partitions, now and
        the target (KIP-848), for an output that stopped coming (a partition nobody holds)."""
        try:
            future = self.admin.describe_consumer_groups([APP_ID], request_timeout=10)[APP_ID]
            group = future.result(15)
        except Exception as e:  # noqa: BLE001 - a diagnostic: say why there is none
            self.say(f"  group {APP_ID}: not described ({e})")
            return

        def parts(assignment) -> str:  # type: ignore[no-untyped-def]
            by_topic: dict[str, list[int]] = {}
            for tp in assignment.topic_partitions if assignment else []:
                by_topic.setdefault(tp.topic.removeprefix(f"{APP_ID}-"), []).append(tp.partition)
            return " ".join(f"{t}{sorted(ps)}" for t, ps in sorted(by_topic.items())) or "-"

        coordinator = group.coordinator.id if group.coordinator else "?"
        self.say(f"  group {APP_ID}: {group.state}, coordinator node {coordinator}")
        for m in group.members:
            self.say(
                f"    {m.client_id} {m.member_id}: has {parts(m.assignment)}"
                f" target {parts(m.target_assignment)}"
            )

    def run(self) -> ChaosReport:
        cfg = self.cfg
        report = self.report
        work = cfg.work_dir or Path(tempfile.mkdtemp(prefix="kstatefun-chaos-"))
        work.mkdir(parents=True, exist_ok=True)
        report.work_dir = str(work)
        # started: the wall clock (UTC) of the "[0.0s]" of these lines (tests/chaos/stalls.py)
        started = datetime.fromtimestamp(time.time() - (time.monotonic() - self.t0), UTC)
        self.say(
            f"chaos seed={cfg.seed} input={cfg.seconds:.0f}s rate={cfg.rate}/s work={work} "
            f"started={started.replace(tzinfo=None).isoformat(timespec='milliseconds')}"
        )
        self.broker: LocalKafka | LocalKafkaCluster | None = None  # type: ignore[assignment]
        self.cluster: LocalKafkaCluster | None = None
        self.timed: list[tuple[str, float]] = []  # (fault kind, when it began)
        self.watch: EgressWatch | None = None
        self.sdk = None  # type: ignore[assignment]
        self.workers = None  # type: ignore[assignment]
        try:
            self.setup(work, resume=cfg.resume)
            report.setup_s = time.monotonic() - self.t0
            report.bad = len(BAD_KINDS) * cfg.bad_each
            if not cfg.resume:
                events = make_input(cfg)
                feed = self.feed = InputThread(self.bootstrap, self.ingress, events, cfg.rate)
                self.watch = EgressWatch(self.bootstrap, self.egress)
                self.watch.start()
                feed.start()
                self.chaos(feed)
                self._stalls(feed_end=feed.last_at or time.monotonic())
                if feed.error is not None:
                    raise RuntimeError(f"the input producer failed: {feed.error!r}")
                report.delivery_failures = feed.failures
            ingress = verify.read_topic(self.bootstrap, self.ingress)
            exp = verify.expect(ingress.records)
            report.events, report.valid = exp.events, exp.valid
            report.expected_egress = exp.egress_total
            drained = report.drained = self.drain(exp.egress_total)
            if drained:
                self.sleep(TTL_MS / 1000 + 3.0)  # the last TTL values expire and are deleted
            if not drained:  # where each worker is (runtime/worker.py: SIGUSR1 dumps stacks)
                self.workers.dump_stacks()
                self.sleep(1.0)
            # a worker that hangs would hang again: less patience once the output is missing
            self.stop_workers(timeout=30.0 if drained else 10.0)
            now_ms = int(time.time() * 1000)
            topics = {
                t: verify.read_topic(self.bootstrap, t, stall_s=5.0)
                for t in (
                    self.egress,
                    f"{APP_ID}-changelog",
                    f"{APP_ID}-timers",
                    f"{APP_ID}-dead-letters",
                )
            }
            tails = [
                verify.read_topic(self.bootstrap, t, tail_only=True, stall_s=5.0)
                for t in (self.ingress, f"{APP_ID}-invocations")
            ]
            report.verdict = verify.verify(
                exp,
                topics[self.egress],
                topics[f"{APP_ID}-changelog"],
                topics[f"{APP_ID}-timers"],
                topics[f"{APP_ID}-dead-letters"],
                tails,
                now_ms,
            )
        except Exception as e:  # noqa: BLE001 - reported, with the logs kept
            report.error = f"{type(e).__name__}: {e}"
        finally:
            if self.watch is not None:
                self.watch.done.set()
            report.exits = report.exits + (self.workers.exits if self.workers else [])
            if self.workers is not None:
                self.workers.kill_all()
            if self.sdk is not None:
                with_suppressed(lambda: os.kill(self.sdk.process.pid, signal.SIGCONT))
                self.sdk.stop()
            if self.broker is not None:
                self.broker.stop()
            report.wall_s = time.monotonic() - self.t0
            report.log_counts = count_log_lines(work / "logs")
            if report.ok and not cfg.keep:
                shutil.rmtree(work, ignore_errors=True)
            else:
                self.say(f"logs kept in {work}")
        return report

    def _stalls(self, feed_end: float) -> None:
        """Per kind, the longest output pause from each fault's start to the next one's (the
        last one's: to the last input record). A fault after the input ended is not measured:
        no output was due."""
        assert self.watch is not None
        ends = [t for _, t in self.timed[1:]] + [feed_end]
        for (kind, start), end in zip(self.timed, ends, strict=True):
            if start >= feed_end:
                self.say(f"fault {kind} at {start - self.t0:.1f}s came after the input: no stall")
                continue
            pause = self.watch.longest_pause(start, end)
            self.report.stalls[kind] = max(self.report.stalls.get(kind, 0.0), pause)
            worst = max(
                (self.watch.longest_pause(start, end, p) for p in self.watch.by_partition),
                default=pause,
            )
            self.report.partition_stalls[kind] = max(
                self.report.partition_stalls.get(kind, 0.0), worst
            )

    def stop_workers(self, timeout: float) -> None:
        for name in sorted(self.workers.procs):
            self._terminate(name, timeout, f"{timeout:.0f} s after the final SIGTERM")
        self.say("workers stopped")

    def _terminate(self, name: str, timeout: float, when: str) -> int | None:
        """SIGTERM a worker; anything but a clean stop is reported as an exit. A worker
        SIGTERMed while the interpreter itself starts, before the CLI installs its first
        handler (cli._stop_before_start), ends by the signal's default action, holding no
        transaction: that is clean too."""
        code = self.workers.terminate(name, timeout)
        if code == -signal.SIGTERM and not self.workers.has_started(name):
            self.say(f"  {name} was SIGTERMed while starting (before any handler): clean")
        elif code != 0:
            self.report.exits.append((name, code, when, self.workers.cause(name, code)))
        return code


def with_suppressed(fn: Callable[[], object]) -> None:
    with contextlib.suppress(OSError):
        fn()


LOG_MARKERS = {
    "fenced": "was taken over by another process",
    "partitions_lost": "partitions lost",
    "missed_rebalance": "missed a rebalance",  # kept state caught up (state/recovery.py)
    "aborted": "transaction aborted during",
    "commit_failed_on_revoke": "commit on revoke failed",
    "producer_recreated": "recreating the producer",
    "stuck_producer": "giving the producer up",  # runtime/commit.py: a stuck producer
    "stuck_producer_early": COORDINATOR_ANSWERED,
    "given_up_released": "released given-up producers",
    "traceback": "Traceback",
}


# What ended a worker, from the last line of its run that says (runtime/worker.py, kafka/errors.py,
# docs/operations.md "Exit codes"); within that line, the first match in this order wins.
EXIT_CAUSES = (
    ("retriable", "still failed after"),  # KafkaUnavailableError: retries past their deadline
    ("stuck-producers", "producers given up"),
    ("fenced", "was fenced"),
    ("watchdog", "watchdog: the worker loop made no progress"),
    ("config", "kstatefun: error:"),
    ("store", "writing the local state store"),
    ("fatal-kafka", "stopping: "),
    ("traceback", "Traceback"),
)


def exit_cause(log: Path, code: int | None) -> str:
    """Why a worker stopped, from its log since its last start: one of EXIT_CAUSES, "hung"
    (still running after SIGTERM), "signal N" (killed, no line of its own) or "unknown"."""
    if code is None:
        return "hung"
    try:
        text = log.read_text("utf-8", "replace")
    except OSError:
        return "unknown"
    for line in reversed(text.rsplit("==== start", 1)[-1].splitlines()):
        for cause, marker in EXIT_CAUSES:
            if marker in line:
                return cause
    return f"signal {-code}" if code < 0 else "unknown"


def count_log_lines(logs: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if not logs.is_dir():
        return counts
    for path in logs.glob("worker-*.log"):
        text = path.read_text("utf-8", "replace")
        for name, marker in LOG_MARKERS.items():
            counts[name] += text.count(marker)
    return +counts


def run_chaos(cfg: ChaosConfig) -> ChaosReport:
    run = Run(cfg)
    if cfg.brokers > 1:
        run.report.kinds = CLUSTER_FAULT_KINDS
    return run.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long input and faults run")
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed (printed)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="input events per second")
    parser.add_argument("--keys", type=int, default=DEFAULT_KEYS)
    parser.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="1: a single broker; 3: a replicated cluster, with the cluster fault kinds "
        f"({', '.join(CLUSTER_FAULT_KINDS[len(FAULT_KINDS) :])})",
    )
    parser.add_argument(
        "--faults",
        default=None,
        help=f"a fixed, comma-separated fault sequence of {','.join(CLUSTER_FAULT_KINDS)} "
        "(default: each kind once in random order, then random kinds)",
    )
    parser.add_argument(
        "--zombie-lull",
        type=float,
        default=0.5,
        help="probability that the input pauses 1 s before a zombie fault (default 0.5)",
    )
    parser.add_argument(
        "--kafka-debug",
        default="",
        help="librdkafka debug contexts for the workers, e.g. eos,broker",
    )
    parser.add_argument(
        "--kafka-properties",
        type=json.loads,
        default={},
        help="JSON object of librdkafka properties for the workers (KSTATEFUN_KAFKA_PROPERTIES)",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=180.0, help="longest wait for the output (s)"
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument(
        "--state-store",
        choices=["memory", "snapshot", "rocksdb"],
        default="memory",
        help="the workers' state_store (rocksdb: each keeps its database in the work directory; "
        "snapshot: memory, with a local snapshot there, so a restarted worker loads it)",
    )
    parser.add_argument(
        "--standby-replicas",
        type=int,
        default=0,
        help="the workers' standby_replicas (with --state-store rocksdb; 1 or more: each copies "
        "every partition it does not own)",
    )
    parser.add_argument(
        "--rebalance-protocol",
        choices=["consumer", "cooperative", "eager"],
        default=None,
        help="the workers' rebalance_protocol (default: theirs, consumer)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --work-dir of a run that died in its fault phase (e.g. a node that did not "
        "restart): restart its kept cluster and the workers, let them finish the committed "
        "input, then verify (no input, no faults; the dead run's pauses are not measured)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs even when it passes")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="a soak: this many runs, each with its own seed (--seed, --seed+1, ... when given), "
        "stopping at the first that does not pass",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.standby_replicas and args.state_store != "rocksdb":
        parser.error("--standby-replicas needs --state-store rocksdb")
    if args.runs > 1 and args.work_dir is not None:
        parser.error("--work-dir takes one run; a soak makes a work directory per run")
    if args.resume and (args.work_dir is None or not (args.work_dir / "kafka").is_dir()):
        parser.error("--resume needs the --work-dir of a kept run (with its kafka directory)")
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    faults = None
    if args.faults:
        faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
        unknown = set(faults) - set(CLUSTER_FAULT_KINDS if args.brokers > 1 else FAULT_KINDS)
        if unknown:
            parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    results: list[tuple[int, str]] = []
    code = 0
    for run in range(args.runs):
        seed = (
            first + run
            if args.seed is not None
            else (first if run == 0 else random.SystemRandom().randrange(1, 10**6))
        )
        code = _one_run(args, seed, faults, run, args.runs)
        results.append((seed, "PASS" if code == 0 else f"FAIL (exit {code})"))
        if code != 0:
            break
    if args.runs > 1:
        print(f"soak: {len(results)} of {args.runs} runs made", flush=True)
        for seed, verdict in results:
            print(f"  seed {seed}: {verdict}", flush=True)
    return code


def _one_run(
    args: argparse.Namespace, seed: int, faults: tuple[str, ...] | None, run: int, runs: int
) -> int:
    # first, so that a truncated log still says how to repeat the run
    if args.rate == DEFAULT_RATE and args.keys == DEFAULT_KEYS:
        repeat = (
            f"make chaos CHAOS_MINUTES={args.minutes:g} CHAOS_SEED={seed}"
            + (f" CHAOS_BROKERS={args.brokers}" if args.brokers > 1 else "")
            + (f" CHAOS_STATE_STORE={args.state_store}" if args.state_store != "memory" else "")
            + (f" CHAOS_STANDBY_REPLICAS={args.standby_replicas}" if args.standby_replicas else "")
            + (
                f" CHAOS_REBALANCE_PROTOCOL={args.rebalance_protocol}"
                if args.rebalance_protocol
                else ""
            )
        )
    else:  # make chaos has no rate or keys of its own
        repeat = (
            f"python -m tests.chaos.run --minutes {args.minutes:g} --seed {seed} "
            f"--rate {args.rate:g} --keys {args.keys} --brokers {args.brokers} "
            f"--state-store {args.state_store} --standby-replicas {args.standby_replicas}"
            + (
                f" --rebalance-protocol {args.rebalance_protocol}"
                if args.rebalance_protocol
                else ""
            )
        )
    print(f"chaos seed: {seed} (run {run + 1} of {runs}; repeat it with: {repeat})", flush=True)
    cfg = ChaosConfig(
        seconds=args.minutes * 60,
        seed=seed,
        rate=args.rate,
        keys=args.keys,
        faults=faults,
        work_dir=args.work_dir,
        keep=args.keep,
        zombie_lull=args.zombie_lull,
        kafka_debug=args.kafka_debug,
        kafka_properties=args.kafka_properties,
        drain_timeout_s=args.drain_timeout,
        bad_each=max(1, min(3, int(args.minutes))),
        brokers=args.brokers,
        state_store=args.state_store,
        standby_replicas=args.standby_replicas,
        rebalance_protocol=args.rebalance_protocol,
        resume=args.resume,
    )
    report = run_chaos(cfg)
    print("\n".join(report.lines()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report.figures(), indent=2) + "\n")
    if report.error and report.verdict is None:
        return 2
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
