"""Kafka over SASL_SSL: a local broker with SCRAM-SHA-512 over TLS (mutual TLS required) from a CA
made for the test session, a real worker configured only through the security settings, its
output exactly-once, a wrong password failing clearly, and no secret in any log or dead letter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from kstatefun.devkafka import LocalKafka, SaslSslConfig
from kstatefun.devkafka.security import SCRAM_ITERATIONS
from kstatefun.errors import DevKafkaError
from kstatefun.kafka.membership import MembershipError, remove_static_members
from tests import kafka_fixture
from tests.harness import (
    MODULE_TEMPLATE,
    ROOT,
    App,
    check_exactly_once,
    keyed_events,
    produce_events,
)
from tests.integration.test_membership import check_release_and_remove
from tests.security_fixture import Pki, make_pki, missing_tools

USER = "kstatefun-worker"
START_TIMEOUT_S = 120.0


def _needs_tools() -> None:
    missing = missing_tools() + ([] if shutil.which("java") else ["java"])
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")


@dataclass
class SecureKafka:
    broker: LocalKafka
    pki: Pki
    password: str
    admin: AdminClient  # PLAINTEXT, for the test's own set-up

    @property
    def bootstrap(self) -> str:
        return self.broker.sasl_ssl_bootstrap_servers

    def client_config(self, password: str | None = None) -> dict[str, Any]:
        """librdkafka settings of a client of the SASL_SSL listener (the test's own clients)."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": USER,
            "sasl.password": password or self.password,
            "ssl.ca.location": str(self.pki.ca),
            "ssl.certificate.location": str(self.pki.client_cert),
            "ssl.key.location": str(self.pki.client_key),
            "ssl.key.password": self.pki.client_key_password,
        }

    def worker_env(self, password_file: Path) -> dict[str, str]:
        """Everything a worker needs for SASL_SSL, as KSTATEFUN_* settings: the SCRAM password
        from a file, the client key's password from the environment."""
        return {
            "KSTATEFUN_SECURITY_PROTOCOL": "SASL_SSL",
            "KSTATEFUN_SASL_MECHANISM": "SCRAM-SHA-512",
            "KSTATEFUN_SASL_USERNAME": USER,
            "KSTATEFUN_SASL_PASSWORD_FILE": str(password_file),
            "KSTATEFUN_SSL_CA_LOCATION": str(self.pki.ca),
            "KSTATEFUN_SSL_CERTIFICATE_LOCATION": str(self.pki.client_cert),
            "KSTATEFUN_SSL_KEY_LOCATION": str(self.pki.client_key),
            "KSTATEFUN_SSL_KEY_PASSWORD": self.pki.client_key_password,
        }

    def secrets(self) -> list[str]:
        return [self.password, self.pki.client_key_password, self.pki.store_password]


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    _needs_tools()
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    password = "scram-" + secrets.token_urlsafe(16)
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka-sasl-ssl"),
        sasl_ssl=pki.broker_config({USER: password}, client_auth="required"),
    )
    try:
        broker.start(timeout=START_TIMEOUT_S)
    except DevKafkaError as e:
        pytest.fail(f"the SASL_SSL broker did not start: {e}", pytrace=False)
    try:
        yield SecureKafka(
            broker, pki, password, AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        )
    finally:
        broker.stop()


def make_secure_app(kafka: SecureKafka, tmp_path: Path, name: str, password: str) -> App:
    """An App of tests/apps/counting.py whose workers reach Kafka only over SASL_SSL."""
    app_id = kafka_fixture.unique_name("app", name)
    ingress = kafka_fixture.unique_name("in", name)
    egress = kafka_fixture.unique_name("out", name)
    for topic in (ingress, egress):
        kafka_fixture.create_topic(kafka.admin, topic, partitions=4)
    module = tmp_path / "module.yaml"
    module.write_text(
        MODULE_TEMPLATE.format(
            bootstrap=kafka.bootstrap,
            app_id=app_id,
            ingress=ingress,
            functions="tests.apps.counting:functions",
            target="test/counter",
            value_type="test/Event",
        )
    )
    password_file = tmp_path / "kafka-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    app = App(kafka.bootstrap, app_id, ingress, egress, module, partitions=4)
    app.env = {**kafka.worker_env(password_file), "KSTATEFUN_LOG_LEVEL": "DEBUG"}
    return app


