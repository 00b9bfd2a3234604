"""Messages between functions and to egresses, and the builders that make them.

Same names and signatures as StateFun's Python SDK (``statefun.messages`` and
``statefun.egress_io.kafka_egress_message``).
"""

from __future__ import annotations

import struct
from typing import Any

from kstatefun.model import Address, TypedValue
from kstatefun.sdk.types import (
    BoolType,
    DoubleType,
    FloatType,
    IntType,
    LongType,
    StringType,
    Type,
)
from kstatefun.wire.protobuf import KAFKA_PRODUCER_RECORD_TYPENAME, encode_kafka_producer_record

_KAFKA_INT = struct.Struct(">i")  # Kafka's IntegerSerializer
_KAFKA_DOUBLE = struct.Struct(">d")  # Kafka's DoubleSerializer


class Message:
    """A message to (or received by) a function: its target address and its typed value."""

    __slots__ = ("target", "typed_value")

    def __init__(self, target: Address, typed_value: TypedValue) -> None:
        self.target = target
        self.typed_value = typed_value

    @property
    def target_typename(self) -> str:
        return self.target.typename

    @property
    def target_id(self) -> str:
        return self.target.id

    def is_int(self) -> bool:
        return self.typed_value.typename == IntType.typename

    def as_int(self) -> int | None:
        return self.as_type(IntType)

    def is_bool(self) -> bool:
        return self.typed_value.typename == BoolType.typename

    def as_bool(self) -> bool | None:
        return self.as_type(BoolType)

    def is_long(self) -> bool:
        return self.typed_value.typename == LongType.typename

    def as_long(self) -> int | None:
        return self.as_type(LongType)

    def is_string(self) -> bool:
        return self.typed_value.typename == StringType.typename

    def as_string(self) -> str | None:
        return self.as_type(StringType)

    def is_float(self) -> bool:
        return self.typed_value.typename == FloatType.typename

    def as_float(self) -> float | None:
        return self.as_type(FloatType)

    def is_double(self) -> bool:
        return self.typed_value.typename == DoubleType.typename

    def as_double(self) -> float | None:
        return self.as_type(DoubleType)

    def is_type(self, tpe: Type) -> bool:
        return self.typed_value.typename == tpe.typename

    def as_type(self, tpe: Type) -> Any:
        """The value decoded as ``tpe`` (None when the message has no value).

        As in StateFun the typename is not checked here: use ``is_type`` first.
        """
        data = self.typed_value.value
        return None if data is None else tpe.deserialize(data)

    def value_typename(self) -> str:
        return self.typed_value.typename

    def raw_value(self) -> bytes | None:
        return self.typed_value.value

    def __repr__(self) -> str:
        return f"Message(target={self.target}, typename={self.typed_value.typename!r})"


class EgressMessage:
    """A record for an egress (``typename`` as declared in module.yaml) and its typed value."""

    __slots__ = ("typename", "_typed_value", "kafka_record")

    def __init__(
        self,
        typename: str,
        typed_value: TypedValue | None,
        kafka_record: tuple[str, bytes | None, bytes] | None = None,
    ) -> None:
        self.typename = typename
        self._typed_value = typed_value
        # (topic, key or None, value) when built by kafka_egress_message: the runtime writes it
        # as is, and the StateFun wire form (a KafkaProducerRecord) is made only if asked for
        self.kafka_record = kafka_record

    @property
    def typed_value(self) -> TypedValue:
        if self._typed_value is None:
            assert self.kafka_record is not None
            topic, key, value = self.kafka_record
            record = encode_kafka_producer_record(
                topic, None if key is None else key.decode(), value
            )
            self._typed_value = TypedValue(KAFKA_PRODUCER_RECORD_TYPENAME, record)
        return self._typed_value

    def value_typename(self) -> str:
        return self.typed_value.typename

    def raw_value(self) -> bytes | None:
        return self.typed_value.value

    def __repr__(self) -> str:
        return (
            f"EgressMessage(typename={self.typename!r}, value_typename={self.value_typename()!r})"
        )


# the types of message_builder's int_value, str_value, long_value, float_value, double_value and
# bool_value, in that order
_BUILTIN_TYPES = (IntType, StringType, LongType, FloatType, DoubleType, BoolType)


