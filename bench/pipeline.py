"""Throughput of the greeter-shaped pipeline and changelog restore rate, on a local broker.

    .venv/bin/python -m bench.pipeline [--events N] [--keys K]

Pre-produces N events over K keys, starts one worker of tests/apps/counting.py (ingress →
counter (state) → sink → egress: 2 hops through <app>-invocations, 3 transactions deep), and
times until all N egress records are visible to a read_committed consumer. Then kill -9 and
restart the worker and reads the restore rate it logs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic
from tests.harness import MODULE_TEMPLATE, App, keyed_events, produce_events, read_committed

from kstatefun.devkafka import LocalKafka


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--keys", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalKafka(Path(tmp) / "kafka") as kafka:
        bootstrap = kafka.start()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics(
            [NewTopic(t, args.partitions, 1) for t in ("bench-in", "bench-out")]
        ).values():
            f.result()
        module = Path(tmp) / "module.yaml"
        module.write_text(
            MODULE_TEMPLATE.format(
                bootstrap=bootstrap,
                app_id="bench",
                ingress="bench-in",
                functions="tests.apps.counting:functions",
                target="test/counter",
                value_type="test/Event",
            )
        )
        app = App(bootstrap, "bench", "bench-in", "bench-out", module, args.partitions)
        events, _ = keyed_events(args.keys, args.events // args.keys)
        produce_events(bootstrap, "bench-in", events)
        started = time.monotonic()
        app.start_worker("w1")
        out = read_committed(bootstrap, "bench-out", len(events), timeout=600, settle=0)
        elapsed = time.monotonic() - started
        app.kill_worker("w1")
        restart = time.monotonic()
        app.start_worker("w1")
        deadline = time.monotonic() + 300
        restored = None
        while time.monotonic() < deadline and restored is None:
            m = re.search(
                r"restored topic=\S+ partitions=\S+ records=(\d+) seconds=([\d.]+) rate=(\d+)",
                app.log("w1"),
            )
            if m:
                restored = {
                    "records": int(m.group(1)),
                    "seconds": float(m.group(2)),
                    "rate": int(m.group(3)),
                }
            time.sleep(0.2)
        restart_to_restored = time.monotonic() - restart
        if restored is None:
            print(app.all_logs())
        app.stop_all()
        print(
            json.dumps(
                {
                    "events": len(events),
                    "outputs": len(out),
                    "seconds": round(elapsed, 2),
                    "events_per_s": round(len(events) / elapsed),
                    "restore": restored,
                    "restart_to_restored_s": round(restart_to_restored, 2),
                }
            )
        )


if __name__ == "__main__":
    main()