def read_committed(kafka: SecureKafka, topic: str, expected: int, timeout: float = 90):
    """Records of ``topic`` read over SASL_SSL with read_committed: (key, value bytes)."""
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"reader-{topic}-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    out: list[tuple[str | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    settle_until = None
    try:
        while time.monotonic() < deadline:
            if settle_until is None and len(out) >= expected:
                settle_until = time.monotonic() + 2.0  # long enough to see duplicates
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    key = msg.key()
                    out.append((key.decode() if key is not None else None, msg.value()))
    finally:
        consumer.close()
    return out


def run_cli(kafka: SecureKafka, app: App, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **app.env)
    return subprocess.run(
        [sys.executable, "-m", "kstatefun.cli", *args, "--bootstrap-servers", kafka.bootstrap,
         "--app-id", app.app_id],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.kafka
def test_worker_over_sasl_ssl_is_exactly_once(secure_kafka, tmp_path, request):
    kafka = secure_kafka
    app = make_secure_app(kafka, tmp_path, request.node.name, kafka.password)
    events, expected = keyed_events(keys=6, per_key=5)
    bad = [(b"boom-key", json.dumps({"seq": -1, "boom": True}).encode())]
    produce_events(kafka.broker.bootstrap_servers, app.ingress, events + bad)
    try:
        app.start_worker("w1")
        records = read_committed(kafka, app.egress, len(events))
        assert app.stop_worker("w1") == 0, app.all_logs()
    finally:
        app.stop_all()
    decoded = [(key or "", (value or b"").decode()) for key, value in records]
    assert check_exactly_once(decoded, expected) == [], app.all_logs()

    # The failing record is a dead letter; neither it nor the CLI tools' view of it holds a
    # secret (the tools read it over SASL_SSL with the same settings).
    dead = read_committed(kafka, f"{app.app_id}-dead-letters", 1)
    assert len(dead) == 1, app.all_logs()
    tail = run_cli(kafka, app, "dead-letters", "tail", "--json")
    assert tail.returncode == 0, tail.stderr
    assert json.loads(tail.stdout.splitlines()[0])["reason"] == "function-error"

    log = app.log("w1")
    assert "worker started" in log
    for secret in kafka.secrets():
        assert secret not in log
        assert secret.encode() not in dead[0][1]
        assert secret not in tail.stdout + tail.stderr
    # The SCRAM user was created at format time from a salted password: the broker's files
    # never saw the password itself.
    for name in ("server.properties", "broker.log", "broker.out"):
        assert kafka.password not in (kafka.broker.data_dir / name).read_text(errors="replace")


@pytest.mark.kafka
def test_wrong_password_fails_clearly(secure_kafka, tmp_path, request):
    kafka = secure_kafka
    wrong = "wrong-" + secrets.token_urlsafe(12)
    app = make_secure_app(kafka, tmp_path, request.node.name, wrong)
    proc = app.start_worker("w1")
    try:
        code = proc.wait(timeout=120)
    finally:
        app.stop_all()
    log = app.log("w1")
    assert code == 2, log  # a configuration error, not a crash
    assert "kstatefun: error: cannot use Kafka at" in log and "security settings" in log
    # librdkafka names the cause; the worker gives up at its first metadata request.
    assert re.search(r"SASL authentication error: Authentication failed .*invalid credentials", log)
    for secret in [wrong, *kafka.secrets()]:
        assert secret not in log


@pytest.mark.kafka
def test_client_without_certificate_is_refused(secure_kafka):
    conf = secure_kafka.client_config()
    for key in ("ssl.certificate.location", "ssl.key.location", "ssl.key.password"):
        del conf[key]
    admin = AdminClient({**conf, "logger": _quiet()})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def _quiet() -> logging.Logger:
    logger = logging.getLogger("tests.security.client")
    logger.setLevel(logging.CRITICAL)
    return logger


@pytest.mark.kafka
def test_scram_users_are_added_to_a_data_dir_formatted_before(tmp_path):
    """A data dir formatted without SASL_SSL gets its users through the Admin API (KIP-554);
    server.properties holding the keystore password is private; no SCRAM password on disk."""
    _needs_tools()
    pki = make_pki(tmp_path / "pki")
    data_dir = tmp_path / "kafka"
    with LocalKafka(data_dir):
        pass
    password = "later-" + secrets.token_urlsafe(12)
    broker = LocalKafka(data_dir, sasl_ssl=pki.broker_config({USER: password}))
    broker.start(timeout=START_TIMEOUT_S)
    try:
        admin = AdminClient(
            {
                "bootstrap.servers": broker.sasl_ssl_bootstrap_servers,
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": USER,
                "sasl.password": password,
                "ssl.ca.location": str(pki.ca),
            }
        )
        assert admin.list_topics(timeout=20).brokers
    finally:
        broker.stop()
    properties = data_dir / "server.properties"
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600
    for path in (properties, data_dir / "broker.log", data_dir / "broker.out"):
        assert password not in path.read_text(errors="replace"), path


# --- SaslSslConfig without a broker ------------------------------------------------------------


def _config(tmp_path: Path, **kwargs: Any) -> SaslSslConfig:
    keystore = tmp_path / "ks.p12"
    keystore.write_bytes(b"x")
    values: dict[str, Any] = {
        "keystore": keystore,
        "keystore_password": "store-pw",
        "users": {"alice": "alice-pw"},
    }
    return SaslSslConfig(**{**values, **kwargs})


def test_sasl_ssl_config_hides_passwords(tmp_path):
    config = _config(tmp_path, key_password="key-pw")
    assert "store-pw" not in repr(config)
    assert "alice-pw" not in repr(config) and "key-pw" not in repr(config)


def test_sasl_ssl_config_broker_properties(tmp_path):
    truststore = tmp_path / "trust.p12"
    truststore.write_bytes(b"x")
    props = _config(
        tmp_path,
        keystore_password="a\\b",
        truststore=truststore,
        truststore_password="t",
        client_auth="required",
    ).broker_properties()
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
    )
    assert props["listener.name.sasl_ssl.ssl.keystore.password"] == "a\\\\b"  # Properties escape
    assert props["listener.name.sasl_ssl.ssl.client.auth"] == "required"
    assert props["listener.name.sasl_ssl.ssl.truststore.location"] == str(truststore.resolve())


