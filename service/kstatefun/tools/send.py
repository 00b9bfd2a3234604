"""``kstatefun send``: a typed message to an address, or a raw record to an ingress topic.

A message to an address is an invocation record on ``<app>-invocations``, in the partition of
its id, with no caller: the worker that owns the partition runs it like any other message. A
record to a topic is what any producer would write; the ingress routes it.
"""

from __future__ import annotations

import argparse

from kstatefun.errors import ConfigError
from kstatefun.kafka.partitioner import partition_for_key
from kstatefun.tools import values
from kstatefun.tools.common import Deliveries, Tool, common_arguments, parse_address, print_json
from kstatefun.wire.avro import encode_invocation

HELP = """\
Send one message to a function (--to TYPE/ID) or one record to a topic (--topic).

--to writes an invocation to <app>-invocations, partition hash(id) mod P with no caller, the
hash being the application's partitioner; P is read from the topic. --type says how --value
is encoded: a built-in type (string, int, long, bool, float, double, or their
io.statefun.types/... names) is parsed and encoded as StateFun's protobuf wrapper; any other
type name takes JSON text, sent as UTF-8.

--topic writes --value (UTF-8) with --key (the target id) to a topic, usually an ingress;
the partition is chosen by the key with the application's partitioner.

The record is written by an idempotent producer and is visible at once.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "send",
        parents=[common_arguments()],
        help="send a message to an address or a record to an ingress topic",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--to", metavar="TYPE/ID", help="an address, e.g. example/greeter/ann")
    dest.add_argument("--topic", metavar="TOPIC", help="a topic, e.g. an ingress topic")
    p.add_argument("--value", required=True, help="the value, as text")
    p.add_argument(
        "--type",
        default="io.statefun.types/string",
        metavar="TYPE",
        help="with --to: the value's type name (default io.statefun.types/string)",
    )
    p.add_argument("--raw", action="store_true", help="with --to: do not require JSON")
    p.add_argument("--key", help="with --topic: the record key (default: no key)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    if args.to is not None:
        if args.key is not None:
            raise ConfigError("--key goes with --topic; with --to the id is the key")
        return _to_address(tool, args)
    if args.raw or args.type != "io.statefun.types/string":
        raise ConfigError("--type and --raw go with --to; --topic sends --value as UTF-8 text")
    return _to_topic(tool, args)


def _to_address(tool: Tool, args: argparse.Namespace) -> int:
    target = parse_address(args.to)
    typename = values.resolve_type(args.type)
    data = values.encode(typename, args.value, args.raw)
    topic = tool.topics.invocations
    partition = tool.id_partition(topic, target.id)
    producer = tool.producer()
    deliveries = Deliveries(producer)
    producer.produce(
        topic,
        encode_invocation(target.typename, target.id, None, None, typename, data),
        target.id.encode(),
        partition=partition,
        on_delivery=deliveries,
    )
    (msg,) = deliveries.wait(tool.timeout)
    shown = values.show(typename, data)
    if tool.json:
        print_json(
            {
                "to": {"type": target.typename, "id": target.id},
                "argument": shown.to_json(),
                "topic": topic,
                "partition": msg.partition(),
                "offset": msg.offset(),
            }
        )
    else:
        print(
            f"sent {typename} {shown.text(80)} to {target} "
            f"({topic} partition {msg.partition()}, offset {msg.offset()})"
        )
    return 0


def _to_topic(tool: Tool, args: argparse.Namespace) -> int:
    topic = args.topic
    count = tool.partition_count(topic)  # exists?
    producer = tool.producer()
    deliveries = Deliveries(producer)
    key = None if args.key is None else args.key.encode()
    # a key goes where the application's partitioner puts it: on an ingress topic of P
    # partitions, where its invocations live (the direct path)
    partition = -1 if not key else partition_for_key(key, count, tool.partitioner())
    producer.produce(topic, args.value.encode(), key, partition, on_delivery=deliveries)
    (msg,) = deliveries.wait(tool.timeout)
    if tool.json:
        print_json(
            {
                "topic": topic,
                "key": args.key,
                "partition": msg.partition(),
                "offset": msg.offset(),
            }
        )
    else:
        key_text = "no key" if args.key is None else f"key {args.key!r}"
        print(
            f"sent {len(msg.value() or b'')} bytes with {key_text} to {topic} "
            f"(partition {msg.partition()}, offset {msg.offset()})"
        )
    return 0
