"""What every operator command shares: connection flags, settings, clients, metadata, output.

The commands read settings exactly as ``kstatefun run`` does (flags, then ``KSTATEFUN_*``
environment variables, then defaults; ``KSTATEFUN_KAFKA_PROPERTIES`` reaches every client), so
a shell that runs a worker can inspect it with the same environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from kstatefun.config.settings import Settings, load_settings
from kstatefun.errors import ConfigError, KStatefunError, TopicError
from kstatefun.kafka import clients
from kstatefun.kafka.partitioner import DEFAULT_PARTITIONER, LEGACY_PARTITIONER, partition_for_id
from kstatefun.kafka.topics import InternalTopics, read_partitioner
from kstatefun.model import Address, split_typename

# Never joined and never committed: librdkafka wants a group id even for manual assignment.
CLI_GROUP_ID = "kstatefun-cli"

# librdkafka logs every failed connection attempt; the commands report failures themselves, so
# its log is shown only with KSTATEFUN_LOG_LEVEL=DEBUG.
_client_log = logging.getLogger("kstatefun.tools.librdkafka")


def common_arguments() -> argparse.ArgumentParser:
    """A parent parser with the flags every command takes."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("application")
    group.add_argument("--bootstrap-servers", help="HOST:PORT (env KSTATEFUN_BOOTSTRAP_SERVERS)")
    group.add_argument("--app-id", help="the application to inspect (env KSTATEFUN_APP_ID)")
    group.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up on the broker after this long (default 30)",
    )
    group.add_argument("--json", action="store_true", help="machine-readable output")
    return parent


@dataclass
class Tool:
    """Settings and lazily opened clients of one command run."""

    settings: Settings
    timeout: float
    json: bool
    _admin: AdminClient | None = field(default=None, repr=False)
    _metadata: Any = field(default=None, repr=False)
    _partitioner: str | None = field(default=None, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **settings: Any) -> Tool:
        if args.timeout <= 0:
            raise ConfigError(f"--timeout must be positive, got {args.timeout}")
        loaded = load_settings(
            bootstrap_servers=args.bootstrap_servers, app_id=args.app_id, **settings
        )
        _client_log.setLevel(logging.DEBUG if loaded.log_level == "DEBUG" else logging.CRITICAL)
        return cls(loaded, args.timeout, args.json)

    def _config(self) -> dict[str, Any]:
        s = self.settings
        conf = clients.base_config(s.bootstrap_servers, s.kafka_properties)
        conf["logger"] = _client_log
        return conf

    @property
    def topics(self) -> InternalTopics:
        return InternalTopics(self.settings.app_id)

    @property
    def where(self) -> str:
        return f"application '{self.settings.app_id}' on {self.settings.bootstrap_servers}"

    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self._config())
        return self._admin

    def consumer(self) -> Consumer:
        """A read_committed consumer for manual assignment; it never joins a group."""
        s = self.settings
        conf = clients.restore_consumer_config(s.bootstrap_servers, s.kafka_properties)
        conf.update({"group.id": CLI_GROUP_ID, "logger": _client_log})
        return Consumer(conf)

    def producer(self) -> Producer:
        """An idempotent producer: a retried send is written once, in order per partition."""
        s = self.settings
        conf = clients.idempotent_producer_config(s.bootstrap_servers, s.kafka_properties)
        conf["logger"] = _client_log
        return Producer(conf)

    def metadata(self, refresh: bool = False) -> Any:
        """The cluster's topic metadata (cached for the command's run)."""
        if self._metadata is None or refresh:
            try:
                self._metadata = self.admin().list_topics(timeout=self.timeout)
            except KafkaException as e:
                raise KStatefunError(
                    f"cannot reach Kafka at {self.settings.bootstrap_servers} "
                    f"(--bootstrap-servers, KSTATEFUN_BOOTSTRAP_SERVERS): {e.args[0]}"
                ) from e
        return self._metadata

    def partition_count(self, topic: str) -> int:
        """Partitions of an existing topic; an internal topic that is missing is explained."""
        t = self.metadata().topics.get(topic)
        if t is None or t.error is not None:
            if topic.startswith(f"{self.settings.app_id}-"):
                raise TopicError(
                    f"{self.where} has no topic '{topic}': check --app-id (KSTATEFUN_APP_ID) "
                    "and --bootstrap-servers; the first worker to start creates it"
                )
            raise TopicError(f"topic '{topic}' does not exist on {self.settings.bootstrap_servers}")
        return len(t.partitions)

    def partitioner(self) -> str:
        """The application's partitioner, as its first worker recorded it (kafka/topics.py)."""
        if self._partitioner is None:
            meta = self.topics.meta
            recorded = None
            topics = self.metadata().topics
            if meta in topics:
                recorded = read_partitioner(self.consumer(), meta, self.timeout)
            elif self.topics.invocations in topics:  # from before the partitioner was recorded
                recorded = LEGACY_PARTITIONER
            self._partitioner = recorded or DEFAULT_PARTITIONER
        return self._partitioner

    def id_partition(self, topic: str, id: str) -> int:
        """The partition of the co-partitioned internal topic ``topic`` where ``id`` lives."""
        return partition_for_id(id, self.partition_count(topic), self.partitioner())


