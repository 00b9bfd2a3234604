"""``kstatefun dead-letters tail|replay``: read dead letters, and re-inject them after a fix.

A dead letter is an Avro ``DeadLetter`` on ``<app>-dead-letters`` (docs/architecture.md, Bad
input and dead letters). It names its source record (topic, partition, offset) and, for an
invocation, the target, caller, argument type and argument bytes, which is all a replay needs:

- a dead letter of an invocation (it names a target and an argument type: its source is
  ``<app>-invocations``, or an ingress record or a fired delayed message delivered directly) is
  replayed as a new invocation envelope on ``<app>-invocations``, to the same target, with the
  same caller, type name and argument, in the target's partition;
- any other dead letter came from an ingress record the router refused, which is written again
  to its source topic (and partition) with the original key and value.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message

from kstatefun.errors import ConfigError
from kstatefun.runtime import deadletters as dl
from kstatefun.tools import values
from kstatefun.tools.common import (
    Tool,
    common_arguments,
    iso,
    print_json,
    record_timestamp,
    warn,
)
from kstatefun.tools.reader import PartitionReader
from kstatefun.wire.avro import decode_dead_letter, encode_invocation

REASONS = (
    dl.NULL_KEY,
    dl.INVALID_KEY,
    dl.NULL_VALUE,
    dl.UNDECODABLE_VALUE,
    dl.UNKNOWN_FUNCTION,
    dl.UNKNOWN_EGRESS,
    dl.FUNCTION_ERROR,
    dl.DUPLICATE_TOKEN,
    dl.REMOTE_ERROR,
    dl.RECORD_TOO_LARGE,
)
# Ingress records dead-lettered for these reasons are themselves at fault: a replay fails again.
_INPUT_AT_FAULT = (dl.NULL_KEY, dl.INVALID_KEY, dl.NULL_VALUE)

TAIL_HELP = """\
The last dead letters, oldest first: reason, message, source topic/partition/offset, target,
caller, key, a preview of the value and, when there is one, the detail: a function error's
traceback, or a remote error's HTTP status and the start of the response body. Each is
labelled [PARTITION:OFFSET] of <app>-dead-letters, which is what 'dead-letters replay
--offset' takes.

--follow keeps printing new ones until Ctrl-C. With --json, each dead letter is one line of
JSON (JSON Lines), with key and value in base64.
"""

REPLAY_HELP = """\
Re-inject selected dead letters, e.g. after fixing the function that failed, creating a
missing egress topic or deploying a worker that registers a missing function type.

- A dead letter of an invocation (it names a target: its source is <app>-invocations, or an
  ingress record or delayed message delivered directly) becomes a new invocation of the same
  target on <app>-invocations, with the same caller, argument type and argument.
- Any other dead letter of an ingress record is written back to its source topic and partition with
  the original key and value. Records dead-lettered as null-key, invalid-key or null-value are
  at fault themselves and will be dead-lettered again.
- A record that was not a valid invocation envelope cannot be rebuilt and is skipped.

