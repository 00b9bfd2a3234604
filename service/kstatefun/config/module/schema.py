"""The YAML shape of each component kind: pydantic models with StateFun's camelCase keys as
aliases, refusing unknown fields."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from kstatefun.config.module.parsers import (
    DurationMs,
    FunctionType,
    NonEmpty,
    Port,
    PositiveNumber,
    Properties,
    Timeout,
    TypeName,
    as_entry_list,
    as_list,
    check_function_pattern,
    check_function_ref,
    check_playground_topic,
    check_url_template,
    fail,
    offset_entry,
    one_of,
    parse_date_ms,
    unique_offsets,
    unique_refs,
)
from kstatefun.config.module.specs import (
    AUTO_OFFSET_RESETS,
    DEFAULT_MAX_NUM_BATCH_REQUESTS,
    DELIVERY_SEMANTICS,
    KIND_EGRESS,
    KIND_EMBEDDED,
    KIND_HTTP_V1,
    KIND_HTTP_V2,
    KIND_INGRESS,
    KIND_PLAYGROUND_EGRESS,
    KIND_PLAYGROUND_INGRESS,
    STARTUP_POSITIONS,
    TRANSPORT_ASYNC,
    TRANSPORT_OKHTTP,
)


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class TopicSchema(Schema):
    topic: NonEmpty
    value_type: TypeName = Field(alias="valueType")
    targets: list[FunctionType]

    @model_validator(mode="after")
    def _has_targets(self) -> TopicSchema:
        if not self.targets:
            fail(
                f"topic '{self.topic}' has no targets, so every record would be dropped; "
                "list at least one function type, e.g. 'targets: [example/greeter]'"
            )
        return self


class StartupPositionSchema(Schema):
    type: Annotated[str, one_of(STARTUP_POSITIONS)]
    offsets: (
        Annotated[
            list[Annotated[tuple[str, int, int], BeforeValidator(offset_entry)]],
            BeforeValidator(as_entry_list),
            AfterValidator(unique_offsets),
        ]
        | None
    ) = None
    date: Annotated[int, BeforeValidator(parse_date_ms)] | None = None

    @model_validator(mode="after")
    def _fields_match_type(self) -> StartupPositionSchema:
        if self.type == "specific-offsets" and not self.offsets:
            fail(
                "type 'specific-offsets' needs 'offsets', e.g. "
                "'offsets: [{greeter-names/0: 42}, {greeter-names/1: 7}]'"
            )
        if self.type == "date" and self.date is None:
            fail("type 'date' needs 'date', e.g. \"date: '2020-02-01 04:15:00.000 +0000'\"")
        if self.offsets is not None and self.type != "specific-offsets":
            fail(f"'offsets' only applies to type 'specific-offsets', not '{self.type}'")
        if self.date is not None and self.type != "date":
            fail(f"'date' only applies to type 'date', not '{self.type}'")
        return self


class IngressSchema(Schema):
    id: TypeName
    address: NonEmpty | None = None
    consumer_group_id: NonEmpty | None = Field(None, alias="consumerGroupId")
    topics: list[TopicSchema]
    startup_position: StartupPositionSchema | None = Field(None, alias="startupPosition")
    auto_offset_reset: Annotated[str, one_of(AUTO_OFFSET_RESETS, ignore_case=True)] = Field(
        "latest", alias="autoOffsetResetPosition"
    )
    properties: Properties | None = None

    @model_validator(mode="after")
    def _has_topics(self) -> IngressSchema:
        if not self.topics:
            fail(
                "an ingress needs at least one entry in 'topics', e.g. "
                "'topics: [{topic: names, valueType: example/Person, targets: [example/greeter]}]'"
            )
        return self


class DeliverySemanticSchema(Schema):
    type: Annotated[str, one_of(DELIVERY_SEMANTICS)]
    transaction_timeout: Timeout | None = Field(None, alias="transactionTimeout")
    transaction_timeout_millis: PositiveNumber | None = Field(
        None, alias="transactionTimeoutMillis"
    )


class EgressSchema(Schema):
    id: TypeName
    address: NonEmpty | None = None
    delivery_semantic: DeliverySemanticSchema | None = Field(None, alias="deliverySemantic")
    properties: Properties | None = None


class TimeoutsSchema(Schema):
    call: Timeout | None = None
    connect: Timeout | None = None
    read: Timeout | None = None
    write: Timeout | None = None


_ASYNC_ONLY: Final = (
    "call",
    "connect",
    "pool_ttl",
    "pool_size",
    "payload_max_bytes",
    "trust_cacerts",
    "client_cert",
    "client_key",
    "client_key_password",
)


class TransportSchema(Schema):
    type: Annotated[str, one_of((TRANSPORT_ASYNC, TRANSPORT_OKHTTP))] = TRANSPORT_ASYNC
    call: Timeout | None = None
    connect: Timeout | None = None
    pool_ttl: DurationMs | None = None
    pool_size: PositiveNumber | None = None
    payload_max_bytes: PositiveNumber | None = None
    trust_cacerts: NonEmpty | None = None
    client_cert: NonEmpty | None = None
    client_key: NonEmpty | None = None
    client_key_password: NonEmpty | None = None
    timeouts: TimeoutsSchema | None = None

    @model_validator(mode="after")
    def _okhttp_fields(self) -> TransportSchema:
        if self.type == TRANSPORT_OKHTTP:
            given = [name for name in _ASYNC_ONLY if getattr(self, name) is not None]
            if given:
                verb = "applies" if len(given) == 1 else "apply"
                fail(
                    f"{', '.join(given)} only {verb} to type '{TRANSPORT_ASYNC}'; for "
                    f"'{TRANSPORT_OKHTTP}' set them under 'timeouts', "
                    "e.g. 'timeouts: {call: 1 min, connect: 10s}'"
                )
        return self


class HttpSchema(Schema):
    functions: Annotated[str, AfterValidator(check_function_pattern)]
    url_path_template: Annotated[str, AfterValidator(check_url_template)] = Field(
        alias="urlPathTemplate"
    )
    max_num_batch_requests: PositiveNumber = Field(
        DEFAULT_MAX_NUM_BATCH_REQUESTS, alias="maxNumBatchRequests"
    )


class HttpV2Schema(HttpSchema):
    transport: TransportSchema | None = None


class HttpV1Schema(HttpSchema):
    timeouts: TimeoutsSchema | None = None


class EmbeddedSchema(Schema):
    functions: Annotated[
        list[Annotated[str, AfterValidator(check_function_ref)]],
        BeforeValidator(as_list),
        AfterValidator(unique_refs),
    ]

    @model_validator(mode="after")
    def _has_functions(self) -> EmbeddedSchema:
        if not self.functions:
            fail("list at least one StatefulFunctions object, e.g. [examples.greeter:functions]")
        return self


class PlaygroundIngressSchema(Schema):
    port: Port


class PlaygroundEgressSchema(Schema):
    port: Port
    topics: list[Annotated[str, AfterValidator(check_playground_topic)]]

    @model_validator(mode="after")
    def _has_topics(self) -> PlaygroundEgressSchema:
        if not self.topics:
            fail("list at least one topic that functions send to, e.g. 'topics: [greetings]'")
        repeated = sorted({t for t in self.topics if self.topics.count(t) > 1})
        if repeated:
            fail(f"topic '{repeated[0]}' is listed twice; list each once")
        return self


SCHEMAS: Final[dict[str, type[Schema]]] = {
    KIND_INGRESS: IngressSchema,
    KIND_EGRESS: EgressSchema,
    KIND_HTTP_V2: HttpV2Schema,
    KIND_HTTP_V1: HttpV1Schema,
    KIND_EMBEDDED: EmbeddedSchema,
    KIND_PLAYGROUND_INGRESS: PlaygroundIngressSchema,
    KIND_PLAYGROUND_EGRESS: PlaygroundEgressSchema,
}