def parse_address(text: str) -> Address:
    """``namespace/name/id``: the first two segments are the function type, the rest the id."""
    namespace, _, rest = text.partition("/")
    name, sep, id = rest.partition("/")
    if not sep or not id:
        raise ConfigError(
            f"'{text}' is not an address: write TYPE/ID, e.g. 'example/greeter/ann' "
            "(the first two '/'-separated parts are the function type, the rest is the id)"
        )
    return make_address(f"{namespace}/{name}", id)


def make_address(typename: str, id: str) -> Address:
    if typename.count("/") != 1:
        raise ConfigError(
            f"'{typename}' is not a function type: write namespace/name, e.g. 'example/greeter'"
        )
    split_typename(typename)
    if not id:
        raise ConfigError("the id of an address cannot be empty")
    return Address(typename, id)


class Deliveries:
    """Collects delivery reports of produced records; ``wait`` flushes and raises on failure."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self.delivered: list[Message] = []
        self.failed: list[tuple[KafkaError, Message]] = []

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered.append(msg)
        else:
            self.failed.append((err, msg))

    def wait(self, timeout: float) -> list[Message]:
        remaining = self._producer.flush(timeout)
        if self.failed:
            err, msg = self.failed[0]
            raise KStatefunError(
                f"could not write to topic '{msg.topic()}' partition {msg.partition()}: {err}"
            )
        if remaining:
            raise KStatefunError(
                f"{remaining} record(s) still undelivered after {timeout:.0f}s: is the broker "
                "reachable? (--timeout to wait longer)"
            )
        return self.delivered


# --- output -----------------------------------------------------------------------------------


def print_json(document: Any, *, lines: bool = False) -> None:
    """One JSON document (indented), or one line of JSON Lines."""
    text = json.dumps(_json_safe(document), ensure_ascii=False, indent=None if lines else 2)
    print(text, flush=lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN/Infinity are not JSON
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.123Z."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def duration(ms: int) -> str:
    """A short human duration: 850ms, 12s, 3m05s, 2h10m, 4d3h."""
    ms = abs(ms)
    if ms < 1000:
        return f"{ms}ms"
    s = ms // 1000
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h}h"


def relative(ms: int, now_ms: int) -> str:
    """``in 3m05s`` or ``12s ago``."""
    delta = ms - now_ms
    return f"in {duration(delta)}" if delta >= 0 else f"{duration(delta)} ago"


def record_timestamp(msg: Message) -> int | None:
    kind, ts = msg.timestamp()
    return ts if kind != 0 and ts >= 0 else None  # 0: TIMESTAMP_NOT_AVAILABLE


def warn(text: str) -> None:
    print(f"kstatefun: warning: {text}", file=sys.stderr)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    lines = []
    for r in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
