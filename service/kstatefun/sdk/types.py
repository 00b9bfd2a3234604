"""Value types: how a message or state value becomes bytes and back, under a type name.

Same names and shapes as StateFun's Python SDK (``statefun.core`` and ``statefun.wrapper_types``):
a ``Type`` has a ``typename`` and a ``serializer()``; the built-in types are protobuf wrappers,
byte-compatible with every StateFun SDK. ``Type.serialize``/``Type.deserialize`` are the shortcuts
the runtime uses; any failure to decode raises DecodeError naming the typename.
"""

from __future__ import annotations

import abc
import io
import json
import os
from collections.abc import Callable
from typing import Any

from kstatefun.errors import ConfigError, DecodeError
from kstatefun.model import split_typename
from kstatefun.wire import protobuf


class TypeSerializer(abc.ABC):
    """Turns values of one type into bytes and back."""

    __slots__ = ()

    @abc.abstractmethod
    def serialize(self, value: Any) -> bytes:
        """Serialize ``value`` to bytes."""

    @abc.abstractmethod
    def deserialize(self, data: bytes) -> Any:
        """Deserialize a value from ``data``."""


class Type(abc.ABC):
    """A StateFun value type: a ``namespace/name`` type name and a serializer.

    Subclass it and implement ``serializer()`` (as in StateFun), or use ``simple_type``.
    """

    __slots__ = ("typename",)

    def __init__(self, typename: str) -> None:
        if not isinstance(typename, str) or not typename:
            raise ConfigError(f"a Type needs a typename 'namespace/name', got {typename!r}")
        split_typename(typename)
        self.typename = typename

    @abc.abstractmethod
    def serializer(self) -> TypeSerializer:
        """The serializer of this type."""

    def serialize(self, value: Any) -> bytes:
        """``value`` as bytes; raises TypeError/ValueError when it is not a value of this type."""
        return _as_bytes(self.serializer().serialize(value), self.typename)

    def deserialize(self, data: bytes) -> Any:
        """The value ``data`` encodes; raises DecodeError naming this type when it cannot."""
        try:
            return self.serializer().deserialize(data)
        except Exception as e:
            raise _decode_error(self.typename, data, e) from e

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.typename!r})"


def simple_type(
    typename: str,
    serialize_fn: Callable[[Any], bytes],
    deserialize_fn: Callable[[bytes], Any],
) -> Type:
    """A Type from two functions, e.g. ``simple_type("org.foo/User", json.dumps, json.loads)``.

    ``serialize_fn`` may return ``str`` (stored as UTF-8) or any bytes-like object.
    """
    if not callable(serialize_fn) or not callable(deserialize_fn):
        raise ConfigError(
            f"simple_type('{typename}') needs callable serialize_fn and deserialize_fn"
        )
    return _SerializerType(typename, _FunctionSerializer(serialize_fn, deserialize_fn))


def make_json_type(
    typename: str,
    *,
    encoder: type[json.JSONEncoder] | None = None,
    decoder: type[json.JSONDecoder] | None = None,
) -> Type:
    """A Type stored as UTF-8 JSON via the ``json`` module (as StateFun's ``make_json_type``).

    ``encoder``/``decoder`` are optional ``json.JSONEncoder``/``json.JSONDecoder`` subclasses,
    passed as ``cls`` to ``json.dumps``/``json.loads``.
    """

    def serialize(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, cls=encoder).encode("utf-8")

    def deserialize(data: bytes) -> Any:
        return json.loads(data, cls=decoder)

    return _SerializerType(typename, _FunctionSerializer(serialize, deserialize))


def make_protobuf_type(cls: Any, namespace: str | None = None) -> Type:
    """A Type for a protobuf generated message class (``type.googleapis.com/<full name>``).

    As StateFun's ``make_protobuf_type``; kstatefun itself does not depend on protobuf.
    """
    if cls is None:
        raise ConfigError("make_protobuf_type needs the protobuf generated message class")
    full_name = cls().DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        message = cls()
        message.ParseFromString(data)
        return message

    return _SerializerType(
        f"{namespace or 'type.googleapis.com'}/{full_name}",
        _FunctionSerializer(lambda message: message.SerializeToString(), deserialize),
    )


def make_pydantic_type(model_cls: type[Any], typename: str | None = None) -> Type:
    """A Type for a pydantic v2 model, stored as UTF-8 JSON.

    The default typename is ``<module>/<ClassName>``; pass one explicitly to keep it stable when
    the class moves, since the typename travels with every value.
    """
    from pydantic import BaseModel, TypeAdapter

    if not (isinstance(model_cls, type) and issubclass(model_cls, BaseModel)):
        raise ConfigError(f"make_pydantic_type needs a pydantic BaseModel class, got {model_cls!r}")
    return _SerializerType(
        typename or f"{model_cls.__module__}/{model_cls.__name__}",
        _PydanticSerializer(model_cls, TypeAdapter(model_cls)),
    )


