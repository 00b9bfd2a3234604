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
    return _FunctionType(typename, serialize_fn, deserialize_fn)


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

    return _FunctionType(typename, serialize, deserialize)


def make_protobuf_type(cls: Any, namespace: str | None = None) -> Type:
    """A Type for a protobuf generated message class (``type.googleapis.com/<full name>``).

    As StateFun's ``make_protobuf_type``; duck-typed, so any generated class with
    ``SerializeToString``/``FromString`` and a ``DESCRIPTOR`` works.
    """
    if cls is None:
        raise ConfigError("make_protobuf_type needs the protobuf generated message class")
    full_name = cls().DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        message = cls()
        message.ParseFromString(data)
        return message

    def serialize(message: Any) -> bytes:
        return message.SerializeToString()

    return _FunctionType(
        f"{namespace or 'type.googleapis.com'}/{full_name}", serialize, deserialize
    )


def make_pydantic_type(model_cls: type[Any], typename: str | None = None) -> Type:
    """A Type for a pydantic v2 model, stored as UTF-8 JSON.

    The default typename is ``<module>/<ClassName>``; pass one explicitly to keep it stable when
    the class moves, since the typename travels with every value.
    """
    from pydantic import BaseModel, TypeAdapter

    if not (isinstance(model_cls, type) and issubclass(model_cls, BaseModel)):
        raise ConfigError(f"make_pydantic_type needs a pydantic BaseModel class, got {model_cls!r}")
    adapter = TypeAdapter(model_cls)

    def serialize(value: Any) -> bytes:
        if not isinstance(value, model_cls):
            raise TypeError(f"expected a {model_cls.__name__}, got {type(value).__name__}")
        return adapter.dump_json(value)

    return _FunctionType(
        typename or f"{model_cls.__module__}/{model_cls.__name__}", serialize, adapter.validate_json
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

    def serialize(value: Any) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, value)
        return buf.getvalue()

    def deserialize(data: bytes) -> Any:
        buf = io.BytesIO(data)
        value = fastavro.schemaless_reader(buf, parsed, None)
        if buf.tell() != len(data):
            raise ValueError(f"{len(data) - buf.tell()} trailing bytes after the Avro record")
        return value

    return _FunctionType(typename, serialize, deserialize)


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


class _FunctionType(Type):
    """A Type made of two functions: every built-in and factory type has this shape."""

    __slots__ = ("_serialize_fn", "_deserialize_fn", "_serializer")

    def __init__(
        self,
        typename: str,
        serialize_fn: Callable[[Any], Any],
        deserialize_fn: Callable[[bytes], Any],
    ) -> None:
        super().__init__(typename)
        self._serialize_fn = serialize_fn
        self._deserialize_fn = deserialize_fn
        self._serializer = _FunctionSerializer(serialize_fn, deserialize_fn)

    def serializer(self) -> TypeSerializer:
        return self._serializer

    def serialize(self, value: Any) -> bytes:
        data = self._serialize_fn(value)
        return data if type(data) is bytes else _as_bytes(data, self.typename)

    def deserialize(self, data: bytes) -> Any:
        try:
            return self._deserialize_fn(data)
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


# --- built-in types (byte-compatible protobuf wrappers) ----------------------------------------


BoolType: Type = _FunctionType(
    "io.statefun.types/bool", protobuf.encode_bool_wrapper, protobuf.decode_bool_wrapper
)
IntType: Type = _FunctionType(
    "io.statefun.types/int", protobuf.encode_int_wrapper, protobuf.decode_int_wrapper
)
FloatType: Type = _FunctionType(
    "io.statefun.types/float", protobuf.encode_float_wrapper, protobuf.decode_float_wrapper
)
LongType: Type = _FunctionType(
    "io.statefun.types/long", protobuf.encode_long_wrapper, protobuf.decode_long_wrapper
)
DoubleType: Type = _FunctionType(
    "io.statefun.types/double", protobuf.encode_double_wrapper, protobuf.decode_double_wrapper
)
StringType: Type = _FunctionType(
    "io.statefun.types/string", protobuf.encode_string_wrapper, protobuf.decode_string_wrapper
)
