"""Fuzzed ingress on a real broker: a seeded-random batch of bad records (no key, empty key,
non-UTF-8 key, huge key, no value, huge value, bytes that are not JSON, a raising function, a
message to an unregistered type), with random headers, interleaved with good records, to one
running worker (tests/apps/counting.py).

The worker must stay up, produce every good record's output exactly once and in order per
key, put every bad record on <app>-dead-letters exactly once with its reason, and keep its
RSS bounded.
"""

from __future__ import annotations

import json
import os
import random

import pytest
from confluent_kafka import Producer
from hypothesis import settings

from kstatefun.kafka.clients import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES
from kstatefun.wire.avro import decode_dead_letter
from tests.harness import check_exactly_once, make_app, read_committed

pytestmark = pytest.mark.kafka

ROOM = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES
ROUTER_REASONS = ("null-key", "invalid-key", "null-value", "record-too-large")
RSS_GROWTH_LIMIT_MIB = 200  # generous: a few ~1 MB records pass through librdkafka's buffers


def _not_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return True
    return False


def _headers(rng: random.Random) -> list[tuple[str, bytes | None]]:
    return [
        (
            "".join(rng.choice("abcxyz-._äß🙂") for _ in range(rng.randint(0, 12))),
            None if rng.random() < 0.2 else rng.randbytes(rng.randint(0, 40)),
        )
        for _ in range(rng.randint(0, 3))
    ]


def make_batch(rng: random.Random, good: int, bad: int):
    """Records ``(key, value, headers, expected)``: ``expected`` is ``("good", id, seq)`` or
    ``("bad", reason, match)`` where ``match`` is ``"offset"`` (the router dead-letters the
    ingress record itself) or the target id the dead letter names."""
    ids = ["k0", "k1", "ключ", "🙂", "a b", "x/y", "日本"]
    records = []
    for seq in range(good):
        id_ = rng.choice(ids)
        value = json.dumps({"seq": seq, "pad": "p" * rng.randint(0, 200)}).encode()
        records.append((id_.encode(), value, _headers(rng), ("good", id_, seq)))
    huge = 0
    for n in range(bad):
        kind = rng.choice(
            [
                "null-key",
                "empty-key",
                "invalid-key",
                "null-value",
                "not-json",
                "boom",
                "stray",
                "too-large",
            ]
        )
        if kind == "too-large" and huge >= 4:  # each is about 1 MB: a few are enough
            kind = "not-json"
        bad_id = f"bad-{n}"
        value = json.dumps({"seq": -1 - n}).encode()
        if kind == "null-key":
            rec = (None, value, ("bad", "null-key", "offset"))
        elif kind == "empty-key":
            rec = (b"", value, ("bad", "invalid-key", "offset"))
        elif kind == "invalid-key":
            key = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
            rec = (key + rng.randbytes(rng.randint(0, 8)), value, ("bad", "invalid-key", "offset"))
        elif kind == "null-value":
            rec = (bad_id.encode(), None, ("bad", "null-value", "offset"))
        elif kind == "not-json":
            junk = rng.randbytes(rng.randint(1, 300))
            while not _not_json(junk):
                junk = rng.randbytes(rng.randint(1, 300))
            rec = (bad_id.encode(), junk, ("bad", "undecodable-value", bad_id))
        elif kind == "boom":
            boom = json.dumps({"seq": -1 - n, "boom": True}).encode()
            rec = (bad_id.encode(), boom, ("bad", "function-error", bad_id))
        elif kind == "stray":
            stray = json.dumps({"seq": -1 - n, "stray": True}).encode()
            rec = (bad_id.encode(), stray, ("bad", "unknown-function", bad_id))
        else:
            huge += 1
            if rng.random() < 0.5:  # a huge value: no room for the invocation envelope
                size = rng.randint(ROOM + 1, ROOM + 3000)
                rec = (bad_id.encode(), b"7" * size, ("bad", "record-too-large", "offset"))
            else:  # a huge key
                size = rng.randint(ROOM - 10, ROOM + 3000)
                rec = (b"K" * size, value, ("bad", "record-too-large", "offset"))
        records.append((rec[0], rec[1], _headers(rng), rec[2]))
    rng.shuffle(records)
    return records