def make_avro_type(
    schema: dict[str, Any] | str | os.PathLike[str], typename: str | None = None
) -> Type:
    """A Type stored as schemaless Avro binary (fastavro), for a schema dict or ``.avsc`` path.

    The default typename is ``<namespace>/<name>`` of a named schema.
    """
    import fastavro

    if not isinstance(schema, dict):
        try:
            with open(schema, encoding="utf-8") as f:
                schema = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read Avro schema file '{schema}': {e}") from e
        if not isinstance(schema, dict):
            raise ConfigError("an Avro schema file must hold a JSON object (a named schema)")
    try:
        parsed: Any = fastavro.parse_schema(schema)
    except Exception as e:
        raise ConfigError(f"invalid Avro schema {schema.get('name', '')!r}: {e}") from e
    if typename is None:
        namespace, _, name = str(parsed.get("name", "")).rpartition(".")
        if not namespace:
            raise ConfigError(
                "cannot derive a typename from an Avro schema without a namespace and name: "
                "pass typename='namespace/name'"
            )
        typename = f"{namespace}/{name}"
    return _SerializerType(typename, _AvroSerializer(parsed))


# --- internals --------------------------------------------------------------------------------


def _as_bytes(data: Any, typename: str) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytearray | memoryview | bytes):
        return bytes(data)
    raise TypeError(f"the serializer of '{typename}' returned {type(data).__name__}, not bytes")


def _decode_error(typename: str, data: bytes, cause: Exception) -> DecodeError:
    return DecodeError(f"cannot decode {len(data)} bytes as '{typename}': {cause}")


class _SerializerType(Type):
    """A Type around one serializer instance; the shape of every built-in and factory type."""

    __slots__ = ("_serializer",)

    def __init__(self, typename: str, serializer: TypeSerializer) -> None:
        super().__init__(typename)
        self._serializer = serializer

    def serializer(self) -> TypeSerializer:
        return self._serializer

    def serialize(self, value: Any) -> bytes:
        data = self._serializer.serialize(value)
        return data if type(data) is bytes else _as_bytes(data, self.typename)

    def deserialize(self, data: bytes) -> Any:
        try:
            return self._serializer.deserialize(data)
        except Exception as e:
            raise _decode_error(self.typename, data, e) from e


class _FunctionSerializer(TypeSerializer):
    __slots__ = ("serialize_fn", "deserialize_fn")

    def __init__(
        self, serialize_fn: Callable[[Any], Any], deserialize_fn: Callable[[bytes], Any]
    ) -> None:
        self.serialize_fn = serialize_fn
        self.deserialize_fn = deserialize_fn

    def serialize(self, value: Any) -> bytes:
        return self.serialize_fn(value)

    def deserialize(self, data: bytes) -> Any:
        return self.deserialize_fn(data)


class _PydanticSerializer(TypeSerializer):
    __slots__ = ("model_cls", "adapter")

    def __init__(self, model_cls: type[Any], adapter: Any) -> None:
        self.model_cls = model_cls
        self.adapter = adapter

    def serialize(self, value: Any) -> bytes:
        if not isinstance(value, self.model_cls):
            raise TypeError(f"expected a {self.model_cls.__name__}, got {type(value).__name__}")
        return self.adapter.dump_json(value)

    def deserialize(self, data: bytes) -> Any:
        return self.adapter.validate_json(data)


class _AvroSerializer(TypeSerializer):
    __slots__ = ("schema",)

    def __init__(self, schema: Any) -> None:
        self.schema = schema

    def serialize(self, value: Any) -> bytes:
        import fastavro

        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, value)
        return buf.getvalue()

    def deserialize(self, data: bytes) -> Any:
        import fastavro

        buf = io.BytesIO(data)
        value = fastavro.schemaless_reader(buf, self.schema, None)
        if buf.tell() != len(data):
            raise ValueError(f"{len(data) - buf.tell()} trailing bytes after the Avro record")
        return value


# --- built-in types (byte-compatible protobuf wrappers) ----------------------------------------


BoolType: Type = _SerializerType(
    "io.statefun.types/bool",
    _FunctionSerializer(protobuf.encode_bool_wrapper, protobuf.decode_bool_wrapper),
)
IntType: Type = _SerializerType(
    "io.statefun.types/int",
    _FunctionSerializer(protobuf.encode_int_wrapper, protobuf.decode_int_wrapper),
)
FloatType: Type = _SerializerType(
    "io.statefun.types/float",
    _FunctionSerializer(protobuf.encode_float_wrapper, protobuf.decode_float_wrapper),
)
LongType: Type = _SerializerType(
    "io.statefun.types/long",
    _FunctionSerializer(protobuf.encode_long_wrapper, protobuf.decode_long_wrapper),
)
DoubleType: Type = _SerializerType(
    "io.statefun.types/double",
    _FunctionSerializer(protobuf.encode_double_wrapper, protobuf.decode_double_wrapper),
)
StringType: Type = _SerializerType(
    "io.statefun.types/string",
    _FunctionSerializer(protobuf.encode_string_wrapper, protobuf.decode_string_wrapper),
)
