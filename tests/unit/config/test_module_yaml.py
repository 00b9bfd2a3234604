"""module.yaml: every valid StateFun 3.x form parses into the values the runtime relies on."""

import dataclasses
from pathlib import Path

import pytest

from kstatefun.config.module import (
    KIND_HTTP_V1,
    KIND_HTTP_V2,
    TRANSPORT_ASYNC,
    TRANSPORT_OKHTTP,
    ModuleSpec,
    load_module,
    parse_duration_ms,
    parse_module,
)
from kstatefun.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]

# The module from StateFun 3.3's "Application Modules" page, rewritten with our own names and
# extended with the optional fields its Kafka and HTTP endpoint pages document.
STATEFUN_MODULE = """\
kind: io.statefun.endpoints.v2/http
spec:
  functions: shop.fns/*
  urlPathTemplate: https://fns.shop.example/{function.name}
  maxNumBatchRequests: 500
  transport:
    type: io.statefun.transports.v1/async
    call: 2m
    connect: 20s
    pool_ttl: 15s
    pool_size: 1024
    payload_max_bytes: 33554432
    trust_cacerts: ~/trustedCAs.pem
    client_cert: classpath:clientPublic.crt
    client_key: ~/clientPrivate.key
    client_key_password: /tmp/password.txt
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: shop.io/orders
  address: kafka-broker:9092
  consumerGroupId: shop-group
  startupPosition:
    type: specific-offsets
    offsets:
      - orders/0: 91
      - orders/1: 11
  autoOffsetResetPosition: earliest
  topics:
    - topic: orders
      valueType: shop.types/Order
      targets:
        - shop.fns/cart
        - shop.fns/audit
    - topic: refunds
      valueType: io.statefun.types/string
      targets:
        - shop.fns/cart
  properties:
    - max.poll.records: 250
    - isolation.level: read_committed
---
kind: io.statefun.kafka.v1/egress
spec:
  id: shop.io/receipts
  address: kafka-broker:9092
  deliverySemantic:
    type: exactly-once
    transactionTimeout: 15min
  properties:
    - compression.type: lz4
"""


def parse(text: str) -> ModuleSpec:
    return parse_module(text, "test.yaml")


def ingress_doc(extra: str = "", topics: str | None = None) -> str:
    topics = topics or (
        "  topics:\n"
        "    - topic: names\n"
        "      valueType: example/Person\n"
        "      targets: [example/greeter]\n"
    )
    return f"kind: io.statefun.kafka.v1/ingress\nspec:\n  id: example/names\n{topics}{extra}"


def test_full_statefun_module_parses_every_field():
    module = parse(STATEFUN_MODULE)
    assert module.source == "test.yaml"

    (endpoint,) = module.endpoints
    assert endpoint.kind == KIND_HTTP_V2
    assert endpoint.functions == "shop.fns/*"
    assert endpoint.url_path_template == "https://fns.shop.example/{function.name}"
    assert endpoint.max_num_batch_requests == 500
    t = endpoint.transport
    assert t.type == TRANSPORT_ASYNC
    assert (t.call_ms, t.connect_ms, t.pool_ttl_ms) == (120_000, 20_000, 15_000)
    assert (t.pool_size, t.payload_max_bytes) == (1024, 33_554_432)
    assert t.trust_cacerts == "~/trustedCAs.pem"
    assert t.client_cert == "classpath:clientPublic.crt"
    assert t.client_key == "~/clientPrivate.key"
    assert t.client_key_password == "/tmp/password.txt"

    (ingress,) = module.ingresses
    assert ingress.id == "shop.io/orders"
    assert ingress.address == "kafka-broker:9092"
    assert ingress.consumer_group_id == "shop-group"
    assert ingress.startup_position.kind == "specific-offsets"
    assert dict(ingress.startup_position.offsets) == {("orders", 0): 91, ("orders", 1): 11}
    assert ingress.auto_offset_reset == "earliest"
    assert [t.topic for t in ingress.topics] == ["orders", "refunds"]
    assert ingress.topics[0].value_type == "shop.types/Order"
    assert ingress.topics[0].targets == ("shop.fns/cart", "shop.fns/audit")
    assert ingress.topic("refunds").value_type == "io.statefun.types/string"
    assert ingress.topic("missing") is None
    assert dict(ingress.properties) == {
        "max.poll.records": "250",
        "isolation.level": "read_committed",
    }

    (egress,) = module.egresses
    assert egress.id == "shop.io/receipts"
    assert egress.address == "kafka-broker:9092"
    assert egress.delivery_semantic == "exactly-once"
    assert egress.transaction_timeout_ms == 15 * 60 * 1000
    assert dict(egress.properties) == {"compression.type": "lz4"}
    assert module.egress("shop.io/receipts") is egress
    assert module.egress("shop.io/other") is None
    assert module.ingress("shop.io/orders") is ingress
    assert module.embedded == ()


