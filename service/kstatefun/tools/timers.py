"""``kstatefun timers list TYPE ID``: the delayed messages an address has sent and that are
still pending.

A delayed message is a record on ``<app>-timers`` in the *sender's* partition, keyed by
(sender, token); firing or cancelling it writes a tombstone. Reading that partition to its end
with read_committed gives the pending messages as of the last committed transaction.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from kstatefun.errors import DecodeError
from kstatefun.tools import values
from kstatefun.tools.common import (
    Tool,
    common_arguments,
    duration,
    iso,
    make_address,
    print_json,
    record_timestamp,
    table,
    warn,
)
from kstatefun.tools.reader import PartitionReader
from kstatefun.wire.avro import TimerValue, decode_timer_key, decode_timer_value

LIST_HELP = """\
Pending delayed messages (context.send_after) sent BY one address, soonest first: the
cancellation token or "(anonymous)", when it is due, the target and the argument.

Timers live in the sender's partition of <app>-timers; a fired or cancelled message is gone.
A message shown as overdue is fired by the worker that owns the partition as soon as it runs.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    timers = sub.add_parser("timers", help="inspect pending delayed messages (list)")
    commands = timers.add_subparsers(dest="timers_command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "list",
        parents=[common_arguments()],
        help="pending delayed messages sent by an address",
        description=LIST_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("type", metavar="TYPE", help="the sender's function type")
    p.add_argument("id", metavar="ID", help="the sender's id")
    p.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    sender = make_address(args.type, args.id)
    topic = tool.topics.timers
    partition = tool.id_partition(topic, sender.id)
    reader = PartitionReader(tool.consumer(), topic, tool.timeout)
    records, ends = reader.read_to_end([partition])
    pending: dict[bytes, tuple[str, bool, int, int | None, TimerValue]] = {}
    bad = 0
    for msg in records:
        key = msg.key() or b""
        try:
            sender_type, sender_id, token, anonymous = decode_timer_key(key)
            if (sender_type, sender_id) != (sender.typename, sender.id):
                continue
            raw = msg.value()
            if raw is None:
                pending.pop(key, None)
                continue
            offset = msg.offset()
            assert offset is not None
            timer = decode_timer_value(raw)
            pending[key] = (token, anonymous, offset, record_timestamp(msg), timer)
        except DecodeError:
            bad += 1
    if bad:
        warn(f"{bad} record(s) in {topic} partition {partition} are not kstatefun timer records")
    now_ms = int(time.time() * 1000)
    timers = sorted(pending.values(), key=lambda t: (t[4].due_ms, t[2]))
    if tool.json:
        print_json(
            {
                "sender": {"type": sender.typename, "id": sender.id},
                "topic": topic,
                "partition": partition,
                "end_offset": ends[partition],
                "now_ms": now_ms,
                "timers": [_to_json(*t) for t in timers],
            }
        )
        return 0
    where = f"{topic} partition {partition}, read to offset {ends[partition]}"
    if not timers:
        print(f"{sender}: no pending delayed messages ({where})")
        return 0
    print(f"{sender}: {len(timers)} pending delayed message(s) ({where})")
    rows = []
    for token, anonymous, _, _, t in timers:
        delta = t.due_ms - now_ms
        when = f"in {duration(delta)}" if delta >= 0 else f"overdue by {duration(delta)}"
        rows.append(
            [
                "(anonymous)" if anonymous else token,
                iso(t.due_ms) or "-",
                when,
                f"{t.target_type}/{t.target_id}",
                t.typename,
                values.show(t.typename, t.value).text(120),
            ]
        )
    print(table(["TOKEN", "DUE", "", "TARGET", "ARGUMENT TYPE", "ARGUMENT"], rows))
    return 0


def _to_json(
    token: str, anonymous: bool, offset: int, timestamp_ms: int | None, t: TimerValue
) -> dict[str, Any]:
    return {
        "token": None if anonymous else token,
        "anonymous": anonymous,
        "key_token": token,
        "due_ms": t.due_ms,
        "due": iso(t.due_ms),
        "target": {"type": t.target_type, "id": t.target_id},
        "argument": values.show(t.typename, t.value).to_json(),
        "offset": offset,
        "scheduled_ms": timestamp_ms,
        "scheduled": iso(timestamp_ms),
    }