def produce(bootstrap: str, topic: str, records) -> list[tuple[int, int]]:
    """Produce in order; returns each record's (partition, offset)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "partitioner": "consistent_random",  # the app's default crc32: the direct path
            "message.max.bytes": MAX_RECORD_BYTES + 10_000,
        }
    )
    where: list[tuple[int, int] | None] = [None] * len(records)

    def delivered(i):
        def report(err, msg):
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        return report

    for i, (key, value, headers, _) in enumerate(records):
        for _ in range(1000):  # bounded retry while the local queue is full
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=delivered(i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert all(w is not None for w in where)
    return where  # type: ignore[return-value]


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 120, settle=3.0):
    """Every read_committed dead letter of ``topic`` with its headers, until ``expected``
    arrived and ``settle`` seconds more passed (to catch duplicates), or ``timeout``."""
    return read_committed(
        bootstrap,
        topic,
        expected,
        timeout,
        settle,
        lambda msg: (decode_dead_letter(msg.value()), dict(msg.headers() or [])),
    )


def vm_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_fuzzed_ingress_on_a_running_worker(kafka_bootstrap, tmp_path, unique_name, create_topic):
    long_run = settings.default.max_examples > 100  # the `make fuzz` profile
    seed = int(os.environ.get("KSTATEFUN_FUZZ_SEED", random.randrange(2**32) if long_run else 7))
    print(f"fuzz seed {seed} (KSTATEFUN_FUZZ_SEED={seed} repeats it)")
    rng = random.Random(seed)
    good_n, bad_n = (300, 200) if long_run else (150, 100)
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    worker = app.start_worker("w1")
    try:
        # warm up: the worker is assigned, has restored, and has processed a first record
        warm = [(b"warm", json.dumps({"seq": 0}).encode(), [], ("good", "warm", 0))]
        produce(app.bootstrap, app.ingress, warm)
        assert len(read_committed(app.bootstrap, app.egress, 1, timeout=90, settle=0)) == 1, (
            app.all_logs()
        )
        rss_before = vm_rss_mib(worker.pid)

        records = make_batch(rng, good_n, bad_n)
        where = produce(app.bootstrap, app.ingress, records)
        outputs = read_committed(app.bootstrap, app.egress, good_n + 1, timeout=180)
        bad = [(r, w) for r, w in zip(records, where, strict=True) if r[3][0] == "bad"]
        letters = read_all(app.bootstrap, f"{app.app_id}-dead-letters", len(bad))
        rss_after = vm_rss_mib(worker.pid)
        assert worker.poll() is None, "the worker died:\n" + app.all_logs()
    finally:
        app.stop_all()
    assert worker.returncode == 0, app.all_logs()

    expected: dict[str, list[int]] = {"warm": [0]}
    for _, _, _, (what, id_, seq) in records:
        if what == "good":
            expected.setdefault(id_, []).append(seq)
    assert check_exactly_once(outputs, expected) == [], app.all_logs()

    # every bad record is exactly one dead letter with its reason, and nothing else is one
    by_offset = {}
    by_target = {}
    for d, headers in letters:
        assert headers.get("kstatefun.reason") == d["reason"].encode()
        if d["source_topic"] == app.ingress and d["reason"] in ROUTER_REASONS:
            where_ = (d["source_partition"], d["source_offset"])
            assert where_ not in by_offset, f"dead-lettered twice: {d}"
            by_offset[where_] = d["reason"]
        else:
            assert d["target_id"] not in by_target, f"dead-lettered twice: {d}"
            by_target[d["target_id"]] = d["reason"]
    want_offset = {w: r[3][1] for r, w in bad if r[3][2] == "offset"}
    want_target = {r[3][2]: r[3][1] for r, _ in bad if r[3][2] != "offset"}
    assert by_offset == want_offset
    assert by_target == want_target
    assert len(letters) == len(bad)

    growth = rss_after - rss_before
    print(f"worker RSS {rss_before:.0f} MiB -> {rss_after:.0f} MiB; {len(bad)} dead letters")
    assert growth < RSS_GROWTH_LIMIT_MIB, (rss_before, rss_after)
