"""``kstatefun state get|history TYPE ID``: one address's state, read from the changelog;
``state list|export TYPE``: the state of every address of a function type.

Every state value of an address is a record on ``<app>-changelog`` in the partition of its id,
keyed by (function type, id, state name); a deleted or expired value is a tombstone. Reading
that partition to its end with read_committed gives the state as of the last committed
transaction, which is what a worker restoring the partition would see.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from kstatefun.errors import ConfigError, DecodeError
from kstatefun.model import Address
from kstatefun.tools import values
from kstatefun.tools.common import (
    Tool,
    common_arguments,
    iso,
    make_address,
    print_json,
    record_timestamp,
    relative,
    table,
    warn,
)
from kstatefun.tools.reader import PartitionReader
from kstatefun.wire.avro import ChangelogValue, decode_changelog_key, decode_changelog_value

GET_HELP = """\
The current state values of one address, as of the last committed transaction.

Reads the changelog partition of ID to its end. Deleted values and values whose TTL has
passed are left out; --all shows them too, marked "deleted" or "expired". Values of the
built-in types (io.statefun.types/...) are decoded, JSON is shown as JSON, anything else as
text, hex or base64; --json also gives the raw bytes in base64.
"""

HISTORY_HELP = """\
Every version of one address's state values that is still on the changelog, oldest first,
with the changelog offset and the time each was written.

The changelog is compacted: Kafka keeps at least the latest record of each state, and removes
older versions (and, after delete.retention.ms, tombstones) whenever the log cleaner runs. So
the history is complete only back to the last compaction; what it shows is always accurate.
"""


LIST_HELP = """\
The addresses of one function type that have state, as of the last committed transaction,
sorted by id: each id with the names of its live state values and when it was last written.

Reads every partition of the changelog to its end; deleted and expired values are left out.
--prefix keeps the ids that start with it, --limit stops after that many (default 100).
"""

EXPORT_HELP = """\
The live state of every address of one function type, as JSON Lines on stdout, one line per
address sorted by id: {"type", "id", "states": {NAME: {"typename", "format", "value",
"base64", "size", "written"}}}. "value" is decoded as in 'state get' (null when the bytes are
not a known type, JSON or text); "base64" always holds the exact bytes.

Reads every partition of the changelog to its end, as of the last committed transaction.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    state = sub.add_parser(
        "state", help="inspect state (get and history of an address, list and export a type)"
    )
    commands = state.add_subparsers(dest="state_command", required=True, metavar="COMMAND")
    common = common_arguments()

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(  # type: ignore[no-any-return]
            name,
            parents=[common],
            help=help,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    get = command("get", "current state values", GET_HELP)
    history = command("history", "versions still on the changelog", HISTORY_HELP)
    for p in (get, history):
        p.add_argument("type", metavar="TYPE", help="function type, e.g. example/counter")
        p.add_argument("id", metavar="ID", help="the address's id")
        p.add_argument(
            "--state", action="append", metavar="NAME", help="only this state (repeatable)"
        )
    get.add_argument("--all", action="store_true", help="also deleted and expired values")
    get.set_defaults(handler=run_get)
    history.set_defaults(handler=run_history)
    listing = command("list", "addresses of a type that have state", LIST_HELP)
    export = command("export", "all state of a type as JSON Lines", EXPORT_HELP)
    for p in (listing, export):
        p.add_argument("type", metavar="TYPE", help="function type, e.g. example/counter")
    listing.add_argument("--prefix", default="", help="only ids that start with this")
    listing.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N addresses (default 100)"
    )
    listing.set_defaults(handler=run_list)
    export.set_defaults(handler=run_export)


@dataclass(frozen=True, slots=True)
class Version:
    """One changelog record of the address."""

    state: str
    offset: int
    timestamp_ms: int | None
    value: ChangelogValue | None  # None: a tombstone

    def status(self, now_ms: int) -> str:
        if self.value is None:
            return "deleted"
        expire = self.value.expire_at_ms
        return "expired" if expire is not None and expire <= now_ms else "live"

    def to_json(self, now_ms: int) -> dict[str, Any]:
        v = self.value
        return {
            "state": self.state,
            "status": self.status(now_ms),
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "timestamp": iso(self.timestamp_ms),
            "expire_at_ms": None if v is None else v.expire_at_ms,
            "expire_at": None if v is None else iso(v.expire_at_ms),
            **_shown(v).to_json(),
        }


@dataclass(frozen=True, slots=True)
class AddressLog:
    address: Address
    topic: str
    partition: int
    end_offset: int
    versions: list[Version]
    other_types: list[str]  # function types with state under the same id, for typos

    def header(self) -> dict[str, Any]:
        return {
            "address": {"type": self.address.typename, "id": self.address.id},
            "topic": self.topic,
            "partition": self.partition,
            "end_offset": self.end_offset,
        }


def read_address(tool: Tool, address: Address, states: list[str] | None) -> AddressLog:
    topic = tool.topics.changelog
    partition = tool.id_partition(topic, address.id)
    reader = PartitionReader(tool.consumer(), topic, tool.timeout)
    records, ends = reader.read_to_end([partition])
    versions: list[Version] = []
    others: set[str] = set()
    bad = 0
    for msg in records:
        try:
            ftype, fid, name = decode_changelog_key(msg.key() or b"")
            if fid != address.id:
                continue
            if ftype != address.typename:
                others.add(ftype)
                continue
            if states and name not in states:
                continue
            raw = msg.value()
            value = None if raw is None else decode_changelog_value(raw)
        except DecodeError:
            bad += 1
            continue
        versions.append(Version(name, _offset(msg), record_timestamp(msg), value))
    if bad:
        warn(f"{bad} record(s) in {topic} partition {partition} are not changelog records")
    return AddressLog(address, topic, partition, ends[partition], versions, sorted(others))


