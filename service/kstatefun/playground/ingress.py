"""The playground's HTTP ingress: ``POST``/``PUT /{namespace}/{type}/{id}`` with the value as
body becomes one invocation of that address.

As in StateFun's playground, the ``Content-Type`` names the value's type:
``application/vnd.<namespace>/<type>`` is the type ``<namespace>/<type>``, anything else is
``io.statefun.types/string``. The record is on ``<app>-invocations`` (idempotent producer,
``acks=all``) before the answer 200 goes out, so an answered request is processed exactly once;
a client that retries after losing the answer may send it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from confluent_kafka import KafkaError, Message, Producer

from kstatefun.config.module import KIND_PLAYGROUND_INGRESS
from kstatefun.errors import ConfigError
from kstatefun.kafka.clients import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES
from kstatefun.model import split_typename
from kstatefun.playground.base import Handler, Server
from kstatefun.wire.avro import encode_invocation

log = logging.getLogger(__name__)

CONTENT_TYPE_PREFIX = "application/vnd."
DEFAULT_TYPE = "io.statefun.types/string"
_SEND_TIMEOUT_S = 30.0


def value_type(content_type: str | None) -> str:
    """The type name a request's ``Content-Type`` gives its body (parameters ignored)."""
    media = (content_type or "").split(";", 1)[0].strip()
    if media.startswith(CONTENT_TYPE_PREFIX):
        return media[len(CONTENT_TYPE_PREFIX) :]
    return DEFAULT_TYPE


class IngressServer(Server):
    def __init__(
        self,
        host: str,
        port: int,
        producer: Producer,
        invocations_topic: str,
        partition_of: Callable[[str], int],
        serves: Callable[[str], bool],
    ) -> None:
        self.producer = producer
        self.topic = invocations_topic
        self.partition_of = partition_of  # the application's partitioner
        self.serves = serves
        super().__init__(KIND_PLAYGROUND_INGRESS, host, port, _IngressHandler)

    def send(self, target: str, id: str, typename: str, body: bytes) -> str | None:
        """Write the invocation and wait until it is durable; an error text if it is not."""
        outcome: list[KafkaError | None] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            outcome.append(err)

        self.producer.produce(
            self.topic,
            encode_invocation(target, id, None, None, typename, body),
            id.encode(),
            partition=self.partition_of(id),
            on_delivery=delivered,
        )
        self.producer.flush(_SEND_TIMEOUT_S)
        if not outcome:
            return f"Kafka did not confirm the write within {_SEND_TIMEOUT_S:.0f} s"
        return None if outcome[0] is None else str(outcome[0])


class _IngressHandler(Handler):
    server: Any

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._ingest()

    def do_PUT(self) -> None:  # noqa: N802 - StateFun's playground README uses PUT
        self._ingest()

    def _ingest(self) -> None:
        ingress: IngressServer = self.server.server
        body = self.body()
        parts = [unquote(p) for p in self.path.split("?", 1)[0].lstrip("/").split("/")]
        if len(parts) != 3 or not all(parts):
            self.error(400, "expected a path /namespace/type/id, e.g. /example/person/Bob")
            return
        namespace, name, id = parts
        target = f"{namespace}/{name}"
        if not ingress.serves(target):
            self.error(404, f"no function of type {target} is registered or served by an endpoint")
            return
        typename = value_type(self.headers.get("Content-Type"))
        try:
            split_typename(typename)
        except ConfigError:
            self.error(
                400,
                f"Content-Type gives the type '{typename}'; expected "
                f"'{CONTENT_TYPE_PREFIX}namespace/name', e.g. 'application/vnd.example/Greet'",
            )
            return
        if len(body) + len(id) > MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES:
            limit = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES
            self.error(413, f"a message body may have at most {limit} bytes")
            return
        problem = ingress.send(target, id, typename, body)
        if problem is not None:
            log.warning("playground ingress could not write target=%s/%s: %s", target, id, problem)
            self.error(503, f"not accepted, send it again: {problem}")
            return
        self.reply(200)
