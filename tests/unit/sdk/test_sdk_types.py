import json
import math
from datetime import date

import pytest
from pydantic import BaseModel

from kstatefun import (
    BoolType,
    DoubleType,
    FloatType,
    IntType,
    LongType,
    StringType,
    Type,
    TypeSerializer,
    make_avro_type,
    make_json_type,
    make_protobuf_type,
    make_pydantic_type,
    simple_type,
)
from kstatefun.errors import ConfigError, DecodeError


@pytest.mark.parametrize(
    ("tpe", "typename", "value", "data"),
    [
        (BoolType, "io.statefun.types/bool", True, b"\x08\x01"),
        (IntType, "io.statefun.types/int", 7, b"\x0d\x07\x00\x00\x00"),
        (LongType, "io.statefun.types/long", -1, b"\x09" + b"\xff" * 8),
        (FloatType, "io.statefun.types/float", 1.5, b"\x0d\x00\x00\xc0\x3f"),
        (DoubleType, "io.statefun.types/double", 1.5, b"\x09" + b"\x00" * 6 + b"\xf8\x3f"),
        (StringType, "io.statefun.types/string", "hi", b"\x0a\x02hi"),
    ],
)
def test_builtin_types_are_statefun_wrappers(tpe, typename, value, data):
    assert tpe.typename == typename
    assert tpe.serialize(value) == data
    assert tpe.deserialize(data) == value
    # the StateFun way through serializer() gives the same bytes
    assert tpe.serializer().serialize(value) == data
    assert tpe.serializer().deserialize(data) == value


def test_builtin_decode_failure_names_the_typename():
    with pytest.raises(DecodeError, match="io.statefun.types/int"):
        IntType.deserialize(b"\x0d\x01")


def test_simple_type():
    tpe = simple_type("org.foo/User", serialize_fn=json.dumps, deserialize_fn=json.loads)
    assert tpe.typename == "org.foo/User"
    assert tpe.serialize({"a": 1}) == b'{"a": 1}'  # str results are stored as UTF-8
    assert tpe.deserialize(b'{"a": 1}') == {"a": 1}
    with pytest.raises(DecodeError, match="org.foo/User"):
        tpe.deserialize(b"{not json")


def test_simple_type_rejects_non_bytes_results():
    tpe = simple_type("org.foo/N", serialize_fn=lambda v: v, deserialize_fn=lambda b: b)
    with pytest.raises(TypeError, match="org.foo/N"):
        tpe.serialize(5)


@pytest.mark.parametrize("typename", ["", "noslash", "/name", "ns/", None])
def test_invalid_typenames_are_config_errors(typename):
    with pytest.raises(ConfigError):
        simple_type(typename, serialize_fn=bytes, deserialize_fn=bytes)


def test_a_statefun_style_type_subclass():
    class UpperSerializer(TypeSerializer):
        def serialize(self, value):
            return value.upper().encode()

        def deserialize(self, data):
            if not data:
                raise ValueError("empty")
            return data.decode().lower()

    class UpperType(Type):
        def __init__(self):
            super().__init__("example/upper")

        def serializer(self):
            return UpperSerializer()

    tpe = UpperType()
    assert tpe.serialize("abc") == b"ABC"
    assert tpe.deserialize(b"ABC") == "abc"
    with pytest.raises(DecodeError, match="example/upper"):
        tpe.deserialize(b"")


def test_json_type_is_utf8_json():
    tpe = make_json_type("example/doc")
    data = tpe.serialize({"name": "Jürgen", "n": [1, 2]})
    assert data == '{"name": "Jürgen", "n": [1, 2]}'.encode()
    assert tpe.deserialize(data) == {"name": "Jürgen", "n": [1, 2]}
    with pytest.raises(DecodeError, match="example/doc"):
        tpe.deserialize(b"\xff")
    with pytest.raises(TypeError):
        tpe.serialize({1, 2})


