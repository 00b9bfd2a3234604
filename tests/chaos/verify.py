"""The chaos verifier: what the committed input implies, and how the committed output compares.

Everything is read with ``read_committed``. The ingress topic is the input as committed (the
input producer is idempotent; a record whose delivery report was lost still counts if it is
on the topic). From it, :func:`expect` derives, per ingress partition and in offset order (so
per key in produced order), every egress record, every final state value, every pending
delayed message and every dead letter that the application (tests/chaos/functions.py and
sdk_app.py) must produce exactly once. :func:`verify` compares them with what was read.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from kstatefun.wire.avro import (
    decode_changelog_key,
    decode_changelog_value,
    decode_dead_letter,
    decode_timer_key,
)
from kstatefun.wire.protobuf import decode_int_wrapper, decode_string_wrapper
from tests.chaos.functions import mirror_id

QUIET = logging.getLogger("tests.chaos.kafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
QUIET.setLevel(logging.CRITICAL + 1)

INT = "io.statefun.types/int"
STRING = "io.statefun.types/string"

# (function type, id, state name)
StateKey = tuple[str, str, str]
# (reason, target type, target id or hex of the original key)
LetterKey = tuple[str, str, str]


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class TopicRead:
    topic: str
    records: list[Record]
    # partitions whose read_committed position did not reach the end offset sampled at the
    # start: {partition: (position, end offset)}; a transaction is still open there
    stuck: dict[int, tuple[int, int]]
    ends: dict[int, int]


def read_topic(
    bootstrap: str, topic: str, *, tail_only: bool = False, stall_s: float = 10.0
) -> TopicRead:
    """Read every partition of ``topic`` with read_committed up to the end offset sampled now.

    A partition is done when the consumer's *position* reaches that end offset (transaction
    markers take offsets, so the last record is usually not at end - 1). A partition whose
    position makes no progress for ``stall_s`` seconds is reported in ``stuck``: an open
    transaction holds its last stable offset below the end. With ``tail_only`` only the last
    offset of each partition is read: enough to see whether the position reaches the end.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-verifier-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "logger": QUIET,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=30)
        partitions = sorted(md.topics[topic].partitions)
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=30, cached=False
            )
            ends[p] = high
            starts[p] = max(low, high - 1) if tail_only else low
        pending = {p for p in partitions if ends[p] > starts[p]}
        records: list[Record] = []
        stuck: dict[int, tuple[int, int]] = {}
        if pending:
            consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(pending)])
        position = dict(starts)
        last_progress = {p: time.monotonic() for p in pending}
        while pending:
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is not None:
                    continue
                p, offset = msg.partition(), msg.offset()
                if offset < ends[p]:
                    records.append(Record(p, offset, msg.key(), msg.value()))
            now = time.monotonic()
            for tp in consumer.position([TopicPartition(topic, p) for p in sorted(pending)]):
                p = tp.partition
                if tp.offset != OFFSET_INVALID and tp.offset > position[p]:
                    position[p] = tp.offset
                    last_progress[p] = now
                if position[p] >= ends[p]:
                    pending.discard(p)
                elif now - last_progress[p] > stall_s:
                    stuck[p] = (position[p], ends[p])
                    pending.discard(p)
        records.sort(key=lambda r: (r.partition, r.offset))
        return TopicRead(topic, records, stuck, ends)
    finally:
        consumer.close()


# --- what the input implies ------------------------------------------------------------------


def simulate_cycle(hops: int) -> tuple[int, int]:
    """(ping invocations, pong invocations) of one cycle started with ``n = hops``."""
    pings = pongs = 0
    n = hops
    while True:
        pings += 1
        if n <= 0:
            return pings, pongs
        n -= 1
        pongs += 1
        n -= 1


@dataclass
class Expected:
    egress: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    state: dict[StateKey, int | str] = field(default_factory=dict)
    ttl_states: set[StateKey] = field(default_factory=set)  # written once, must be gone at the end
    timers: set[tuple[str, str, str]] = field(default_factory=set)  # (sender type, id, token)
    letters: Counter[LetterKey] = field(default_factory=Counter)
    events: int = 0  # ingress records
    valid: int = 0  # of which run the whole application

    @property
    def egress_total(self) -> int:
        return sum(len(v) for v in self.egress.values())


