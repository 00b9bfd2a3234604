"""module.yaml: every invalid file is one ConfigError naming file, document, field and fix."""

import re

import pytest

from kstatefun.config import ModuleError, load_module, parse_module
from kstatefun.errors import ConfigError

INGRESS = """\
kind: io.statefun.kafka.v1/ingress
spec:
  id: example/names
  topics:
    - topic: names
      valueType: example/Person
      targets: [example/greeter]
"""
EGRESS = """\
kind: io.statefun.kafka.v1/egress
spec:
  id: example/out
"""
ENDPOINT = """\
kind: io.statefun.endpoints.v2/http
spec:
  functions: example/*
  urlPathTemplate: http://fns:8000/{function.name}
"""


def error_of(text: str) -> str:
    with pytest.raises(ModuleError) as info:
        parse_module(text, "app/module.yaml")
    message = str(info.value)
    # Never a raw pydantic dump.
    for leak in ("validation error", "Input should", "pydantic", "Field required", "type="):
        assert leak not in message, message
    return message


def assert_names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in:\n{message}"


def test_module_error_is_a_config_error():
    assert issubclass(ModuleError, ConfigError)


def test_yaml_syntax_error_names_line_and_column():
    message = error_of("kind: io.statefun.kafka.v1/ingress\nspec:\n  id: [unclosed\n  x: 1\n")
    assert_names(message, "app/module.yaml", "invalid YAML", "fix the syntax")
    assert re.search(r"line \d+, column \d+", message)


def test_tabs_are_a_syntax_error_with_line():
    message = error_of("kind: a/b\nspec:\n\tid: x\n")
    assert_names(message, "app/module.yaml, line 3", "invalid YAML")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n", "\n\n"])
def test_empty_file(text):
    message = error_of(text)
    assert_names(message, "app/module.yaml", "declares no components", "kind: ")


def test_document_without_kind_lists_supported_kinds():
    message = error_of("spec:\n  id: a/b\n")
    assert_names(
        message,
        "document 1",
        "missing 'kind'",
        "io.statefun.kafka.v1/ingress",
        "io.statefun.endpoints.v2/http",
        "io.kstatefun.v1/embedded",
    )


def test_document_without_spec():
    message = error_of(INGRESS + "---\nkind: io.statefun.kafka.v1/egress\n")
    assert_names(
        message, "app/module.yaml, document 2 (io.statefun.kafka.v1/egress)", "missing 'spec'"
    )


def test_spec_that_is_not_a_mapping():
    message = error_of("kind: io.statefun.kafka.v1/egress\nspec: [a, b]\n")
    assert_names(message, "document 1", "spec:", "expected a mapping", "a list")


def test_document_that_is_not_a_mapping():
    message = error_of(INGRESS + "---\n- kind: io.statefun.kafka.v1/egress\n")
    assert_names(message, "document 2", "expected a component ('kind:' and 'spec:')", "a list")


def test_unknown_kind_suggests_and_lists_supported_kinds():
    message = error_of("kind: io.statefun.kafka.v1/ingres\nspec: {}\n")
    assert_names(
        message,
        "app/module.yaml, document 1, line 1: kind: unknown kind 'io.statefun.kafka.v1/ingres'",
        "did you mean 'io.statefun.kafka.v1/ingress'?",
        "supported kinds: io.statefun.endpoints.v2/http, io.statefun.endpoints.v1/http, "
        "io.statefun.kafka.v1/ingress, io.statefun.kafka.v1/egress, io.kstatefun.v1/embedded, "
        "io.statefun.playground.v1/ingress, io.statefun.playground.v1/egress",
    )


