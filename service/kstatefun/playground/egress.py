"""The playground's HTTP egress: ``GET /{topic}`` answers the next record functions sent to
``topic`` (200, the payload as body), 404 when there is none, and 405 for a topic the module
does not list, as StateFun's playground does. ``?wait=SECONDS`` (at most 30) waits that long
for a record instead of answering 404 at once.

Records come from ``<app>-playground-<topic>`` read ``read_committed``: only what the worker's
transactions committed is handed out, once. How far each topic was handed out is committed to
the consumer group ``<app>-playground-egress`` before the answer is written, so a restarted
worker continues there: a client that got a record never gets it again. A record whose answer
cannot be written is handed out again, unless the worker dies between the commit and the write
(the client then sees its request fail).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from confluent_kafka import Consumer, KafkaException, TopicPartition

from kstatefun.config.module import (
    KIND_PLAYGROUND_EGRESS,
    PLAYGROUND_EGRESS_ID,
    PLAYGROUND_EGRESS_RECORD,
)
from kstatefun.kafka.topics import InternalTopics
from kstatefun.model import TypedValue
from kstatefun.playground.base import Handler, Server

log = logging.getLogger(__name__)

MAX_WAIT_S = 30.0
# a GET without ?wait still gives the consumer's fetch this long (it reads over the network)
_MIN_WAIT_S = 0.2


def decode_egress_record(declared: Sequence[str], value: TypedValue) -> tuple[str, bytes]:
    """The playground topic and payload of a value sent to ``io.statefun.playground/egress``;
    ``ValueError`` says why a value is not a valid ``EgressRecord`` for the ``declared``
    topics."""
    example = '{"topic": "greetings", "payload": "Hello"}'
    if value.typename != PLAYGROUND_EGRESS_RECORD or value.value is None:
        raise ValueError(
            f"egress '{PLAYGROUND_EGRESS_ID}' takes values of type '{PLAYGROUND_EGRESS_RECORD}' "
            f"(JSON such as {example}), got a value of type '{value.typename}'"
        )
    try:
        doc = json.loads(value.value)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"a {PLAYGROUND_EGRESS_RECORD} is not JSON ({e}); send {example}") from e
    topic = doc.get("topic") if isinstance(doc, dict) else None
    payload = doc.get("payload") if isinstance(doc, dict) else None
    if not isinstance(topic, str) or payload is None:
        raise ValueError(
            f"a {PLAYGROUND_EGRESS_RECORD} needs 'topic' and 'payload', e.g. {example}"
        )
    if topic not in declared:
        raise ValueError(
            f"a {PLAYGROUND_EGRESS_RECORD} names topic '{topic}', which the "
            f"{KIND_PLAYGROUND_EGRESS} document does not list (topics: {', '.join(declared)})"
        )
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return topic, text.encode()


def egress_record(
    topics: InternalTopics, declared: Sequence[str], value: TypedValue
) -> tuple[str, None, bytes]:
    """The Kafka record (topic, key, value) the worker writes for a value sent to
    ``io.statefun.playground/egress`` (see ``decode_egress_record``)."""
    topic, payload = decode_egress_record(declared, value)
    return topics.playground(topic), None, payload


class _Topic:
    """One playground topic's reader: a consumer on its single partition and a lock, so that
    concurrent GETs hand out each record once."""

    def __init__(self, consumer: Consumer, kafka_topic: str) -> None:
        self.consumer = consumer
        self.kafka_topic = kafka_topic
        self.lock = threading.Lock()
        self.closing = threading.Event()  # ends a waiting GET, so that stop() gets the lock
        consumer.assign([TopicPartition(kafka_topic, 0)])  # from the committed offset

    def take(self, wait_s: float) -> Any:
        deadline = time.monotonic() + wait_s
        while True:
            msg = self.consumer.poll(max(0.0, min(0.5, deadline - time.monotonic())))
            if msg is not None and msg.error() is None:
                return msg
            if msg is not None:
                log.warning("playground egress topic=%s: %s", self.kafka_topic, msg.error())
            if time.monotonic() >= deadline or self.closing.is_set():
                return None

    def commit(self, offset: int) -> None:
        position = TopicPartition(self.kafka_topic, 0, offset)
        self.consumer.commit(offsets=[position], asynchronous=False)

    def again(self, msg: Any) -> None:
        """Hand ``msg`` out again: its answer could not be written."""
        self.commit(msg.offset())
        self.consumer.seek(TopicPartition(self.kafka_topic, 0, msg.offset()))


class EgressServer(Server):
    def __init__(
        self,
        host: str,
        port: int,
        consumer_config: dict[str, Any],
        topics: InternalTopics,
        declared: Sequence[str],
    ) -> None:
        self.topics = {
            name: _Topic(Consumer(consumer_config), topics.playground(name)) for name in declared
        }
        try:
            super().__init__(KIND_PLAYGROUND_EGRESS, host, port, _EgressHandler)
        except Exception:
            self.close_consumers()
            raise

    def close_consumers(self) -> None:
        for t in self.topics.values():
            t.closing.set()
            with t.lock:
                t.consumer.close()

    def stop(self) -> None:
        super().stop()
        self.close_consumers()


class _EgressHandler(Handler):
    server: Any

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        egress: EgressServer = self.server.server
        path, _, query = self.path.partition("?")
        name = path.lstrip("/")
        topic = egress.topics.get(name)
        if topic is None:
            listed = ", ".join(f"/{t}" for t in egress.topics)
            self.error(405, f"'{name}' is not a topic of the playground egress; try {listed}")
            return
        try:
            wait_s = float(parse_qs(query).get("wait", ["0"])[0])
        except ValueError:
            self.error(400, "wait must be a number of seconds, e.g. ?wait=5")
            return
        wait_s = min(MAX_WAIT_S, max(_MIN_WAIT_S, wait_s))
        with topic.lock:
            if topic.closing.is_set():
                self.error(503, "the worker is stopping; ask another one or again later")
                return
            msg = topic.take(wait_s)
            if msg is None:
                self.error(404, f"no record on {name} yet")
                return
            try:
                topic.commit(msg.offset() + 1)
            except KafkaException as e:
                topic.consumer.seek(TopicPartition(topic.kafka_topic, 0, msg.offset()))
                self.error(503, f"cannot record the hand-out in Kafka, ask again: {e}")
                return
            try:
                self.reply(200, msg.value() or b"", "text/plain; charset=utf-8")
            except OSError:  # the client went away
                topic.again(msg)
