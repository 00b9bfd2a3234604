"""Kafka security settings: mapped to librdkafka properties for every client, secrets read from
the environment or files, and never shown by repr(), str() or an error message."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kstatefun.config import load_settings
from kstatefun.errors import ConfigError
from kstatefun.kafka import clients
from kstatefun.tools.common import Tool

PASSWORD = "pw-7f3a91c2-never-shown"
KEY_PASSWORD = "kp-51be0d77-never-shown"
SECRET = "sec-0c6e2d19-never-shown"
OAUTH_SECRET = "sasl.oauthbearer.client.secret"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.upper().startswith("KSTATEFUN_"):
            monkeypatch.delenv(key)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for the PEM files: the settings only check that they are readable files."""
    files = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        files[name] = tmp_path / name
        files[name].write_text("-----BEGIN PLACEHOLDER-----\n")
    files["password"] = tmp_path / "password.txt"
    files["password"].write_text(PASSWORD + "\n")  # as `echo` and secret mounts write it
    files["key-password"] = tmp_path / "key-password.txt"
    files["key-password"].write_text(KEY_PASSWORD)
    return files


def sasl_ssl_env(monkeypatch, tls_files, **extra: str) -> None:
    env = {
        "KSTATEFUN_SECURITY_PROTOCOL": "sasl_ssl",
        "KSTATEFUN_SASL_MECHANISM": "scram-sha-512",
        "KSTATEFUN_SASL_USERNAME": "worker",
        "KSTATEFUN_SASL_PASSWORD_FILE": str(tls_files["password"]),
        "KSTATEFUN_SSL_CA_LOCATION": str(tls_files["ca.pem"]),
        "KSTATEFUN_SSL_CERTIFICATE_LOCATION": str(tls_files["client.pem"]),
        "KSTATEFUN_SSL_KEY_LOCATION": str(tls_files["client.key"]),
        "KSTATEFUN_SSL_KEY_PASSWORD_FILE": str(tls_files["key-password"]),
        **extra,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def assert_no_secret(text: str) -> None:
    for secret in (PASSWORD, KEY_PASSWORD, SECRET):
        assert secret not in text


def test_no_security_settings_change_nothing():
    s = load_settings()
    assert s.kafka_properties == {}
    assert clients.base_config(s.bootstrap_servers, s.kafka_properties) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "metadata.recovery.strategy": "none",
    }


