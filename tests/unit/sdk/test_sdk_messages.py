import math
import struct

import pytest

from kstatefun import (
    Address,
    BoolType,
    DoubleType,
    FloatType,
    IntType,
    LongType,
    Message,
    StringType,
    TypedValue,
    egress_message_builder,
    kafka_egress_message,
    make_json_type,
    message_builder,
)
from kstatefun.wire.protobuf import KAFKA_PRODUCER_RECORD_TYPENAME, decode_kafka_producer_record

PRIMITIVES = [
    ("int_value", 7, IntType, "is_int", "as_int"),
    ("long_value", 2**40, LongType, "is_long", "as_long"),
    ("float_value", 1.5, FloatType, "is_float", "as_float"),
    ("double_value", -0.25, DoubleType, "is_double", "as_double"),
    ("bool_value", True, BoolType, "is_bool", "as_bool"),
    ("str_value", "héllo", StringType, "is_string", "as_string"),
]


@pytest.mark.parametrize(("keyword", "value", "tpe", "is_name", "as_name"), PRIMITIVES)
def test_message_builder_primitives(keyword, value, tpe, is_name, as_name):
    message = message_builder("example/greeter", "ann", **{keyword: value})
    assert message.target == Address("example/greeter", "ann")
    assert (message.target_typename, message.target_id) == ("example/greeter", "ann")
    assert message.value_typename() == tpe.typename
    assert message.raw_value() == tpe.serialize(value)
    assert getattr(message, is_name)() is True
    assert getattr(message, as_name)() == value
    assert message.is_type(tpe) and message.as_type(tpe) == value
    others = [name for *_, name, _ in PRIMITIVES if name != is_name]
    assert not any(getattr(message, name)() for name in others)


def test_message_builder_with_value_type():
    doc = make_json_type("example/doc")
    message = message_builder("example/f", "1", value={"a": [1]}, value_type=doc)
    assert message.value_typename() == "example/doc"
    assert message.is_type(doc) and not message.is_string()
    assert message.as_type(doc) == {"a": [1]}


def test_message_without_a_value_reads_as_none():
    message = Message(Address("example/f", "1"), TypedValue("io.statefun.types/int", None))
    assert message.is_int()
    assert message.as_int() is None and message.raw_value() is None


def test_message_accessors_do_not_convert_between_types():
    message = message_builder("example/f", "1", str_value="x")
    assert not message.is_int()
    assert message.as_string() == "x"


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("example/f", "1"), {}, TypeError),
        (("example/f", "1"), {"int_value": 1, "str_value": "x"}, TypeError),
        (("example/f", "1"), {"int_value": 1, "value_type": IntType}, TypeError),
        (("example/f", "1"), {"value": 1}, ValueError),  # type cannot be deduced
        (("example/f", "1"), {"value": 1, "value_type": int}, TypeError),
        (("example/f", ""), {"int_value": 1}, ValueError),
        (("example/f", 1), {"int_value": 1}, TypeError),
        (("noslash", "1"), {"int_value": 1}, ValueError),
        (("example/f", "1"), {"int_value": "1"}, TypeError),
        (("example/f", "1"), {"int_value": 2**31}, ValueError),
    ],
)
def test_message_builder_errors(args, kwargs, error):
    with pytest.raises(error):
        message_builder(*args, **kwargs)


def test_egress_message_builder():
    message = egress_message_builder("example/out", "hi", StringType)
    assert message.typename == "example/out"
    assert message.value_typename() == "io.statefun.types/string"
    assert message.raw_value() == b"\x0a\x02hi"
    with pytest.raises(ValueError):
        egress_message_builder("example/out", None, StringType)
    with pytest.raises(TypeError):
        egress_message_builder("example/out", "hi", None)


def kafka_record(message):
    assert message.value_typename() == KAFKA_PRODUCER_RECORD_TYPENAME
    return decode_kafka_producer_record(message.raw_value())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("héllo", "héllo".encode()),
        (b"\x00raw", b"\x00raw"),
        (bytearray(b"ba"), b"ba"),
        (7, b"\x00\x00\x00\x07"),  # Kafka IntegerSerializer: 4 bytes big-endian
        (-2, b"\xff\xff\xff\xfe"),
        (True, b"\x00\x00\x00\x01"),  # a bool is an int, as in StateFun
        (1.5, struct.pack(">d", 1.5)),  # Kafka DoubleSerializer
    ],
)
def test_kafka_egress_message_infers_bytes_like_statefun(value, expected):
    message = kafka_egress_message("example/out", "greetings", value)
    assert message.typename == "example/out"
    assert kafka_record(message) == ("greetings", None, expected)


def test_kafka_egress_message_key_and_value_type():
    message = kafka_egress_message("example/out", "t", 5, IntType, key="ann")
    assert kafka_record(message) == ("t", "ann", b"\x0d\x05\x00\x00\x00")
    message = kafka_egress_message("example/out", "t", "v", key="")
    assert kafka_record(message) == ("t", None, b"v")


def test_kafka_egress_message_nan_double():
    _, _, data = kafka_record(kafka_egress_message("example/out", "t", math.nan))
    assert math.isnan(struct.unpack(">d", data)[0])


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("example/out", "", "v"), {}, ValueError),
        (("example/out", "t", None), {}, ValueError),
        (("example/out", "t", ["v"]), {}, TypeError),
        (("example/out", "t", 2**31), {}, ValueError),
        (("example/out", "t", "v"), {"key": b"k"}, TypeError),
        (("example/out", "t", "v"), {"value_type": str}, TypeError),
        (("out", "t", "v"), {}, ValueError),
    ],
)
def test_kafka_egress_message_errors(args, kwargs, error):
    with pytest.raises(error):
        kafka_egress_message(*args, **kwargs)