def test_playground_documents_name_the_field_at_fault():
    assert_names(
        error_of("kind: io.statefun.playground.v1/ingress\nspec:\n  port: 99999\n"),
        "document 1 (io.statefun.playground.v1/ingress), line 3: spec.port",
        "a TCP port from 1 to 65535, got 99999",
    )
    assert_names(
        error_of("kind: io.statefun.playground.v1/egress\nspec:\n  port: 8091\n  topics: []\n"),
        "document 1 (io.statefun.playground.v1/egress)",
        "list at least one topic",
    )
    assert_names(
        error_of("kind: io.statefun.playground.v1/egress\nspec:\n  port: 8091\n  topics: [a b]\n"),
        "spec.topics[0]",
        "'a b' is not a valid playground topic",
    )
    twice = (
        "kind: io.statefun.playground.v1/ingress\nspec: {port: 8090}\n---\n"
        "kind: io.statefun.playground.v1/ingress\nspec: {port: 8092}\n---\n"
        "kind: io.statefun.playground.v1/egress\nspec: {port: 8090, topics: [greetings]}\n"
    )
    assert_names(
        error_of(twice),
        "document 2 (io.statefun.playground.v1/ingress)",
        "already declared by document 1",
        "document 3 (io.statefun.playground.v1/egress)",
        "port 8090 is also the playground ingress's (document 1)",
    )


def test_unknown_top_level_key():
    message = error_of(EGRESS + "specs: {}\n")
    assert_names(message, "document 1", "unknown top-level key 'specs'", "did you mean 'spec'?")


def test_legacy_v30_format_is_explained():
    message = error_of("version: '3.0'\nmodule:\n  meta:\n    type: remote\n  spec: {}\n")
    assert_names(message, "legacy 'version: 3.0'", "'kind:' and 'spec:'")


def test_missing_required_spec_field_gives_example():
    message = error_of("kind: io.statefun.kafka.v1/ingress\nspec:\n  id: example/names\n")
    assert_names(
        message,
        "document 1 (io.statefun.kafka.v1/ingress 'example/names'), line 2: spec.topics:",
        "required field 'topics' is missing",
        "add it, e.g. 'topics: [{topic: names",
    )


def test_missing_nested_field_names_its_path_and_line():
    text = INGRESS.replace("      valueType: example/Person\n", "")
    message = error_of(text)
    assert_names(
        message,
        "line 5: spec.topics[0].valueType: required field 'valueType' is missing",
        "e.g. 'valueType: example/Person'",
    )


def test_missing_url_path_template():
    message = error_of("kind: io.statefun.endpoints.v2/http\nspec:\n  functions: example/*\n")
    assert_names(
        message,
        "document 1 (io.statefun.endpoints.v2/http)",
        "spec.urlPathTemplate: required field 'urlPathTemplate' is missing",
        "urlPathTemplate: http://functions:8000/{function.name}",
    )


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("topcs: []", "topics"),
        ("consumerGroupID: g", "consumerGroupId"),
        ("consumer_group_id: g", "consumerGroupId"),
        ("startPosition: {type: earliest}", "startupPosition"),
    ],
)
def test_unknown_spec_field_suggests_the_known_one(typo, suggestion):
    message = error_of(INGRESS + f"  {typo}\n")
    field = typo.split(":")[0]
    assert_names(
        message,
        f"line 8: spec.{field}: unknown field '{field}'",
        f"did you mean '{suggestion}'?",
        "known fields: id, address, consumerGroupId, topics, startupPosition, "
        "autoOffsetResetPosition, properties",
    )


def test_unknown_nested_field_lists_that_objects_fields():
    message = error_of(INGRESS.replace("      targets:", "      value: x\n      targets:"))
    assert_names(
        message,
        "spec.topics[0].value: unknown field 'value'",
        "known fields: topic, valueType, targets",
    )


def test_unknown_field_without_close_match_still_lists_fields():
    message = error_of(EGRESS + "  zzzzzz: 1\n")
    assert_names(message, "unknown field 'zzzzzz'; known fields: id, address, deliverySemantic")
    assert "did you mean" not in message


