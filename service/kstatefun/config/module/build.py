"""Building a ModuleSpec from module.yaml: each validated document becomes its spec, checks
across documents (unique ids, topics read once, playground ports), and load_module."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from kstatefun.config.module.parsers import as_text, describe
from kstatefun.config.module.problems import Problem, did_you_mean, render, translate
from kstatefun.config.module.schema import (
    SCHEMAS,
    EgressSchema,
    EmbeddedSchema,
    HttpV1Schema,
    HttpV2Schema,
    IngressSchema,
    PlaygroundEgressSchema,
    PlaygroundIngressSchema,
    Schema,
    TimeoutsSchema,
    TransportSchema,
)
from kstatefun.config.module.source import Document, Loc, line_for, read_documents
from kstatefun.config.module.specs import (
    ASYNC_CALL_MS,
    ASYNC_CONNECT_MS,
    KIND_EGRESS,
    KIND_HTTP_V1,
    KIND_HTTP_V2,
    KIND_INGRESS,
    KIND_PLAYGROUND_EGRESS,
    KIND_PLAYGROUND_INGRESS,
    PAYLOAD_MAX_BYTES,
    POOL_SIZE,
    POOL_TTL_MS,
    SUPPORTED_KINDS,
    TIMEOUTS_CALL_MS,
    TIMEOUTS_CONNECT_MS,
    TIMEOUTS_READ_MS,
    TIMEOUTS_WRITE_MS,
    TRANSPORT_ASYNC,
    TRANSPORT_OKHTTP,
    HttpEndpoint,
    HttpTransport,
    IngressTopic,
    KafkaEgress,
    KafkaIngress,
    ModuleError,
    ModuleSpec,
    PlaygroundEgress,
    PlaygroundIngress,
    StartupPosition,
)


def _properties(entries: list[tuple[str, str]] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(entries or ()))


def _ingress(spec: IngressSchema) -> KafkaIngress:
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


def _egress(spec: EgressSchema) -> KafkaEgress:
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
    kind: str, t: TransportSchema | None, timeouts: TimeoutsSchema | None
) -> HttpTransport:
    # v1 endpoints always use OkHttp, configured by spec.timeouts; v2 defaults to the async
    # transport (the StateFun 3.3 code default), configured by the fields of spec.transport.
    if kind == KIND_HTTP_V1 or (t is not None and t.type == TRANSPORT_OKHTTP):
        tos = timeouts if kind == KIND_HTTP_V1 else (t.timeouts if t else None)
        tos = tos or TimeoutsSchema()
        return HttpTransport(
            type=TRANSPORT_OKHTTP,
            call_ms=tos.call or TIMEOUTS_CALL_MS,
            connect_ms=tos.connect or TIMEOUTS_CONNECT_MS,
            read_ms=tos.read or TIMEOUTS_READ_MS,
            write_ms=tos.write or TIMEOUTS_WRITE_MS,
        )
    t = t or TransportSchema()
    # StateFun's async transport: a 'timeouts' object, when present, wins over call/connect
    # and brings its own defaults (1 min / 10 s).
    if t.timeouts is not None:
        call = t.timeouts.call or TIMEOUTS_CALL_MS
        connect = t.timeouts.connect or TIMEOUTS_CONNECT_MS
    else:
        call = t.call or ASYNC_CALL_MS
        connect = t.connect or ASYNC_CONNECT_MS
    tos = t.timeouts or TimeoutsSchema()
    return HttpTransport(
        type=TRANSPORT_ASYNC,
        call_ms=call,
        connect_ms=connect,
        read_ms=tos.read or TIMEOUTS_READ_MS,
        write_ms=tos.write or TIMEOUTS_WRITE_MS,
        pool_ttl_ms=POOL_TTL_MS if t.pool_ttl is None else t.pool_ttl,
        pool_size=t.pool_size or POOL_SIZE,
        payload_max_bytes=t.payload_max_bytes or PAYLOAD_MAX_BYTES,
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


def _endpoint(kind: str, spec: HttpV1Schema | HttpV2Schema) -> HttpEndpoint:
    if isinstance(spec, HttpV1Schema):
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


@dataclass(slots=True)
class _Builder:
    problems: list[Problem]
    ingresses: list[tuple[KafkaIngress, Document]]
    egresses: list[tuple[KafkaEgress, Document]]
    endpoints: list[tuple[HttpEndpoint, Document]]
    embedded: list[str]
    playground: dict[str, tuple[PlaygroundIngress | PlaygroundEgress, Document]] = field(
        default_factory=dict
    )

    def problem(self, doc: Document, message: str, path: Loc = (), kind: str | None = None) -> None:
        spec = doc.data.get("spec") if isinstance(doc.data, Mapping) else None
        raw_id = spec.get("id") if isinstance(spec, Mapping) else None
        line = line_for(doc, path)
        self.problems.append(
            Problem(
                message,
                doc=doc.index,
                kind=kind,
                id=raw_id if isinstance(raw_id, str) else None,
                path=path,
                line=line,
            )
        )

    def add(self, doc: Document, documents: list[Document]) -> None:
        self._duplicate_keys(doc)
        kind = self._component_kind(doc, documents)
        if kind is None:
            return
        data = doc.data
        if "spec" not in data or data["spec"] is None:
            self.problem(doc, "missing 'spec'; add the component's fields under 'spec:'", (), kind)
            return
        spec = data["spec"]
        if not isinstance(spec, Mapping):
            self.problem(
                doc, f"expected a mapping of fields, got {describe(spec)}", ("spec",), kind
            )
            return
        schema = SCHEMAS[kind]
        try:
            parsed = schema.model_validate(spec)
        except ValidationError as exc:
            for error in exc.errors():
                loc, message = translate(kind, schema, error)
                self.problem(doc, message, ("spec", *loc), kind)
            return
        self._accept(kind, parsed, doc)

    def _duplicate_keys(self, doc: Document) -> None:
        data = doc.data
        raw_kind = data.get("kind") if isinstance(data, Mapping) else None
        for path, line in doc.duplicate_keys:
            self.problems.append(
                Problem(
                    f"'{path[-1]}' appears twice in this mapping and YAML keeps only the last; "
                    "remove one",
                    doc=doc.index,
                    kind=raw_kind if raw_kind in SCHEMAS else None,
                    path=path,
                    line=line,
                )
            )

    def _component_kind(self, doc: Document, documents: list[Document]) -> str | None:
        """The document's kind when it is a component of a known kind; else records why not."""
        data = doc.data
        if not isinstance(data, Mapping):
            self.problem(
                doc,
                f"expected a component ('kind:' and 'spec:'), got {describe(data)}; e.g. "
                f"'kind: {KIND_HTTP_V2}' followed by 'spec:'",
            )
            return None
        if "version" in data and "module" in data and len(documents) == 1:
            self.problem(
                doc,
                "this is StateFun's legacy 'version: 3.0' module format, which kstatefun does "
                "not read; rewrite each endpoint, ingress and egress as its own document with "
                "'kind:' and 'spec:' (see config/module.yaml)",
            )
            return None
        kind = data.get("kind")
        for key in data:
            if key not in ("kind", "spec"):
                hint = did_you_mean(str(key), ["kind", "spec"])
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
            return None
        if not isinstance(kind, str) or kind not in SCHEMAS:
            # a list or mapping is named, not printed: aliases can make its text exponential
            text = as_text(kind)
            shown = f"'{text}'" if text is not None else describe(kind)
            close = difflib.get_close_matches(text or "", SUPPORTED_KINDS, n=1, cutoff=0.8)
            hint = f"did you mean '{close[0]}'? " if close else ""
            self.problem(
                doc,
                f"unknown kind {shown}; {hint}supported kinds: {', '.join(SUPPORTED_KINDS)}",
                ("kind",),
            )
            return None
        return kind

    def _accept(self, kind: str, parsed: Schema, doc: Document) -> None:
        if isinstance(parsed, IngressSchema):
            self.ingresses.append((_ingress(parsed), doc))
        elif isinstance(parsed, EgressSchema):
            self.egresses.append((_egress(parsed), doc))
        elif isinstance(parsed, HttpV1Schema | HttpV2Schema):
            endpoint = _endpoint(kind, parsed)
            problem = _okhttp_timeouts_problem(endpoint.transport)
            if problem:
                where = ("spec", "timeouts") if kind == KIND_HTTP_V1 else ("spec", "transport")
                self.problem(doc, problem, where, kind)
                return
            self.endpoints.append((endpoint, doc))
        elif isinstance(parsed, PlaygroundIngressSchema | PlaygroundEgressSchema):
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
                if isinstance(parsed, PlaygroundIngressSchema)
                else PlaygroundEgress(parsed.port, tuple(parsed.topics))
            )
            self.playground[kind] = (component, doc)
        elif isinstance(parsed, EmbeddedSchema):
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
        owner: dict[str, Document] = {}
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
    path: Loc,
    kind: str | None,
) -> None:
    first: dict[str, Document] = {}
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


def parse_module(text: str, source: str = "<string>") -> ModuleSpec:
    """Parse module.yaml ``text``; ``source`` names it in error messages.

    Raises one :class:`ModuleError` (a :class:`ConfigError`) listing every problem, each
    with its document, line, field path and fix.
    """
    documents = read_documents(text, source)
    builder = _Builder([], [], [], [], [])
    for doc in documents:
        if doc.data is not None:  # StateFun skips empty documents, e.g. after a trailing '---'
            builder.add(doc, documents)
    builder.check_unique()
    if not any(d.data is not None for d in documents):
        builder.problems.append(
            Problem(
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
        raise ModuleError(render(source, builder.problems))
    return ModuleSpec(
        ingresses=tuple(i for i, _ in builder.ingresses),
        egresses=tuple(e for e, _ in builder.egresses),
        endpoints=tuple(e for e, _ in builder.endpoints),
        embedded=tuple(builder.embedded),
        source=source,
        playground_ingress=playground_in[0] if playground_in else None,  # type: ignore[arg-type]
        playground_egress=playground_out[0] if playground_out else None,  # type: ignore[arg-type]
    )


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