def message_builder(
    target_typename: str,
    target_id: str,
    *,
    int_value: int | None = None,
    float_value: float | None = None,
    long_value: int | None = None,
    str_value: str | None = None,
    double_value: float | None = None,
    bool_value: bool | None = None,
    value: Any = None,
    value_type: Type | None = None,
) -> Message:
    """A message to the function ``target_typename`` with id ``target_id``.

    Give exactly one of ``int_value``, ``float_value``, ``long_value``, ``str_value``,
    ``double_value``, ``bool_value``, or ``value`` together with its ``value_type``.
    """
    if type(target_typename) is not str or target_typename not in _VALID_TYPENAMES:
        _check_typename(target_typename, "target_typename")
    if not isinstance(target_id, str):
        raise TypeError(f"target_id must be a str, got {type(target_id).__name__}")
    if not target_id:
        raise ValueError("target_id can not be missing")
    # exactly one value given, and which: tests in line, not a loop over pairs
    given = (int_value, str_value, long_value, float_value, double_value, bool_value, value)
    count = (
        (int_value is not None)
        + (str_value is not None)
        + (long_value is not None)
        + (float_value is not None)
        + (double_value is not None)
        + (bool_value is not None)
        + (value is not None)
    )
    if count != 1 or (value_type is not None and value is None):
        raise TypeError(
            "message_builder needs exactly one value: int_value=, float_value=, long_value=, "
            "str_value=, double_value=, bool_value=, or value= with value_type="
        )
    i = 0
    while given[i] is None:
        i += 1
    v: Any = given[i]
    tpe: Any = _BUILTIN_TYPES[i] if i < 6 else value_type
    if tpe is None:
        raise ValueError(
            "could not deduce the value type: pass value=<the value>, value_type=<its Type>"
        )
    if not isinstance(tpe, Type):
        raise TypeError(f"value_type must be a kstatefun Type, got {tpe!r}")
    return Message(Address(target_typename, target_id), TypedValue(tpe.typename, tpe.serialize(v)))


def egress_message_builder(target_typename: str, value: Any, value_type: Type) -> EgressMessage:
    """A record for the egress ``target_typename``, ``value`` serialized as ``value_type``.

    For Kafka egresses use ``kafka_egress_message``, which also sets the topic and key.
    """
    _check_typename(target_typename, "target_typename")
    if value is None:
        raise ValueError("value can not be missing")
    if not isinstance(value_type, Type):
        raise TypeError(f"value_type must be a kstatefun Type, got {value_type!r}")
    return EgressMessage(
        target_typename, TypedValue(value_type.typename, value_type.serialize(value))
    )


def kafka_egress_message(
    typename: str,
    topic: str,
    value: str | bytes | bytearray | int | float | Any,
    value_type: Type | None = None,
    key: str | None = None,
) -> EgressMessage:
    """A record for the Kafka egress ``typename`` (as declared in module.yaml), to ``topic``.

    With ``value_type`` the value is serialized by it; otherwise a ``str`` is written as UTF-8,
    ``bytes``/``bytearray`` as is, an ``int`` as a 4-byte big-endian int (Kafka's
    IntegerSerializer; a bool is an int) and a ``float`` as an 8-byte big-endian double
    (Kafka's DoubleSerializer). ``key`` is a str; None or "" produce a record without a key.
    """
    if type(typename) is not str or typename not in _VALID_TYPENAMES:
        _check_typename(typename, "typename")
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, got {type(topic).__name__}")
    if not topic:
        raise ValueError("a destination Kafka topic is missing")
    if value is None:
        raise ValueError("value can not be missing")
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be a str or None, got {type(key).__name__}")
    if value_type is not None:
        if not isinstance(value_type, Type):
            raise TypeError(f"value_type must be a kstatefun Type, got {value_type!r}")
        data = value_type.serialize(value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, int):
        try:
            data = _KAFKA_INT.pack(value)
        except struct.error:
            raise ValueError(
                f"{value} does not fit Kafka's 4-byte int: pass value_type= or bytes"
            ) from None
    elif isinstance(value, float):
        data = _KAFKA_DOUBLE.pack(value)
    else:
        raise TypeError(
            f"cannot convert {type(value).__name__} to bytes: pass value_type= "
            "or a str, bytes, int or float"
        )
    return EgressMessage(typename, None, (topic, key.encode() if key else None, data))


# type names that passed _check_typename: most messages name one of a few (bounded, in case a
# program makes them up)
_VALID_TYPENAMES: set[str] = set()


def _check_typename(typename: Any, what: str) -> None:
    if not isinstance(typename, str):
        raise TypeError(f"{what} must be a str 'namespace/name', got {type(typename).__name__}")
    namespace, sep, name = typename.rpartition("/")
    if not (sep and namespace and name):
        raise ValueError(f"{what} '{typename}' is not of the form 'namespace/name'")
    if len(_VALID_TYPENAMES) < 1024:
        _VALID_TYPENAMES.add(typename)