def test_v1_style_timeouts_in_v2_endpoint_point_to_transport():
    message = error_of(ENDPOINT + "  timeouts:\n    call: 1 min\n")
    assert_names(message, "spec.timeouts: unknown field 'timeouts'", "go under 'transport'")


@pytest.mark.parametrize(
    ("text", "path", "allowed"),
    [
        (
            INGRESS + "  startupPosition:\n    type: earliests\n",
            "spec.startupPosition.type",
            "group-offsets, earliest, latest, specific-offsets, date (did you mean 'earliest'?)",
        ),
        (
            INGRESS + "  autoOffsetResetPosition: none\n",
            "spec.autoOffsetResetPosition",
            "earliest, latest",
        ),
        (
            EGRESS + "  deliverySemantic:\n    type: exactly_once\n",
            "spec.deliverySemantic.type",
            "exactly-once, at-least-once, none (did you mean 'exactly-once'?)",
        ),
        (
            ENDPOINT + "  transport:\n    type: okhttp\n",
            "spec.transport.type",
            "io.statefun.transports.v1/async, io.statefun.transports.v1/okhttp",
        ),
    ],
)
def test_bad_enum_values_list_the_allowed_ones(text, path, allowed):
    message = error_of(text)
    assert_names(message, f"{path}: ", "is not one of: " + allowed)


@pytest.mark.parametrize(
    ("old", "new", "path", "bad"),
    [
        ("id: example/names", "id: example", "spec.id", "'example'"),
        ("id: example/names", "id: a/b/c", "spec.id", "'a/b/c'"),
        ("id: example/names", "id: /names", "spec.id", "'/names'"),
        ("valueType: example/Person", "valueType: example/ Person", "spec.topics[0].valueType", ""),
        (
            "targets: [example/greeter]",
            "targets: [example/greeter, greeter]",
            "spec.topics[0].targets[1]",
            "'greeter'",
        ),
    ],
)
def test_invalid_type_names(old, new, path, bad):
    message = error_of(INGRESS.replace(old, new))
    assert_names(
        message,
        "document 1 (io.statefun.kafka.v1/ingress",
        f"{path}: {bad}",
        "is not a valid type name; expected 'namespace/name', e.g. 'example/greeter'",
    )


def test_wildcard_target_is_rejected():
    message = error_of(INGRESS.replace("[example/greeter]", "[example/*]"))
    assert_names(message, "spec.topics[0].targets[0]", "wildcard", "one function type")


@pytest.mark.parametrize("pattern", ["'*/greeter'", "example/gr*", "example"])
def test_invalid_endpoint_function_patterns(pattern):
    message = error_of(ENDPOINT.replace("example/*", pattern))
    assert_names(message, "document 1 (io.statefun.endpoints.v2/http)", "spec.functions: ")
    assert "namespace/name" in message


def test_endpoint_functions_list_is_explained():
    message = error_of(ENDPOINT.replace("functions: example/*", "functions: [a/b, c/d]"))
    assert_names(message, "spec.functions: expected one pattern", "one endpoint document per")


def test_bad_url_scheme():
    message = error_of(ENDPOINT.replace("http://fns:8000", "ftp://fns"))
    assert_names(message, "spec.urlPathTemplate: 'ftp://fns/{function.name}' must start with")


def test_duplicate_ingress_ids_name_both_documents():
    message = error_of(INGRESS + "---\n" + INGRESS.replace("topic: names", "topic: other"))
    assert_names(
        message,
        "document 2 (io.statefun.kafka.v1/ingress 'example/names'), line 11: spec.id: "
        "ingress id 'example/names' is already declared by document 1",
    )


def test_duplicate_egress_ids():
    message = error_of(EGRESS + "---\n" + EGRESS)
    assert_names(message, "document 2", "egress id 'example/out' is already declared by document 1")


def test_duplicate_endpoint_patterns():
    message = error_of(ENDPOINT + "---\n" + ENDPOINT)
    assert_names(message, "document 2", "endpoint for 'example/*' is already declared")


