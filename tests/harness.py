"""Helpers for tests that run real workers against a real broker."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from kstatefun.state.snapshot import base_dir_of, read_snapshot

ROOT = Path(__file__).resolve().parent.parent

# KSTATEFUN_TEST_STATE_STORE=rocksdb runs every worker the tests start on the disk-backed store
# (state_store rocksdb, a state_dir next to the test's module.yaml) unless the test chooses.
TEST_STATE_STORE = os.environ.get("KSTATEFUN_TEST_STATE_STORE", "memory")

MODULE_TEMPLATE = """\
kind: io.statefun.kafka.v1/ingress
spec:
  id: test/in
  address: {bootstrap}
  consumerGroupId: {app_id}
  startupPosition:
    type: earliest
  topics:
    - topic: {ingress}
      valueType: {value_type}
      targets:
        - {target}
---
kind: io.statefun.kafka.v1/egress
spec:
  id: test/out
  address: {bootstrap}
  deliverySemantic:
    type: exactly-once
    transactionTimeout: 10s
---
kind: io.kstatefun.v1/embedded
spec:
  functions:
    - {functions}
"""


@dataclass
class App:
    """One application under test: its topics, module.yaml and worker processes."""

    bootstrap: str
    app_id: str
    ingress: str
    egress: str
    module: Path
    partitions: int = 4
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # False: workers join dynamically and keep no local state, as every test here assumed
    # before a given --instance-id turned both on; tests hand partitions over by clean stops,
    # which a static member would delay until its session times out. True: the defaults a
    # named worker gets, with the default state directory under the test's directory.
    named_defaults: bool = False

    def start_worker(
        self, instance_id: str, *extra_args: str, partitions: bool = True
    ) -> subprocess.Popen:
        """``partitions=False`` leaves ``--partitions`` out: the worker chooses P itself."""
        env = dict(os.environ, TEST_EGRESS_TOPIC=self.egress, PYTHONUNBUFFERED="1")
        env.pop("KSTATEFUN_TEST_STATE_STORE", None)  # not a setting: the worker would warn
        if self.named_defaults:
            env["XDG_STATE_HOME"] = str(self.module.parent / "xdg-state")
        else:
            env.update(KSTATEFUN_STATIC_MEMBERSHIP="false", KSTATEFUN_STATE_DIR="none")
        if TEST_STATE_STORE != "memory":
            env.update(self.store_env(TEST_STATE_STORE))
        env.update(self.env)
        log_path = self.module.parent / f"worker-{instance_id}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
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
                self.app_id,
                "--instance-id",
                instance_id,
                *(["--partitions", str(self.partitions)] if partitions else []),
                *extra_args,
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        self.workers[instance_id] = proc
        self.logs[instance_id] = log_path
        return proc

    def store_env(self, store: str) -> dict[str, str]:
        """The environment that puts a worker on ``store`` (state_store), with its state_dir
        next to module.yaml when it needs one."""
        if store == "memory":
            return {"KSTATEFUN_STATE_STORE": store}
        state_dir = str(self.module.parent / "state")
        return {"KSTATEFUN_STATE_STORE": store, "KSTATEFUN_STATE_DIR": state_dir}

    def stop_worker(self, instance_id: str, timeout: float = 60) -> int:
        proc = self.workers.pop(instance_id)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def kill_worker(self, instance_id: str) -> None:
        proc = self.workers.pop(instance_id)
        proc.kill()
        proc.wait(30)

    def stop_all(self) -> None:
        for instance_id in list(self.workers):
            proc = self.workers[instance_id]
            if proc.poll() is None:
                self.stop_worker(instance_id)
            else:
                self.workers.pop(instance_id)

    def log(self, instance_id: str) -> str:
        return self.logs[instance_id].read_text(errors="replace")

    def wait_for_log(
        self, instance_id: str, text: str, count: int = 1, timeout: float = 90
    ) -> None:
        """Wait until the worker's log holds ``text`` ``count`` times (polls every 5 ms)."""
        deadline = time.monotonic() + timeout
        while self.log(instance_id).count(text) < count:
            assert time.monotonic() < deadline, f"no {text!r} x{count}\n{self.all_logs()}"
            time.sleep(0.005)

    def all_logs(self) -> str:
        return "\n".join(
            f"--- {i} ---\n{p.read_text(errors='replace')[-5000:]}" for i, p in self.logs.items()
        )


def make_app(
    bootstrap: str,
    tmp_path: Path,
    unique_name,
    create_topic,
    partitions: int = 4,
    functions: str = "tests.apps.counting:functions",
    target: str = "test/counter",
    value_type: str = "test/Event",
    app_id: str | None = None,
) -> App:
    app_id = app_id or unique_name("app")
    ingress = unique_name("in")
    egress = unique_name("out")
    create_topic(ingress, partitions=partitions)
    create_topic(egress, partitions=partitions)
    module = tmp_path / "module.yaml"
    module.write_text(
        MODULE_TEMPLATE.format(
            bootstrap=bootstrap,
            app_id=app_id,
            ingress=ingress,
            functions=functions,
            target=target,
            value_type=value_type,
        )
    )
    return App(bootstrap, app_id, ingress, egress, module, partitions)


