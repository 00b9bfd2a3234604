"""Takeover with and without a standby replica, in the same run (state_store rocksdb).

Shape: one local broker; per mode (standby_replicas 1, then 0) a fresh application whose
changelog is filled directly with ``--keys`` W1 counts (4 partitions; produced, not computed,
so the fill costs seconds); two workers (W1's function), each restores its two partitions;
with a standby, the run waits until each worker's copies of the other's partitions have caught
up. Then kill -9 of one worker, and the survivor takes its two partitions over. Measured from
the survivor's log: the *takeover*, from its revocation until all four partitions are
restored (the taken-over partitions stop for that long; the session timeout before it, 10 s,
is the same in both modes and reported apart), and the changelog records it replayed. Then one event
for a key of a taken-over partition must come out with the count the changelog held plus one.

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
from kstatefun.kafka.partitioner import id_partitioner
from kstatefun.sdk.types import IntType
from kstatefun.wire.avro import encode_changelog_key, encode_changelog_value

PARTITIONS = 4
ROOT = Path(__file__).resolve().parent.parent
ALL = "assigned invocations partitions=[0, 1, 2, 3]"
RESTORED = "still_restoring=[]"  # every assigned partition restored (runtime/assignment.py)


def fill_changelog(bootstrap: str, topic: str, keys: int) -> None:
    """Key ``user-i`` counted ``i + 1`` times, where the application's partitioner (murmur2,
    chosen for an application whose state topics already hold records) looks for it."""
    partition_of = id_partitioner(PARTITIONS, "murmur2")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for i in range(keys):
        user = f"user-{i}"
        key = encode_changelog_key("bench/counter", user, "count")
        value = encode_changelog_value("io.statefun.types/int", IntType.serialize(i + 1))
        while True:
            try:
                producer.produce(topic, value, key, partition=partition_of(user))
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


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


def run_mode(bootstrap: str, work: Path, keys: int, replicas: int) -> dict:
    app = f"bench-standby{replicas}"
    ingress, egress = f"{app}-in", f"{app}-out"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topics(admin, [ingress, egress], PARTITIONS)
    create_topics(
        admin,
        [f"{app}-changelog"],
        PARTITIONS,
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
    )
    started = time.monotonic()
    fill_changelog(bootstrap, f"{app}-changelog", keys)
    fill_s = time.monotonic() - started
    module = work / f"{app}.yaml"
    module.write_text(
        INGRESS_EGRESS.format(ingress=ingress, target="bench/counter")
        + EMBEDDED.format(functions="bench.apps.count")
    )
    env = dict(
        os.environ,
        BENCH_EGRESS_TOPIC=egress,
        KSTATEFUN_STATE_STORE="rocksdb",
        KSTATEFUN_STATE_DIR=str(work / app),
        KSTATEFUN_STANDBY_REPLICAS=str(replicas),
        # the takeover is timed from the survivor's revocation to its full assignment's
        # restore, which only eager rebalancing logs (cooperative revokes nothing of it)
        KSTATEFUN_REBALANCE_PROTOCOL="eager",
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
        taken = sorted({0, 1, 2, 3} - mine)
        user = next(
            f"user-{i}"
            for i in range(keys)
            if id_partitioner(PARTITIONS, "murmur2")(f"user-{i}") == taken[0]
        )
        index = int(user.split("-")[1])
        got = one_count(bootstrap, ingress, egress, user)
        assert got == f"{user}:{index + 2}", (got, user)
        return {
            "standby_replicas": replicas,
            "keys": keys,
            "fill_s": round(fill_s, 1),
            "takeover_s": round(assigned - revoked, 2),
            "kill_to_restored_s": round(assigned - killed_at, 2),
            "replayed_records": replayed,
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
    parser.add_argument("--work-dir", type=Path, help="keep the broker and the logs there")
    args = parser.parse_args()
    from kstatefun.devkafka import LocalKafka

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with LocalKafka(work / "kafka") as kafka:
            bootstrap = kafka.bootstrap_servers
            results = [run_mode(bootstrap, work, args.keys, r) for r in (1, 0)]
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