def test_sasl_ssl_config_format_arguments_hold_salted_passwords_only(tmp_path):
    args = _config(tmp_path, users={"alice": "alice-pw", "bob": "bob-pw"}).format_arguments()
    assert args[0::2] == ["--add-scram", "--add-scram"]
    assert "alice-pw" not in " ".join(args) and "bob-pw" not in " ".join(args)
    match = re.fullmatch(
        r'SCRAM-SHA-512=\[name=alice,iterations=(\d+),salt="([^"]+)",saltedpassword="([^"]+)"\]',
        args[1],
    )
    assert match is not None, args[1]
    iterations, salt, salted = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    assert iterations == SCRAM_ITERATIONS
    assert salted == hashlib.pbkdf2_hmac("sha512", b"alice-pw", salt, iterations)  # RFC 5802 Hi()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"users": {}}, "at least one SCRAM user"),
        ({"users": {"a,b": "pw"}}, "may only contain"),
        ({"users": {"alice": ""}}, "empty password"),
        ({"mechanism": "PLAIN"}, "is not one of SCRAM-SHA-256, SCRAM-SHA-512"),
        ({"client_auth": "required"}, "needs a truststore"),
    ],
)
def test_sasl_ssl_config_is_checked(tmp_path, kwargs, problem):
    with pytest.raises(DevKafkaError, match=problem):
        _config(tmp_path, **kwargs)


def test_local_kafka_without_sasl_ssl_has_no_such_listener(tmp_path):
    broker = LocalKafka(tmp_path)
    assert broker.sasl_ssl_port is None
    with pytest.raises(DevKafkaError, match="without sasl_ssl"):
        broker.sasl_ssl_bootstrap_servers  # noqa: B018
    assert "SASL_SSL" not in broker._settings()["listeners"]


def test_local_kafka_with_sasl_ssl_listens_on_127_0_0_1_only(tmp_path):
    broker = LocalKafka(tmp_path / "k", sasl_ssl=_config(tmp_path))
    settings = broker._settings()
    listeners = settings["listeners"].split(",")
    assert all("://127.0.0.1:" in listener for listener in listeners)
    assert f"SASL_SSL://127.0.0.1:{broker.sasl_ssl_port}" in listeners
    assert settings["inter.broker.listener.name"] == "PLAINTEXT"
    assert "SASL_SSL:SASL_SSL" in settings["listener.security.protocol.map"]


def test_group_membership_requests_over_sasl_ssl(secure_kafka, request):
    """kafka/membership.py's own connection speaks SCRAM over mutual TLS (what a named worker
    uses to release a killed predecessor and to leave for good), and a wrong password gets a
    clear error."""
    topic = kafka_fixture.unique_name("in", request.node.name)
    kafka_fixture.create_topic(secure_kafka.admin, topic, partitions=2)
    group = kafka_fixture.unique_name("g", request.node.name)
    check_release_and_remove(secure_kafka.client_config(), topic, group)
    with pytest.raises(MembershipError, match="SASL authentication failed"):
        remove_static_members(secure_kafka.client_config(password="wrong"), group, ["m1"])
