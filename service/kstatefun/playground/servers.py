"""Starting and stopping the playground servers a module.yaml declares."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from kstatefun.config.module import ModuleSpec
from kstatefun.config.settings import Settings
from kstatefun.kafka import clients
from kstatefun.kafka.errors import call_with_retry
from kstatefun.kafka.topics import InternalTopics, ensure_internal_topics, playground_topic_specs
from kstatefun.model import TypedValue
from kstatefun.playground.base import Server
from kstatefun.playground.egress import EgressServer, egress_record
from kstatefun.playground.ingress import IngressServer

log = logging.getLogger(__name__)


@dataclass
class Playground:
    servers: list[Server] = field(default_factory=list)
    # the Kafka record of a value sent to io.statefun.playground/egress (ValueError if invalid)
    egress_record: Callable[[TypedValue], tuple[str, None, bytes]] | None = None
    producer: Producer | None = None

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        if self.producer is not None:
            self.producer.flush(10)


def start_playground(
    admin: AdminClient,
    settings: Settings,
    module: ModuleSpec,
    topics: InternalTopics,
    partition_of: Callable[[str], int],
    serves: Callable[[str], bool],
) -> Playground | None:
    """Start the servers of the playground documents in ``module``; ``None`` without any."""
    if module.playground_ingress is None and module.playground_egress is None:
        return None
    s = settings
    playground = Playground()
    try:
        if module.playground_egress is not None:
            declared = module.playground_egress.topics
            call_with_retry(
                partial(ensure_internal_topics, admin, playground_topic_specs(topics, declared)),
                "creating and checking the playground's topics",
            )
            consumer_config = clients.restore_consumer_config(
                s.bootstrap_servers, s.kafka_properties
            )
            consumer_config["group.id"] = f"{s.app_id}-playground-egress"
            egress = EgressServer(
                s.playground_host,
                module.playground_egress.port,
                consumer_config,
                topics,
                declared,
            )
            playground.servers.append(egress)
            playground.egress_record = partial(egress_record, topics, declared)
        if module.playground_ingress is not None:
            playground.producer = Producer(
                clients.idempotent_producer_config(s.bootstrap_servers, s.kafka_properties)
            )
            ingress = IngressServer(
                s.playground_host,
                module.playground_ingress.port,
                playground.producer,
                topics.invocations,
                partition_of,
                serves,
            )
            playground.servers.append(ingress)
    except BaseException:
        playground.close()
        raise
    for server in playground.servers:
        server.start()
    return playground
