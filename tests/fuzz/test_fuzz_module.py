"""Fuzzing module.yaml: any text, any YAML structure and any mutation of a valid module either
parses into a ModuleSpec or raises one ModuleError (a ConfigError) whose message names the
document and the field at fault; never another exception type, never a hang."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kstatefun.config.module import ModuleError, ModuleSpec, parse_module
from kstatefun.errors import ConfigError
from kstatefun.model import Address
from kstatefun.remote.protocol import encode_batch
from tests.fuzz.conftest import scaled

VALID: list[dict[str, Any]] = [
    {
        "kind": "io.statefun.kafka.v1/ingress",
        "spec": {
            "id": "example/names",
            "address": "kafka:9092",
            "consumerGroupId": "g",
            "topics": [
                {"topic": "names", "valueType": "example/Person", "targets": ["example/a"]},
                {"topic": "more", "valueType": "example/P", "targets": ["example/a", "x/b"]},
            ],
            "startupPosition": {"type": "specific-offsets", "offsets": [{"names/0": 42}]},
            "autoOffsetResetPosition": "earliest",
            "properties": [{"max.poll.records": 500}],
        },
    },
    {
        "kind": "io.statefun.kafka.v1/ingress",
        "spec": {
            "id": "example/dated",
            "topics": [{"topic": "d", "valueType": "example/D", "targets": ["example/a"]}],
            "startupPosition": {"type": "date", "date": "2020-02-01 04:15:00.000 +0000"},
        },
    },
    {
        "kind": "io.statefun.kafka.v1/egress",
        "spec": {
            "id": "example/out",
            "address": "kafka:9092",
            "deliverySemantic": {"type": "exactly-once", "transactionTimeout": "15min"},
            "properties": {"linger.ms": 5},
        },
    },
    {
        "kind": "io.statefun.endpoints.v2/http",
        "spec": {
            "functions": "remote/*",
            "urlPathTemplate": "http://functions:8000/{function.name}",
            "maxNumBatchRequests": 100,
            "transport": {
                "type": "io.statefun.transports.v1/async",
                "call": "2m",
                "connect": "20s",
                "pool_ttl": "15s",
                "pool_size": 1024,
                "payload_max_bytes": 33554432,
            },
        },
    },
    {
        "kind": "io.statefun.endpoints.v1/http",
        "spec": {
            "functions": "old/greeter",
            "urlPathTemplate": "http+unix:///tmp/functions.sock/{function.name}",
            "timeouts": {"call": "1 min", "connect": "10s", "read": "10s", "write": "10s"},
        },
    },
    {"kind": "io.kstatefun.v1/embedded", "spec": {"functions": ["examples.greeter:functions"]}},
]


def dump(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


def parse(text: str) -> ModuleSpec | ModuleError:
    """parse_module, allowed to raise only ModuleError, and quickly."""
    started = time.monotonic()
    try:
        return parse_module(text, "fuzz.yaml")
    except ModuleError as e:
        message = str(e)
        assert message.startswith("fuzz.yaml"), message
        assert len(message) < 200_000
        return e
    finally:
        # a hang guard, not a timing: an alias bomb took hours; a busy machine takes seconds
        assert time.monotonic() - started < 120, "parse_module took too long"


def test_the_valid_module_parses():
    spec = parse(dump(VALID))
    assert isinstance(spec, ModuleSpec)
    assert len(spec.ingresses) == 2 and len(spec.endpoints) == 2


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "a/b",
            "a/*",
            "*/*",
            "a/b/c",
            "1 min",
            "-1s",
            "10 parsecs",
            "9" * 5000,
            "0",
            "http://",
            "http://x:99999/",
            "http://[::1",
            "ftp://x/",
            "2020-02-30 00:00:00.000 +0000",
            "9999-12-31 23:59:59.999 -2359",
            "0001-01-01 00:00:00.000 +2359",
            "2020-01-01 00:00:00.000 +9999",
            "classpath:x.pem",
            "x:y",
            "{function.name}",
        ]
    ),
)
FIELD_NAMES = sorted(
    {
        "kind",
        "spec",
        "id",
        "topics",
        "topic",
        "valueType",
        "targets",
        "startupPosition",
        "type",
        "offsets",
        "date",
        "address",
        "deliverySemantic",
        "transactionTimeout",
        "properties",
        "functions",
        "urlPathTemplate",
        "maxNumBatchRequests",
        "transport",
        "timeouts",
        "call",
        "connect",
        "read",
        "payload_max_bytes",
        "pool_size",
        "pool_ttl",
        "trust_cacerts",
    }
)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=10) | st.integers() | st.booleans()
structures = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=scaled(150))
@given(
    st.text(
        alphabet=st.sampled_from(list("kind: spec-[]{}&*!|>'\"#%@`,?\n\t /ab1.:~")), max_size=120
    )
)
@example("[" * 3000 + "]" * 3000)
@example("a: &a [x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n")
@example("!!python/object:os.system x")
@example("{[1, 2]: 3}")
@example("kind: &k [*k]")
@example("\x00\ufeff")
def test_any_text_is_a_module_or_a_module_error(text):
    parse(text)


@settings(max_examples=scaled(150))
@given(st.lists(structures, max_size=3))
def test_any_structure_is_a_module_or_a_module_error(docs):
    parse(dump(docs))


@settings(max_examples=scaled(150))
@given(
    st.lists(st.sampled_from(VALID), min_size=1, max_size=3),
    st.sampled_from(sorted(_kind.removeprefix("io.") for _kind in {d["kind"] for d in VALID}))
    | st.sampled_from(["", "kind", "io.statefun.kafka.v1/ingres"]),
    structures,
)
def test_any_kind_and_spec_is_a_module_or_a_module_error(docs, kind, spec):
    parse(dump([*docs, {"kind": kind, "spec": spec}]))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside one valid document."""
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[Any, ...], str]:
    """One valid document with one change at one path: (document, path, what was done)."""
    doc = copy.deepcopy(draw(st.sampled_from(VALID)))
    path = draw(st.sampled_from(_paths(doc)))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    action = draw(st.sampled_from(["replace", "delete", "add-unknown"]))
    if action == "replace":
        parent[last] = draw(structures)
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=10))] = draw(structures)
    else:
        parent.append(draw(structures))
    return doc, path, action


