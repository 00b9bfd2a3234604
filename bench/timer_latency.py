"""Delivery lateness of delayed messages at light load, on a local broker.

    .venv/bin/python -m bench.timer_latency [--timers N]

Schedules N delayed messages (delays spread over a few seconds) through tests/apps/timers.py;
the receiving function records how late each arrived (its wall clock minus the due time).
Prints one JSON line with p50/p99/max lateness in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic
from tests.harness import MODULE_TEMPLATE, App, produce_events, read_committed

from kstatefun.devkafka import LocalKafka


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timers", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalKafka(Path(tmp) / "kafka") as kafka:
        bootstrap = kafka.start()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(t, 4, 1) for t in ("tl-in", "tl-out")]).values():
            f.result()
        module = Path(tmp) / "module.yaml"
        module.write_text(
            MODULE_TEMPLATE.format(
                bootstrap=bootstrap,
                app_id="tl",
                ingress="tl-in",
                functions="tests.apps.timers:functions",
                target="test/scheduler",
                value_type="test/Command",
            )
        )
        app = App(bootstrap, "tl", "tl-in", "tl-out", module)
        app.start_worker("w1")
        read_committed(bootstrap, "tl-out", 0, timeout=3, settle=0)  # let it join
        events = [
            (
                f"k{i % 50}".encode(),
                json.dumps(
                    {"op": "schedule", "seq": i, "delay_ms": 1000 + (i * 37) % 3000}
                ).encode(),
            )
            for i in range(args.timers)
        ]
        produce_events(bootstrap, "tl-in", events)
        records = read_committed(bootstrap, "tl-out", len(events), timeout=60, settle=0)
        app.stop_all()
    late = sorted(int(v.split(":")[2]) for _, v in records)
    q = statistics.quantiles(late, n=100)
    print(
        json.dumps(
            {
                "timers": len(late),
                "late_ms_p50": q[49],
                "late_ms_p99": q[98],
                "late_ms_max": late[-1],
                "late_ms_min": late[0],
            }
        )
    )


if __name__ == "__main__":
    main()