def test_json_type_with_custom_encoder_and_decoder():
    class DateEncoder(json.JSONEncoder):
        def default(self, o):
            return o.isoformat() if isinstance(o, date) else super().default(o)

    class DateDecoder(json.JSONDecoder):
        def __init__(self, **kw):
            super().__init__(object_hook=lambda d: {k: date.fromisoformat(v) for k, v in d.items()})

    tpe = make_json_type("example/dates", encoder=DateEncoder, decoder=DateDecoder)
    data = tpe.serialize({"d": date(2024, 1, 2)})
    assert data == b'{"d": "2024-01-02"}'
    assert tpe.deserialize(data) == {"d": date(2024, 1, 2)}


class Greeting(BaseModel):
    name: str
    visits: int = 0


def test_pydantic_type():
    tpe = make_pydantic_type(Greeting)
    assert tpe.typename == f"{__name__}/Greeting"
    data = tpe.serialize(Greeting(name="Zoë", visits=2))
    assert json.loads(data) == {"name": "Zoë", "visits": 2}
    assert tpe.deserialize(data) == Greeting(name="Zoë", visits=2)
    assert make_pydantic_type(Greeting, "example/greeting").typename == "example/greeting"


def test_pydantic_type_errors():
    tpe = make_pydantic_type(Greeting, "example/greeting")
    with pytest.raises(DecodeError, match="example/greeting"):
        tpe.deserialize(b'{"visits": 1}')  # name missing
    with pytest.raises(TypeError, match="Greeting"):
        tpe.serialize({"name": "x"})
    with pytest.raises(ConfigError):
        make_pydantic_type(dict)


USER_SCHEMA = {
    "type": "record",
    "name": "User",
    "namespace": "com.example",
    "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}],
}


def test_avro_type_from_dict():
    tpe = make_avro_type(USER_SCHEMA)
    assert tpe.typename == "com.example/User"
    data = tpe.serialize({"name": "x", "age": 3})
    assert data == b"\x02x\x06"  # Avro binary: zigzag length 1, "x", zigzag 3
    assert tpe.deserialize(data) == {"name": "x", "age": 3}


def test_avro_type_from_avsc_file(tmp_path):
    path = tmp_path / "user.avsc"
    path.write_text(json.dumps(USER_SCHEMA))
    tpe = make_avro_type(str(path), typename="example/user")
    assert tpe.typename == "example/user"
    assert make_avro_type(path).typename == "com.example/User"
    assert tpe.deserialize(tpe.serialize({"name": "ü", "age": -1})) == {"name": "ü", "age": -1}


def test_avro_type_errors(tmp_path):
    tpe = make_avro_type(USER_SCHEMA)
    with pytest.raises(DecodeError, match="com.example/User"):
        tpe.deserialize(b"\x02")
    with pytest.raises(DecodeError, match="com.example/User"):
        tpe.deserialize(b"\x02x\x06extra")
    with pytest.raises((TypeError, ValueError)):
        tpe.serialize({"name": "x"})
    with pytest.raises(ConfigError, match="typename"):
        make_avro_type({"type": "record", "name": "NoNs", "fields": []})
    with pytest.raises(ConfigError, match="missing.avsc"):
        make_avro_type(tmp_path / "missing.avsc")
    with pytest.raises(ConfigError):
        make_avro_type({"type": "record", "name": "a.B", "fields": [{"name": "x"}]})


def test_nan_round_trips_through_types():
    assert math.isnan(DoubleType.deserialize(DoubleType.serialize(math.nan)))
    assert math.isnan(FloatType.deserialize(FloatType.serialize(math.nan)))


def test_protobuf_type_uses_the_generated_class_interface():
    class Descriptor:
        full_name = "example.Ping"

    class Ping:  # the three members make_protobuf_type relies on, as protoc generates them
        DESCRIPTOR = Descriptor()

        def __init__(self):
            self.data = b""

        def SerializeToString(self):
            return b"\x0a\x01" + self.data

        def ParseFromString(self, data):
            self.data = data[2:]

    tpe = make_protobuf_type(Ping)
    assert tpe.typename == "type.googleapis.com/example.Ping"
    ping = Ping()
    ping.data = b"x"
    assert tpe.serialize(ping) == b"\x0a\x01x"
    assert tpe.deserialize(b"\x0a\x01y").data == b"y"
    assert make_protobuf_type(Ping, "example").typename == "example/example.Ping"
