"""librdkafka configurations for every client a worker opens: one place for each setting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def base_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers}
    conf.update(extra)
    return conf


def transactional_producer_config(
    bootstrap_servers: str,
    transactional_id: str,
    transaction_timeout_ms: int,
    extra: Mapping[str, str],
) -> dict[str, Any]:
    conf = base_config(bootstrap_servers, extra)
    conf.update(
        {
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "transaction.timeout.ms": transaction_timeout_ms,
            # egress keys land where a Java producer would put them
            "partitioner": "murmur2_random",
            "linger.ms": 2,
            # default 100 ms makes back-to-back transactions slow (ARCHITECTURE §10)
            "retry.backoff.ms": 10,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    return conf


def group_consumer_config(
    bootstrap_servers: str, group_id: str, extra: Mapping[str, str]
) -> dict[str, Any]:
    conf = base_config(bootstrap_servers, extra)
    conf.update(
        {
            "group.id": group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            # eager protocols: runtime/worker.py's rebalance callbacks assume a full revoke
            # followed by a full assignment
            "partition.assignment.strategy": "range,roundrobin",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
        }
    )
    return conf


def restore_consumer_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    conf = base_config(bootstrap_servers, extra)
    conf.update(
        {
            # manual assignment only; the group id is required by librdkafka but never joined
            "group.id": "kstatefun-restore",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
        }
    )
    return conf
