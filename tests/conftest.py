"""Fixtures shared by every test: one Kafka broker per session, unique names, topic factory.

The broker is only started when a test asks for it (unit tests never do). Set
``KAFKA_BOOTSTRAP_SERVERS`` to use a broker you already run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests import kafka_fixture

_TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``bootstrap.servers`` of the session's Kafka broker (see tests/kafka_fixture.py)."""
    try:
        with kafka_fixture.session_broker(tmp_path_factory.mktemp("kafka")) as bootstrap_servers:
            yield bootstrap_servers
    except kafka_fixture.NoBrokerError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An AdminClient on the session broker."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory: ``unique_name("in") -> "in-<test name>-<random>"``, a valid Kafka topic name."""

    def make(prefix: str) -> str:
        return kafka_fixture.unique_name(prefix, request.node.name)

    return make


@pytest.fixture
def create_topic(kafka_admin: AdminClient) -> Callable[..., str]:
    """Factory: ``create_topic(name, partitions=1, config=None) -> name``, once it has leaders."""

    def make(name: str, partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        return kafka_fixture.create_topic(kafka_admin, name, partitions, config)

    return make


LONG_TESTS_ENV = "KSTATEFUN_LONG_TESTS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` run only with KSTATEFUN_LONG_TESTS=1 (`make test-long`, which CI
    runs after `make test`), so that `make test` stays under 15 minutes."""
    if os.environ.get(LONG_TESTS_ENV):
        return
    skip = pytest.mark.skip(reason=f"long: `make test-long` runs it ({LONG_TESTS_ENV}=1)")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/container (`make test-container`: images, containers, a compose stack) is collected
    only when named on the command line, so `make test` (``pytest tests``) leaves it out."""
    if collection_path.name != "container" or collection_path.parent != _TESTS:
        return None
    for arg in config.args:
        named = Path(arg.split("::")[0]).resolve()
        if named == collection_path or collection_path in named.parents:
            return None
    return True