def _offset(msg: Message) -> int:
    offset = msg.offset()
    assert offset is not None
    return offset


def run_get(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    log = read_address(tool, make_address(args.type, args.id), args.state)
    now_ms = int(time.time() * 1000)
    latest: dict[str, Version] = {}
    for v in log.versions:
        latest[v.state] = v
    shown = [v for _, v in sorted(latest.items()) if args.all or v.status(now_ms) == "live"]
    if tool.json:
        print_json({**log.header(), "states": [v.to_json(now_ms) for v in shown]})
        return 0
    where = f"{log.topic} partition {log.partition}, read to offset {log.end_offset}"
    if not shown:
        print(f"{log.address}: no state ({where})")
        _hint_other_types(log)
        return 0
    print(f"{log.address}: {len(shown)} value(s) ({where})")
    rows = []
    for v in shown:
        status = v.status(now_ms)
        expires = "-"
        if v.value is not None and v.value.expire_at_ms is not None:
            expires = f"{iso(v.value.expire_at_ms)} ({relative(v.value.expire_at_ms, now_ms)})"
        row = [v.state, "-" if v.value is None else v.value.typename]
        row += [iso(v.timestamp_ms) or "-", str(v.offset), expires]
        if args.all:
            row.append(status)
        row.append(_value_text(v))
        rows.append(row)
    headers = ["STATE", "TYPE", "WRITTEN", "OFFSET", "EXPIRES"]
    print(table([*headers, *(["STATUS"] if args.all else []), "VALUE"], rows))
    return 0


def run_history(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    log = read_address(tool, make_address(args.type, args.id), args.state)
    now_ms = int(time.time() * 1000)
    if tool.json:
        print_json({**log.header(), "versions": [v.to_json(now_ms) for v in log.versions]})
        return 0
    where = f"{log.topic} partition {log.partition}, read to offset {log.end_offset}"
    if not log.versions:
        print(f"{log.address}: no versions on the changelog ({where})")
        _hint_other_types(log)
        return 0
    print(f"{log.address}: {len(log.versions)} version(s) still on the changelog ({where})")
    rows = [
        [
            str(v.offset),
            iso(v.timestamp_ms) or "-",
            v.state,
            "deleted" if v.value is None else v.value.typename,
            _value_text(v),
        ]
        for v in log.versions
    ]
    print(table(["OFFSET", "WRITTEN", "STATE", "TYPE", "VALUE"], rows))
    print("(older versions may have been removed by compaction)")
    return 0


def read_type(tool: Tool, typename: str) -> dict[str, dict[str, Version]]:
    """``{id: {state: latest live version}}`` of every address of ``typename``."""
    make_address(typename, "-")  # checks the type name
    topic = tool.topics.changelog
    reader = PartitionReader(tool.consumer(), topic, tool.timeout)
    latest: dict[tuple[str, str], Version] = {}
    bad = 0
    for msg in reader.read(reader.bounds(range(tool.partition_count(topic)))):
        try:
            ftype, fid, name = decode_changelog_key(msg.key() or b"")
            if ftype != typename:
                continue
            raw = msg.value()
            value = None if raw is None else decode_changelog_value(raw)
        except DecodeError:
            bad += 1
            continue
        latest[(fid, name)] = Version(name, _offset(msg), record_timestamp(msg), value)
    if bad:
        warn(f"{bad} record(s) in {topic} are not changelog records")
    now_ms = int(time.time() * 1000)
    out: dict[str, dict[str, Version]] = {}
    for (fid, name), v in sorted(latest.items()):
        if v.status(now_ms) == "live":
            out.setdefault(fid, {})[name] = v
    return out


def run_list(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    if args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    ids = {i: s for i, s in read_type(tool, args.type).items() if i.startswith(args.prefix)}
    shown = list(ids.items())[: args.limit]
    more = len(ids) - len(shown)

    def written(states: dict[str, Version]) -> int | None:
        return max((v.timestamp_ms for v in states.values() if v.timestamp_ms), default=None)

    if tool.json:
        rows = [
            {"id": fid, "states": sorted(states), "written": iso(written(states))}
            for fid, states in shown
        ]
        print_json({"type": args.type, "addresses": rows, "more": more})
        return 0
    prefix = f" with ids starting '{args.prefix}'" if args.prefix else ""
    if not shown:
        print(f"no address of {args.type}{prefix} has state")
        return 0
    print(f"{len(ids)} address(es) of {args.type}{prefix} with state")
    lines = [[fid, ", ".join(sorted(st)), iso(written(st)) or "-"] for fid, st in shown]
    print(table(["ID", "STATES", "LAST WRITTEN"], lines))
    if more:
        print(f"... and {more} more (--limit, --prefix)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    for fid, states in read_type(tool, args.type).items():
        doc = {
            "type": args.type,
            "id": fid,
            "states": {
                name: {**_shown(v.value).to_json(), "written": iso(v.timestamp_ms)}
                for name, v in states.items()
            },
        }
        print_json(doc, lines=True)
    return 0


def _shown(v: ChangelogValue | None) -> values.Shown:
    return values.show(None, None) if v is None else values.show(v.typename, v.value)


def _value_text(v: Version) -> str:
    if v.value is None:
        return "(deleted)"
    return values.show(v.value.typename, v.value.value).text(200)


def _hint_other_types(log: AddressLog) -> None:
    if log.other_types:
        print(f"state exists under id '{log.address.id}' for: {', '.join(log.other_types)}")
