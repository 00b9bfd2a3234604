"""An optional SASL_SSL listener for :class:`~kstatefun.devkafka.LocalKafka` (tests and
development): TLS from a keystore the caller made, SCRAM users created with the storage.

The PLAINTEXT and CONTROLLER listeners stay as they are (127.0.0.1 only); the broker talks to
itself over PLAINTEXT. The SCRAM users go into the cluster metadata when the storage is
formatted (``kafka-storage format --add-scram``, KIP-900), as salted passwords computed here so
that no password is put on a command line; a data directory formatted earlier gets them
through the Admin API (KIP-554) once the broker is up.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from kstatefun.errors import DevKafkaError

__all__ = ["SaslSslConfig"]

LISTENER: Final = "SASL_SSL"
SCRAM_ITERATIONS: Final = 4096  # Kafka's minimum
_HASHES: Final = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
_USER_RE: Final = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SaslSslConfig:
    """A SASL_SSL listener on 127.0.0.1: SCRAM authentication over TLS.

    ``keystore`` holds the broker's private key and certificate chain (``keystore_type``
    PKCS12, JKS or PEM); ``users`` maps SCRAM user names to passwords. ``truststore`` (the CAs
    whose client certificates the broker accepts) is needed only when ``client_auth`` is
    ``requested`` or ``required``. ``port`` 0 picks a free port. Passwords are left out of
    ``repr``.
    """

    keystore: Path
    keystore_password: str = field(repr=False)
    users: Mapping[str, str] = field(repr=False)
    mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    keystore_type: str = "PKCS12"
    key_password: str | None = field(default=None, repr=False)
    truststore: Path | None = None
    truststore_password: str | None = field(default=None, repr=False)
    truststore_type: str = "PKCS12"
    client_auth: Literal["none", "requested", "required"] = "none"
    port: int = 0

    def __post_init__(self) -> None:
        if self.mechanism not in _HASHES:
            raise DevKafkaError(
                f"SASL_SSL mechanism {self.mechanism!r} is not one of {', '.join(_HASHES)}"
            )
        if not self.users:
            raise DevKafkaError("a SASL_SSL listener needs at least one SCRAM user")
        for name, password in self.users.items():
            if not _USER_RE.fullmatch(name):
                raise DevKafkaError(
                    f"SCRAM user name {name!r} may only contain letters, digits, '.', '_', '-'"
                )
            if not password:
                raise DevKafkaError(f"SCRAM user {name!r} has an empty password")
        if self.client_auth not in ("none", "requested", "required"):
            raise DevKafkaError(
                f"client_auth {self.client_auth!r} is not one of none, requested, required"
            )
        if self.client_auth != "none" and self.truststore is None:
            raise DevKafkaError(
                f"client_auth={self.client_auth} needs a truststore holding the CA that signs "
                "the clients' certificates"
            )
        for path in (self.keystore, self.truststore):
            if path is not None and not Path(path).is_file():
                raise DevKafkaError(f"SASL_SSL listener: {path} is not a file")

    def broker_properties(self) -> dict[str, str]:
        """server.properties entries for the listener (listener-scoped, so PLAINTEXT and the
        controller are untouched); ``listeners`` and the protocol map are the caller's."""
        prefix = f"listener.name.{LISTENER.lower()}."
        mechanism = self.mechanism.lower()
        props = {
            f"{prefix}sasl.enabled.mechanisms": self.mechanism,
            f"{prefix}{mechanism}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{prefix}ssl.keystore.location": str(Path(self.keystore).resolve()),
            f"{prefix}ssl.keystore.password": self.keystore_password,
            f"{prefix}ssl.keystore.type": self.keystore_type,
            f"{prefix}ssl.client.auth": self.client_auth,
        }
        if self.key_password is not None:
            props[f"{prefix}ssl.key.password"] = self.key_password
        if self.truststore is not None:
            props[f"{prefix}ssl.truststore.location"] = str(Path(self.truststore).resolve())
            props[f"{prefix}ssl.truststore.type"] = self.truststore_type
            if self.truststore_password is not None:
                props[f"{prefix}ssl.truststore.password"] = self.truststore_password
        # java.util.Properties reads a backslash as an escape; passwords and paths may hold one.
        return {key: _escape(value) for key, value in props.items()}

    def format_arguments(self) -> list[str]:
        """``--add-scram`` arguments for ``kafka-storage format``: one salted credential per
        user (RFC 5802 SaltedPassword), so the plain passwords stay off the command line."""
        args = []
        for name, password in self.users.items():
            salt = os.urandom(32)
            salted = hashlib.pbkdf2_hmac(
                _HASHES[self.mechanism], password.encode("utf-8"), salt, SCRAM_ITERATIONS
            )
            args += [
                "--add-scram",
                f"{self.mechanism}=[name={name},iterations={SCRAM_ITERATIONS},"
                f'salt="{_b64(salt)}",saltedpassword="{_b64(salted)}"]',
            ]
        return args


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
