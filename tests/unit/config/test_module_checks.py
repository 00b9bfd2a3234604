"""A module checked against the worker that runs it (config/module/checks.py): an ingress
target nothing serves and a module that ingests nothing stop the worker; fields kstatefun
ignores are warned about."""

import logging
import os

import pytest

from kstatefun.config import Settings, parse_module
from kstatefun.config.module import check_module
from kstatefun.errors import ConfigError

INGRESS = """
kind: io.statefun.kafka.v1/ingress
spec:
  id: shop/orders
  topics:
    - topic: orders
      valueType: shop/Order
      targets: [shop/cart, billing/invoice]
"""
BILLING = """
---
kind: io.statefun.endpoints.v2/http
spec:
  functions: billing/*
  urlPathTemplate: http://billing:8000/{function.name}
"""


@pytest.fixture
def settings(monkeypatch):
    for key in list(os.environ):
        if key.upper().startswith("KSTATEFUN_"):
            monkeypatch.delenv(key)
    return Settings(app_id="shop", bootstrap_servers="kafka:9092", instance_id="w1")


def test_targets_served_embedded_or_by_an_endpoint_pass(settings, caplog):
    with caplog.at_level(logging.WARNING):
        check_module(parse_module(INGRESS + BILLING), settings, ["shop/cart"])
    assert caplog.text == ""


def test_a_target_nothing_serves_names_the_ingress_topic_and_what_is_registered(settings):
    with pytest.raises(ConfigError) as e:
        check_module(parse_module(INGRESS), settings, ["shop/cart", "shop/audit"])
    assert str(e.value) == (
        "ingress 'shop/orders' topic 'orders' targets 'billing/invoice', but no function of "
        "that type is registered (registered: shop/audit, shop/cart) and no "
        "io.statefun.endpoints.v2/http document serves it"
    )


def test_a_target_with_nothing_registered_says_none(settings):
    with pytest.raises(ConfigError, match=r"targets 'shop/cart'.*\(registered: none\)"):
        check_module(parse_module(INGRESS + BILLING), settings, [])


def test_a_module_without_ingress_has_nothing_to_run(settings):
    with pytest.raises(ConfigError, match="declares no io.statefun.kafka.v1/ingress.*nothing"):
        check_module(parse_module(BILLING), settings, [])


def test_a_playground_ingress_is_enough_to_run(settings):
    playground = "kind: io.statefun.playground.v1/ingress\nspec:\n  port: 8090\n"
    check_module(parse_module(playground + BILLING), settings, [])


def test_ignored_fields_are_warned_about(settings, caplog):
    text = (
        INGRESS
        + "  consumerGroupId: other\n  address: elsewhere:9092\n"
        + "  properties: [{max.poll.records: 10}]\n"
        + "---\nkind: io.statefun.kafka.v1/egress\nspec:\n  id: shop/out\n"
        + "  address: elsewhere:9092\n  properties: [{linger.ms: 5}]\n"
        + BILLING
    )
    with caplog.at_level(logging.WARNING, logger="kstatefun.config.module.checks"):
        check_module(parse_module(text), settings, ["shop/cart"])
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "ingress shop/orders declares consumerGroupId other; kstatefun reads every ingress in "
        "the application's group, the app id shop",
        "ingress shop/orders properties are ignored (max.poll.records): set client properties "
        "for all of a worker's clients with KSTATEFUN_KAFKA_PROPERTIES",
        "ingress shop/orders declares address elsewhere:9092; kstatefun reads it from the "
        "application's cluster kafka:9092",
        "egress shop/out properties are ignored (linger.ms): egress records are written by the "
        "worker's transactional producer",
        "egress shop/out declares address elsewhere:9092; kstatefun writes it inside the "
        "application's transactions on kafka:9092",
    ]


def test_fields_that_match_the_worker_are_not_warned_about(settings, caplog):
    text = INGRESS + "  consumerGroupId: shop\n  address: kafka:9092\n" + BILLING
    with caplog.at_level(logging.WARNING):
        check_module(parse_module(text), settings, ["shop/cart"])
    assert caplog.text == ""