def test_ingress_defaults_follow_statefun_code():
    (ingress,) = parse(ingress_doc()).ingresses
    assert ingress.address is None
    assert ingress.consumer_group_id is None
    assert ingress.startup_position.kind == "latest"
    assert dict(ingress.startup_position.offsets) == {}
    assert ingress.startup_position.date_ms is None
    assert ingress.auto_offset_reset == "latest"
    assert dict(ingress.properties) == {}


@pytest.mark.parametrize("kind", ["group-offsets", "earliest", "latest"])
def test_simple_startup_positions(kind):
    (ingress,) = parse(ingress_doc(f"  startupPosition:\n    type: {kind}\n")).ingresses
    assert ingress.startup_position.kind == kind


def test_specific_offsets_topic_may_contain_slashes_partition_is_last_segment():
    doc = ingress_doc(
        "  startupPosition:\n    type: specific-offsets\n"
        "    offsets:\n      - a/b/3: 0\n      - names/12: 7\n"
    )
    (ingress,) = parse(doc).ingresses
    assert dict(ingress.startup_position.offsets) == {("a/b", 3): 0, ("names", 12): 7}


def test_specific_offsets_as_plain_mapping():
    doc = ingress_doc("  startupPosition:\n    type: specific-offsets\n    offsets: {names/0: 5}\n")
    (ingress,) = parse(doc).ingresses
    assert dict(ingress.startup_position.offsets) == {("names", 0): 5}


@pytest.mark.parametrize(
    ("date", "epoch_ms"),
    [
        ("2020-02-01 04:15:00.000 +0000", 1_580_530_500_000),  # StateFun's parser format
        ("2020-02-01 04:15:00.00 Z", 1_580_530_500_000),  # StateFun's documentation example
        ("2020-02-01 04:15:00.000 +0100", 1_580_526_900_000),
        ("2020-02-01 04:15:00.250 +01:00", 1_580_526_900_250),
        ("2020-02-01 04:15:00 -0030", 1_580_532_300_000),
        ("2020-02-01 04:15:00.123456789 Z", 1_580_530_500_123),
    ],
)
def test_date_startup_position_parses_to_epoch_ms(date, epoch_ms):
    doc = ingress_doc(f"  startupPosition:\n    type: date\n    date: {date}\n")
    (ingress,) = parse(doc).ingresses
    assert ingress.startup_position.kind == "date"
    assert ingress.startup_position.date_ms == epoch_ms


def test_auto_offset_reset_is_case_insensitive_like_statefun():
    (ingress,) = parse(ingress_doc("  autoOffsetResetPosition: EARLIEST\n")).ingresses
    assert ingress.auto_offset_reset == "earliest"


def test_properties_values_become_text_like_jackson_as_text():
    doc = ingress_doc(
        "  properties:\n    - max.poll.records: 500\n    - enable.auto.commit: false\n"
        "    - client.id: me\n    - fetch.max.wait.ms: 1.5\n"
    )
    (ingress,) = parse(doc).ingresses
    assert dict(ingress.properties) == {
        "max.poll.records": "500",
        "enable.auto.commit": "false",
        "client.id": "me",
        "fetch.max.wait.ms": "1.5",
    }


def test_properties_as_plain_mapping():
    (ingress,) = parse(ingress_doc("  properties: {max.poll.records: 10}\n")).ingresses
    assert dict(ingress.properties) == {"max.poll.records": "10"}


def test_egress_defaults_to_at_least_once_without_timeout():
    (egress,) = parse("kind: io.statefun.kafka.v1/egress\nspec:\n  id: example/out\n").egresses
    assert egress.delivery_semantic == "at-least-once"
    assert egress.transaction_timeout_ms is None
    assert egress.address is None
    assert dict(egress.properties) == {}


