"""Hand-written protobuf codecs for the few StateFun messages the SDK needs.

Byte-compatible with protoc-generated code (proto3): each wrapper is ``message XWrapper { T value
= 1; }`` from StateFun's ``io.statefun.sdk.types`` package, and ``KafkaProducerRecord`` is
``{ string key = 1; bytes value_bytes = 2; string topic = 3; }`` from ``io.statefun.sdk.egress``.
Default values are omitted on encode and read back when absent; unknown fields (and known fields
with an unexpected wire type, as protobuf does) are skipped. Malformed input raises DecodeError.
"""

from __future__ import annotations

import math
import numbers
import operator
import struct
from typing import Any

from kstatefun.errors import DecodeError

KAFKA_PRODUCER_RECORD_TYPENAME = "type.googleapis.com/io.statefun.sdk.egress.KafkaProducerRecord"

Buffer = bytes | bytearray | memoryview

# wire types
_VARINT = 0
_FIXED64 = 1
_LEN = 2
_START_GROUP = 3
_END_GROUP = 4
_FIXED32 = 5

# tags of field 1 for each wire type: (1 << 3) | wire_type
_TAG1_FIXED64 = 0x09
_TAG1_LEN = 0x0A
_TAG1_FIXED32 = 0x0D

_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_TAG_I32 = struct.Struct("<Bi")
_TAG_I64 = struct.Struct("<Bq")

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ZERO4 = b"\x00" * 4
_ZERO8 = b"\x00" * 8


# --- primitives -------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    """Unsigned varint of a non-negative int below 2**64."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 0x80:
        return bytes((tag, n)) + payload
    return bytes((tag,)) + _varint(n) + payload


def _read_varint(data: Buffer, pos: int, message: str) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise DecodeError(f"malformed {message}: truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise DecodeError(f"malformed {message}: varint longer than 10 bytes")


def _fields(data: Buffer, message: str) -> dict[tuple[int, int], Any]:
    """Scan a message into {(field number, wire type): value}, the last occurrence winning.

    The value is the int for varints, the start offset for fixed32/fixed64 and a (start, end)
    span for length-delimited fields.
    """
    fields: dict[tuple[int, int], Any] = {}
    value: Any
    pos = 0
    end = len(data)
    while pos < end:
        tag, pos = _read_varint(data, pos, message)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise DecodeError(f"malformed {message}: field number 0")
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos, message)
        elif wire_type in (_FIXED64, _FIXED32):
            value = pos
            pos += 8 if wire_type == _FIXED64 else 4
        elif wire_type == _LEN:
            n, pos = _read_varint(data, pos, message)
            value = (pos, pos + n)
            pos += n
        elif wire_type == _START_GROUP:  # deprecated groups are never ours: skip them
            pos = _skip_group(data, pos, number, message)
            continue
        else:
            raise DecodeError(f"malformed {message}: invalid wire type {wire_type}")
        if pos > end:
            raise DecodeError(f"malformed {message}: truncated field {number}")
        fields[(number, wire_type)] = value
    return fields


def _skip_group(data: Buffer, pos: int, group: int, message: str) -> int:
    """Position after the end tag of group ``group``, whose start tag ends at ``pos``."""
    end = len(data)
    while pos < end:
        tag, pos = _read_varint(data, pos, message)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            pos = _read_varint(data, pos, message)[1]
        elif wire_type == _FIXED64:
            pos += 8
        elif wire_type == _FIXED32:
            pos += 4
        elif wire_type == _LEN:
            n, pos = _read_varint(data, pos, message)
            pos += n
        elif wire_type == _START_GROUP:
            pos = _skip_group(data, pos, number, message)
        elif wire_type == _END_GROUP and number == group:
            return pos
        else:
            raise DecodeError(f"malformed {message}: invalid group {group}")
    raise DecodeError(f"malformed {message}: truncated group {group}")