def produce_events(
    bootstrap: str,
    topic: str,
    events: list[tuple[bytes | None, bytes | None]],
    partitioner: str = "consistent_random",
) -> None:
    """librdkafka's default ``consistent_random`` (CRC32) puts a key where a new application's
    partitioner (crc32) does (the direct path); ``murmur2_random`` mostly elsewhere (the hop)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "partitioner": partitioner}
    )
    for key, value in events:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def keyed_events(
    keys: int, per_key: int, start_seq: int = 0
) -> tuple[list[tuple[bytes, bytes]], dict[str, list[int]]]:
    """Interleaved events; returns them and the expected seq order per key."""
    events = []
    expected: dict[str, list[int]] = defaultdict(list)
    seq = start_seq
    for _ in range(per_key):
        for k in range(keys):
            key = f"k{k}"
            events.append((key.encode(), json.dumps({"seq": seq}).encode()))
            expected[key].append(seq)
            seq += 1
    return events, expected


def produce_keyed(
    app: App, expected: dict[str, list[int]], start_seq: int, keys: int = 20, per_key: int = 3
) -> int:
    """Produce ``keyed_events`` to the app's ingress and add their seqs to ``expected`` (per
    key, in order); returns how many records ``expected`` now holds."""
    events, more = keyed_events(keys=keys, per_key=per_key, start_seq=start_seq)
    produce_events(app.bootstrap, app.ingress, events)
    for key, seqs in more.items():
        expected.setdefault(key, []).extend(seqs)
    return sum(map(len, expected.values()))


def set_group_session_timeout(bootstrap: str, group: str, ms: int) -> None:
    """The KIP-848 session timeout of one group (its group config consumer.session.timeout.ms;
    the dev broker allows 2 s to 60 s): rebalance_protocol consumer has no client setting."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry(
        "consumer.session.timeout.ms", str(ms), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def _key_and_value(msg: Message) -> tuple[str, str]:
    key = msg.key().decode() if msg.key() is not None else None
    return key, msg.value().decode() if msg.value() is not None else None  # type: ignore[return-value]


def read_committed(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float = 90,
    settle: float = 2.0,
    convert: Callable[[Message], Any] = _key_and_value,
) -> list[Any]:
    """Read ``topic`` from the beginning with read_committed until ``expected`` records arrived
    (and then ``settle`` more seconds, to catch duplicates) or ``timeout``; each record as
    ``convert(msg)`` gives it (default: key and value as text)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    md = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    settle_until = None
    try:
        while time.monotonic() < deadline:
            if settle_until is None and len(out) >= expected:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error():
                    continue
                out.append(convert(msg))
    finally:
        consumer.close()
    return out


def check_exactly_once(records: list[tuple[str, str]], expected: dict[str, list[int]]) -> list[str]:
    """Problems found in egress records "<id>:<count>:<seq>" against the expected seqs."""
    problems = []
    got: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for key, value in records:
        rid, count, seq = value.split(":")
        assert rid == key, (key, value)
        got[key].append((int(count), int(seq)))
    for key, seqs in expected.items():
        want = [(i + 1, s) for i, s in enumerate(seqs)]
        have = got.get(key, [])
        if have != want:
            lost = len({s for _, s in want} - {s for _, s in have})
            dup = len(have) - len({s for _, s in have})
            problems.append(
                f"{key}: lost={lost} duplicated={dup} have={have[:8]}... want={want[:8]}..."
            )
    for key in got.keys() - expected.keys():
        problems.append(f"unexpected key {key}")
    return problems


# runtime/worker.py logs each rebalance callback with the invocations partitions it names
CALLBACK = re.compile(r"(assigned|revoked) invocations partitions=\[([\d, ]*)\]")


def _numbers(text: str) -> set[int]:
    return {int(n) for n in text.split(",") if n.strip()}


def owned_partitions(log: str) -> set[int]:
    """The invocations partitions a worker owns after the rebalance callbacks its log shows."""
    owned: set[int] = set()
    for kind, numbers in CALLBACK.findall(log):
        owned = owned | _numbers(numbers) if kind == "assigned" else owned - _numbers(numbers)
    return owned


def revoked_partitions(log: str) -> set[int]:
    """Every invocations partition the worker's log shows revoked."""
    return {p for kind, n in CALLBACK.findall(log) if kind == "revoked" for p in _numbers(n)}


def wait_for_snapshot(path: Path, keys: int, timeout: float = 60) -> dict[int, int]:
    """Until the worker's local snapshot (state/snapshot.py) holds ``keys`` rows in partitions
    with a position: it gathers commits and writes them every FLUSH_S, and a restore's rows a
    slice per round, so a kill -9 right after the output may find it older (its documented
    bound) or empty. Returns each partition's base image generation (0: none)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            positions, rows = read_snapshot(path, base_dir_of(path))
            if sum(len(r or ()) for r in rows.values()) >= keys:
                return {p: base for p, (_, _, base) in positions.items()}
        except sqlite3.OperationalError:  # not created yet
            pass
        assert time.monotonic() < deadline, f"{path} never held {keys} keys"
        time.sleep(0.05)
