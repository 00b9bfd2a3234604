"""Faust-streaming contender: W1 (count per key) and W2 (chain) with a changelogged Table.

Runs in its own virtualenv (bench/venvs.py), as a script:

    python bench/peers/faust_app.py --mode w1 --bootstrap B --group G --ingress IN \
        --egress OUT --data-dir DIR [--mid MID] [--commit-interval SECONDS]

processing_guarantee defaults to "exactly_once" (read_committed consumer, one transactional
producer per assigned partition, offsets committed inside the transactions). Table store:
memory:// (state rebuilt from the table's changelog topic). Values stay bytes ("raw").
"""

from __future__ import annotations

import argparse
import logging
import sys

import faust


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["w1", "w2"], required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--ingress", required=True)
    p.add_argument("--egress", required=True)
    p.add_argument("--mid")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--commit-interval", type=float, help="default: Faust's own (2.8 s)")
    p.add_argument("--guarantee", default="exactly_once")
    args = p.parse_args()

    extra = {} if args.commit_interval is None else {"broker_commit_interval": args.commit_interval}
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        processing_guarantee=args.guarantee,
        store="memory://",
        datadir=args.data_dir,
        topic_partitions=args.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        **extra,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        topic_allow_declare=True,
    )

    def topic(name: str):
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=args.partitions,
        )

    ingress = topic(args.ingress)
    egress = topic(args.egress)
    counts = app.Table("counts", default=int, partitions=args.partitions, key_type=bytes)

    if args.mode == "w1":

        @app.agent(ingress)
        async def count(stream):
            async for key, _value in stream.items():
                counts[key] += 1
                await egress.send(key=key, value=b"%s:%d" % (key, counts[key]))

    else:
        mid = topic(args.mid)
        counts_b = app.Table("counts-b", default=int, partitions=args.partitions, key_type=bytes)

        @app.agent(ingress)
        async def count_a(stream):
            async for key, _value in stream.items():
                counts[key] += 1
                await mid.send(key=key, value=b"%d" % counts[key])

        @app.agent(mid)
        async def count_b(stream):
            async for key, _value in stream.items():
                counts_b[key] += 1
                await egress.send(key=key, value=b"%s:%d" % (key, counts_b[key]))

    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