def test_topic_read_by_two_ingresses():
    message = error_of(INGRESS + "---\n" + INGRESS.replace("example/names", "example/again"))
    assert_names(
        message,
        "document 2 (io.statefun.kafka.v1/ingress 'example/again')",
        "spec.topics[0].topic: topic 'names' is already read by document 1",
        "put all of its target functions in that entry's 'targets'",
    )


def test_topic_listed_twice_in_one_ingress():
    text = INGRESS + "    - topic: names\n      valueType: a/b\n      targets: [a/c]\n"
    message = error_of(text)
    assert_names(message, "spec.topics[1].topic: topic 'names' is already read earlier")


def test_topic_without_targets():
    message = error_of(INGRESS.replace("[example/greeter]", "[]"))
    assert_names(message, "spec.topics[0]: topic 'names' has no targets", "targets: [")


def test_ingress_without_topics():
    message = error_of(INGRESS.split("  topics:")[0] + "  topics: []\n")
    assert_names(message, "spec: an ingress needs at least one entry in 'topics'")


def test_duplicate_yaml_key():
    message = error_of(INGRESS + "  id: example/other\n")
    assert_names(message, "line 8: spec.id: 'id' appears twice", "remove one")


def test_specific_offsets_without_offsets():
    message = error_of(INGRESS + "  startupPosition:\n    type: specific-offsets\n")
    assert_names(message, "spec.startupPosition: type 'specific-offsets' needs 'offsets'")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("- names: 3", "is not '<topic>/<partition>'"),
        ("- names/x: 3", "is not '<topic>/<partition>'"),
        ("- names/0: -1", "must be a whole number >= 0"),
        ("- names/0: soon", "must be a whole number >= 0"),
        ("- {names/0: 1, names/1: 2}", "single-key map"),
    ],
)
def test_bad_offsets(entry, problem):
    text = (
        INGRESS + f"  startupPosition:\n    type: specific-offsets\n    offsets:\n      {entry}\n"
    )
    message = error_of(text)
    assert_names(message, "line 11: spec.startupPosition.offsets[0]: ", problem, "e.g.")


def test_duplicate_partition_offset():
    text = (
        INGRESS + "  startupPosition:\n    type: specific-offsets\n"
        "    offsets:\n      - names/0: 1\n      - names/0: 2\n"
    )
    assert_names(error_of(text), "'names/0' is listed twice")


def test_offsets_with_another_type():
    text = INGRESS + "  startupPosition:\n    type: earliest\n    offsets: [{names/0: 1}]\n"
    assert_names(error_of(text), "'offsets' only applies to type 'specific-offsets'")


@pytest.mark.parametrize("date", ["2020-02-01", "yesterday", "2020-13-01 04:15:00.000 +0000"])
def test_bad_date(date):
    message = error_of(INGRESS + f"  startupPosition:\n    type: date\n    date: {date}\n")
    assert_names(
        message,
        "spec.startupPosition.date: ",
        "yyyy-MM-dd HH:mm:ss.SSS Z",
        "e.g. '2020-02-01 04:15:00.000 +0000'",
    )


def test_date_type_without_date():
    message = error_of(INGRESS + "  startupPosition:\n    type: date\n")
    assert_names(message, "spec.startupPosition: type 'date' needs 'date'")


def test_bad_transaction_timeout():
    message = error_of(
        EGRESS + "  deliverySemantic:\n    type: exactly-once\n    transactionTimeout: soon\n"
    )
    assert_names(
        message,
        "document 1 (io.statefun.kafka.v1/egress 'example/out'), line 6: "
        "spec.deliverySemantic.transactionTimeout: 'soon' is not a duration",
        "e.g. '10s', '1 min'",
    )


def test_zero_timeout():
    message = error_of(ENDPOINT + "  transport:\n    call: 0s\n")
    assert_names(message, "spec.transport.call: a timeout must be longer than 0")


