"""librdkafka configurations for every client a worker opens: one place for each setting."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import SecretStr

log = logging.getLogger(__name__)

REDACTED: Final = "**********"

SECURITY_PROPERTIES: Final[dict[str, str]] = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_username": "sasl.username",
    "sasl_password": "sasl.password",
    "ssl_ca_location": "ssl.ca.location",
    "ssl_certificate_location": "ssl.certificate.location",
    "ssl_key_location": "ssl.key.location",
    "ssl_key_password": "ssl.key.password",
    "ssl_endpoint_identification_algorithm": "ssl.endpoint.identification.algorithm",
}
"""Each first-class security setting (config/settings.py) and the librdkafka property it sets."""

# Properties whose values are secrets: passwords, private keys, OAuth client secrets, and the
# two free-form configs that may embed one.
_SENSITIVE = re.compile(r"password|secret|passphrase|key\.pem$|^ssl_key$|jaas|oauthbearer\.config$")


def is_sensitive(prop: str) -> bool:
    """True for a librdkafka property whose value must never be logged."""
    return _SENSITIVE.search(prop.lower()) is not None


class KafkaProperties(dict[str, str]):
    """librdkafka properties whose secret values are hidden from ``repr``/``str`` (and so from
    every log line and error message that formats them); lookups return the real values."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redacted(self))

    __str__ = __repr__


