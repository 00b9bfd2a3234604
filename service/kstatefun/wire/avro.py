"""Avro binary codecs for kstatefun's internal records (schemas/ holds the schemas).

The hot records (invocation envelope, changelog key and value) are encoded by hand in Avro's
binary encoding: they are fixed, small schemas and this path runs for every invocation.
tests/unit/wire prove byte equality with fastavro in both directions. The dead letter, written
rarely, goes through fastavro directly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import Any, NamedTuple

import fastavro

from kstatefun.errors import DecodeError

_SCHEMA_DIRS = (
    Path(__file__).resolve().parent.parent / "schemas",  # installed wheel: kstatefun/schemas
    Path(__file__).resolve().parents[3] / "schemas",  # source checkout: <repo>/schemas
)


@cache
def load_schema(name: str) -> Any:
    """Parsed fastavro schema ``schemas/<name>.avsc``."""
    for d in _SCHEMA_DIRS:
        path = d / f"{name}.avsc"
        if path.is_file():
            return fastavro.parse_schema(json.loads(path.read_text()))
    raise FileNotFoundError(f"schema {name}.avsc not found in {[str(d) for d in _SCHEMA_DIRS]}")


# --- primitive encoding -----------------------------------------------------------------------


def _long(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return bytes((z,))
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SHORT_LEN = [bytes((n << 1,)) for n in range(64)]  # the one-byte length of 0..63 bytes


def _bytes(b: bytes) -> bytes:
    n = len(b)
    if n < 64:
        return _SHORT_LEN[n] + b
    return _long(n) + b


def _str(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    if n < 64:
        return _SHORT_LEN[n] + b
    return _long(n) + b


# Type names and state names recur in every record: their encodings are cached (bounded).
_name = lru_cache(maxsize=4096)(_str)


_NULL = b"\x00"  # union branch 0 = null
_SOME = b"\x02"  # union branch 1


def _opt_str(s: str | None) -> bytes:
    return _NULL if s is None else _SOME + _str(s)


def _opt_bytes(b: bytes | None) -> bytes:
    return _NULL if b is None else _SOME + _bytes(b)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def long(self) -> int:
        buf, pos = self.buf, self.pos
        b = buf[pos]
        pos += 1
        z = b & 0x7F
        shift = 7
        while b & 0x80:
            b = buf[pos]
            pos += 1
            z |= (b & 0x7F) << shift
            shift += 7
        self.pos = pos
        return (z >> 1) ^ -(z & 1)

    def blob(self) -> bytes:
        n = self.long()
        start = self.pos
        end = start + n
        if n < 0 or end > len(self.buf):
            raise IndexError("truncated")
        self.pos = end
        return self.buf[start:end]

    def text(self) -> str:
        return self.blob().decode()

    def opt_text(self) -> str | None:
        return None if self.long() == 0 else self.text()

    def opt_blob(self) -> bytes | None:
        return None if self.long() == 0 else self.blob()

    def opt_long(self) -> int | None:
        return None if self.long() == 0 else self.long()


def _blob_at(data: bytes, pos: int) -> tuple[bytes, int]:
    """Avro bytes at ``pos``: (value, position after it); one-byte lengths take a fast path."""
    z = data[pos]
    if z < 0x80:
        if z & 1:
            raise IndexError("negative length")
        end = pos + 1 + (z >> 1)
    else:
        r = _Reader(data)
        r.pos = pos
        n = r.long()
        if n < 0:
            raise IndexError("negative length")
        pos, end = r.pos - 1, r.pos + n
    if end > len(data):
        raise IndexError("truncated")
    return data[pos + 1 : end], end


def _text_at(data: bytes, pos: int) -> tuple[str, int]:
    raw, end = _blob_at(data, pos)
    return raw.decode(), end


def _opt_text_at(data: bytes, pos: int) -> tuple[str | None, int]:
    branch = data[pos]
    if branch == 0:
        return None, pos + 1
    if branch != 2:
        raise IndexError("bad union branch")
    return _text_at(data, pos + 1)


# --- invocation envelope ----------------------------------------------------------------------


class InvocationEnvelope(NamedTuple):  # a tuple: built for every invocation record
    target_type: str
    target_id: str
    caller_type: str | None
    caller_id: str | None
    typename: str
    value: bytes | None


# The caller's type with its union branch (``_SOME`` + the name), cached as type names are.
_opt_name = lru_cache(maxsize=4096)(lambda s: _SOME + _str(s))

# ``_envelope((target_type, ...))``: an InvocationEnvelope built in C, without NamedTuple's
# Python ``__new__`` (one per routed record)
_envelope: Callable[[tuple[str, str, str | None, str | None, str, bytes | None]], Any]
_envelope = partial(tuple.__new__, InvocationEnvelope)


def encode_invocation(
    target_type: str,
    target_id: str,
    caller_type: str | None,
    caller_id: str | None,
    typename: str,
    value: bytes | None,
) -> bytes:
    # _str(target_id), _opt_str(caller_id) and _opt_bytes(value) inline: once per message
    tid = target_id.encode()
    n = len(tid)
    if caller_id is None:
        cid = _NULL
    else:
        c = caller_id.encode()
        m = len(c)
        cid = _SOME + (_SHORT_LEN[m] if m < 64 else _long(m)) + c
    if value is None:
        val = _NULL
    else:
        v = len(value)
        val = _SOME + (_SHORT_LEN[v] if v < 64 else _long(v)) + value
    return b"".join(
        (
            _name(target_type),
            _SHORT_LEN[n] if n < 64 else _long(n),
            tid,
            _NULL if caller_type is None else _opt_name(caller_type),
            cid,
            _name(typename),
            val,
        )
    )


def decode_invocation(data: bytes | None) -> InvocationEnvelope:
    if data is None:  # a tombstone someone wrote to <app>-invocations
        raise DecodeError("invalid invocation envelope (the record has no value)")
    # The usual envelope, inline: every length under 64 bytes, so one byte each (n1..n6),
    # even and under 0x80 (``& 0x81`` is 0), and each union branch (o1..o3) 0 (null) or 2
    # (``& 0xFD`` is 0). The ends are computed as if so; anything else, or anything wrong,
    # takes the general path, which says what is wrong.
    try:
        n1 = data[0]
        a = 1 + (n1 >> 1)  # end of target_type
        n2 = data[a]
        b = a + 1 + (n2 >> 1)  # end of target_id
        o1 = data[b]
        n3 = data[b + 1] if o1 == 2 else 0
        c = b + 1 + (o1 and 1 + (n3 >> 1))  # end of caller_type
        o2 = data[c]
        n4 = data[c + 1] if o2 == 2 else 0
        d = c + 1 + (o2 and 1 + (n4 >> 1))  # end of caller_id
        n5 = data[d]
        e = d + 1 + (n5 >> 1)  # end of typename
        o3 = data[e]
        n6 = data[e + 1] if o3 == 2 else 0
        end = e + 1 + (o3 and 1 + (n6 >> 1))
        short = not (n1 | n2 | n3 | n4 | n5 | n6) & 0x81 and not (o1 | o2 | o3) & 0xFD
        if short and end == len(data):
            return _envelope(
                (
                    data[1:a].decode(),
                    data[a + 1 : b].decode(),
                    None if c == b + 1 else data[b + 2 : c].decode(),
                    None if d == c + 1 else data[c + 2 : d].decode(),
                    data[d + 1 : e].decode(),
                    None if end == e + 1 else data[e + 2 : end],
                )
            )
    except (IndexError, UnicodeDecodeError):
        pass
    return _decode_invocation(data)


def _decode_invocation(data: bytes) -> InvocationEnvelope:
    try:
        target_type, pos = _text_at(data, 0)
        target_id, pos = _text_at(data, pos)
        caller_type, pos = _opt_text_at(data, pos)
        caller_id, pos = _opt_text_at(data, pos)
        typename, pos = _text_at(data, pos)
        branch = data[pos]
        if branch == 0:
            value, pos = None, pos + 1
        elif branch == 2:
            value, pos = _blob_at(data, pos + 1)
        else:
            raise IndexError("bad union branch")
    except (IndexError, UnicodeDecodeError) as e:
        raise DecodeError(f"invalid invocation envelope ({e})") from e
    if pos != len(data):
        raise DecodeError("invalid invocation envelope (trailing bytes)")
    return _envelope((target_type, target_id, caller_type, caller_id, typename, value))


# --- changelog --------------------------------------------------------------------------------


def encode_changelog_key(function_type: str, id: str, state: str) -> bytes:
    return _name(function_type) + _str(id) + _name(state)


def changelog_key_prefix(function_type: str, id: str) -> bytes:
    """What every changelog key of one address starts with: + ``changelog_key_suffix(state)``."""
    b = id.encode()  # _str(id), inline: once per invocation
    n = len(b)
    return _name(function_type) + (_SHORT_LEN[n] if n < 64 else _long(n)) + b


changelog_key_suffix = _name


def decode_changelog_key(data: bytes) -> tuple[str, str, str]:
    try:
        r = _Reader(data)
        return r.text(), r.text(), r.text()
    except (IndexError, UnicodeDecodeError) as e:
        raise DecodeError(f"invalid changelog key ({e})") from e


@dataclass(frozen=True, slots=True)
class ChangelogValue:
    typename: str
    value: bytes
    expire_at_ms: int | None


def encode_changelog_value(typename: str, value: bytes, expire_at_ms: int | None = None) -> bytes:
    n = len(value)  # _bytes(value), inline: once per state write
    head = _name(typename) + (_SHORT_LEN[n] if n < 64 else _long(n))
    if expire_at_ms is None:
        return head + value + _NULL
    return head + value + _SOME + _long(expire_at_ms)


def decode_changelog_value(data: bytes) -> ChangelogValue:
    try:
        r = _Reader(data)
        return ChangelogValue(r.text(), r.blob(), r.opt_long())
    except (IndexError, UnicodeDecodeError) as e:
        raise DecodeError(f"invalid changelog value ({e})") from e


def changelog_value_of_type(data: bytes, typename: str) -> tuple[bytes, int | None] | None:
    """(value, expire_at_ms) of an encoded changelog value if its type is ``typename``, else
    None (the hot read path: no object built, the type compared as encoded bytes)."""
    head = _name(typename)
    if not data.startswith(head):
        return None
    start = len(head)
    try:
        z = data[start]
        # the usual value: under 64 bytes, no expiry (ends with the null branch)
        if z < 0x80 and not z & 1 and start + 2 + (z >> 1) == len(data) and data[-1] == 0:
            return data[start + 1 : -1], None
        value, end = _blob_at(data, start)
        if data[end] == 0 and end == len(data) - 1:
            return value, None
        r = _Reader(data)
        r.pos = end
        expire_at = r.opt_long()
    except IndexError as e:
        raise DecodeError(f"invalid changelog value ({e})") from e
    return value, expire_at


def changelog_may_expire(data: bytes) -> bool:
    """False for an encoded changelog value without expiry (it ends in the null's 0x00); True
    for one with an expiry, and for the few without one that end otherwise."""
    return data[-1] != 0


def changelog_expiries(rows: Iterable[tuple[bytes, bytes]]) -> list[tuple[int, bytes]]:
    """(expire_at_ms, key) of the changelog ``rows`` (key, value) that have an expiry, in one
    pass that decodes only the values that may have one (``changelog_may_expire``, inline:
    this scans every row of a partition after each restore, a million in 0.1 s)."""
    found = []
    for key, value in rows:
        if value[-1] != 0:
            at = decode_changelog_value(value).expire_at_ms
            if at is not None:
                found.append((at, key))
    return found


def changelog_expire_at(data: bytes) -> int | None:
    """Just the expiry of an encoded changelog value (fast path: no expiry ends in 0x00)."""
    if data[-1] == 0:
        return None
    return decode_changelog_value(data).expire_at_ms


# --- timers -----------------------------------------------------------------------------------


def encode_timer_key(sender_type: str, sender_id: str, token: str, anonymous: bool) -> bytes:
    return _str(sender_type) + _str(sender_id) + _str(token) + (b"\x01" if anonymous else b"\x00")


def decode_timer_key(data: bytes) -> tuple[str, str, str, bool]:
    try:
        r = _Reader(data)
        sender_type, sender_id, token = r.text(), r.text(), r.text()
        return sender_type, sender_id, token, data[r.pos] == 1
    except (IndexError, UnicodeDecodeError) as e:
        raise DecodeError(f"invalid timer key ({e})") from e


@dataclass(frozen=True, slots=True)
class TimerValue:
    due_ms: int
    target_type: str
    target_id: str
    typename: str
    value: bytes | None


def encode_timer_value(
    due_ms: int, target_type: str, target_id: str, typename: str, value: bytes | None
) -> bytes:
    return b"".join(
        (_long(due_ms), _str(target_type), _str(target_id), _str(typename), _opt_bytes(value))
    )


def decode_timer_value(data: bytes) -> TimerValue:
    try:
        r = _Reader(data)
        return TimerValue(r.long(), r.text(), r.text(), r.text(), r.opt_blob())
    except (IndexError, UnicodeDecodeError) as e:
        raise DecodeError(f"invalid timer value ({e})") from e


def timer_due(data: bytes) -> int:
    """Just the due time of an encoded timer value."""
    return _Reader(data).long()


# --- dead letters (rare: fastavro) ------------------------------------------------------------


def encode_dead_letter(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, load_schema("dead_letter"), record)
    return buf.getvalue()


def decode_dead_letter(data: bytes) -> dict[str, Any]:
    schema = load_schema("dead_letter")
    record = fastavro.schemaless_reader(io.BytesIO(data), schema, schema)
    assert isinstance(record, dict)
    return record