def expect(ingress: list[Record]) -> Expected:
    exp = Expected()
    entry_count: Counter[str] = Counter()
    ttl_total: Counter[str] = Counter()
    pings: Counter[str] = Counter()
    pongs: Counter[str] = Counter()
    hold: dict[str, str | None] = {}
    touched: set[str] = set()
    for r in ingress:  # partition by partition, in offset order: per key in produced order
        exp.events += 1
        if r.key is None:
            exp.letters[("null-key", "", "")] += 1
            continue
        try:
            key = r.key.decode("utf-8")
        except UnicodeDecodeError:
            exp.letters[("invalid-key", "", r.key.hex())] += 1
            continue
        if r.value is None:
            exp.letters[("null-value", "", r.key.hex())] += 1
            continue
        event = json.loads(r.value)
        seq = event["seq"]
        if event.get("boom"):
            exp.letters[("function-error", "chaos/entry", key)] += 1
            continue
        if event.get("stray"):
            exp.letters[("unknown-function", "chaos/nobody", key)] += 1
            continue
        if event.get("rboom"):
            exp.letters[("remote-error", "remotefail/boom", key)] += 1
            continue
        exp.valid += 1
        entry_count[key] += 1
        n = entry_count[key]
        exp.egress[("E", key)].append(f"E|{key}|{n}|{seq}")
        mirror = mirror_id(key)  # chaos/mirror counts the same, in its own partition
        exp.egress[("M", mirror)].append(f"M|{mirror}|{n}|{seq}")
        exp.egress[("R", key)].append(f"R|{key}|{n}|{seq}")  # remote/counter counts the same
        exp.ttl_states.add(("remote/counter", key, "last"))
        hold[key] = f"x{seq}" if event.get("hold") else None
        if event.get("rdelay"):
            exp.egress[("RD", key)].append(f"RD|{key}|{seq}")
        if event.get("cycle"):
            a, b = simulate_cycle(event["cycle"])
            pings[key] += a
            pongs[key] += b
            stream = f"C{event['cycle']}"
            exp.egress[(stream, key)].append(f"{stream}|{key}|{seq}")
        if event.get("delay"):
            exp.egress[("D", key)].append(f"D|{key}|{seq}")
        if event.get("ttl"):
            ttl_total[key] += 1
            exp.egress[("T", key)].append(f"T|{key}|{ttl_total[key]}|{seq}")
            touched.add(key)
    for key, n in entry_count.items():
        exp.state[("chaos/entry", key, "count")] = n
        exp.state[("remote/counter", key, "count")] = n
        exp.state[("chaos/mirror", mirror_id(key), "count")] = n
        token = hold.get(key)
        if token:
            exp.state[("chaos/entry", key, "hold")] = token
            exp.timers.add(("chaos/entry", key, token))
    for key, n in pings.items():
        exp.state[("chaos/ping", key, "hops")] = n
    for key, n in pongs.items():
        if n:
            exp.state[("remote/pong", key, "pongs")] = n
    for key, n in ttl_total.items():
        exp.state[("chaos/ttl", key, "total")] = n
        exp.ttl_states.add(("chaos/ttl", key, "recent"))
    for key in touched:
        exp.ttl_states.add(("chaos/ttl", key, "touched"))
    return exp


# --- comparison -------------------------------------------------------------------------------


@dataclass
class Verdict:
    egress_read: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0  # egress records nothing in the input implies (e.g. a cancelled "X")
    state_checked: int = 0
    state_wrong: int = 0
    ttl_not_purged: int = 0
    timers_wrong: int = 0
    letters: Counter[str] = field(default_factory=Counter)  # by reason, as read
    letters_wrong: int = 0
    stuck_partitions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str, limit: int = 60) -> None:
        if len(self.problems) < limit:
            self.problems.append(text)
        elif len(self.problems) == limit:
            self.problems.append("... (more problems not listed)")


def _stream_key(value: str) -> tuple[str, str] | None:
    parts = value.split("|")
    if len(parts) < 3:
        return None
    return parts[0], parts[1]


def check_egress(exp: Expected, egress: list[Record], v: Verdict) -> None:
    actual: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in egress:  # partition by partition in offset order: per key in written order
        v.egress_read += 1
        value = (r.value or b"").decode("utf-8", "replace")
        sk = _stream_key(value)
        key = r.key.decode("utf-8", "replace") if r.key is not None else None
        if sk is None or sk[1] != key:
            v.unexpected += 1
            v.problem(f"malformed egress record key={key!r} value={value!r}")
            continue
        actual[sk].append(value)
    for sk in sorted(set(exp.egress) | set(actual)):
        want = exp.egress.get(sk, [])
        have = actual.get(sk, [])
        if want == have:
            continue
        index = {value: i for i, value in enumerate(want)}
        seen: Counter[str] = Counter(have)
        lost = [w for w in want if w not in seen]
        dups = sum(n - 1 for w, n in seen.items() if w in index and n > 1)
        stray = [h for h in have if h not in index]
        disorder = 0
        highest = -1
        first: set[str] = set()
        for h in have:
            if h not in index or h in first:
                continue
            first.add(h)
            if index[h] < highest:
                disorder += 1
            highest = max(highest, index[h])
        v.lost += len(lost)
        v.duplicated += dups
        v.unexpected += len(stray)
        v.out_of_order += disorder
        v.problem(
            f"egress {sk[0]}/{sk[1]}: lost={len(lost)} duplicated={dups} unexpected={len(stray)} "
            f"out_of_order={disorder} lost_first={lost[:3]} unexpected_first={stray[:3]} "
            f"have={have[:6]}{'...' if len(have) > 6 else ''}"
        )