@settings(max_examples=scaled(250))
@given(mutated())
def test_a_mutated_valid_document_is_refused_with_a_message_naming_its_field(case):
    doc, path, action = case
    result = parse(dump([doc]))
    if isinstance(result, ModuleSpec):
        return
    message = str(result)
    assert "document 1" in message, message
    # the error names the field that was changed, or one of the fields it sits in (a list
    # index, a removed required field or a changed 'type' may move the error to its parent)
    named = [str(p) for p in path if isinstance(p, str)]
    assert any(name in message for name in named), (path, action, message)


@settings(max_examples=scaled(100))
@given(st.binary(max_size=200), st.sampled_from([dump(VALID)]))
def test_a_module_with_garbage_bytes_spliced_in_is_a_module_or_a_module_error(junk, text):
    cut = len(junk) % (len(text) + 1)
    parse(text[:cut] + junk.decode("utf-8", "replace") + text[cut:])


WILDCARD = parse_module(
    dump(
        [
            {
                "kind": "io.statefun.endpoints.v2/http",
                "spec": {"functions": "fz/*", "urlPathTemplate": "http://h/{function.name}"},
            },
            {
                "kind": "io.statefun.endpoints.v2/http",
                "spec": {"functions": "one/exact", "urlPathTemplate": "http://h/x"},
            },
        ]
    )
)


@settings(max_examples=scaled(150))
@given(
    st.sampled_from(["fz", "fz/", "fz/a", "fz/a/b", "fz//", "one/exact", "one", "/x", "fz/*"])
    | st.text(max_size=10).map(lambda s: "fz" + s)
)
@example("fz")
@example("fz/")
@example("fz/a/b")
def test_an_endpoint_serves_only_type_names_it_can_call(typename):
    """A wildcard endpoint matched type names it cannot build a URL or a request for ('fz',
    'fz/'): an invocation of such a type in <app>-invocations made RemoteInvoker raise
    ConfigError in the worker's loop (fixed in HttpEndpoint.matches)."""
    endpoint = WILDCARD.endpoint_for(typename)
    if endpoint is None:
        return
    assert endpoint.url_for(typename).startswith("http://h/")
    encode_batch(Address(typename, "id"), [], [])  # a request can be built


@pytest.mark.parametrize(
    "text, field",
    [
        ("[" * 3000 + "]" * 3000, "nested too deeply"),
        (
            "a0: &a0 [x]\n"
            + "".join(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
            + "kind: *a9\n",
            "kind",
        ),
        (
            "kind: io.statefun.endpoints.v2/http\nspec: {functions: a/*, "
            "urlPathTemplate: 'http://x:99999/{function.name}'}\n",
            "urlPathTemplate",
        ),
    ],
    ids=["deep-nesting", "billion-laughs", "port-out-of-range"],
)
def test_found_by_fuzzing(text, field):
    """Each was a crash (RecursionError), a hang (the aliases expanded 9**9 times while the
    document's lines were indexed and its kind printed) or a module accepted that fails every
    call (ValueError on the port); each is now a ModuleError naming the problem."""
    started = time.monotonic()
    with pytest.raises(ConfigError, match=field):
        parse_module(text, "fuzz.yaml")
    assert time.monotonic() - started < 120  # the hang guard of parse() above
