"""Fixtures of `make test-container`: the container runtime, the worker image, and a Kafka
broker started with testcontainers through the runtime's Docker API (podman serves one with
``podman system service``)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kafka_fixture
from tests.container.runtime import IMAGE, NoContainerRuntime, Runtime, find_runtime

_MEASURED: list[str] = []


def measured(line: str) -> None:
    """A figure for the end-of-run summary (build time, image size, ...)."""
    _MEASURED.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _MEASURED:
        terminalreporter.section("container measurements")
        for line in _MEASURED:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    try:
        return find_runtime()
    except NoContainerRuntime as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def image(runtime: Runtime) -> str:
    """The Dockerfile built as kstatefun:latest (the tag docker-compose.yml uses)."""
    seconds = runtime.build_image()
    size = runtime.image_size()
    measured(f"image {IMAGE}: built in {seconds:.0f} s, {size / 1e6:.0f} MB")
    return IMAGE


@pytest.fixture(scope="session")
def docker_api(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Docker API for testcontainers: the engine's own, or podman's API service on a socket
    of this session. Ryuk (testcontainers' reaper) is off: its image cannot be pulled here, and
    the fixtures remove what they start."""
    saved = {k: os.environ.get(k) for k in ("DOCKER_HOST", "TESTCONTAINERS_RYUK_DISABLED")}
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    service = None
    log = Path(tmp_path_factory.mktemp("podman-api"))
    if runtime.podman:
        socket = log / "podman.sock"
        log = log / "service.log"
        with log.open("wb") as out:
            service = subprocess.Popen(
                [runtime.cli, "system", "service", "--time=0", f"unix://{socket}"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        os.environ["DOCKER_HOST"] = f"unix://{socket}"
    try:
        # generous: on a loaded machine podman's service takes a while to answer
        deadline = time.monotonic() + 180
        while not kafka_fixture.docker_engine_answers(timeout_s=10):
            if time.monotonic() > deadline or (service and service.poll() is not None):
                said = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
                pytest.fail(
                    f"no Docker API for testcontainers at {os.environ.get('DOCKER_HOST')} "
                    f"within 180 s (podman system service: {said or 'no output'})",
                    pytrace=False,
                )
            time.sleep(1)
        yield
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def kafka_bootstrap(docker_api: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's broker: kafka_fixture's testcontainers apache/kafka:4.1.1 (a Docker API
    answers now), published on a free host port."""
    try:
        with kafka_fixture.session_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
            yield bootstrap
    except kafka_fixture.NoBrokerError as e:
        pytest.fail(str(e), pytrace=False)
