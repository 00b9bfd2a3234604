"""Produce sample visits to the greeter's ingress topic (docker-compose's producer).

By default one round of eight visits; ``--rounds N --pause S`` sends N rounds, S seconds apart,
for a steady stream (the container tests kill a worker while it flows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from confluent_kafka import Producer

NAMES = ["Ann", "Bob", "Ann", "Cleo", "Bob", "Ann", "Dev", "Cleo"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="greeter-names")
    parser.add_argument("--rounds", type=int, default=1, help="times to send the eight visits")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between rounds")
    args = parser.parse_args(argv)
    # Idempotent: a retried send cannot reorder one person's visits.
    producer = Producer({"bootstrap.servers": args.bootstrap_servers, "enable.idempotence": True})
    for round_ in range(args.rounds):
        if round_ and args.pause:
            time.sleep(args.pause)
        for name in NAMES:
            producer.produce(args.topic, json.dumps({"name": name}).encode(), name.lower().encode())
        producer.poll(0)
    remaining = producer.flush(60)
    total = len(NAMES) * args.rounds
    print(f"produced {total - remaining} visits to {args.topic}")
    return 0 if remaining == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
