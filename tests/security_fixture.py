"""TLS material for the SASL_SSL tests, made for each test session with openssl and keytool.

:func:`make_pki` writes a throw-away CA and, signed by it:

- the broker's certificate for ``127.0.0.1`` and ``localhost``, in a PKCS12 keystore
  (``broker.p12``), plus a PKCS12 truststore holding the CA (``broker-trust.p12``) for
  checking client certificates;
- a client certificate (``client.pem``) with its key encrypted by a password
  (``client.key``), for the librdkafka side of mutual TLS;
- the CA certificate as PEM (``ca.pem``) for ``ssl.ca.location``.

Nothing here is fit for anything but tests: keys live two days and sit in a temp directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kstatefun.devkafka import SaslSslConfig

EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
DAYS = "2"


def missing_tools() -> list[str]:
    """The command-line tools :func:`make_pki` needs that are not on PATH."""
    return [tool for tool in ("openssl", "keytool") if shutil.which(tool) is None]


@dataclass(frozen=True)
class Pki:
    """Paths of the files :func:`make_pki` wrote, and the passwords protecting them."""

    directory: Path
    ca: Path
    broker_keystore: Path
    broker_truststore: Path
    client_cert: Path
    client_key: Path
    store_password: str = field(repr=False)
    client_key_password: str = field(repr=False)

    def broker_config(
        self, users: dict[str, str], *, client_auth: str = "none", mechanism: str = "SCRAM-SHA-512"
    ) -> SaslSslConfig:
        """A SASL_SSL listener that presents the broker certificate and knows ``users``."""
        return SaslSslConfig(
            keystore=self.broker_keystore,
            keystore_password=self.store_password,
            users=users,
            mechanism=mechanism,
            truststore=self.broker_truststore,
            truststore_password=self.store_password,
            client_auth=client_auth,  # type: ignore[arg-type]
        )


# Passwords reach openssl and keytool through the environment, not their command lines.
_STORE_ENV = "PKI_STORE_PASSWORD"
_KEY_ENV = "PKI_KEY_PASSWORD"


def _run(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed: {result.stdout}{result.stderr}")


def _sign(
    cwd: Path,
    name: str,
    subject: str,
    extensions: str,
    key_args: tuple[str, ...],
    env: dict[str, str],
) -> None:
    _run(cwd, "openssl", "req", *EC, *key_args, "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", subject, env=env)  # fmt: skip
    (cwd / f"{name}.ext").write_text(extensions)
    _run(cwd, "openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem",
         "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", DAYS,
         "-extfile", f"{name}.ext")  # fmt: skip


def make_pki(directory: Path) -> Pki:
    """Write a CA, a broker keystore/truststore and a client certificate into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    store_password = secrets.token_urlsafe(12)
    key_password = secrets.token_urlsafe(12)
    env = {_STORE_ENV: store_password, _KEY_ENV: key_password}
    _run(d, "openssl", "req", "-x509", *EC, "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-subj", "/CN=kstatefun-test-ca", "-days", DAYS,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _sign(
        d,
        "broker",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ("-nodes",),
        env,
    )
    _run(d, "openssl", "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key",
         "-certfile", "ca.pem", "-name", "broker", "-out", "broker.p12",
         "-passout", f"env:{_STORE_ENV}", env=env)  # fmt: skip
    _run(d, "keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem",
         "-keystore", "broker-trust.p12", "-storetype", "PKCS12",
         "-storepass:env", _STORE_ENV, env=env)  # fmt: skip
    _sign(
        d,
        "client",
        "/CN=kstatefun-worker",
        "extendedKeyUsage=clientAuth\n",
        ("-passout", f"env:{_KEY_ENV}"),
        env,
    )
    return Pki(
        directory=d,
        ca=d / "ca.pem",
        broker_keystore=d / "broker.p12",
        broker_truststore=d / "broker-trust.p12",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        store_password=store_password,
        client_key_password=key_password,
    )