def test_security_settings_map_to_librdkafka_properties(monkeypatch, tls_files):
    sasl_ssl_env(monkeypatch, tls_files, KSTATEFUN_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM="None")
    s = load_settings()
    assert (s.security_protocol, s.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    conf = clients.base_config(s.bootstrap_servers, s.kafka_properties)
    assert conf == {
        "bootstrap.servers": "127.0.0.1:9092",
        "metadata.recovery.strategy": "none",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "worker",
        "sasl.password": PASSWORD,  # the file's final newline is not part of it
        "ssl.ca.location": str(tls_files["ca.pem"]),
        "ssl.certificate.location": str(tls_files["client.pem"]),
        "ssl.key.location": str(tls_files["client.key"]),
        "ssl.key.password": KEY_PASSWORD,
        "ssl.endpoint.identification.algorithm": "none",
    }


def test_every_client_gets_the_security_properties(monkeypatch, tls_files):
    sasl_ssl_env(monkeypatch, tls_files)
    s = load_settings()
    extra = s.kafka_properties
    configs = {
        "admin": clients.base_config(s.bootstrap_servers, extra),
        "producer": clients.transactional_producer_config(s.bootstrap_servers, "t", 10_000, extra),
        "consumer": clients.group_consumer_config(s.bootstrap_servers, "g", extra),
        "restore": clients.restore_consumer_config(s.bootstrap_servers, extra),
        "cli tools": Tool(s, 5.0, False)._config(),
    }
    for name, conf in configs.items():
        assert conf["security.protocol"] == "SASL_SSL", name
        assert conf["sasl.password"] == PASSWORD, name
        assert conf["ssl.key.password"] == KEY_PASSWORD, name


def test_passwords_from_the_environment(monkeypatch, tls_files):
    sasl_ssl_env(
        monkeypatch,
        tls_files,
        KSTATEFUN_SASL_PASSWORD=PASSWORD,
        KSTATEFUN_SSL_KEY_PASSWORD=KEY_PASSWORD,
    )
    monkeypatch.delenv("KSTATEFUN_SASL_PASSWORD_FILE")
    monkeypatch.delenv("KSTATEFUN_SSL_KEY_PASSWORD_FILE")
    s = load_settings()
    assert s.kafka_properties["sasl.password"] == PASSWORD
    assert s.kafka_properties["ssl.key.password"] == KEY_PASSWORD
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == PASSWORD


def test_secrets_are_not_in_repr_or_str(monkeypatch, tls_files):
    sasl_ssl_env(
        monkeypatch,
        tls_files,
        KSTATEFUN_SASL_PASSWORD=PASSWORD,
        KSTATEFUN_KAFKA_SECRET_FILES=f'{{"{OAUTH_SECRET}": "{tls_files["password"]}"}}',
    )
    monkeypatch.delenv("KSTATEFUN_SASL_PASSWORD_FILE")
    tls_files["password"].write_text(SECRET)
    s = load_settings()
    assert s.kafka_properties[OAUTH_SECRET] == SECRET
    for text in (repr(s), str(s), f"{s}", repr(s.kafka_properties), f"{s.kafka_properties}"):
        assert_no_secret(text)
    assert "SecretStr('**********')" in repr(s)
    assert "'sasl.password': '**********'" in repr(s.kafka_properties)
    assert "'sasl.username': 'worker'" in repr(s.kafka_properties)  # not a secret
    assert_no_secret(repr(Tool(s, 5.0, False)))  # the CLI tools' dataclass holds the settings
    conf = clients.base_config(s.bootstrap_servers, s.kafka_properties)
    assert_no_secret(repr(clients.redacted(conf)))
    assert clients.redacted(conf)["security.protocol"] == "SASL_SSL"


def test_secrets_in_kafka_properties_are_redacted_too(monkeypatch):
    monkeypatch.setenv(
        "KSTATEFUN_KAFKA_PROPERTIES",
        f'{{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "u", '
        f'"sasl.password": "{PASSWORD}", "ssl.keystore.password": "{KEY_PASSWORD}"}}',
    )
    s = load_settings()
    assert s.kafka_properties["sasl.password"] == PASSWORD
    assert_no_secret(repr(s))


@pytest.mark.parametrize(
    "prop",
    [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "ssl_key",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
    ],
)
def test_sensitive_properties(prop):
    assert clients.is_sensitive(prop)


@pytest.mark.parametrize(
    "prop", ["sasl.username", "ssl.key.location", "ssl.certificate.pem", "ssl.ca.location"]
)
def test_properties_that_are_not_secret(prop):
    assert not clients.is_sensitive(prop)


def problem(monkeypatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert_no_secret(message)
    return message


def test_password_and_password_file_together(monkeypatch, tls_files):
    sasl_ssl_env(monkeypatch, tls_files, KSTATEFUN_SASL_PASSWORD=PASSWORD)
    message = problem(monkeypatch)
    assert "KSTATEFUN_SASL_PASSWORD_FILE" in message and "KSTATEFUN_SASL_PASSWORD)" in message
    assert "one way" in message


def test_sasl_settings_need_a_sasl_protocol(monkeypatch):
    message = problem(
        monkeypatch,
        KSTATEFUN_SASL_MECHANISM="SCRAM-SHA-256",
        KSTATEFUN_SASL_USERNAME="u",
        KSTATEFUN_SASL_PASSWORD=PASSWORD,
    )
    assert "setting 'sasl_mechanism' (KSTATEFUN_SASL_MECHANISM)" in message
    assert "needs security_protocol SASL_SSL or SASL_PLAINTEXT" in message
    assert "the default is PLAINTEXT" in message


def test_protocol_may_come_from_kafka_properties(monkeypatch):
    s = load_settings(
        kafka_properties={"security.protocol": "SASL_SSL"},
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=PASSWORD,
    )
    assert s.kafka_properties["sasl.password"] == PASSWORD


def test_ssl_settings_need_tls(monkeypatch, tls_files):
    message = problem(
        monkeypatch,
        KSTATEFUN_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KSTATEFUN_SASL_MECHANISM="SCRAM-SHA-512",
        KSTATEFUN_SASL_USERNAME="u",
        KSTATEFUN_SASL_PASSWORD=PASSWORD,
        KSTATEFUN_SSL_CA_LOCATION=str(tls_files["ca.pem"]),
    )
    assert "setting 'ssl_ca_location' (KSTATEFUN_SSL_CA_LOCATION)" in message
    assert "needs security_protocol SSL or SASL_SSL" in message


def test_scram_needs_a_password(monkeypatch):
    message = problem(
        monkeypatch,
        KSTATEFUN_SECURITY_PROTOCOL="SASL_SSL",
        KSTATEFUN_SASL_MECHANISM="SCRAM-SHA-512",
        KSTATEFUN_SASL_USERNAME="u",
    )
    assert (
        "needs a password: set KSTATEFUN_SASL_PASSWORD or KSTATEFUN_SASL_PASSWORD_FILE" in message
    )


def test_username_without_a_password_mechanism(monkeypatch):
    message = problem(
        monkeypatch, KSTATEFUN_SECURITY_PROTOCOL="SASL_SSL", KSTATEFUN_SASL_USERNAME="u"
    )
    assert "setting 'sasl_username' (KSTATEFUN_SASL_USERNAME)" in message
    assert "librdkafka's default is GSSAPI" in message


def test_plain_without_tls_is_warned_about(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="kstatefun.config.settings"):
        load_settings(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username="u",
            sasl_password=PASSWORD,
        )
    assert "sends the Kafka password unencrypted" in caplog.text
    assert_no_secret(caplog.text)


def test_certificate_and_key_go_together(monkeypatch, tls_files):
    message = problem(
        monkeypatch,
        KSTATEFUN_SECURITY_PROTOCOL="SSL",
        KSTATEFUN_SSL_CERTIFICATE_LOCATION=str(tls_files["client.pem"]),
    )
    assert "setting 'ssl_key_location' (KSTATEFUN_SSL_KEY_LOCATION)" in message
    assert "set both or neither" in message


def test_key_password_needs_a_key(monkeypatch):
    message = problem(
        monkeypatch, KSTATEFUN_SECURITY_PROTOCOL="SSL", KSTATEFUN_SSL_KEY_PASSWORD=KEY_PASSWORD
    )
    assert "setting 'ssl_key_password' (KSTATEFUN_SSL_KEY_PASSWORD)" in message


@pytest.mark.parametrize(
    "setting",
    ["ssl_ca_location", "ssl_certificate_location", "ssl_key_location", "sasl_password_file"],
)
def test_missing_files_are_named(monkeypatch, tmp_path, setting):
    missing = tmp_path / "nowhere.pem"
    message = problem(monkeypatch, **{f"KSTATEFUN_{setting.upper()}": str(missing)})
    assert f"KSTATEFUN_{setting.upper()}" in message
    assert f"{missing} is not a file (it does not exist)" in message


def test_ca_location_probe_is_passed_through():
    s = load_settings(security_protocol="SSL", ssl_ca_location="probe")
    assert s.kafka_properties["ssl.ca.location"] == "probe"


def test_empty_password_file(monkeypatch, tls_files):
    tls_files["password"].write_text("\n")
    sasl_ssl_env(monkeypatch, tls_files)
    message = problem(monkeypatch)
    assert f"KSTATEFUN_SASL_PASSWORD_FILE): {tls_files['password']} is empty" in message


def test_same_property_twice_is_refused(monkeypatch, tls_files):
    sasl_ssl_env(monkeypatch, tls_files, KSTATEFUN_KAFKA_PROPERTIES='{"sasl.username": "other"}')
    message = problem(monkeypatch)
    assert "setting 'kafka_properties' (KSTATEFUN_KAFKA_PROPERTIES)" in message
    assert "'sasl.username' is also set by setting 'sasl_username'" in message


def test_secret_files_for_any_property(monkeypatch, tls_files):
    tls_files["password"].write_text(SECRET + "\r\n")
    monkeypatch.setenv(
        "KSTATEFUN_KAFKA_SECRET_FILES", f'{{"ssl.keystore.password": "{tls_files["password"]}"}}'
    )
    monkeypatch.setenv(
        "KSTATEFUN_KAFKA_PROPERTIES",
        f'{{"security.protocol": "SSL", "ssl.keystore.location": "{tls_files["client.key"]}"}}',
    )
    s = load_settings()
    assert s.kafka_properties["ssl.keystore.password"] == SECRET
    assert_no_secret(repr(s))


def test_secret_files_refuse_properties_with_a_setting(monkeypatch, tls_files):
    message = problem(
        monkeypatch,
        KSTATEFUN_KAFKA_SECRET_FILES=f'{{"sasl.password": "{tls_files["password"]}"}}',
    )
    assert "'sasl.password' has a setting of its own: use KSTATEFUN_SASL_PASSWORD" in message


def test_secret_file_that_is_missing(monkeypatch, tmp_path):
    message = problem(
        monkeypatch,
        KSTATEFUN_KAFKA_SECRET_FILES=f'{{"ssl.keystore.password": "{tmp_path / "x"}"}}',
    )
    assert "setting 'kafka_secret_files' (KSTATEFUN_KAFKA_SECRET_FILES)" in message
    assert "['ssl.keystore.password']" in message and "does not exist" in message


def test_invalid_values_do_not_echo_secrets(monkeypatch):
    message = problem(
        monkeypatch, KSTATEFUN_KAFKA_PROPERTIES=f'{{"sasl.password": ["{PASSWORD}"]}}'
    )
    assert "property 'sasl.password' needs a plain value (text or number), got *****" in message
    with pytest.raises(ConfigError) as info:
        load_settings(sasl_password=987654321)
    assert "987654321" not in str(info.value)
    assert "KSTATEFUN_SASL_PASSWORD" in str(info.value)


def test_unknown_protocol_or_mechanism(monkeypatch):
    message = problem(monkeypatch, KSTATEFUN_SECURITY_PROTOCOL="TLS")
    assert "setting 'security_protocol' (KSTATEFUN_SECURITY_PROTOCOL)" in message
    message = problem(
        monkeypatch, KSTATEFUN_SECURITY_PROTOCOL="SSL", KSTATEFUN_SASL_MECHANISM="MD5"
    )
    assert "setting 'sasl_mechanism' (KSTATEFUN_SASL_MECHANISM)" in message
