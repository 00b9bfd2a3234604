"""Quix Streams contender: W1 (count per key) and W2 (chain), exactly-once, RocksDB state.

Runs in its own virtualenv (bench/venvs.py), as a script:

    python bench/peers/quix_app.py --mode w1 --bootstrap B --group G --ingress IN --egress OUT \
        --state-dir DIR [--mid MID] [--commit-interval SECONDS]

W1: ingress → apply(count, stateful) → egress "<key>:<count>".
W2: ingress → apply(count A, stateful) → MID topic → apply(count B, stateful) → egress, so that
the chain crosses a topic like kstatefun's A → B does through <app>-invocations.
Values are left as bytes (no JSON decoding): the functions only count, as kstatefun's do.
Stops on SIGTERM (Quix Streams commits and closes on it).
"""

from __future__ import annotations

import argparse
import logging

from quixstreams import Application
from quixstreams.models import TopicConfig


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["w1", "w2"], required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--ingress", required=True)
    p.add_argument("--egress", required=True)
    p.add_argument("--mid")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--commit-interval", type=float, help="default: Quix Streams' own (5 s)")
    args = p.parse_args()

    extra = {} if args.commit_interval is None else {"commit_interval": args.commit_interval}
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        **extra,
        state_dir=args.state_dir,
        # as kstatefun's consumer: do not sit on an empty fetch for librdkafka's 500 ms
        consumer_extra_config={"fetch.wait.max.ms": 10},
        loglevel=logging.WARNING,
    )
    config = TopicConfig(num_partitions=args.partitions, replication_factor=1)

    def topic(name: str, value_deserializer: str = "bytes"):
        return app.topic(
            name,
            key_deserializer="str",
            value_deserializer=value_deserializer,
            key_serializer="str",
            value_serializer="str",
            config=config,
        )

    def count(value, key, timestamp, headers, state):
        n = state.get("count", 0) + 1
        state.set("count", n)
        return f"{key}:{n}"

    def count_a(value, key, timestamp, headers, state):
        n = state.get("count", 0) + 1
        state.set("count", n)
        return str(n)

    ingress = topic(args.ingress)
    egress = topic(args.egress)
    if args.mode == "w1":
        app.dataframe(ingress).apply(count, stateful=True, metadata=True).to_topic(egress)
    else:
        mid = topic(args.mid, value_deserializer="str")
        app.dataframe(ingress).apply(count_a, stateful=True, metadata=True).to_topic(mid)
        app.dataframe(mid).apply(count, stateful=True, metadata=True).to_topic(egress)
    app.run()


if __name__ == "__main__":
    main()
