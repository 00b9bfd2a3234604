import contextlib
import io

import fastavro
import pytest

from kstatefun.errors import DecodeError
from kstatefun.wire import avro


def fa_encode(schema_name, record):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, avro.load_schema(schema_name), record)
    return buf.getvalue()


def fa_decode(schema_name, data):
    schema = avro.load_schema(schema_name)
    return fastavro.schemaless_reader(io.BytesIO(data), schema, schema)


INVOCATIONS = [
    ("example/greeter", "ann", None, None, "io.statefun.types/string", b"\x0a\x03ann"),
    ("ns/f", "", "ns/g", "caller-id", "t/x", None),
    ("ns/f", "ü" * 100, "ns/g", "", "t/x", b"x" * 5000),
    ("ns/f", "k", None, None, "t/x", b""),
]


@pytest.mark.parametrize("inv", INVOCATIONS)
def test_invocation_matches_fastavro_both_ways(inv):
    fields = ["target_type", "target_id", "caller_type", "caller_id", "typename", "value"]
    record = dict(zip(fields, inv, strict=True))
    ours = avro.encode_invocation(*inv)
    assert ours == fa_encode("invocation", record)
    decoded = avro.decode_invocation(fa_encode("invocation", record))
    assert tuple(getattr(decoded, f) for f in fields) == inv


@pytest.mark.parametrize("expire", [None, 0, 1, -1, 63, 64, 1_700_000_000_000, 2**62])
def test_changelog_value_matches_fastavro(expire):
    record = {
        "typename": "io.statefun.types/int",
        "value": b"\x0d\x01\x00\x00\x00",
        "expire_at_ms": expire,
    }
    ours = avro.encode_changelog_value(record["typename"], record["value"], expire)
    assert ours == fa_encode("changelog_value", record)
    v = avro.decode_changelog_value(ours)
    assert (v.typename, v.value, v.expire_at_ms) == (record["typename"], record["value"], expire)


def test_changelog_key_matches_fastavro_and_is_deterministic():
    key = avro.encode_changelog_key("example/counter", "ann", "seen")
    assert key == fa_encode(
        "changelog_key", {"function_type": "example/counter", "id": "ann", "state": "seen"}
    )
    assert avro.decode_changelog_key(key) == ("example/counter", "ann", "seen")
    assert avro.encode_changelog_key("a", "bc", "d") != avro.encode_changelog_key("ab", "c", "d")


@pytest.mark.parametrize("garbage", [b"", b"\x80", b"\x10abc", b"\x02\xff\xfe"])
def test_garbage_invocation_is_a_decode_error(garbage):
    with pytest.raises(DecodeError):
        avro.decode_invocation(garbage)


def test_dead_letter_round_trip():
    rec = {
        "reason": "null-key",
        "message": "m",
        "exception_type": None,
        "source_topic": "t",
        "source_partition": 1,
        "source_offset": 5,
        "target_type": None,
        "target_id": None,
        "caller_type": None,
        "caller_id": None,
        "typename": None,
        "key": None,
        "value": b"v",
        "timestamp_ms": 1,
    }
    assert avro.decode_dead_letter(avro.encode_dead_letter(rec)) == rec


@pytest.mark.parametrize("anonymous", [True, False])
def test_timer_key_matches_fastavro(anonymous):
    record = {"sender_type": "ns/f", "sender_id": "ä", "token": "t-1", "anonymous": anonymous}
    ours = avro.encode_timer_key("ns/f", "ä", "t-1", anonymous)
    assert ours == fa_encode("timer_key", record)
    assert avro.decode_timer_key(ours) == ("ns/f", "ä", "t-1", anonymous)


