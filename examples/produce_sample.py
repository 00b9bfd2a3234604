"""Produce a few sample visits to the greeter's ingress topic (docker-compose's producer)."""

from __future__ import annotations

import argparse
import json
import sys

from confluent_kafka import Producer

NAMES = ["Ann", "Bob", "Ann", "Cleo", "Bob", "Ann", "Dev", "Cleo"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="greeter-names")
    args = parser.parse_args(argv)
    producer = Producer({"bootstrap.servers": args.bootstrap_servers})
    for name in NAMES:
        producer.produce(args.topic, json.dumps({"name": name}).encode(), name.lower().encode())
    remaining = producer.flush(60)
    print(f"produced {len(NAMES) - remaining} visits to {args.topic}")
    return 0 if remaining == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
