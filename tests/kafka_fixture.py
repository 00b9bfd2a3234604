"""Which Kafka broker the test session uses, and helpers shared by the Kafka fixtures.

In order of preference: ``KAFKA_BOOTSTRAP_SERVERS`` (a broker someone already runs), a
testcontainers ``apache/kafka:4.1.1`` container when a Docker engine answers, or a LocalKafka
JVM broker in a temporary directory.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kstatefun.devkafka import LocalKafka
from kstatefun.devkafka.broker import TUNING, free_ports, new_cluster_id, wait_until_ready
from kstatefun.errors import DevKafkaError

logger = logging.getLogger(__name__)

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
DOCKER_IMAGE = "apache/kafka:4.1.1"
BROKER_START_TIMEOUT_S = 120.0

_MAX_NAME = 200
_UNSAFE = re.compile(r"[^a-zA-Z0-9._-]+")


class NoBrokerError(RuntimeError):
    """No Kafka broker could be found or started for the tests."""


@contextmanager
def session_broker(data_dir: Path) -> Iterator[str]:
    """Yield ``bootstrap.servers`` of a broker that lives as long as the context."""
    configured = os.environ.get(BOOTSTRAP_ENV)
    if configured:
        logger.info("using the configured kafka broker bootstrap_servers=%s", configured)
        yield configured
        return
    if docker_engine_answers():
        with _docker_broker() as bootstrap_servers:
            yield bootstrap_servers
        return
    broker = LocalKafka(data_dir)
    try:
        broker.start(timeout=BROKER_START_TIMEOUT_S)
    except DevKafkaError as e:
        raise NoBrokerError(
            f"no Kafka broker for the tests: {BOOTSTRAP_ENV} is not set, no Docker engine "
            f"answers, and the local broker did not start: {e}"
        ) from e
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


def docker_engine_answers(timeout_s: float = 2.0) -> bool:
    """True when a Docker engine answers a ping within ``timeout_s``; never hangs longer."""
    try:
        import docker

        client = docker.from_env(timeout=int(max(1, timeout_s)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure means: no usable engine
        return False


@contextmanager
def _docker_broker() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer

    # The advertised listener must name the host port, so it is fixed before the start.
    (port,) = free_ports(1)
    container = DockerContainer(DOCKER_IMAGE)
    host = container.get_docker_client().host()
    env = {
        "CLUSTER_ID": new_cluster_id(),
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://localhost:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_HEAP_OPTS": "-Xmx512m",
        **_docker_env(TUNING),
    }
    for key, value in env.items():
        container.with_env(key, value)
    container.with_bind_ports(port, port)
    try:
        container.start()
    except Exception as e:
        raise NoBrokerError(f"cannot start the {DOCKER_IMAGE} container: {e}") from e
    bootstrap_servers = f"{host}:{port}"
    try:
        try:
            wait_until_ready(bootstrap_servers, BROKER_START_TIMEOUT_S)
        except TimeoutError as e:
            stdout, stderr = container.get_logs()
            tail = "\n".join((stdout + stderr).decode(errors="replace").splitlines()[-40:])
            raise NoBrokerError(
                f"the {DOCKER_IMAGE} container did not get ready: {e}\n{tail}"
            ) from e
        yield bootstrap_servers
    finally:
        container.stop()


def _docker_env(settings: Mapping[str, str]) -> dict[str, str]:
    # The apache/kafka image maps KAFKA_A_B to a.b (none of our keys contains '_' or '-').
    return {"KAFKA_" + key.upper().replace(".", "_"): value for key, value in settings.items()}


def unique_name(prefix: str, test_name: str) -> str:
    """``<prefix>-<test_name>-<random>``, using only [a-zA-Z0-9._-], at most 200 characters."""
    suffix = secrets.token_hex(4)
    head = _UNSAFE.sub("-", prefix).strip("-") or "t"
    middle = _UNSAFE.sub("-", test_name).strip("-")
    room = _MAX_NAME - len(head) - len(suffix) - 2
    if room <= 0:
        return f"{head[: _MAX_NAME - len(suffix) - 1]}-{suffix}"
    middle = middle[:room].rstrip("-")
    return f"{head}-{middle}-{suffix}" if middle else f"{head}-{suffix}"


def create_topic(
    admin: AdminClient,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    replicas: list[list[int]] | None = None,
) -> str:
    """Create ``name`` and wait until every partition has a leader; return the name.
    ``replicas``: each partition's broker ids, the first its preferred leader (one list per
    partition) instead of the cluster's placement."""
    if replicas is None:
        topic = NewTopic(name, num_partitions=partitions, config=dict(config or {}))
    else:
        assert len(replicas) == partitions, "one replica list per partition"
        topic = NewTopic(name, partitions, replica_assignment=replicas, config=dict(config or {}))
    admin.create_topics([topic], operation_timeout=timeout_s)[name].result(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        if _has_leaders(admin, name, partitions):
            return name
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {name!r} has no leader for all {partitions} partitions")
        time.sleep(0.05)


def _has_leaders(admin: AdminClient, name: str, partitions: int) -> bool:
    try:
        metadata: Any = admin.list_topics(topic=name, timeout=5)
    except KafkaException:
        return False
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None or len(topic.partitions) != partitions:
        return False
    return all(p.leader >= 0 and p.error is None for p in topic.partitions.values())