@pytest.mark.parametrize("value", [None, b"", b"\x01" * 300])
def test_timer_value_matches_fastavro(value):
    due = 1_800_000_000_123
    record = {
        "due_ms": due,
        "target_type": "ns/g",
        "target_id": "7",
        "typename": "io.statefun.types/int",
        "value": value,
    }
    ours = avro.encode_timer_value(due, "ns/g", "7", "io.statefun.types/int", value)
    assert ours == fa_encode("timer_value", record)
    assert avro.decode_timer_value(ours) == avro.TimerValue(
        due, "ns/g", "7", record["typename"], value
    )
    assert avro.timer_due(ours) == due


@pytest.mark.parametrize("expire", [None, 1, 1_800_000_000_000])
def test_changelog_expire_at_fast_path(expire):
    assert avro.changelog_expire_at(avro.encode_changelog_value("t/x", b"\x00", expire)) == expire


def test_random_bytes_decode_or_raise_decode_error_only():
    import random

    rng = random.Random(7)
    valid = avro.encode_invocation("ns/f", "id", "ns/g", "c", "t/x", b"value")
    for _ in range(20_000):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 4)):  # corrupt a few bytes, or truncate
            if rng.random() < 0.2:
                del data[rng.randrange(len(data)) :]
                if not data:
                    break
            else:
                data[rng.randrange(len(data))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            avro.decode_invocation(bytes(data))


def test_changelog_expiries_finds_exactly_the_rows_with_an_expiry():
    rows = [
        (b"a", avro.encode_changelog_value("t/x", b"\x00", None)),
        (b"b", avro.encode_changelog_value("t/x", b"\x01", 1_700_000_000_123)),
        (b"c", avro.encode_changelog_value("t/x", b"", None)),
        (b"d", avro.encode_changelog_value("t/x", b"\x07\x07", 5)),
    ]
    assert avro.changelog_expiries(rows) == [(1_700_000_000_123, b"b"), (5, b"d")]


def _envelopes():
    """Every combination of absent and present optional fields, with lengths on both sides of
    the one-byte boundary (63/64 bytes) that decode_invocation's inline path depends on."""
    for target_id in ("", "k", "i" * 63, "i" * 64, "ü" * 40):
        for caller in ((None, None), ("ns/g", "c"), ("n" * 70, ""), ("ns/g", "c" * 64)):
            for typename in ("t/x", "t" * 64):
                for value in (None, b"", b"v" * 63, b"v" * 64, b"v" * 300):
                    yield ("ns/f", target_id, *caller, typename, value)


def test_invocation_inline_paths_agree_with_fastavro_and_the_general_decoder():
    fields = ["target_type", "target_id", "caller_type", "caller_id", "typename", "value"]
    for inv in _envelopes():
        ours = avro.encode_invocation(*inv)
        assert ours == fa_encode("invocation", dict(zip(fields, inv, strict=True))), inv
        assert tuple(avro.decode_invocation(ours)) == inv
        assert avro._decode_invocation(ours) == avro.decode_invocation(ours)
        assert type(avro.decode_invocation(ours)) is avro.InvocationEnvelope
        assert avro.decode_invocation(ours).caller_type == inv[2]


def test_corrupt_invocations_decode_the_same_on_the_inline_and_the_general_path():
    import random

    rng = random.Random(11)
    valids = [avro.encode_invocation(*inv) for inv in INVOCATIONS]
    valids.append(avro.encode_invocation("ns/f", "id", "ns/g", "c", "t/x", b"value"))
    for _ in range(20_000):
        data = bytearray(rng.choice(valids))
        for _ in range(rng.randint(1, 3)):  # corrupt a byte, truncate, or append one
            r = rng.random()
            if r < 0.15 and len(data) > 1:
                del data[rng.randrange(1, len(data)) :]
            elif r < 0.25:
                data.append(rng.randrange(256))
            else:
                data[rng.randrange(len(data))] = rng.randrange(256)
        raw = bytes(data)
        try:
            expected = avro._decode_invocation(raw)
        except DecodeError as e:
            with pytest.raises(DecodeError) as got:
                avro.decode_invocation(raw)
            assert str(got.value) == str(e)
        else:
            assert avro.decode_invocation(raw) == expected
