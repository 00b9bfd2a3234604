"""``make demo``: the greeter end to end on a local broker, then a clean stop.

Starts the local Kafka broker, creates the example's topics, starts one worker of
examples/greeter.py (config/module.yaml), produces a handful of names, prints the greetings
read back with read_committed, and stops everything. Exits 0 when every greeting arrived.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kstatefun.devkafka import LocalKafka

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["Ann", "Bob", "Ann", "Cleo", "Bob", "Ann"]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kstatefun-demo-") as tmp:
        print("starting the local Kafka broker (the first run fetches its jars with Maven) ...")
        with LocalKafka(Path(tmp) / "kafka") as kafka:
            bootstrap = kafka.start()
            print(f"broker up at {bootstrap}")
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for fut in admin.create_topics(
                [NewTopic("greeter-names", 4, 1), NewTopic("greeter-greetings", 4, 1)]
            ).values():
                fut.result()
            del admin
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kstatefun.cli",
                    "run",
                    "--module",
                    str(ROOT / "config" / "module.yaml"),
                    "--bootstrap-servers",
                    bootstrap,
                    "--app-id",
                    "greeter-demo",
                    "--instance-id",
                    "demo-1",
                    # the local snapshot a named worker keeps, gone with the demo's broker
                    "--state-dir",
                    str(Path(tmp) / "state"),
                    "--partitions",
                    "4",
                ],
                cwd=ROOT,
                env=env,
            )
            try:
                return _exchange(bootstrap, worker)
            finally:
                worker.send_signal(signal.SIGTERM)
                code = worker.wait(60)
                print(f"worker stopped (exit code {code})")


def _exchange(bootstrap: str, worker: subprocess.Popen) -> int:
    producer = Producer({"bootstrap.servers": bootstrap})
    started = time.monotonic()
    for i, name in enumerate(NAMES):
        person_id = name.lower()
        producer.produce("greeter-names", json.dumps({"name": name}).encode(), person_id.encode())
        print(f"sent #{i + 1}: {person_id} -> {name}")
    producer.flush(30)
    del producer
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "greeter-demo-reader",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["greeter-greetings"])
    got = 0
    deadline = time.monotonic() + 120
    try:
        while got < len(NAMES) and time.monotonic() < deadline:
            if worker.poll() is not None:
                print(f"the worker exited early with code {worker.returncode}", file=sys.stderr)
                return 1
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got += 1
            print(f"greeting {got}: {msg.key().decode()}: {msg.value().decode()}")
    finally:
        consumer.close()
    if got < len(NAMES):
        print(f"only {got} of {len(NAMES)} greetings arrived", file=sys.stderr)
        return 1
    print(f"all {got} greetings arrived in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
