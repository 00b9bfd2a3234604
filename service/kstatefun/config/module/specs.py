"""The public results of module.yaml: the component kinds, StateFun's defaults, the immutable
specs the runtime consumes, and ModuleError."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from kstatefun.errors import ConfigError
from kstatefun.model import split_typename

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
ASYNC_CALL_MS: Final = 120_000
ASYNC_CONNECT_MS: Final = 20_000
TIMEOUTS_CALL_MS: Final = 60_000
TIMEOUTS_CONNECT_MS: Final = 10_000
TIMEOUTS_READ_MS: Final = 10_000
TIMEOUTS_WRITE_MS: Final = 10_000
POOL_TTL_MS: Final = 15_000
POOL_SIZE: Final = 1024
PAYLOAD_MAX_BYTES: Final = 32 * 1024 * 1024


class ModuleError(ConfigError):
    """A module.yaml file is invalid; the message lists every problem found in it."""


def _empty_mapping() -> Mapping[Any, Any]:
    return MappingProxyType({})


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
    call_ms: int = ASYNC_CALL_MS
    connect_ms: int = ASYNC_CONNECT_MS
    read_ms: int = TIMEOUTS_READ_MS
    write_ms: int = TIMEOUTS_WRITE_MS
    pool_ttl_ms: int = POOL_TTL_MS
    pool_size: int = POOL_SIZE
    payload_max_bytes: int = PAYLOAD_MAX_BYTES
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