def _utf8(data: Buffer, span: tuple[int, int], message: str) -> str:
    try:
        return str(data[span[0] : span[1]], "utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"malformed {message}: string is not valid UTF-8 ({e})") from e


def _as_int(value: Any, message: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{message} holds an integer, got {type(value).__name__}: {value!r}"
        ) from None


def _check_int(value: Any, lo: int, hi: int, message: str) -> int:
    n = _as_int(value, message)
    if not lo <= n <= hi:
        raise ValueError(f"{n} is out of range for {message} [{lo}, {hi}]")
    return n


def _check_real(value: Any, message: str) -> float:
    if isinstance(value, float | int | numbers.Real):
        return float(value)
    raise TypeError(f"{message} holds a number, got {type(value).__name__}: {value!r}")


# --- wrappers (io.statefun.sdk.types) ---------------------------------------------------------


def encode_bool_wrapper(value: bool) -> bytes:
    """``BooleanWrapper{bool value = 1}``; integers are taken for their truth like protobuf."""
    if value is True or value is False:
        return b"\x08\x01" if value else b""
    try:
        return b"\x08\x01" if operator.index(value) else b""
    except TypeError:
        raise TypeError(
            f"BooleanWrapper holds a bool, got {type(value).__name__}: {value!r}"
        ) from None


def decode_bool_wrapper(data: Buffer) -> bool:
    if data == b"\x08\x01":
        return True
    if not data:
        return False
    return bool(_fields(data, "BooleanWrapper").get((1, _VARINT), 0))


def encode_int_wrapper(value: int) -> bytes:
    """``IntWrapper{sfixed32 value = 1}``."""
    if type(value) is int and _INT32_MIN <= value <= _INT32_MAX:
        return _TAG_I32.pack(_TAG1_FIXED32, value) if value else b""
    n = _check_int(value, _INT32_MIN, _INT32_MAX, "IntWrapper (sfixed32)")
    return _TAG_I32.pack(_TAG1_FIXED32, n) if n else b""


def decode_int_wrapper(data: Buffer) -> int:
    if len(data) == 5 and data[0] == _TAG1_FIXED32:
        return _I32.unpack_from(data, 1)[0]
    if not data:
        return 0
    offset = _fields(data, "IntWrapper").get((1, _FIXED32))
    return 0 if offset is None else _I32.unpack_from(data, offset)[0]


def encode_long_wrapper(value: int) -> bytes:
    """``LongWrapper{sfixed64 value = 1}``."""
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
        return _TAG_I64.pack(_TAG1_FIXED64, value) if value else b""
    n = _check_int(value, _INT64_MIN, _INT64_MAX, "LongWrapper (sfixed64)")
    return _TAG_I64.pack(_TAG1_FIXED64, n) if n else b""


def decode_long_wrapper(data: Buffer) -> int:
    if len(data) == 9 and data[0] == _TAG1_FIXED64:
        return _I64.unpack_from(data, 1)[0]
    if not data:
        return 0
    offset = _fields(data, "LongWrapper").get((1, _FIXED64))
    return 0 if offset is None else _I64.unpack_from(data, offset)[0]


def encode_float_wrapper(value: float) -> bytes:
    """``FloatWrapper{float value = 1}``; like protobuf, values beyond float32 become ±inf.

    Only an all-zero bit pattern (+0.0) is the default, so -0.0 and NaN are written.
    """
    f = _check_real(value, "FloatWrapper")
    try:
        packed = _F32.pack(f)
    except OverflowError:
        packed = _F32.pack(math.copysign(math.inf, f))
    return b"" if packed == _ZERO4 else b"\x0d" + packed


def decode_float_wrapper(data: Buffer) -> float:
    if len(data) == 5 and data[0] == _TAG1_FIXED32:
        return _F32.unpack_from(data, 1)[0]
    if not data:
        return 0.0
    offset = _fields(data, "FloatWrapper").get((1, _FIXED32))
    return 0.0 if offset is None else _F32.unpack_from(data, offset)[0]


def encode_double_wrapper(value: float) -> bytes:
    """``DoubleWrapper{double value = 1}``; -0.0 and NaN are written, +0.0 is the default."""
    packed = _F64.pack(_check_real(value, "DoubleWrapper"))
    return b"" if packed == _ZERO8 else b"\x09" + packed


def decode_double_wrapper(data: Buffer) -> float:
    if len(data) == 9 and data[0] == _TAG1_FIXED64:
        return _F64.unpack_from(data, 1)[0]
    if not data:
        return 0.0
    offset = _fields(data, "DoubleWrapper").get((1, _FIXED64))
    return 0.0 if offset is None else _F64.unpack_from(data, offset)[0]


def encode_string_wrapper(value: str) -> bytes:
    """``StringWrapper{string value = 1}``."""
    if not isinstance(value, str):
        raise TypeError(f"StringWrapper holds a str, got {type(value).__name__}: {value!r}")
    return _len_field(_TAG1_LEN, value.encode("utf-8")) if value else b""


def decode_string_wrapper(data: Buffer) -> str:
    if not data:
        return ""
    n = len(data) - 2
    if data[0] == _TAG1_LEN and 0 <= n < 0x80 and data[1] == n:  # the usual: one short field
        return _utf8(data, (2, len(data)), "StringWrapper")
    span = _fields(data, "StringWrapper").get((1, _LEN))
    return "" if span is None else _utf8(data, span, "StringWrapper")


# --- io.statefun.sdk.egress.KafkaProducerRecord -----------------------------------------------


def encode_kafka_producer_record(topic: str, key: str | None, value: bytes) -> bytes:
    """``KafkaProducerRecord{string key = 1; bytes value_bytes = 2; string topic = 3}``."""
    parts = []
    if key:
        parts.append(_len_field(0x0A, key.encode("utf-8")))
    if value:
        parts.append(_len_field(0x12, bytes(value)))
    if topic:
        parts.append(_len_field(0x1A, topic.encode("utf-8")))
    return b"".join(parts)


def decode_kafka_producer_record(data: Buffer) -> tuple[str, str | None, bytes]:
    """Return ``(topic, key, value)``; an empty key is ``None`` (StateFun produces a null key)."""
    message = "KafkaProducerRecord"
    fields = _fields(data, message)
    key_span = fields.get((1, _LEN))
    value_span = fields.get((2, _LEN))
    topic_span = fields.get((3, _LEN))
    key = _utf8(data, key_span, message) if key_span else None
    value = bytes(data[value_span[0] : value_span[1]]) if value_span else b""
    topic = _utf8(data, topic_span, message) if topic_span else ""
    return topic, key or None, value
