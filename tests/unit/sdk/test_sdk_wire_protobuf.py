"""Byte compatibility of the hand-written protobuf codecs with protoc-generated code (proto3).

Expected bytes are worked out by hand from the protobuf encoding rules (tag = field << 3 | wire
type, little-endian fixed-width, varint lengths) and were cross-checked against the upb runtime.
"""

import math

import pytest

from kstatefun.errors import DecodeError
from kstatefun.wire import protobuf as pb

INTS = [
    (0, b""),
    (7, b"\x0d\x07\x00\x00\x00"),
    (300, b"\x0d\x2c\x01\x00\x00"),
    (-1, b"\x0d\xff\xff\xff\xff"),
    (-7, b"\x0d\xf9\xff\xff\xff"),
    (2**31 - 1, b"\x0d\xff\xff\xff\x7f"),
    (-(2**31), b"\x0d\x00\x00\x00\x80"),
]
LONGS = [
    (0, b""),
    (1, b"\x09\x01\x00\x00\x00\x00\x00\x00\x00"),
    (-1, b"\x09" + b"\xff" * 8),
    (10**12, b"\x09\x00\x10\xa5\xd4\xe8\x00\x00\x00"),
    (2**63 - 1, b"\x09" + b"\xff" * 7 + b"\x7f"),
    (-(2**63), b"\x09" + b"\x00" * 7 + b"\x80"),
]
FLOATS = [
    (0.0, b""),
    (1.5, b"\x0d\x00\x00\xc0\x3f"),
    (-2.25, b"\x0d\x00\x00\x10\xc0"),
    (-0.0, b"\x0d\x00\x00\x00\x80"),
    (math.inf, b"\x0d\x00\x00\x80\x7f"),
    (-math.inf, b"\x0d\x00\x00\x80\xff"),
]
DOUBLES = [
    (0.0, b""),
    (1.5, b"\x09\x00\x00\x00\x00\x00\x00\xf8\x3f"),
    (-2.25, b"\x09\x00\x00\x00\x00\x00\x00\x02\xc0"),
    (0.1, b"\x09\x9a\x99\x99\x99\x99\x99\xb9\x3f"),
    (-0.0, b"\x09\x00\x00\x00\x00\x00\x00\x00\x80"),
    (math.inf, b"\x09\x00\x00\x00\x00\x00\x00\xf0\x7f"),
    (-math.inf, b"\x09\x00\x00\x00\x00\x00\x00\xf0\xff"),
]
STRINGS = [
    ("", b""),
    ("a", b"\x0a\x01a"),
    ("héllo ✓ 🎉", b"\x0a\x0fh\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89"),
    ("x" * 200, b"\x0a\xc8\x01" + b"x" * 200),  # length 200 = varint c8 01
]


@pytest.mark.parametrize(("value", "data"), INTS)
def test_int_wrapper(value, data):
    assert pb.encode_int_wrapper(value) == data
    assert pb.decode_int_wrapper(data) == value


@pytest.mark.parametrize(("value", "data"), LONGS)
def test_long_wrapper(value, data):
    assert pb.encode_long_wrapper(value) == data
    assert pb.decode_long_wrapper(data) == value


@pytest.mark.parametrize(("value", "data"), FLOATS)
def test_float_wrapper(value, data):
    assert pb.encode_float_wrapper(value) == data
    back = pb.decode_float_wrapper(data)
    assert back == value and math.copysign(1, back) == math.copysign(1, value)


@pytest.mark.parametrize(("value", "data"), DOUBLES)
def test_double_wrapper(value, data):
    assert pb.encode_double_wrapper(value) == data
    back = pb.decode_double_wrapper(data)
    assert back == value and math.copysign(1, back) == math.copysign(1, value)


@pytest.mark.parametrize(("value", "data"), STRINGS)
def test_string_wrapper(value, data):
    assert pb.encode_string_wrapper(value) == data
    assert pb.decode_string_wrapper(data) == value


def test_bool_wrapper():
    assert pb.encode_bool_wrapper(True) == b"\x08\x01"
    assert pb.encode_bool_wrapper(False) == b""
    assert pb.decode_bool_wrapper(b"\x08\x01") is True
    assert pb.decode_bool_wrapper(b"") is False
    assert pb.decode_bool_wrapper(b"\x08\x02") is True  # any non-zero varint is true
    assert pb.decode_bool_wrapper(b"\x08\x00") is False


def test_nan_is_written_and_read_back():
    assert pb.encode_float_wrapper(math.nan) == b"\x0d\x00\x00\xc0\x7f"
    assert pb.encode_double_wrapper(math.nan) == b"\x09\x00\x00\x00\x00\x00\x00\xf8\x7f"
    assert math.isnan(pb.decode_float_wrapper(b"\x0d\x00\x00\xc0\x7f"))
    assert math.isnan(pb.decode_double_wrapper(b"\x09\x00\x00\x00\x00\x00\x00\xf8\x7f"))


def test_float_beyond_float32_becomes_infinity_like_protobuf():
    assert pb.encode_float_wrapper(1e40) == b"\x0d\x00\x00\x80\x7f"
    assert pb.encode_float_wrapper(-1e40) == b"\x0d\x00\x00\x80\xff"


def test_float_wrapper_rounds_to_float32():
    assert pb.encode_float_wrapper(0.1) == b"\x0d\xcd\xcc\xcc\x3d"
    assert pb.decode_float_wrapper(b"\x0d\xcd\xcc\xcc\x3d") == pytest.approx(0.1, rel=1e-7)