@pytest.mark.parametrize("semantic", ["at-least-once", "none"])
def test_non_transactional_semantics_have_no_timeout(semantic):
    text = (
        "kind: io.statefun.kafka.v1/egress\nspec:\n  id: example/out\n"
        f"  deliverySemantic:\n    type: {semantic}\n"
    )
    (egress,) = parse(text).egresses
    assert egress.delivery_semantic == semantic
    assert egress.transaction_timeout_ms is None


def egress_with(semantic: str) -> str:
    head = "kind: io.statefun.kafka.v1/egress\nspec:\n  id: example/out\n"
    return f"{head}  deliverySemantic:\n{semantic}"


def test_exactly_once_without_timeout_uses_the_workers():
    (egress,) = parse(egress_with("    type: exactly-once\n")).egresses
    assert egress.delivery_semantic == "exactly-once"
    assert egress.transaction_timeout_ms is None


def test_deprecated_transaction_timeout_millis_wins_like_statefun():
    text = egress_with(
        "    type: exactly-once\n"
        "    transactionTimeout: 15min\n"
        "    transactionTimeoutMillis: 7000\n"
    )
    (egress,) = parse(text).egresses
    assert egress.transaction_timeout_ms == 7000


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("15min", 900_000),
        ("10s", 10_000),
        ("100ms", 100),
        ("1 min", 60_000),
        ("10 sec", 10_000),
        ("2m", 120_000),
        ("1minute", 60_000),
        ("30seconds", 30_000),
        ("2 hours", 7_200_000),
        ("1d", 86_400_000),
        ("1500", 1500),
        (" 155 MS ", 155),
        ("2500µs", 2),
        ("999999ns", 0),
        (5000, 5000),
    ],
)
def test_flink_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "ms", "-5s", "1.5s", "10 fortnights", "1 2 s", True])
def test_bad_durations_name_the_units(text):
    with pytest.raises(ConfigError, match="e.g. '10s'|use one of"):
        parse_duration_ms(text)


def endpoint(body: str, kind: str = "io.statefun.endpoints.v2/http") -> str:
    return (
        f"kind: {kind}\nspec:\n  functions: example/*\n"
        f"  urlPathTemplate: http://fns:8000/{{function.name}}\n{body}"
    )


def test_v2_endpoint_without_transport_uses_async_defaults():
    (ep,) = parse(endpoint("")).endpoints
    assert ep.max_num_batch_requests == 1000
    t = ep.transport
    assert t.type == TRANSPORT_ASYNC
    assert (t.call_ms, t.connect_ms, t.pool_ttl_ms, t.pool_size) == (120_000, 20_000, 15_000, 1024)
    assert t.payload_max_bytes == 32 * 1024 * 1024
    assert t.trust_cacerts is None


def test_v2_transport_timeouts_object_wins_with_its_own_defaults():
    # The form StateFun's endpoint page shows: no type, a nested timeouts object.
    body = "  transport:\n    call: 5m\n    timeouts:\n      read: 10 sec\n      write: 10 sec\n"
    (ep,) = parse(endpoint(body)).endpoints
    assert ep.transport.type == TRANSPORT_ASYNC
    assert ep.transport.call_ms == 60_000
    assert ep.transport.connect_ms == 10_000


def test_v2_okhttp_transport():
    body = (
        "  maxNumBatchRequests: 10000\n"
        "  transport:\n    type: io.statefun.transports.v1/okhttp\n"
        "    timeouts:\n      call: 1minute\n      connect: 30seconds\n"
        "      read: 20seconds\n      write: 10seconds\n"
    )
    (ep,) = parse(endpoint(body)).endpoints
    assert ep.max_num_batch_requests == 10_000
    t = ep.transport
    assert t.type == TRANSPORT_OKHTTP
    assert (t.call_ms, t.connect_ms, t.read_ms, t.write_ms) == (60_000, 30_000, 20_000, 10_000)


def test_v1_endpoint_timeouts_mean_okhttp():
    body = "  timeouts:\n    call: 2 min\n    read: 30 sec\n"
    (ep,) = parse(endpoint(body, KIND_HTTP_V1)).endpoints
    assert ep.kind == KIND_HTTP_V1
    t = ep.transport
    assert t.type == TRANSPORT_OKHTTP
    assert (t.call_ms, t.connect_ms, t.read_ms, t.write_ms) == (120_000, 10_000, 30_000, 10_000)