def redacted(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a client configuration that can be logged: secrets replaced by asterisks."""
    return {key: REDACTED if is_sensitive(key) else value for key, value in conf.items()}


def security_properties(settings: Mapping[str, Any]) -> KafkaProperties:
    """The librdkafka properties that the security settings given (not None) map to.

    ``settings`` maps setting names of :data:`SECURITY_PROPERTIES` to values (str, Path,
    SecretStr); config/settings.py merges the result into ``Settings.kafka_properties``,
    which every client's configuration starts from (:func:`base_config`).
    """
    out = KafkaProperties()
    for name, prop in SECURITY_PROPERTIES.items():
        value = settings.get(name)
        if value is None:
            continue
        out[prop] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return out


# librdkafka's default "rebootstrap" forgets every broker after an outage of all of them; a
# transactional producer then hangs in send_offsets_to_transaction (librdkafka #5511, found by
# tests/chaos after a broker kill -9 and restart)
_RECOVERY: Final = {"metadata.recovery.strategy": "none"}


def base_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """What every client's configuration starts from: the brokers, then ``extra``.

    ``extra`` is ``Settings.kafka_properties``: KSTATEFUN_KAFKA_PROPERTIES, the secret files of
    KSTATEFUN_KAFKA_SECRET_FILES and the properties of the security settings
    (:data:`SECURITY_PROPERTIES`), so the admin client, the transactional producer, the group
    and restore consumers and the CLI tools all connect the same way. The result holds secrets
    in the clear for librdkafka: log it only through :func:`redacted`.
    """
    return {"bootstrap.servers": bootstrap_servers, **_RECOVERY, **extra}


# The largest record a worker produces (librdkafka's message.max.bytes, the broker's default
# max.message.bytes is about the same). Larger effects are refused before they are produced:
# a produce that fails for size would abort and replay the same record forever.
MAX_RECORD_BYTES = 1_000_000
# what an envelope, a changelog or timer record adds around a value (names, ids, type names)
RECORD_OVERHEAD_BYTES = 4096


def _compose(
    bootstrap_servers: str,
    extra: Mapping[str, str],
    tunables: Mapping[str, Any],
    required: Mapping[str, Any],
    client: str,
) -> dict[str, Any]:
    """``tunables`` (kstatefun's defaults, which ``extra`` overrides), then ``extra``, then
    ``required`` (what kstatefun's guarantees rest on; overriding one is refused with a
    warning)."""
    conf = base_config(bootstrap_servers, {**tunables, **extra})
    for prop in sorted(set(extra) & set(required)):
        if str(extra[prop]) != str(required[prop]):
            log.warning(
                "kafka_properties sets %s for the %s, which kstatefun sets itself "
                "(kafka/clients.py); ignoring it",
                prop,
                client,
            )
    conf.update(required)
    return conf


TRANSACTIONAL_PRODUCER_TUNING: Final[dict[str, Any]] = {
    # Every commit flushes, and librdkafka's flush sends at once whatever lingers (since 1.8),
    # so a record is visible no later for lingering: records wait for their transaction's
    # commit either way. Batching a whole commit interval's records per partition is what
    # keeps the broker's CPU down: at linger.ms 2 a worker under a backlog sent about 25
    # records per Produce request and the broker spent more CPU than the worker (Kafka
    # Streams' producers linger 100 ms too; docs/performance.md, "The producer's linger").
    "linger.ms": 100,
    # default 100 ms makes back-to-back transactions slow (ARCHITECTURE §10)
    "retry.backoff.ms": 10,
    "queue.buffering.max.messages": 1_000_000,
}
"""kstatefun's defaults for its transactional producer (``kafka_properties`` may override
them); the benchmark's bare loops use the same."""


def transactional_producer_config(
    bootstrap_servers: str,
    transactional_id: str,
    transaction_timeout_ms: int,
    extra: Mapping[str, str],
) -> dict[str, Any]:
    return _compose(
        bootstrap_servers,
        extra,
        TRANSACTIONAL_PRODUCER_TUNING,
        {
            "transactional.id": transactional_id,
            # a committed transaction survives a lost broker only if all in-sync replicas had it
            "acks": "all",
            "enable.idempotence": True,
            "transaction.timeout.ms": transaction_timeout_ms,
            # egress keys land where a Java producer would put them
            "partitioner": "murmur2_random",
            "message.max.bytes": MAX_RECORD_BYTES,
        },
        "transactional producer",
    )


def idempotent_producer_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """A producer outside transactions (the CLI, the playground ingress): a retried send is
    written once, in order per partition, and visible at once."""
    return _compose(
        bootstrap_servers,
        extra,
        {},
        {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"},
        "idempotent producer",
    )


# How the group moves partitions, per rebalance_protocol setting (config/settings.py):
# cooperative and consumer move only the partitions that change owner (runtime/assignment.py);
# eager revokes every partition at every rebalance. A group must use one of them throughout.
ASSIGNMENT_STRATEGIES: Final = {"cooperative": "cooperative-sticky", "eager": "range,roundrobin"}

REBALANCE_PROTOCOL_DEFAULT: Final = "consumer"
"""KIP-848: incremental, and its broker-side range assignor keeps ingress partition p with
invocations partition p (docs/architecture.md, "Which rebalance protocol")."""

CLASSIC_GROUP_PROPERTIES: Final = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "group.protocol.type",
)
"""Group consumer properties of the classic protocols (eager, cooperative) that librdkafka
refuses with ``group.protocol=consumer``: the broker times the sessions and assigns."""


def group_consumer_config(
    bootstrap_servers: str,
    group_id: str,
    extra: Mapping[str, str],
    rebalance_protocol: str = REBALANCE_PROTOCOL_DEFAULT,
) -> dict[str, Any]:
    required: dict[str, Any] = {
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    tunables: dict[str, Any] = {"fetch.wait.max.ms": 10}
    if rebalance_protocol == "consumer":
        # KIP-848: the broker assigns (range: partition p of every topic to one member) and
        # owns the session timeout and heartbeat interval (group.consumer.session.timeout.ms,
        # or the group's consumer.session.timeout.ms; docs/operations.md)
        required |= {"group.protocol": "consumer", "group.remote.assignor": "range"}
    else:
        required["partition.assignment.strategy"] = ASSIGNMENT_STRATEGIES[rebalance_protocol]
        # a crashed worker's partitions move after this (static members: it may rejoin)
        tunables |= {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000}
    return _compose(bootstrap_servers, extra, tunables, required, "group consumer")


def end_offsets_consumer_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """A consumer that only asks where a partition ends: its high watermark.
    librdkafka asks for offsets with the consumer's isolation level, and a read_committed
    consumer is told the last stable offset, which stops before a transaction another process
    left open (a zombie), while committed records of others may follow that transaction. A
    restore that ended there would serve older state
    (tests/e2e/test_restore_past_open_transaction.py), and the direct path's drain would let
    new ingress records overtake messages routed to their ids
    (tests/e2e/test_drain_past_open_transaction.py)."""
    conf = restore_consumer_config(bootstrap_servers, extra)
    conf["isolation.level"] = "read_uncommitted"
    return conf


def restore_consumer_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    return _compose(
        bootstrap_servers,
        extra,
        {
            "fetch.wait.max.ms": 10,
            # A deep prefetch per partition: librdkafka's default (100,000) stalled a fast
            # reader (1M records: 150-180k records/s against 700-800k with 1,000,000). But the
            # queue is the worker's largest memory: with 1,000,000 per partition and the
            # default 64 MB cap, reading 8 partitions of 2M rows peaked at 465 MB RSS in a bare
            # consumer (a worker restoring into RocksDB at 594 MB); these two: 147 MB, as fast.
            "queued.min.messages": 200_000,
            "queued.max.messages.kbytes": 32_768,
        },
        {
            # manual assignment only; the group id is required by librdkafka but never joined
            "group.id": "kstatefun-restore",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        },
        "restore consumer",
    )


def standby_consumer_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """The consumer that tails other workers' changelog partitions (state/standby.py)."""
    return _compose(
        bootstrap_servers,
        extra,
        # it runs all the time: a modest prefetch per partition, fewer idle fetches
        {"fetch.wait.max.ms": 100, "queued.max.messages.kbytes": 16_384},
        {
            # manual assignment only; the group id is required by librdkafka but never joined
            "group.id": "kstatefun-standby",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # a position gone from the topic is reported, not silently replaced
            "auto.offset.reset": "error",
        },
        "standby consumer",
    )