def test_numbers_accepted_like_protobuf():
    assert pb.encode_double_wrapper(2) == pb.encode_double_wrapper(2.0)
    assert pb.encode_int_wrapper(True) == pb.encode_int_wrapper(1)


@pytest.mark.parametrize(
    ("encode", "value", "error"),
    [
        (pb.encode_int_wrapper, 2**31, ValueError),
        (pb.encode_int_wrapper, -(2**31) - 1, ValueError),
        (pb.encode_long_wrapper, 2**63, ValueError),
        (pb.encode_int_wrapper, 1.5, TypeError),
        (pb.encode_int_wrapper, "1", TypeError),
        (pb.encode_double_wrapper, "1.5", TypeError),
        (pb.encode_float_wrapper, None, TypeError),
        (pb.encode_string_wrapper, b"bytes", TypeError),
        (pb.encode_bool_wrapper, "yes", TypeError),
    ],
)
def test_encode_rejects_wrong_values(encode, value, error):
    with pytest.raises(error):
        encode(value)


def test_decode_skips_unknown_fields_and_last_value_wins():
    unknown = b"\x10\x96\x01" + b"\x1a\x02hi" + b"\x25\x01\x02\x03\x04" + b"\x29" + b"\x00" * 8
    assert pb.decode_int_wrapper(unknown + b"\x0d\x07\x00\x00\x00") == 7
    assert pb.decode_int_wrapper(b"\x0d\x01\x00\x00\x00\x0d\x02\x00\x00\x00") == 2
    assert pb.decode_string_wrapper(b"\x0a\x01a" + unknown) == "a"
    assert pb.decode_long_wrapper(unknown) == 0  # absent ⇒ default
    # a skipped (empty) group of field 1, as protobuf allows for unknown data
    assert pb.decode_int_wrapper(b"\x0d\x01\x00\x00\x00\x0b\x0c") == 1


def test_field_with_unexpected_wire_type_is_unknown_like_protobuf():
    assert pb.decode_int_wrapper(b"\x0a\x02hi") == 0
    assert pb.decode_int_wrapper(b"\x0d\x01\x00\x00\x00\x0a\x02hi") == 1


@pytest.mark.parametrize(
    ("decode", "data", "name"),
    [
        (pb.decode_int_wrapper, b"\x0d\x01\x00", "IntWrapper"),
        (pb.decode_long_wrapper, b"\x09\x01", "LongWrapper"),
        (pb.decode_float_wrapper, b"\x0d", "FloatWrapper"),
        (pb.decode_double_wrapper, b"\x0f", "DoubleWrapper"),  # wire type 7
        (pb.decode_string_wrapper, b"\x0a\x05ab", "StringWrapper"),
        (pb.decode_string_wrapper, b"\x0a\x02\xff\xfe", "StringWrapper"),  # bad UTF-8
        (pb.decode_bool_wrapper, b"\x08\xff", "BooleanWrapper"),
        (pb.decode_bool_wrapper, b"\x08" + b"\xff" * 11, "BooleanWrapper"),
        (pb.decode_int_wrapper, b"\x00\x01", "IntWrapper"),  # field number 0
        (pb.decode_kafka_producer_record, b"\x1a\x05top", "KafkaProducerRecord"),
    ],
)
def test_malformed_input_raises_decode_error_naming_the_type(decode, data, name):
    with pytest.raises(DecodeError, match=name):
        decode(data)


def test_decoders_accept_any_buffer():
    assert pb.decode_int_wrapper(memoryview(b"\x0d\x07\x00\x00\x00")) == 7
    assert pb.decode_string_wrapper(bytearray(b"\x0a\x01a")) == "a"


def test_kafka_producer_record_bytes():
    # key = 1 ("k"), value_bytes = 2 (b"v"), topic = 3 ("t"), in field order
    data = pb.encode_kafka_producer_record("t", "k", b"v")
    assert data == b"\x0a\x01k\x12\x01v\x1a\x01t"
    assert pb.decode_kafka_producer_record(data) == ("t", "k", b"v")


def test_kafka_producer_record_empty_key_is_none():
    data = pb.encode_kafka_producer_record("greetings", None, b"hi")
    assert data == b"\x12\x02hi\x1a\x09greetings"
    assert pb.encode_kafka_producer_record("greetings", "", b"hi") == data
    assert pb.decode_kafka_producer_record(data) == ("greetings", None, b"hi")
    assert pb.decode_kafka_producer_record(b"\x0a\x00" + data) == ("greetings", None, b"hi")


def test_kafka_producer_record_round_trip_large_and_unicode():
    value = bytes(range(256)) * 3
    data = pb.encode_kafka_producer_record("topic-ü", "ключ", value)
    assert data.startswith(b"\x0a\x08" + "ключ".encode())
    assert b"\x12\x80\x06" in data  # 768 = varint 80 06
    assert pb.decode_kafka_producer_record(data) == ("topic-ü", "ключ", value)


def test_kafka_producer_record_defaults():
    assert pb.encode_kafka_producer_record("", None, b"") == b""
    assert pb.decode_kafka_producer_record(b"") == ("", None, b"")


def test_kafka_producer_record_typename():
    assert (
        pb.KAFKA_PRODUCER_RECORD_TYPENAME
        == "type.googleapis.com/io.statefun.sdk.egress.KafkaProducerRecord"
    )
