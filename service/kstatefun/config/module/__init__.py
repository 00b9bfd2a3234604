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

The package: ``specs`` (the results), ``parsers`` (field formats), ``schema`` (the YAML
shape), ``source`` (YAML with line numbers), ``problems`` (the wording), ``build`` (documents
to a ModuleSpec), ``checks`` (a ModuleSpec against the worker that runs it). This module
re-exports the public names.
"""

from kstatefun.config.module.build import load_module, parse_module
from kstatefun.config.module.checks import check_module, serves
from kstatefun.config.module.parsers import parse_duration_ms
from kstatefun.config.module.specs import (
    KIND_EGRESS,
    KIND_EMBEDDED,
    KIND_HTTP_V1,
    KIND_HTTP_V2,
    KIND_INGRESS,
    KIND_PLAYGROUND_EGRESS,
    KIND_PLAYGROUND_INGRESS,
    PLAYGROUND_EGRESS_ID,
    PLAYGROUND_EGRESS_RECORD,
    SUPPORTED_KINDS,
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

__all__ = [
    "KIND_EMBEDDED",
    "KIND_HTTP_V1",
    "KIND_HTTP_V2",
    "KIND_INGRESS",
    "KIND_EGRESS",
    "KIND_PLAYGROUND_EGRESS",
    "KIND_PLAYGROUND_INGRESS",
    "PLAYGROUND_EGRESS_ID",
    "PLAYGROUND_EGRESS_RECORD",
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
    "check_module",
    "load_module",
    "parse_duration_ms",
    "parse_module",
    "serves",
]
