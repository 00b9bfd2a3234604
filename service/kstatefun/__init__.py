"""kstatefun: Stateful Functions on Kafka, in Python.

A StateFun Python function ports by changing its import::

    from kstatefun import *
"""

from kstatefun.model import Address, TypedValue
from kstatefun.sdk.context import Context
from kstatefun.sdk.functions import StatefulFunctions, ValueSpec
from kstatefun.sdk.messages import (
    EgressMessage,
    Message,
    egress_message_builder,
    kafka_egress_message,
    message_builder,
)
from kstatefun.sdk.types import (
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

# StateFun's name for the address type, so ported type hints keep working.
SdkAddress = Address

__all__ = [
    "Address",
    "BoolType",
    "Context",
    "DoubleType",
    "EgressMessage",
    "FloatType",
    "IntType",
    "LongType",
    "Message",
    "SdkAddress",
    "StatefulFunctions",
    "StringType",
    "Type",
    "TypeSerializer",
    "TypedValue",
    "ValueSpec",
    "egress_message_builder",
    "kafka_egress_message",
    "make_avro_type",
    "make_json_type",
    "make_protobuf_type",
    "make_pydantic_type",
    "message_builder",
    "simple_type",
]