def _decode_state(typename: str, raw: bytes) -> int | str | bytes:
    if typename == INT:
        return decode_int_wrapper(raw)
    if typename == STRING:
        return decode_string_wrapper(raw)
    return raw


def check_state(exp: Expected, changelog: list[Record], now_ms: int, v: Verdict) -> None:
    last: dict[StateKey, Record] = {}
    for r in changelog:  # per partition in offset order; a key lives in one partition
        if r.key is None:
            v.problem(f"changelog record without key at {r.partition}/{r.offset}")
            continue
        last[decode_changelog_key(r.key)] = r
    live: dict[StateKey, int | str | bytes] = {}
    expired_not_deleted: set[StateKey] = set()
    for sk, r in last.items():
        if r.value is None:
            continue
        cv = decode_changelog_value(r.value)
        if cv.expire_at_ms is not None and cv.expire_at_ms <= now_ms:
            expired_not_deleted.add(sk)
            continue
        live[sk] = _decode_state(cv.typename, cv.value)
    for sk, want in sorted(exp.state.items()):
        v.state_checked += 1
        have = live.get(sk)
        if have != want:
            v.state_wrong += 1
            v.problem(f"state {sk[0]}/{sk[1]} {sk[2]}: have {have!r}, the input implies {want!r}")
    for sk in sorted(live.keys() - exp.state.keys()):
        v.state_wrong += 1
        v.problem(f"state {sk[0]}/{sk[1]} {sk[2]}: live value {live[sk]!r}, none expected")
    for sk in sorted(exp.ttl_states):
        v.state_checked += 1
        if sk in expired_not_deleted:
            v.ttl_not_purged += 1
            v.problem(f"state {sk[0]}/{sk[1]} {sk[2]}: expired but never deleted (no tombstone)")


def check_timers(exp: Expected, timers: list[Record], v: Verdict) -> None:
    last: dict[bytes, Record] = {}
    for r in timers:
        if r.key is not None:
            last[r.key] = r
    pending = set()
    for key, r in last.items():
        if r.value is None:
            continue
        sender_type, sender_id, token, anonymous = decode_timer_key(key)
        pending.add((sender_type, sender_id, "<anonymous>" if anonymous else token))
    for t in sorted(pending - exp.timers):
        v.timers_wrong += 1
        v.problem(f"delayed message still pending at the end: {t}")
    for t in sorted(exp.timers - pending):
        v.timers_wrong += 1
        v.problem(f"delayed message missing (the input leaves it pending): {t}")


def check_letters(exp: Expected, letters: list[Record], v: Verdict) -> None:
    have: Counter[LetterKey] = Counter()
    for r in letters:
        if r.value is None:
            continue
        d = decode_dead_letter(r.value)
        reason = d["reason"]
        v.letters[reason] += 1
        if d.get("target_type"):
            have[(reason, d["target_type"], d.get("target_id") or "")] += 1
        else:
            key = d.get("key")
            have[(reason, "", key.hex() if key else "")] += 1
    for lk in sorted(set(have) | set(exp.letters)):
        if have[lk] != exp.letters[lk]:
            v.letters_wrong += abs(have[lk] - exp.letters[lk])
            v.problem(f"dead letters {lk}: {have[lk]} written, {exp.letters[lk]} injected")


def verify(
    exp: Expected,
    egress: TopicRead,
    changelog: TopicRead,
    timers: TopicRead,
    letters: TopicRead,
    tails: list[TopicRead],
    now_ms: int,
) -> Verdict:
    v = Verdict()
    check_egress(exp, egress.records, v)
    check_state(exp, changelog.records, now_ms, v)
    check_timers(exp, timers.records, v)
    check_letters(exp, letters.records, v)
    for read in [egress, changelog, timers, letters, *tails]:
        for p, (position, end) in sorted(read.stuck.items()):
            v.stuck_partitions += 1
            v.problem(
                f"{read.topic} partition {p}: read_committed position {position} never reached "
                f"the end offset {end} (a transaction is still open)"
            )
    return v