Select with --reason and/or --offset (both must match), or --all. Replaying is NOT
idempotent: replaying the same dead letter twice re-injects it twice, and the dead letter
stays on the topic. Use --dry-run first. Exit code 1 when a selected dead letter was skipped.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("dead-letters", help="read and replay dead letters (tail, replay)")
    commands = group.add_subparsers(dest="dead_letters_command", required=True, metavar="COMMAND")
    common = common_arguments()
    fmt = argparse.RawDescriptionHelpFormatter
    tail = commands.add_parser(
        "tail",
        parents=[common],
        help="show the last dead letters",
        description=TAIL_HELP,
        formatter_class=fmt,
    )
    tail.add_argument("-n", type=int, default=10, metavar="N", help="how many (default 10)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new ones")
    tail.add_argument("--reason", action="append", metavar="R", help="only this reason")
    tail.set_defaults(handler=run_tail)
    replay = commands.add_parser(
        "replay",
        parents=[common],
        help="re-inject selected dead letters",
        description=REPLAY_HELP,
        formatter_class=fmt,
    )
    replay.add_argument("--reason", action="append", metavar="R", help="select by reason")
    replay.add_argument(
        "--offset",
        action="append",
        metavar="[P:]N",
        help="select the dead letter at offset N (of partition P, default 0); repeatable",
    )
    replay.add_argument("--all", action="store_true", help="select every dead letter")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    replay.set_defaults(handler=run_replay)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of <app>-dead-letters, decoded."""

    partition: int
    offset: int
    key: bytes | None
    record: dict[str, Any]
    written_ms: int | None
    detail: str | None = None  # runtime/deadletters.py: its headers
    http_status: int | None = None

    @property
    def label(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return str(self.record["reason"])

    def target(self) -> str | None:
        r = self.record
        return None if r["target_type"] is None else f"{r['target_type']}/{r['target_id']}"

    def caller(self) -> str | None:
        r = self.record
        return None if r["caller_type"] is None else f"{r['caller_type']}/{r['caller_id']}"

    def value(self) -> values.Shown:
        return values.show(self.record["typename"], self.record["value"])

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "partition": self.partition,
            "offset": self.offset,
            "reason": r["reason"],
            "message": r["message"],
            "exception_type": r["exception_type"],
            "timestamp_ms": r["timestamp_ms"],
            "timestamp": iso(r["timestamp_ms"]),
            "source": {
                "topic": r["source_topic"],
                "partition": r["source_partition"],
                "offset": r["source_offset"],
            },
            "target": None if r["target_type"] is None else _address(r, "target"),
            "caller": None if r["caller_type"] is None else _address(r, "caller"),
            "key": values.show(None, r["key"]).to_json(),
            "value": self.value().to_json(),
            "http_status": self.http_status,
            "detail": self.detail,
        }

    def human(self) -> str:
        r = self.record
        exc = f" ({r['exception_type']})" if r["exception_type"] else ""
        value_label = "argument" if r["typename"] else "value"
        value_text = self.value().text(200)
        if r["typename"]:
            value_text = f"{r['typename']} {value_text}"
        lines = [
            f"[{self.label}] {iso(r['timestamp_ms'])}  {r['reason']}{exc}",
            f"  message   {r['message']}",
            f"  source    {r['source_topic']} partition {r['source_partition']} "
            f"offset {r['source_offset']}",
            f"  target    {self.target() or '-'}",
            f"  caller    {self.caller() or '-'}",
            f"  key       {values.show(None, r['key']).text(120)}",
            f"  {value_label:<9} {value_text}",
        ]
        if self.http_status is not None:
            lines.append(f"  status    HTTP {self.http_status}")
        if self.detail:
            shown = self.detail.rstrip().split("\n")
            lines.append(f"  detail    {shown[0]}")
            lines += [f"            {line}" for line in shown[1:]]
        return "\n".join(lines)


def _address(r: dict[str, Any], role: str) -> dict[str, Any]:
    return {"type": r[f"{role}_type"], "id": r[f"{role}_id"]}


def _decode(messages: Iterable[Message], skipped: list[str]) -> list[DeadLetter]:
    out = []
    for msg in messages:
        p, o = msg.partition(), msg.offset()
        assert p is not None and o is not None
        try:
            record = decode_dead_letter(msg.value() or b"")
        except Exception:  # fastavro raises several types on foreign bytes
            skipped.append(f"{p}:{o}")
            continue
        pairs: Any = msg.headers() or ()  # [(str, bytes)]
        headers = {k: _text(v) for k, v in pairs}
        detail = headers.get(dl.DETAIL_HEADER)
        status = headers.get(dl.STATUS_HEADER)
        out.append(
            DeadLetter(
                p,
                o,
                msg.key(),
                record,
                record_timestamp(msg),
                detail,
                int(status) if status is not None and status.isdigit() else None,
            )
        )
    return out


def _text(value: str | bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _check_reasons(reasons: list[str] | None) -> set[str]:
    for r in reasons or ():
        if r not in REASONS:
            raise ConfigError(f"--reason '{r}' is not a dead-letter reason: use one of {REASONS}")
    return set(reasons or ())


def _sort_key(d: DeadLetter) -> tuple[int, int, int]:
    return (int(d.record["timestamp_ms"]), d.partition, d.offset)


# --- tail -------------------------------------------------------------------------------------


def run_tail(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    reasons = _check_reasons(args.reason)
    if args.n < 0:
        raise ConfigError(f"-n must be 0 or more, got {args.n}")
    topic = tool.topics.dead_letters
    partitions = range(tool.partition_count(topic))
    reader = PartitionReader(tool.consumer(), topic, tool.timeout)
    bounds = reader.bounds(partitions)
    undecodable: list[str] = []

    def wanted(d: DeadLetter) -> bool:
        return not reasons or d.reason in reasons

    letters: list[DeadLetter] = []
    for p, (low, high) in bounds.items():
        letters += _last_of_partition(reader, p, low, high, args.n, wanted, undecodable)
    letters = sorted(letters, key=_sort_key)[-args.n :] if args.n else []
    for d in letters:
        _print_one(d, tool.json)
    if not letters and not tool.json and not args.follow:
        print(f"no dead letters{_reason_text(reasons)} in {topic}")
    if undecodable:
        warn(f"records {', '.join(undecodable)} of {topic} are not kstatefun dead letters")
    if not args.follow:
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for msg in reader.follow({p: high for p, (_, high) in bounds.items()}):
            foreign: list[str] = []
            for d in _decode([msg], foreign):
                if wanted(d):
                    _print_one(d, tool.json)
            if foreign:
                warn(f"record {foreign[0]} of {topic} is not a kstatefun dead letter")
    except KeyboardInterrupt:
        pass
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _last_of_partition(
    reader: PartitionReader,
    partition: int,
    low: int,
    high: int,
    n: int,
    wanted: Callable[[DeadLetter], bool],
    undecodable: list[str],
) -> list[DeadLetter]:
    """The last ``n`` wanted dead letters of one partition, reading back in growing windows
    rather than the whole partition."""
    found: list[DeadLetter] = []
    end, window = high, max(4 * n, 64)
    while n and end > low and len(found) < n:
        start = max(low, end - window)
        chunk = _decode(reader.read({partition: (start, end)}), undecodable)
        found = [d for d in chunk if wanted(d)] + found
        end, window = start, window * 4
    return found[-n:] if n else []


def _print_one(d: DeadLetter, as_json: bool) -> None:
    if as_json:
        print_json(d.to_json(), lines=True)
    else:
        print(d.human(), end="\n\n", flush=True)


def _reason_text(reasons: set[str]) -> str:
    return f" with reason {', '.join(sorted(reasons))}" if reasons else ""


# --- replay -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Replay:
    """What to do with one selected dead letter."""

    letter: DeadLetter
    topic: str | None = None  # None: skipped
    partition: int | None = None  # None: the producer's partitioner decides
    key: bytes | None = None
    value: bytes | None = None
    note: str = ""
    written: tuple[int, int] | None = None  # (partition, offset) once delivered

    def to_json(self) -> dict[str, Any]:
        d = self.letter
        return {
            "dead_letter": {"partition": d.partition, "offset": d.offset},
            "reason": d.reason,
            "target": d.target(),
            "caller": d.caller(),
            "to_topic": self.topic,
            "partition": self.partition if self.written is None else self.written[0],
            "offset": None if self.written is None else self.written[1],
            "note": self.note or None,
        }


def run_replay(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    reasons = _check_reasons(args.reason)
    offsets = [_parse_offset(o) for o in args.offset or ()]
    if not (reasons or offsets or args.all):
        raise ConfigError(
            "select the dead letters to replay with --reason, --offset or --all "
            "(see `kstatefun dead-letters tail`)"
        )
    if args.all and (reasons or offsets):
        raise ConfigError("--all selects every dead letter: leave out --reason and --offset")
    topic = tool.topics.dead_letters
    count = tool.partition_count(topic)
    for p, o in offsets:
        if p >= count:
            raise ConfigError(f"--offset {p}:{o}: {topic} has only {count} partition(s)")
    reader = PartitionReader(tool.consumer(), topic, tool.timeout)
    undecodable: list[str] = []
    records, ends = reader.read_to_end(range(count))
    letters = _decode(records, undecodable)
    by_label = {(d.partition, d.offset): d for d in letters}
    missing = [f"{p}:{o}" for p, o in offsets if (p, o) not in by_label]
    if missing:
        raise ConfigError(
            f"no dead letter at {', '.join(missing)} of {topic} (partition:offset; "
            f"ends: {', '.join(f'{p}:{e}' for p, e in sorted(ends.items()))}); "
            "see `kstatefun dead-letters tail`"
        )
    selected = [
        d
        for d in sorted(letters, key=lambda d: (d.partition, d.offset))
        if (not offsets or (d.partition, d.offset) in offsets)
        and (not reasons or d.reason in reasons)
    ]
    plans = [_plan(tool, d) for d in selected]
    if not args.dry_run:
        _produce(tool, [p for p in plans if p.topic is not None])
    _report(tool, plans, args.dry_run, topic, reasons)
    return 1 if any(p.topic is None for p in plans) else 0


def _parse_offset(text: str) -> tuple[int, int]:
    part, sep, off = text.rpartition(":")
    try:
        partition, offset = (int(part), int(off)) if sep else (0, int(off))
    except ValueError:
        raise ConfigError(f"--offset '{text}' is not N or PARTITION:N") from None
    if partition < 0 or offset < 0:
        raise ConfigError(f"--offset '{text}' must not be negative")
    return partition, offset


def _plan(tool: Tool, d: DeadLetter) -> Replay:
    r = d.record
    source = r["source_topic"]
    invocations = tool.topics.invocations
    if r["target_type"] is not None and r["typename"] is not None:
        # an invocation: from <app>-invocations, or delivered directly (an ingress record in
        # its target's partition, a fired delayed message); rebuilt for its target alone
        target_id = r["target_id"]
        envelope = encode_invocation(
            r["target_type"], target_id, r["caller_type"], r["caller_id"], r["typename"], r["value"]
        )
        partition = tool.id_partition(invocations, target_id)
        return Replay(d, invocations, partition, target_id.encode(), envelope)
    if source in (invocations, tool.topics.timers):
        return Replay(d, note="not a valid invocation envelope: nothing to rebuild it from")
    topic_md = tool.metadata().topics.get(source)
    if topic_md is None or topic_md.error is not None:
        return Replay(d, note=f"source topic '{source}' does not exist any more")
    # the same partition, unless the topic was recreated smaller: then the key decides
    same: int | None = r["source_partition"]
    if same is not None and same >= len(topic_md.partitions):
        same = None
    note = ""
    if d.reason in _INPUT_AT_FAULT:
        note = f"a {d.reason} record is at fault itself: it will be dead-lettered again"
    return Replay(d, source, same, r["key"], r["value"], note)


def _produce(tool: Tool, plans: list[Replay]) -> None:
    if not plans:
        return
    producer = tool.producer()
    errors: list[str] = []
    for plan in plans:

        def delivered(err: KafkaError | None, msg: Message, plan: Replay = plan) -> None:
            if err is not None:
                errors.append(f"[{plan.letter.label}] → {plan.topic}: {err}")
            else:
                p, o = msg.partition(), msg.offset()
                assert p is not None and o is not None
                plan.written = (p, o)

        assert plan.topic is not None
        kwargs: dict[str, Any] = {"on_delivery": delivered}
        if plan.partition is not None:
            kwargs["partition"] = plan.partition
        producer.produce(plan.topic, plan.value, plan.key, **kwargs)
    remaining = producer.flush(tool.timeout)
    if errors or remaining:
        done = sum(p.written is not None for p in plans)
        problems = "; ".join(errors) or f"{remaining} record(s) undelivered after {tool.timeout}s"
        raise ConfigError(f"replay incomplete ({done} of {len(plans)} written): {problems}")


def _report(tool: Tool, plans: list[Replay], dry_run: bool, topic: str, reasons: set[str]) -> None:
    replayed = [p for p in plans if p.topic is not None]
    skipped = [p for p in plans if p.topic is None]
    if tool.json:
        print_json(
            {
                "dry_run": dry_run,
                "replayed": [p.to_json() for p in replayed],
                "skipped": [p.to_json() for p in skipped],
            }
        )
        return
    if not plans:
        print(f"no dead letters{_reason_text(reasons)} selected in {topic}")
        return
    verb = "would replay" if dry_run else "replayed"
    for p in replayed:
        d = p.letter
        to = d.target() if p.topic == tool.topics.invocations else "its source topic"
        where = (
            f"{p.topic} partition {p.written[0]}, offset {p.written[1]}"
            if p.written
            else (f"{p.topic}" + ("" if p.partition is None else f" partition {p.partition}"))
        )
        line = f"{verb} [{d.label}] {d.reason} to {to} ({where})"
        print(line + (f"; note: {p.note}" if p.note else ""))
    for p in skipped:
        print(f"skipped [{p.letter.label}] {p.letter.reason}: {p.note}")
    summary = f"{len(plans)} selected, {len(replayed)} {verb}, {len(skipped)} skipped"
    if not dry_run and replayed:
        summary += " (replaying them again would inject them again)"
    print(summary)