def test_async_fields_under_okhttp():
    text = ENDPOINT + "  transport:\n    type: io.statefun.transports.v1/okhttp\n    pool_size: 8\n"
    assert_names(error_of(text), "spec.transport: pool_size only applies to type", "timeouts")


def test_okhttp_timeout_longer_than_call():
    text = (
        ENDPOINT + "  transport:\n    type: io.statefun.transports.v1/okhttp\n"
        "    timeouts: {call: 20s, read: 30s}\n"
    )
    assert_names(error_of(text), "spec.transport: timeouts.read is longer than timeouts.call")


def test_v1_okhttp_timeout_longer_than_call():
    text = ENDPOINT.replace("v2/http", "v1/http") + "  timeouts: {call: 5s, connect: 10s}\n"
    assert_names(error_of(text), "spec.timeouts: timeouts.connect is longer than")


def test_bad_max_num_batch_requests():
    assert_names(
        error_of(ENDPOINT + "  maxNumBatchRequests: 0\n"),
        "spec.maxNumBatchRequests: must be at least 1",
    )
    assert_names(
        error_of(ENDPOINT + "  maxNumBatchRequests: lots\n"),
        "spec.maxNumBatchRequests: expected a whole number, got 'lots'",
    )


def test_bad_properties():
    assert_names(
        error_of(EGRESS + "  properties:\n    - linger.ms\n"),
        "spec.properties[0]: expected a single-key map such as '- max.poll.records: 500'",
    )
    assert_names(
        error_of(EGRESS + "  properties: [{a: 1}, {a: 2}]\n"),
        "spec.properties: 'a' is set twice",
    )
    assert_names(
        error_of(EGRESS + "  properties: nope\n"),
        "spec.properties: expected a list of single-key maps",
    )


def test_wrong_yaml_types():
    assert_names(
        error_of(INGRESS.replace("targets: [example/greeter]", "targets: example/greeter")),
        "spec.topics[0].targets: expected a list",
    )
    assert_names(
        error_of(INGRESS + "  startupPosition: earliest\n"),
        "spec.startupPosition: expected a mapping of fields, got 'earliest'",
    )


@pytest.mark.parametrize("ref", ["examples.greeter", "examples/greeter:fns", "1abc:fns"])
def test_bad_embedded_reference(ref):
    message = error_of(f"kind: io.kstatefun.v1/embedded\nspec:\n  functions: ['{ref}']\n")
    assert_names(
        message,
        "document 1 (io.kstatefun.v1/embedded), line 3: spec.functions[0]:",
        "is not 'package.module:attribute'",
        "e.g. 'examples.greeter:functions'",
    )


def test_embedded_empty_and_duplicates():
    assert_names(
        error_of("kind: io.kstatefun.v1/embedded\nspec:\n  functions: []\n"),
        "list at least one StatefulFunctions object",
    )
    assert_names(
        error_of("kind: io.kstatefun.v1/embedded\nspec:\n  functions: [a:b, a:b]\n"),
        "'a:b' is listed twice",
    )


def test_all_problems_of_a_file_are_reported_together_in_order():
    text = (
        INGRESS.replace("example/names", "bad")
        + "---\n"
        + EGRESS
        + "  deliverySemantic: {type: maybe}\n"
    )
    message = error_of(text)
    lines = message.splitlines()
    assert lines[0] == "app/module.yaml has 2 problems:"
    assert "document 1" in lines[1] and "spec.id" in lines[1]
    assert "document 2" in lines[2] and "spec.deliverySemantic.type" in lines[2]


def test_load_module_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"module file '.*nope.yaml' does not exist"):
        load_module(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_module(tmp_path)


def test_load_module_errors_name_the_path(tmp_path):
    path = tmp_path / "module.yaml"
    path.write_text(EGRESS.replace("example/out", "out"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_module(path)
    assert str(info.value).startswith(f"{path}, document 1 (io.statefun.kafka.v1/egress 'out')")
