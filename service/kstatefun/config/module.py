"""module.yaml: StateFun 3.x component documents, validated into immutable specs.

A module file is a multi-document YAML stream; each document is ``kind: <typename>`` plus a
``spec:`` mapping. kstatefun reads the StateFun kinds unchanged:

- ``io.statefun.kafka.v1/ingress`` -> :class:`KafkaIngress`
- ``io.statefun.kafka.v1/egress`` -> :class:`KafkaEgress`
- ``io.statefun.endpoints.v2/http`` and ``.v1/http`` -> :class:`HttpEndpoint`

and adds its own, in its own namespace:

- ``io.kstatefun.v1/embedded`` -> ``ModuleSpec.embedded`` (``"pkg.module:attribute"`` strings
  naming ``StatefulFunctions`` objects to import).

Where StateFun's YAML binders silently ignore unknown fields or crash on missing ones, this
loader rejects the file with one :class:`ModuleError` that names the file, the document, the
line, the field path and the fix: a typo that silently does nothing costs more than a refusal.
Documents that StateFun accepts keep their meaning here; the few deliberate differences are
listed in ``config/settings.md``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, NoReturn, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kstatefun.errors import ConfigError
from kstatefun.model import split_typename

__all__ = [
    "KIND_EMBEDDED",
    "KIND_HTTP_V1",
    "KIND_HTTP_V2",
    "KIND_INGRESS",
    "KIND_EGRESS",
    "SUPPORTED_KINDS",
    "TRANSPORT_ASYNC",
    "TRANSPORT_OKHTTP",
    "HttpEndpoint",
    "HttpTransport",
    "IngressTopic",
    "KafkaEgress",
    "KafkaIngress",
    "PlaygroundEgress",
    "PlaygroundIngress",
    "ModuleError",
    "ModuleSpec",
    "StartupPosition",
    "load_module",
    "parse_duration_ms",
    "parse_module",
]

KIND_INGRESS: Final = "io.statefun.kafka.v1/ingress"
KIND_EGRESS: Final = "io.statefun.kafka.v1/egress"
KIND_HTTP_V2: Final = "io.statefun.endpoints.v2/http"
KIND_HTTP_V1: Final = "io.statefun.endpoints.v1/http"
KIND_EMBEDDED: Final = "io.kstatefun.v1/embedded"
KIND_PLAYGROUND_INGRESS: Final = "io.statefun.playground.v1/ingress"
KIND_PLAYGROUND_EGRESS: Final = "io.statefun.playground.v1/egress"
SUPPORTED_KINDS: Final = (
    KIND_HTTP_V2,
    KIND_HTTP_V1,
    KIND_INGRESS,
    KIND_EGRESS,
    KIND_EMBEDDED,
    KIND_PLAYGROUND_INGRESS,
    KIND_PLAYGROUND_EGRESS,
)
# What StateFun's playground fixes: the egress id functions send to and its record type.
PLAYGROUND_EGRESS_ID: Final = "io.statefun.playground/egress"
PLAYGROUND_EGRESS_RECORD: Final = "io.statefun.playground/EgressRecord"

TRANSPORT_ASYNC: Final = "io.statefun.transports.v1/async"
TRANSPORT_OKHTTP: Final = "io.statefun.transports.v1/okhttp"

STARTUP_POSITIONS: Final = ("group-offsets", "earliest", "latest", "specific-offsets", "date")
AUTO_OFFSET_RESETS: Final = ("earliest", "latest")
DELIVERY_SEMANTICS: Final = ("exactly-once", "at-least-once", "none")
URL_SCHEMES: Final = ("http", "https", "http+unix", "https+unix")

# StateFun's own defaults (statefun-flink 3.3 sources), kept so a file means the same here.
DEFAULT_MAX_NUM_BATCH_REQUESTS: Final = 1000
_ASYNC_CALL_MS: Final = 120_000
_ASYNC_CONNECT_MS: Final = 20_000
_TIMEOUTS_CALL_MS: Final = 60_000
_TIMEOUTS_CONNECT_MS: Final = 10_000
_TIMEOUTS_READ_MS: Final = 10_000
_TIMEOUTS_WRITE_MS: Final = 10_000
_POOL_TTL_MS: Final = 15_000
_POOL_SIZE: Final = 1024
_PAYLOAD_MAX_BYTES: Final = 32 * 1024 * 1024

_TYPENAME_FIX: Final = "expected 'namespace/name', e.g. 'example/greeter'"


class ModuleError(ConfigError):
    """A module.yaml file is invalid; the message lists every problem found in it."""


def _empty_mapping() -> Mapping[Any, Any]:
    return MappingProxyType({})


# --------------------------------------------------------------------------------------------
# Public results: plain immutable values the runtime consumes.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartupPosition:
    """Where an ingress starts reading a partition that has no committed offset yet.

    ``kind`` is one of ``group-offsets | earliest | latest | specific-offsets | date``;
    ``offsets`` maps ``(topic, partition)`` to an offset (``specific-offsets`` only);
    ``date_ms`` is epoch milliseconds (``date`` only).
    """

    kind: str = "latest"
    offsets: Mapping[tuple[str, int], int] = field(default_factory=_empty_mapping)
    date_ms: int | None = None


@dataclass(frozen=True, slots=True)
class IngressTopic:
    """One topic of an ingress: its records become ``value_type`` messages to each target."""

    topic: str
    value_type: str
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KafkaIngress:
    """``io.statefun.kafka.v1/ingress``: record key = target id, value bytes passed through."""

    id: str
    topics: tuple[IngressTopic, ...]
    address: str | None = None
    consumer_group_id: str | None = None
    startup_position: StartupPosition = StartupPosition()
    auto_offset_reset: str = "latest"
    properties: Mapping[str, str] = field(default_factory=_empty_mapping)

    def topic(self, name: str) -> IngressTopic | None:
        """The routing of topic ``name``, or ``None`` when this ingress does not read it."""
        return next((t for t in self.topics if t.topic == name), None)


@dataclass(frozen=True, slots=True)
class KafkaEgress:
    """``io.statefun.kafka.v1/egress``: functions address it by ``id``; records name their topic.

    ``transaction_timeout_ms`` is set only when the file gives one (``transactionTimeout`` or
    the deprecated ``transactionTimeoutMillis``); ``None`` means "use the worker's".
    """

    id: str
    address: str | None = None
    delivery_semantic: str = "at-least-once"
    transaction_timeout_ms: int | None = None
    properties: Mapping[str, str] = field(default_factory=_empty_mapping)


@dataclass(frozen=True, slots=True)
class PlaygroundIngress:
    """``io.statefun.playground.v1/ingress``: an HTTP server on ``port`` that takes a request
    to ``/{namespace}/{type}/{id}`` as a message to that address (kstatefun/playground/)."""

    port: int


@dataclass(frozen=True, slots=True)
class PlaygroundEgress:
    """``io.statefun.playground.v1/egress``: functions send ``EgressRecord``s (topic, payload)
    to the egress ``io.statefun.playground/egress``; an HTTP server on ``port`` hands them out
    one ``GET /{topic}`` at a time."""

    port: int
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HttpTransport:
    """Resolved transport settings of an HTTP endpoint (all durations in milliseconds)."""

    type: str = TRANSPORT_ASYNC
    call_ms: int = _ASYNC_CALL_MS
    connect_ms: int = _ASYNC_CONNECT_MS
    read_ms: int = _TIMEOUTS_READ_MS
    write_ms: int = _TIMEOUTS_WRITE_MS
    pool_ttl_ms: int = _POOL_TTL_MS
    pool_size: int = _POOL_SIZE
    payload_max_bytes: int = _PAYLOAD_MAX_BYTES
    trust_cacerts: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    client_key_password: str | None = None


@dataclass(frozen=True, slots=True)
class HttpEndpoint:
    """``io.statefun.endpoints.v{1,2}/http``: where remote functions of a type or namespace live.

    ``functions`` is ``namespace/name`` or ``namespace/*``.
    """

    functions: str
    url_path_template: str
    max_num_batch_requests: int = DEFAULT_MAX_NUM_BATCH_REQUESTS
    transport: HttpTransport = HttpTransport()
    kind: str = KIND_HTTP_V2

    @property
    def namespace(self) -> str:
        return self.functions.partition("/")[0]

    @property
    def is_wildcard(self) -> bool:
        return self.functions.endswith("/*")

    def matches(self, typename: str) -> bool:
        """Whether this endpoint serves the function type ``typename``."""
        if self.is_wildcard:
            # as split_typename reads it: the namespace is everything before the last '/'
            namespace, sep, name = typename.rpartition("/")
            return bool(sep and name) and namespace == self.namespace
        return typename == self.functions

    def url_for(self, typename: str) -> str:
        """The URL to call for ``typename``: ``{function.name}`` replaced by its name part."""
        _, name = split_typename(typename)
        return self.url_path_template.replace("{function.name}", name)


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """Everything one module file declares, in file order."""

    ingresses: tuple[KafkaIngress, ...] = ()
    egresses: tuple[KafkaEgress, ...] = ()
    endpoints: tuple[HttpEndpoint, ...] = ()
    embedded: tuple[str, ...] = ()
    source: str = "<string>"
    playground_ingress: PlaygroundIngress | None = None
    playground_egress: PlaygroundEgress | None = None

    def ingress(self, typename: str) -> KafkaIngress | None:
        return next((i for i in self.ingresses if i.id == typename), None)

    def egress(self, typename: str) -> KafkaEgress | None:
        return next((e for e in self.egresses if e.id == typename), None)

    def endpoint_for(self, typename: str) -> HttpEndpoint | None:
        """The endpoint serving ``typename``: an exact ``ns/name`` beats a ``ns/*`` wildcard."""
        exact = next((e for e in self.endpoints if e.functions == typename), None)
        if exact is not None:
            return exact
        return next((e for e in self.endpoints if e.is_wildcard and e.matches(typename)), None)


# --------------------------------------------------------------------------------------------
# Scalar parsers (StateFun / Flink formats)
# --------------------------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    # The message travels in the context so braces such as {function.name} stay literal.
    raise PydanticCustomError("kstatefun", "{message}", {"message": message})


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _text(value: Any) -> str | None:
    """A scalar as StateFun's Jackson ``asText()`` renders it; ``None`` for non-scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _check_typename(value: str) -> str:
    if value.count("/") != 1 or any(c.isspace() for c in value):
        _fail(f"'{value}' is not a valid type name; {_TYPENAME_FIX}")
    try:
        split_typename(value)
    except ConfigError:
        _fail(f"'{value}' is not a valid type name; {_TYPENAME_FIX}")
    return value


def _check_function_type(value: str) -> str:
    _check_typename(value)
    if "*" in value:
        _fail(
            f"'{value}' is a wildcard, but a target must name one function type, "
            "e.g. 'example/greeter' (wildcards belong in an endpoint's 'functions')"
        )
    return value


def _check_function_pattern(value: str) -> str:
    _check_typename(value)
    namespace, name = value.split("/")
    if "*" in namespace or ("*" in name and name != "*"):
        _fail(
            f"'{value}' is not a valid function pattern; use 'namespace/name' for one function "
            "type or 'namespace/*' for all types in a namespace, e.g. 'example/*'"
        )
    return value


def _check_nonempty(value: str) -> str:
    if not value.strip():
        _fail("must not be empty")
    return value


def _whole_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        _fail(f"expected a whole number, got {_describe(value)}")
    if isinstance(value, str):
        if not re.fullmatch(r"\s*\d+\s*", value):
            _fail(f"expected a whole number, got {value!r}")
        return int(value)
    return value


def _positive(value: int) -> int:
    if value < 1:
        _fail(f"must be at least 1, got {value}")
    return value


def _one_of(allowed: tuple[str, ...], *, ignore_case: bool = False) -> AfterValidator:
    def check(value: str) -> str:
        candidate = value.lower() if ignore_case else value
        if candidate in allowed:
            return candidate
        close = difflib.get_close_matches(candidate, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        _fail(f"'{value}' is not one of: {', '.join(allowed)}{hint}")

    return AfterValidator(check)


_NANOS_PER_UNIT: Final = {
    "d": 86_400_000_000_000,
    "h": 3_600_000_000_000,
    "min": 60_000_000_000,
    "s": 1_000_000_000,
    "ms": 1_000_000,
    "µs": 1_000,
    "ns": 1,
}
# Flink TimeUtils labels, plural forms included; a bare number means milliseconds.
_DURATION_LABELS: Final = {
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("h", "hour", "hours"), "h"),
    **dict.fromkeys(("m", "min", "minute", "minutes"), "min"),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("ms", "milli", "millis", "millisecond", "milliseconds"), "ms"),
    **dict.fromkeys(("µs", "micro", "micros", "microsecond", "microseconds"), "µs"),
    **dict.fromkeys(("ns", "nano", "nanos", "nanosecond", "nanoseconds"), "ns"),
}
_DURATION_RE: Final = re.compile(r"(\d+)\s*(\D*?)")
_DURATION_FIX: Final = "write a number and a unit, e.g. '10s', '1 min', '100ms', '2h'"


def parse_duration_ms(value: str | int) -> int:
    """Parse a StateFun/Flink duration (``15min``, ``10 s``, ``100ms``, ``2m``) to milliseconds.

    A bare number is milliseconds, as in Flink's ``TimeUtils.parseDuration``; sub-millisecond
    remainders are truncated. Raises :class:`ConfigError` naming the accepted units otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"expected a duration, got {_describe(value)}; {_DURATION_FIX}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"duration {value} is negative; {_DURATION_FIX}")
        return value
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None:
        raise ConfigError(f"'{value}' is not a duration; {_DURATION_FIX}")
    number, label = int(match.group(1)), match.group(2).strip().lower()
    if not label:
        return number
    unit = _DURATION_LABELS.get(label)
    if unit is None:
        units = "d, h, min (or m), s, ms, µs, ns"
        raise ConfigError(f"'{value}' has an unknown time unit '{label}'; use one of: {units}")
    return number * _NANOS_PER_UNIT[unit] // 1_000_000


def _duration(value: Any) -> int:
    try:
        return parse_duration_ms(value)
    except ConfigError as exc:
        _fail(str(exc))


def _nonzero_duration(value: int) -> int:
    if value == 0:
        _fail("a timeout must be longer than 0, e.g. '10s'")
    return value


_DATE_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)"
)
_DATE_FIX: Final = (
    "use StateFun's format 'yyyy-MM-dd HH:mm:ss.SSS Z', e.g. '2020-02-01 04:15:00.000 +0000'"
)


def _parse_date_ms(value: Any) -> int:
    text = _text(value)
    match = _DATE_RE.fullmatch(text.strip()) if text is not None else None
    if text is None or match is None:
        _fail(f"{_describe(value)} is not a date; {_DATE_FIX}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7) or "0", match.group(8)
    if offset == "Z":
        tz = UTC
    else:
        digits = offset[1:].replace(":", "").ljust(4, "0")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = timezone(delta if offset[0] == "+" else -delta)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        _fail(f"'{text}' is not a valid date ({exc}); {_DATE_FIX}")
    millis = int(fraction.ljust(9, "0")[:3])
    return int(moment.timestamp()) * 1000 + millis


def _property_entry(value: Any) -> tuple[str, str]:
    if not isinstance(value, Mapping) or len(value) != 1:
        _fail(
            f"expected a single-key map such as '- max.poll.records: 500', got {_describe(value)}"
        )
    ((key, raw),) = value.items()
    text = _text(raw)
    if text is None:
        _fail(f"property '{key}' needs a plain value (text or number), got {_describe(raw)}")
    return str(key), text


def _as_entry_list(value: Any) -> Any:
    # StateFun writes properties and offsets as a list of single-key maps; a plain mapping is
    # accepted too because it is what YAML users reach for first.
    if isinstance(value, Mapping):
        return [{k: v} for k, v in value.items()]
    if value is not None and not isinstance(value, list):
        _fail(f"expected a list of single-key maps, got {_describe(value)}")
    return value


def _offset_entry(value: Any) -> tuple[str, int, int]:
    fix = "write '- <topic>/<partition>: <offset>', e.g. '- greeter-names/0: 42'"
    if not isinstance(value, Mapping) or len(value) != 1:
        _fail(f"expected a single-key map; {fix}")
    ((key, raw),) = value.items()
    topic, sep, partition = str(key).rpartition("/")
    if not sep or not topic or not partition.isdigit():
        _fail(f"'{key}' is not '<topic>/<partition>'; {fix}")
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        _fail(f"offset for '{key}' must be a whole number >= 0, got {_describe(raw)}; {fix}")
    return topic, int(partition), raw


def _unique_keys(entries: list[tuple[str, Any]] | None) -> list[tuple[str, Any]] | None:
    seen: set[str] = set()
    for key, *_ in entries or ():
        if key in seen:
            _fail(f"'{key}' is set twice; keep one entry")
        seen.add(key)
    return entries


def _unique_offsets(entries: list[tuple[str, int, int]] | None) -> list[tuple[str, int, int]]:
    seen: set[tuple[str, int]] = set()
    for topic, partition, _ in entries or ():
        if (topic, partition) in seen:
            _fail(f"'{topic}/{partition}' is listed twice; keep one offset per partition")
        seen.add((topic, partition))
    return entries or []


def _check_url_template(value: str) -> str:
    parts = urlsplit(value)
    example = "e.g. 'http://functions:8000/{function.name}'"
    if parts.scheme not in URL_SCHEMES:
        _fail(
            f"'{value}' must start with one of {', '.join(s + '://' for s in URL_SCHEMES)}; "
            f"{example}"
        )
    if parts.scheme in ("http", "https") and not parts.netloc:
        _fail(f"'{value}' has no host; {example}")
    try:
        parts.port  # noqa: B018 - parsed on access; raises for a port that is not 0-65535
    except ValueError as exc:
        _fail(f"'{value}' has an invalid port ({exc}); {example}")
    return value


def _check_function_ref(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", value):
        _fail(
            f"'{value}' is not 'package.module:attribute'; name the StatefulFunctions object to "
            "load, e.g. 'examples.greeter:functions'"
        )
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _unique_refs(refs: list[str]) -> list[str]:
    for i, ref in enumerate(refs):
        if ref in refs[:i]:
            _fail(f"'{ref}' is listed twice; list it once")
    return refs


TypeName = Annotated[str, AfterValidator(_check_typename)]
FunctionType = Annotated[str, AfterValidator(_check_function_type)]
DurationMs = Annotated[int, BeforeValidator(_duration)]
Timeout = Annotated[int, BeforeValidator(_duration), AfterValidator(_nonzero_duration)]
PositiveNumber = Annotated[int, BeforeValidator(_whole_number), AfterValidator(_positive)]
NonEmpty = Annotated[str, AfterValidator(_check_nonempty)]
Properties = Annotated[
    list[Annotated[tuple[str, str], BeforeValidator(_property_entry)]],
    BeforeValidator(_as_entry_list),
    AfterValidator(_unique_keys),
]


# --------------------------------------------------------------------------------------------
# Schemas: the YAML shape, StateFun's camelCase keys as aliases.
# --------------------------------------------------------------------------------------------


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class _TopicSchema(_Schema):
    topic: NonEmpty
    value_type: TypeName = Field(alias="valueType")
    targets: list[FunctionType]

    @model_validator(mode="after")
    def _has_targets(self) -> _TopicSchema:
        if not self.targets:
            _fail(
                f"topic '{self.topic}' has no targets, so every record would be dropped; "
                "list at least one function type, e.g. 'targets: [example/greeter]'"
            )
        return self


class _StartupPositionSchema(_Schema):
    type: Annotated[str, _one_of(STARTUP_POSITIONS)]
    offsets: (
        Annotated[
            list[Annotated[tuple[str, int, int], BeforeValidator(_offset_entry)]],
            BeforeValidator(_as_entry_list),
            AfterValidator(_unique_offsets),
        ]
        | None
    ) = None
    date: Annotated[int, BeforeValidator(_parse_date_ms)] | None = None

    @model_validator(mode="after")
    def _fields_match_type(self) -> _StartupPositionSchema:
        if self.type == "specific-offsets" and not self.offsets:
            _fail(
                "type 'specific-offsets' needs 'offsets', e.g. "
                "'offsets: [{greeter-names/0: 42}, {greeter-names/1: 7}]'"
            )
        if self.type == "date" and self.date is None:
            _fail("type 'date' needs 'date', e.g. \"date: '2020-02-01 04:15:00.000 +0000'\"")
        if self.offsets is not None and self.type != "specific-offsets":
            _fail(f"'offsets' only applies to type 'specific-offsets', not '{self.type}'")
        if self.date is not None and self.type != "date":
            _fail(f"'date' only applies to type 'date', not '{self.type}'")
        return self


class _IngressSchema(_Schema):
    id: TypeName
    address: NonEmpty | None = None
    consumer_group_id: NonEmpty | None = Field(None, alias="consumerGroupId")
    topics: list[_TopicSchema]
    startup_position: _StartupPositionSchema | None = Field(None, alias="startupPosition")
    auto_offset_reset: Annotated[str, _one_of(AUTO_OFFSET_RESETS, ignore_case=True)] = Field(
        "latest", alias="autoOffsetResetPosition"
    )
    properties: Properties | None = None

    @model_validator(mode="after")
    def _has_topics(self) -> _IngressSchema:
        if not self.topics:
            _fail(
                "an ingress needs at least one entry in 'topics', e.g. "
                "'topics: [{topic: names, valueType: example/Person, targets: [example/greeter]}]'"
            )
        return self


class _DeliverySemanticSchema(_Schema):
    type: Annotated[str, _one_of(DELIVERY_SEMANTICS)]
    transaction_timeout: Timeout | None = Field(None, alias="transactionTimeout")
    transaction_timeout_millis: PositiveNumber | None = Field(
        None, alias="transactionTimeoutMillis"
    )


class _EgressSchema(_Schema):
    id: TypeName
    address: NonEmpty | None = None
    delivery_semantic: _DeliverySemanticSchema | None = Field(None, alias="deliverySemantic")
    properties: Properties | None = None


class _TimeoutsSchema(_Schema):
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


class _TransportSchema(_Schema):
    type: Annotated[str, _one_of((TRANSPORT_ASYNC, TRANSPORT_OKHTTP))] = TRANSPORT_ASYNC
    call: Timeout | None = None
    connect: Timeout | None = None
    pool_ttl: DurationMs | None = None
    pool_size: PositiveNumber | None = None
    payload_max_bytes: PositiveNumber | None = None
    trust_cacerts: NonEmpty | None = None
    client_cert: NonEmpty | None = None
    client_key: NonEmpty | None = None
    client_key_password: NonEmpty | None = None
    timeouts: _TimeoutsSchema | None = None

    @model_validator(mode="after")
    def _okhttp_fields(self) -> _TransportSchema:
        if self.type == TRANSPORT_OKHTTP:
            given = [name for name in _ASYNC_ONLY if getattr(self, name) is not None]
            if given:
                verb = "applies" if len(given) == 1 else "apply"
                _fail(
                    f"{', '.join(given)} only {verb} to type '{TRANSPORT_ASYNC}'; for "
                    f"'{TRANSPORT_OKHTTP}' set them under 'timeouts', "
                    "e.g. 'timeouts: {call: 1 min, connect: 10s}'"
                )
        return self


class _HttpSchema(_Schema):
    functions: Annotated[str, AfterValidator(_check_function_pattern)]
    url_path_template: Annotated[str, AfterValidator(_check_url_template)] = Field(
        alias="urlPathTemplate"
    )
    max_num_batch_requests: PositiveNumber = Field(
        DEFAULT_MAX_NUM_BATCH_REQUESTS, alias="maxNumBatchRequests"
    )


class _HttpV2Schema(_HttpSchema):
    transport: _TransportSchema | None = None


class _HttpV1Schema(_HttpSchema):
    timeouts: _TimeoutsSchema | None = None


class _EmbeddedSchema(_Schema):
    functions: Annotated[
        list[Annotated[str, AfterValidator(_check_function_ref)]],
        BeforeValidator(_as_list),
        AfterValidator(_unique_refs),
    ]

    @model_validator(mode="after")
    def _has_functions(self) -> _EmbeddedSchema:
        if not self.functions:
            _fail("list at least one StatefulFunctions object, e.g. [examples.greeter:functions]")
        return self


def _port(value: int) -> int:
    if not 1 <= value <= 65_535:
        _fail(f"expected a TCP port from 1 to 65535, got {value}")
    return value


def _check_playground_topic(value: str) -> str:
    # it names a Kafka topic of the application (kafka/topics.py)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", value):
        _fail(
            f"'{value}' is not a valid playground topic; use letters, digits, '.', '_' and '-' "
            "(at most 200), e.g. 'greetings'"
        )
    return value


Port = Annotated[int, BeforeValidator(_whole_number), AfterValidator(_port)]


class _PlaygroundIngressSchema(_Schema):
    port: Port


class _PlaygroundEgressSchema(_Schema):
    port: Port
    topics: list[Annotated[str, AfterValidator(_check_playground_topic)]]

    @model_validator(mode="after")
    def _has_topics(self) -> _PlaygroundEgressSchema:
        if not self.topics:
            _fail("list at least one topic that functions send to, e.g. 'topics: [greetings]'")
        repeated = sorted({t for t in self.topics if self.topics.count(t) > 1})
        if repeated:
            _fail(f"topic '{repeated[0]}' is listed twice; list each once")
        return self


_SCHEMAS: Final[dict[str, type[_Schema]]] = {
    KIND_INGRESS: _IngressSchema,
    KIND_EGRESS: _EgressSchema,
    KIND_HTTP_V2: _HttpV2Schema,
    KIND_HTTP_V1: _HttpV1Schema,
    KIND_EMBEDDED: _EmbeddedSchema,
    KIND_PLAYGROUND_INGRESS: _PlaygroundIngressSchema,
    KIND_PLAYGROUND_EGRESS: _PlaygroundEgressSchema,
}


# --------------------------------------------------------------------------------------------
# Schema -> public values
# --------------------------------------------------------------------------------------------


def _properties(entries: list[tuple[str, str]] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(entries or ()))


def _ingress(spec: _IngressSchema) -> KafkaIngress:
    position = StartupPosition()
    if spec.startup_position is not None:
        sp = spec.startup_position
        position = StartupPosition(
            kind=sp.type,
            offsets=MappingProxyType({(t, p): o for t, p, o in sp.offsets or ()}),
            date_ms=sp.date,
        )
    return KafkaIngress(
        id=spec.id,
        address=spec.address,
        consumer_group_id=spec.consumer_group_id,
        topics=tuple(IngressTopic(t.topic, t.value_type, tuple(t.targets)) for t in spec.topics),
        startup_position=position,
        auto_offset_reset=spec.auto_offset_reset,
        properties=_properties(spec.properties),
    )


def _egress(spec: _EgressSchema) -> KafkaEgress:
    ds = spec.delivery_semantic
    if ds is None:
        return KafkaEgress(
            id=spec.id, address=spec.address, properties=_properties(spec.properties)
        )
    # StateFun prefers the deprecated millis form when both are present.
    timeout = ds.transaction_timeout_millis or ds.transaction_timeout
    return KafkaEgress(
        id=spec.id,
        address=spec.address,
        delivery_semantic=ds.type,
        transaction_timeout_ms=timeout if ds.type == "exactly-once" else None,
        properties=_properties(spec.properties),
    )


def _transport(
    kind: str, t: _TransportSchema | None, timeouts: _TimeoutsSchema | None
) -> HttpTransport:
    # v1 endpoints always use OkHttp, configured by spec.timeouts; v2 defaults to the async
    # transport (the StateFun 3.3 code default), configured by the fields of spec.transport.
    if kind == KIND_HTTP_V1 or (t is not None and t.type == TRANSPORT_OKHTTP):
        tos = timeouts if kind == KIND_HTTP_V1 else (t.timeouts if t else None)
        tos = tos or _TimeoutsSchema()
        return HttpTransport(
            type=TRANSPORT_OKHTTP,
            call_ms=tos.call or _TIMEOUTS_CALL_MS,
            connect_ms=tos.connect or _TIMEOUTS_CONNECT_MS,
            read_ms=tos.read or _TIMEOUTS_READ_MS,
            write_ms=tos.write or _TIMEOUTS_WRITE_MS,
        )
    t = t or _TransportSchema()
    # StateFun's async transport: a 'timeouts' object, when present, wins over call/connect
    # and brings its own defaults (1 min / 10 s).
    if t.timeouts is not None:
        call = t.timeouts.call or _TIMEOUTS_CALL_MS
        connect = t.timeouts.connect or _TIMEOUTS_CONNECT_MS
    else:
        call = t.call or _ASYNC_CALL_MS
        connect = t.connect or _ASYNC_CONNECT_MS
    tos = t.timeouts or _TimeoutsSchema()
    return HttpTransport(
        type=TRANSPORT_ASYNC,
        call_ms=call,
        connect_ms=connect,
        read_ms=tos.read or _TIMEOUTS_READ_MS,
        write_ms=tos.write or _TIMEOUTS_WRITE_MS,
        pool_ttl_ms=_POOL_TTL_MS if t.pool_ttl is None else t.pool_ttl,
        pool_size=t.pool_size or _POOL_SIZE,
        payload_max_bytes=t.payload_max_bytes or _PAYLOAD_MAX_BYTES,
        trust_cacerts=t.trust_cacerts,
        client_cert=t.client_cert,
        client_key=t.client_key,
        client_key_password=t.client_key_password,
    )


def _okhttp_timeouts_problem(transport: HttpTransport) -> str | None:
    if transport.type != TRANSPORT_OKHTTP:
        return None
    for name in ("connect", "read", "write"):
        if getattr(transport, f"{name}_ms") > transport.call_ms:
            return f"timeouts.{name} is longer than timeouts.call; make 'call' the longest timeout"
    return None


def _endpoint(kind: str, spec: _HttpV1Schema | _HttpV2Schema) -> HttpEndpoint:
    if isinstance(spec, _HttpV1Schema):
        transport = _transport(kind, None, spec.timeouts)
    else:
        transport = _transport(kind, spec.transport, None)
    return HttpEndpoint(
        functions=spec.functions,
        url_path_template=spec.url_path_template,
        max_num_batch_requests=spec.max_num_batch_requests,
        transport=transport,
        kind=kind,
    )


# --------------------------------------------------------------------------------------------
# YAML loading with line numbers
# --------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as text (StateFun parses ``date`` itself)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_Loc = tuple[str | int, ...]


@dataclass(slots=True)
class _Document:
    index: int
    data: Any
    line: int
    lines: dict[_Loc, int]
    duplicate_keys: list[tuple[_Loc, int]]


def _walk(
    node: yaml.Node, path: _Loc, doc: _Document, seen_nodes: set[int], depth: int = 0
) -> None:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    # An alias repeats a node that was walked already: walking it again would be exponential
    # in the nesting of aliases (a "billion laughs" document), and recursive ones never end.
    if depth > 64 or id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key = key_node.value
            if key in seen:
                doc.duplicate_keys.append((path + (key,), key_node.start_mark.line + 1))
            seen.add(key)
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), doc, seen_nodes, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), doc, seen_nodes, depth + 1)


def _read_documents(text: str, source: str) -> list[_Document]:
    documents: list[_Document] = []
    try:
        loader = _Loader(text)  # reads the text at once: a NUL or a control character raises
    except yaml.YAMLError as exc:
        raise ModuleError(f"{source}: invalid YAML: {exc}") from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            doc = _Document(len(documents) + 1, None, node.start_mark.line + 1, {}, [])
            _walk(node, (), doc, set())
            doc.data = loader.construct_document(node)
            documents.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ModuleError(
            f"{source}{where}: invalid YAML: {what}; fix the syntax "
            "(indentation, ':' after keys, '-' before list items, matching quotes)"
        ) from None
    except yaml.YAMLError as exc:
        raise ModuleError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:  # PyYAML composes and constructs recursively
        raise ModuleError(
            f"{source}: invalid YAML: collections nested too deeply to read; a module.yaml "
            "needs only a few levels"
        ) from None
    finally:
        loader.dispose()
    return documents


# --------------------------------------------------------------------------------------------
# Problems and their wording
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Problem:
    message: str
    doc: int | None = None
    kind: str | None = None
    id: str | None = None
    path: _Loc = ()
    line: int | None = None

    def render(self, source: str | None) -> str:
        parts = [source] if source else []
        if self.doc is not None:
            label = f"document {self.doc}"
            if self.kind:
                label += f" ({self.kind}" + (f" '{self.id}'" if self.id else "") + ")"
            parts.append(label)
        if self.line is not None:
            parts.append(f"line {self.line}")
        field = f"{_format_path(self.path)}: " if self.path else ""
        return f"{', '.join(parts)}: {field}{self.message}"


def _format_path(path: _Loc) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_MISSING_EXAMPLES: Final[dict[tuple[str, str], str]] = {
    (KIND_INGRESS, "id"): "id: example/names",
    (KIND_INGRESS, "topics"): (
        "topics: [{topic: names, valueType: example/Person, targets: [example/greeter]}]"
    ),
    ("topics", "topic"): "topic: names",
    ("topics", "valueType"): "valueType: example/Person",
    ("topics", "targets"): "targets: [example/greeter]",
    ("startupPosition", "type"): f"type: earliest (one of {', '.join(STARTUP_POSITIONS)})",
    (KIND_EGRESS, "id"): "id: example/greetings",
    ("deliverySemantic", "type"): f"type: exactly-once (one of {', '.join(DELIVERY_SEMANTICS)})",
    (KIND_HTTP_V2, "functions"): "functions: example/*",
    (KIND_HTTP_V1, "functions"): "functions: example/*",
    (KIND_HTTP_V2, "urlPathTemplate"): "urlPathTemplate: http://functions:8000/{function.name}",
    (KIND_HTTP_V1, "urlPathTemplate"): "urlPathTemplate: http://functions:8000/{function.name}",
    (KIND_EMBEDDED, "functions"): "functions: [examples.greeter:functions]",
}

_MISPLACED_HINTS: Final[dict[tuple[str, str], str]] = {
    (KIND_HTTP_V2, "timeouts"): (
        "in io.statefun.endpoints.v2/http, timeouts go under 'transport', "
        "e.g. 'transport: {timeouts: {call: 1 min}}'"
    ),
    (KIND_HTTP_V1, "transport"): (
        "'transport' needs kind io.statefun.endpoints.v2/http; v1 takes 'timeouts' directly"
    ),
}


def _field_key(name: str, info: Any) -> str:
    return info.alias or name


def _model_at(model: type[BaseModel], path: _Loc) -> type[BaseModel] | None:
    """The schema model that validates the mapping found at ``path`` below ``model``."""
    current: type[BaseModel] = model
    for part in path:
        if isinstance(part, int):
            continue
        info = next((f for n, f in current.model_fields.items() if _field_key(n, f) == part), None)
        found = _find_model(info.annotation) if info is not None else None
        if found is None:
            return None
        current = found
    return current


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _did_you_mean(word: str, known: list[str]) -> str:
    folded = {k.lower().replace("_", "").replace("-", ""): k for k in known}
    exact = folded.get(word.lower().replace("_", "").replace("-", ""))
    close = [exact] if exact else difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def _translate(kind: str, schema: type[_Schema], error: Any) -> tuple[_Loc, str]:
    loc: _Loc = tuple(error["loc"])
    kind_of, value = error["type"], error.get("input")
    if kind_of == "kstatefun":
        return loc, error["ctx"]["message"]
    if kind_of == "missing":
        parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), kind)
        example = _MISSING_EXAMPLES.get((parent, str(loc[-1])))
        fix = f"add it, e.g. '{example}'" if example else "add it"
        return loc, f"required field '{loc[-1]}' is missing; {fix}"
    if kind_of == "extra_forbidden":
        name = str(loc[-1])
        hint = _MISPLACED_HINTS.get((kind, name)) if len(loc) == 1 else None
        if hint:
            return loc, f"unknown field '{name}'; {hint}"
        model = _model_at(schema, loc[:-1])
        known = [_field_key(n, f) for n, f in model.model_fields.items()] if model else []
        listing = f"known fields: {', '.join(known)}" if known else "remove it"
        return loc, f"unknown field '{name}'; {_did_you_mean(name, known)}{listing}"
    if kind_of in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping of fields, got {_describe(value)}"
    if kind_of == "list_type":
        return loc, f"expected a list ('- item' lines or [a, b]), got {_describe(value)}"
    if kind_of in ("string_type", "str_type"):
        if loc == ("functions",) and kind in (KIND_HTTP_V1, KIND_HTTP_V2):
            return loc, (
                f"expected one pattern, got {_describe(value)}; an endpoint serves one "
                "'namespace/name' or 'namespace/*': write one endpoint document per pattern"
            )
        return loc, f"expected text, got {_describe(value)}"
    return loc, f"{error['msg']} (got {_describe(value)})"


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Builder:
    problems: list[_Problem]
    ingresses: list[tuple[KafkaIngress, _Document]]
    egresses: list[tuple[KafkaEgress, _Document]]
    endpoints: list[tuple[HttpEndpoint, _Document]]
    embedded: list[str]
    playground: dict[str, tuple[PlaygroundIngress | PlaygroundEgress, _Document]] = field(
        default_factory=dict
    )

    def problem(
        self, doc: _Document, message: str, path: _Loc = (), kind: str | None = None
    ) -> None:
        spec = doc.data.get("spec") if isinstance(doc.data, Mapping) else None
        raw_id = spec.get("id") if isinstance(spec, Mapping) else None
        line = _line_for(doc, path)
        self.problems.append(
            _Problem(
                message,
                doc=doc.index,
                kind=kind,
                id=raw_id if isinstance(raw_id, str) else None,
                path=path,
                line=line,
            )
        )

    def add(self, doc: _Document, documents: list[_Document]) -> None:
        data = doc.data
        raw_kind = data.get("kind") if isinstance(data, Mapping) else None
        for path, line in doc.duplicate_keys:
            self.problems.append(
                _Problem(
                    f"'{path[-1]}' appears twice in this mapping and YAML keeps only the last; "
                    "remove one",
                    doc=doc.index,
                    kind=raw_kind if raw_kind in _SCHEMAS else None,
                    path=path,
                    line=line,
                )
            )
        if not isinstance(data, Mapping):
            self.problem(
                doc,
                f"expected a component ('kind:' and 'spec:'), got {_describe(data)}; e.g. "
                f"'kind: {KIND_HTTP_V2}' followed by 'spec:'",
            )
            return
        if "version" in data and "module" in data and len(documents) == 1:
            self.problem(
                doc,
                "this is StateFun's legacy 'version: 3.0' module format, which kstatefun does "
                "not read; rewrite each endpoint, ingress and egress as its own document with "
                "'kind:' and 'spec:' (see config/module.yaml)",
            )
            return
        kind = data.get("kind")
        for key in data:
            if key not in ("kind", "spec"):
                hint = _did_you_mean(str(key), ["kind", "spec"])
                self.problem(
                    doc,
                    f"unknown top-level key '{key}'; {hint}a component has only 'kind' and 'spec'",
                    (str(key),),
                    kind if isinstance(kind, str) else None,
                )
        if kind is None:
            self.problem(
                doc,
                f"missing 'kind'; add one of: {', '.join(SUPPORTED_KINDS)}",
            )
            return
        if not isinstance(kind, str) or kind not in _SCHEMAS:
            # a list or mapping is named, not printed: aliases can make its text exponential
            text = _text(kind)
            shown = f"'{text}'" if text is not None else _describe(kind)
            close = difflib.get_close_matches(text or "", SUPPORTED_KINDS, n=1, cutoff=0.8)
            hint = f"did you mean '{close[0]}'? " if close else ""
            self.problem(
                doc,
                f"unknown kind {shown}; {hint}supported kinds: {', '.join(SUPPORTED_KINDS)}",
                ("kind",),
            )
            return
        if "spec" not in data or data["spec"] is None:
            self.problem(doc, "missing 'spec'; add the component's fields under 'spec:'", (), kind)
            return
        spec = data["spec"]
        if not isinstance(spec, Mapping):
            self.problem(
                doc, f"expected a mapping of fields, got {_describe(spec)}", ("spec",), kind
            )
            return
        schema = _SCHEMAS[kind]
        try:
            parsed = schema.model_validate(spec)
        except ValidationError as exc:
            for error in exc.errors():
                loc, message = _translate(kind, schema, error)
                self.problem(doc, message, ("spec", *loc), kind)
            return
        self._accept(kind, parsed, doc)

    def _accept(self, kind: str, parsed: _Schema, doc: _Document) -> None:
        if isinstance(parsed, _IngressSchema):
            self.ingresses.append((_ingress(parsed), doc))
        elif isinstance(parsed, _EgressSchema):
            self.egresses.append((_egress(parsed), doc))
        elif isinstance(parsed, _HttpV1Schema | _HttpV2Schema):
            endpoint = _endpoint(kind, parsed)
            problem = _okhttp_timeouts_problem(endpoint.transport)
            if problem:
                where = ("spec", "timeouts") if kind == KIND_HTTP_V1 else ("spec", "transport")
                self.problem(doc, problem, where, kind)
                return
            self.endpoints.append((endpoint, doc))
        elif isinstance(parsed, _PlaygroundIngressSchema | _PlaygroundEgressSchema):
            if kind in self.playground:
                first = self.playground[kind][1]
                message = (
                    f"{kind} is already declared by document {first.index}; StateFun's "
                    "playground has one of each, so declare it once"
                )
                self.problem(doc, message, (), kind)
                return
            component: PlaygroundIngress | PlaygroundEgress = (
                PlaygroundIngress(parsed.port)
                if isinstance(parsed, _PlaygroundIngressSchema)
                else PlaygroundEgress(parsed.port, tuple(parsed.topics))
            )
            self.playground[kind] = (component, doc)
        elif isinstance(parsed, _EmbeddedSchema):
            for ref in parsed.functions:
                if ref in self.embedded:
                    message = f"'{ref}' is already listed by an earlier document; list it once"
                    self.problem(doc, message, ("spec", "functions"), kind)
                else:
                    self.embedded.append(ref)

    def check_unique(self) -> None:
        _unique(self, self.ingresses, lambda i: i.id, "ingress id", ("spec", "id"), KIND_INGRESS)
        _unique(self, self.egresses, lambda e: e.id, "egress id", ("spec", "id"), KIND_EGRESS)
        _unique(
            self,
            self.endpoints,
            lambda e: e.functions,
            "endpoint for",
            ("spec", "functions"),
            None,
        )
        owner: dict[str, _Document] = {}
        for ingress, doc in self.ingresses:
            for i, topic in enumerate(ingress.topics):
                first = owner.get(topic.topic)
                if first is None:
                    owner[topic.topic] = doc
                    continue
                same = " earlier in this ingress" if first is doc else f" by document {first.index}"
                self.problem(
                    doc,
                    f"topic '{topic.topic}' is already read{same}; list it once and put all "
                    "of its target functions in that entry's 'targets'",
                    ("spec", "topics", i, "topic"),
                    KIND_INGRESS,
                )


def _unique(
    builder: _Builder,
    items: list[Any],
    key: Any,
    what: str,
    path: _Loc,
    kind: str | None,
) -> None:
    first: dict[str, _Document] = {}
    for item, doc in items:
        value = key(item)
        if value in first:
            builder.problem(
                doc,
                f"{what} '{value}' is already declared by document {first[value].index}; "
                "each must be unique",
                path,
                kind or item.kind,
            )
        else:
            first[value] = doc


def _line_for(doc: _Document, path: _Loc) -> int:
    for cut in range(len(path), -1, -1):
        line = doc.lines.get(path[:cut])
        if line is not None:
            return line
    return doc.line


def parse_module(text: str, source: str = "<string>") -> ModuleSpec:
    """Parse module.yaml ``text``; ``source`` names it in error messages.

    Raises one :class:`ModuleError` (a :class:`ConfigError`) listing every problem, each
    with its document, line, field path and fix.
    """
    documents = _read_documents(text, source)
    builder = _Builder([], [], [], [], [])
    for doc in documents:
        if doc.data is not None:  # StateFun skips empty documents, e.g. after a trailing '---'
            builder.add(doc, documents)
    builder.check_unique()
    if not any(d.data is not None for d in documents):
        builder.problems.append(
            _Problem(
                "declares no components; add at least one document, e.g. "
                f"'kind: {KIND_HTTP_V2}' with 'spec: {{functions: example/*, "
                "urlPathTemplate: http://functions:8000/{function.name}}'"
            )
        )
    playground_in = builder.playground.get(KIND_PLAYGROUND_INGRESS)
    playground_out = builder.playground.get(KIND_PLAYGROUND_EGRESS)
    if (
        playground_in is not None
        and playground_out is not None
        and playground_in[0].port == playground_out[0].port
    ):
        builder.problem(
            playground_out[1],
            f"port {playground_out[0].port} is also the playground ingress's (document "
            f"{playground_in[1].index}); give each its own, e.g. 8090 and 8091",
            ("spec", "port"),
            KIND_PLAYGROUND_EGRESS,
        )
    if builder.problems:
        raise ModuleError(_render(source, builder.problems))
    return ModuleSpec(
        ingresses=tuple(i for i, _ in builder.ingresses),
        egresses=tuple(e for e, _ in builder.egresses),
        endpoints=tuple(e for e, _ in builder.endpoints),
        embedded=tuple(builder.embedded),
        source=source,
        playground_ingress=playground_in[0] if playground_in else None,  # type: ignore[arg-type]
        playground_egress=playground_out[0] if playground_out else None,  # type: ignore[arg-type]
    )


def _render(source: str, problems: list[_Problem]) -> str:
    problems = sorted(problems, key=lambda p: (p.doc or 0, p.line or 0))
    if len(problems) == 1:
        return problems[0].render(source)
    lines = [f"{source} has {len(problems)} problems:"]
    lines += [f"  - {p.render(None)}" for p in problems]
    return "\n".join(lines)


def load_module(path: Path | str) -> ModuleSpec:
    """Read and parse the module file at ``path`` (see :func:`parse_module`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModuleError(
            f"module file '{path}' does not exist; point --module (KSTATEFUN_MODULE) at your "
            "module.yaml"
        ) from None
    except IsADirectoryError:
        raise ModuleError(
            f"module file '{path}' is a directory; name the YAML file itself"
        ) from None
    except UnicodeDecodeError as exc:
        raise ModuleError(f"module file '{path}' is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ModuleError(f"module file '{path}' cannot be read: {exc.strerror}") from None
    return parse_module(text, str(path))
