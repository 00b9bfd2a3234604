"""A module checked against the worker that runs it, before any Kafka connection: every
ingress target is served, something is ingested, and the fields kstatefun ignores are
warned about."""

from __future__ import annotations

import logging
from collections.abc import Collection

from kstatefun.config.module.specs import KafkaEgress, KafkaIngress, ModuleSpec
from kstatefun.config.settings import Settings
from kstatefun.errors import ConfigError

log = logging.getLogger(__name__)


def check_module(module: ModuleSpec, settings: Settings, registered: Collection[str]) -> None:
    """Raise :class:`ConfigError` when an ingress targets a function type that neither
    ``registered`` (the embedded functions) nor an HTTP endpoint serves, or when nothing is
    ingested; log a warning for each ingress or egress field kstatefun ignores."""
    for ingress in module.ingresses:
        _check_targets(ingress, module, registered)
        _warn_ignored_ingress(ingress, settings)
    for egress in module.egresses:
        _warn_ignored_egress(egress, settings)
    if not module.ingresses and module.playground_ingress is None:
        raise ConfigError(
            "module.yaml declares no io.statefun.kafka.v1/ingress (nor an "
            "io.statefun.playground.v1/ingress): nothing to run"
        )


def serves(module: ModuleSpec, registered: Collection[str], typename: str) -> bool:
    """Whether a function of type ``typename`` is registered or served by an endpoint."""
    return typename in registered or module.endpoint_for(typename) is not None


def _check_targets(ingress: KafkaIngress, module: ModuleSpec, registered: Collection[str]) -> None:
    for t in ingress.topics:
        for target in t.targets:
            if not serves(module, registered, target):
                raise ConfigError(
                    f"ingress '{ingress.id}' topic '{t.topic}' targets '{target}', but "
                    f"no function of that type is registered (registered: "
                    f"{', '.join(sorted(registered)) or 'none'}) and no "
                    "io.statefun.endpoints.v2/http document serves it"
                )


def _warn_ignored_ingress(ingress: KafkaIngress, settings: Settings) -> None:
    if ingress.consumer_group_id not in (None, settings.app_id):
        log.warning(
            "ingress %s declares consumerGroupId %s; kstatefun reads every ingress in "
            "the application's group, the app id %s",
            ingress.id,
            ingress.consumer_group_id,
            settings.app_id,
        )
    if ingress.properties:
        log.warning(
            "ingress %s properties are ignored (%s): set client properties for all of "
            "a worker's clients with KSTATEFUN_KAFKA_PROPERTIES",
            ingress.id,
            ", ".join(ingress.properties),
        )
    if ingress.address not in (None, settings.bootstrap_servers):
        log.warning(
            "ingress %s declares address %s; kstatefun reads it from the application's cluster %s",
            ingress.id,
            ingress.address,
            settings.bootstrap_servers,
        )


def _warn_ignored_egress(egress: KafkaEgress, settings: Settings) -> None:
    if egress.properties:
        log.warning(
            "egress %s properties are ignored (%s): egress records are written by the "
            "worker's transactional producer",
            egress.id,
            ", ".join(egress.properties),
        )
    if egress.address not in (None, settings.bootstrap_servers):
        log.warning(
            "egress %s declares address %s; kstatefun writes it inside the application's "
            "transactions on %s",
            egress.id,
            egress.address,
            settings.bootstrap_servers,
        )
