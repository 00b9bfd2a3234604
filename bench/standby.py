"""Takeover with and without a standby replica, in the same run (state_store rocksdb).

Shape: one local broker; per mode (standby_replicas 1, then 0) a fresh application whose
changelog is filled directly with ``--keys`` W1 counts of 1 (4 partitions; produced, not
computed: bench/workloads.py ``seeded_app``; ``--timers``: pending delayed messages too); two
workers (W1's function), each restores its two partitions; with a standby, the run waits until
each worker's copies of the other's partitions have caught up. Then kill -9 of one worker, and
the survivor takes its two partitions over. Measured from the survivor's log: the *takeover*,
from its revocation until all four partitions are restored (the taken-over partitions stop for
that long; the session timeout before it, 10 s, is the same in both modes and reported apart),
and the changelog records it replayed. Then one event for a key of a taken-over partition must
come out with the count the changelog held plus one. Also the ``standby`` part of
bench/bigstate.py.

    python -m bench.standby --keys 1000000

Indicative only: one machine, shared, one broker.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.contenders import EMBEDDED, INGRESS_EGRESS
from bench.kafkautil import create_topics
from bench.workloads import seed_timers, seeded_app
from kstatefun.kafka.partitioner import DEFAULT_PARTITIONER, id_partitioner

PARTITIONS = 4
ROOT = Path(__file__).resolve().parent.parent
ALL = "assigned invocations partitions=[0, 1, 2, 3]"
RESTORED = "still_restoring=[]"  # every assigned partition restored (runtime/assignment.py)


def user_id(i: int) -> str:
    return f"user-{i}"


def log_time(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def wait_for(path: Path, pattern: str, count: int = 1, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if len(re.findall(pattern, text)) >= count:
            return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {pattern!r} x{count} in {path}:\n{text[-3000:]}")
        time.sleep(0.1)


def one_count(bootstrap: str, ingress: str, egress: str, user: str, timeout: float = 120) -> str:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    producer.produce(ingress, b'{"seq":0}', user.encode())
    producer.flush(30)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(egress, p, 0) for p in range(PARTITIONS)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(100, timeout=0.5):
                if msg.error() is None and msg.key() == user.encode():
                    return msg.value().decode()
    finally:
        consumer.close()
    raise TimeoutError(f"no output for {user}")


def run_mode(bootstrap: str, work: Path, keys: int, replicas: int, timers: int = 0) -> dict:
    """One takeover with ``replicas`` standby replicas; ``timers``: pending delayed messages
    seeded beside the states (the takeover restores the taken partitions' timers in full)."""
    app = f"bench-standby{replicas}-{time.strftime('%H%M%S')}"
    ingress, egress = f"{app}-in", f"{app}-out"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topics(admin, [ingress, egress], PARTITIONS)
    fill_s = seeded_app(bootstrap, admin, app, PARTITIONS, keys, user_id)
    if timers:
        fill_s += seed_timers(bootstrap, app, PARTITIONS, timers, user_id)
    module = work / f"{app}.yaml"
    module.write_text(
        INGRESS_EGRESS.format(ingress=ingress, target="bench/counter")
        + EMBEDDED.format(functions="bench.apps.count")
    )
    env = dict(
        os.environ,
        BENCH_EGRESS_TOPIC=egress,
        KSTATEFUN_STATE_STORE="rocksdb",
        KSTATEFUN_STATE_DIR=str(work / "state" / app),
        KSTATEFUN_STANDBY_REPLICAS=str(replicas),
        # the takeover is timed from the survivor's revocation to its full assignment's
        # restore, which only eager rebalancing logs (cooperative revokes nothing of it)
        KSTATEFUN_REBALANCE_PROTOCOL="eager",
        KSTATEFUN_PARTITIONS=str(PARTITIONS),
        PYTHONUNBUFFERED="1",
    )
    procs: dict[str, subprocess.Popen] = {}
    logs = {w: work / f"{app}-{w}.log" for w in ("w1", "w2")}

    def spawn(instance: str) -> None:
        cmd = [sys.executable, "-m", "kstatefun.cli", "run", "--module", str(module)]
        cmd += ["--bootstrap-servers", bootstrap, "--app-id", app, "--instance-id", instance]
        with open(logs[instance], "ab") as out:
            procs[instance] = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    try:
        spawn("w1")
        wait_for(logs["w1"], re.escape(ALL))
        spawn("w2")
        text = wait_for(logs["w2"], r"assigned invocations partitions=\[\d, \d\]")
        mine = {int(p) for p in re.findall(r"partitions=\[(\d), (\d)\]", text)[-1]}
        # the survivor has restored its own partitions: the takeover then restores only the
        # killed worker's (without this wait, the run without a copy also timed the rest of the
        # survivor's own restore: 10,000,000 records replayed for 5,000,000 taken over)
        wait_for(logs["w2"], re.escape(RESTORED))
        if replicas:  # each copy of w1's partitions has read the changelog to its end
            wait_for(logs["w2"], r"standby partition=\d caught up offset=[1-9]", count=2)
        wait_for(logs["w1"], r"assigned invocations partitions=\[\d, \d\]")
        time.sleep(2)  # both idle
        procs.pop("w1").kill()
        killed_at = time.time()
        text = wait_for(logs["w2"], re.escape(ALL) + r"[^\n]*\n(.*\n)*.*" + re.escape(RESTORED))
        tail = text[text.rindex("revoked invocations") :]
        lines = tail.splitlines()
        revoked = log_time(text[text.rindex("\n", 0, text.rindex("revoked invocations")) + 1 :])
        assigned = log_time(next(line for line in lines if RESTORED in line))
        replayed = sum(
            int(n)
            for n in re.findall(
                rf"restored topic={re.escape(app)}-changelog partitions=\S+ records=(\d+)", tail
            )
        )
        timer_restores = re.findall(
            rf"restored topic={re.escape(app)}-timers partitions=\S+ records=(\d+) "
            r"seconds=([\d.]+)",
            tail,
        )
        taken = sorted({0, 1, 2, 3} - mine)
        partition_of = id_partitioner(PARTITIONS, DEFAULT_PARTITIONER)
        user = next(user_id(i) for i in range(keys) if partition_of(user_id(i)) == taken[0])
        got = one_count(bootstrap, ingress, egress, user)
        assert got == f"{user}:2", (got, user)  # seeded with 1
        return {
            "standby_replicas": replicas,
            "keys": keys,
            "fill_s": round(fill_s, 1),
            "takeover_s": round(assigned - revoked, 2),
            "kill_to_restored_s": round(assigned - killed_at, 2),
            "replayed_records": replayed,
            "timers": timers,
            "timers_restored": sum(int(n) for n, _ in timer_restores),
            "timers_restore_s": round(sum(float(t) for _, t in timer_restores), 2),
            "taken_partitions": taken,
        }
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument(
        "--timers", type=int, default=0, help="pending delayed messages seeded beside the keys"
    )
    parser.add_argument("--work-dir", type=Path, help="keep the broker and the logs there")
    args = parser.parse_args()
    from kstatefun.devkafka import LocalKafka

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with LocalKafka(work / "kafka") as kafka:
            bootstrap = kafka.bootstrap_servers
            results = [run_mode(bootstrap, work, args.keys, r, args.timers) for r in (1, 0)]
    with_standby, without = results
    print(json.dumps(results, indent=1))
    print(
        json.dumps(
            {
                "takeover_ratio_standby_to_full": round(
                    with_standby["takeover_s"] / max(without["takeover_s"], 1e-3), 3
                )
            }
        )
    )


if __name__ == "__main__":
    main()