def test_v1_endpoint_without_timeouts_has_okhttp_defaults():
    (ep,) = parse(endpoint("", KIND_HTTP_V1)).endpoints
    t = ep.transport
    assert (t.type, t.call_ms, t.connect_ms) == (TRANSPORT_OKHTTP, 60_000, 10_000)


def test_unix_socket_url_and_url_without_template():
    text = (
        "kind: io.statefun.endpoints.v2/http\nspec:\n  functions: a/f\n"
        "  urlPathTemplate: http+unix:///uds.sock/path/{function.name}\n---\n"
        "kind: io.statefun.endpoints.v2/http\nspec:\n  functions: b/g\n"
        "  urlPathTemplate: http://localhost:8000\n"
    )
    first, second = parse(text).endpoints
    assert first.url_for("a/f") == "http+unix:///uds.sock/path/f"
    assert second.url_for("b/g") == "http://localhost:8000"


def test_endpoint_for_prefers_exact_type_over_namespace_wildcard():
    text = (
        "kind: io.statefun.endpoints.v2/http\nspec:\n  functions: shop/*\n"
        "  urlPathTemplate: http://wild/{function.name}\n---\n"
        "kind: io.statefun.endpoints.v2/http\nspec:\n  functions: shop/cart\n"
        "  urlPathTemplate: http://exact/{function.name}\n"
    )
    module = parse(text)
    assert module.endpoint_for("shop/cart").url_for("shop/cart") == "http://exact/cart"
    assert module.endpoint_for("shop/audit").url_for("shop/audit") == "http://wild/audit"
    assert module.endpoint_for("shopping/cart") is None
    assert module.endpoint_for("other/cart") is None


def test_embedded_functions_list_and_single_string():
    text = (
        "kind: io.kstatefun.v1/embedded\nspec:\n  functions:\n"
        "    - examples.greeter:functions\n    - app.fns:registry.all\n---\n"
        "kind: io.kstatefun.v1/embedded\nspec:\n  functions: other:fns\n"
    )
    assert parse(text).embedded == (
        "examples.greeter:functions",
        "app.fns:registry.all",
        "other:fns",
    )


def test_empty_documents_and_comments_are_skipped():
    text = "# header\n---\n" + ingress_doc() + "---\n# trailing\n---\n"
    module = parse(text)
    assert [i.id for i in module.ingresses] == ["example/names"]


def test_results_are_immutable():
    module = parse(STATEFUN_MODULE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        module.ingresses[0].id = "x/y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        module.ingresses[0].properties["x"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        module.ingresses[0].startup_position.offsets[("x", 0)] = 1  # type: ignore[index]


def test_load_module_reads_the_file_and_names_it(tmp_path):
    path = tmp_path / "module.yaml"
    path.write_text(STATEFUN_MODULE, encoding="utf-8")
    module = load_module(path)
    assert module.source == str(path)
    assert len(module.ingresses) == len(module.egresses) == len(module.endpoints) == 1


def test_shipped_example_module_is_the_greeter():
    module = load_module(REPO / "config" / "module.yaml")
    (ingress,) = module.ingresses
    (topic,) = ingress.topics
    assert (topic.topic, topic.value_type, topic.targets) == (
        "greeter-names",
        "example/Person",
        ("example/counter",),
    )
    egress = module.egress("example/greetings")
    assert egress is not None and egress.delivery_semantic == "exactly-once"
    assert module.embedded == ("examples.greeter:functions",)


def test_statefun_playground_module_parses():
    # the python/greeter module.yaml of StateFun's playground (release 3.3), our own names
    module = parse_module(
        "kind: io.statefun.endpoints.v2/http\n"
        "spec:\n"
        "  functions: example/*\n"
        "  urlPathTemplate: http://functions:8000/statefun\n"
        "---\n"
        "kind: io.statefun.playground.v1/ingress\n"
        "spec:\n"
        "  port: 8090\n"
        "---\n"
        "kind: io.statefun.playground.v1/egress\n"
        "spec:\n"
        "  port: 8091\n"
        "  topics:\n"
        "    - greetings\n"
    )
    assert module.playground_ingress is not None and module.playground_ingress.port == 8090
    assert module.playground_egress is not None
    assert (module.playground_egress.port, module.playground_egress.topics) == (
        8091,
        ("greetings",),
    )
    assert module.ingresses == () and module.egresses == ()
