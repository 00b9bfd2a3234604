"""Questions about a consumer group asked of the cluster by a client of their own."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kstatefun.kafka import clients

log = logging.getLogger(__name__)


def coordinator_answers(
    bootstrap_servers: str, extra: Mapping[str, str], group_id: str, timeout_s: float
) -> bool:
    """True when the coordinator of ``group_id`` describes the group within ``timeout_s``.

    A fresh client asks: it looks the coordinator up anew, where a long-lived client may still
    hold one whose broker has gone (librdkafka #5511). The group must have been loaded by its
    coordinator to be described, so True means that the coordinator serves the group now.
    """
    admin = AdminClient(clients.base_config(bootstrap_servers, extra))
    try:
        future = admin.describe_consumer_groups([group_id], request_timeout=timeout_s)[group_id]
        future.result(timeout=timeout_s + 1.0)
        return True
    except (KafkaException, TimeoutError) as e:
        log.info("the group coordinator did not answer group=%s error=%s", group_id, e)
        return False
