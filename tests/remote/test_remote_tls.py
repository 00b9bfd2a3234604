"""https endpoints: trust_cacerts, and client_cert/client_key/client_key_password for mTLS.

Certificates are made with the openssl command line for each test session.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from kstatefun.config.module import HttpTransport
from kstatefun.remote import CallBudgetExceeded, PermanentCallError, RemoteResult, RemoteTransport
from tests.remote.conftest import RogueServer
from tests.remote.test_remote_transport_failures import call

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server.pem/.key (for 127.0.0.1), client.pem/.key (key encrypted), password."""
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        d, "req", "-x509", *EC, "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=test-ca", "-days", "2",
    )  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        d, "req", *EC, "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    _openssl(
        d, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
    )  # fmt: skip
    _openssl(
        d, "req", *EC, "-keyout", "client.key", "-passout", "pass:s3cret", "-out", "client.csr",
        "-subj", "/CN=kstatefun-worker",
    )  # fmt: skip
    _openssl(
        d, "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "2",
    )  # fmt: skip
    (d / "password.txt").write_text("s3cret\n")  # a password file, as StateFun reads it
    return d


@pytest.fixture
def mtls_server(pki: Path) -> Iterator[RogueServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    server = RogueServer(context)
    try:
        yield server
    finally:
        server.close()


def _route(server: RogueServer, seen: list[str]) -> str:
    async def answer(request: web.Request) -> web.Response:
        assert request.transport is not None
        cert = request.transport.get_extra_info("peercert")
        seen.append(dict(x[0] for x in cert["subject"])["commonName"])
        return web.Response(body=b"", content_type="application/octet-stream")

    return server.route("fn", answer)


def test_mutual_tls_with_a_private_ca(
    transport: RemoteTransport, mtls_server: RogueServer, pki: Path
) -> None:
    seen: list[str] = []
    settings = HttpTransport(
        call_ms=5_000,
        trust_cacerts=f"file:{pki / 'ca.pem'}",
        client_cert=str(pki / "client.pem"),
        client_key=str(pki / "client.key"),
        client_key_password=str(pki / "password.txt"),
    )

    done = call(transport, _route(mtls_server, seen), settings)

    assert done.error is None and done.reply == RemoteResult([], [], [], [])
    assert seen == ["kstatefun-worker"]


def test_an_untrusted_server_certificate_never_succeeds(
    transport: RemoteTransport, mtls_server: RogueServer
) -> None:
    done = call(transport, _route(mtls_server, []), HttpTransport(call_ms=1_000))

    assert isinstance(done.error, CallBudgetExceeded)
    assert "certificate" in str(done.error).lower()


def test_a_missing_client_certificate_is_refused_by_the_server(
    transport: RemoteTransport, mtls_server: RogueServer, pki: Path
) -> None:
    settings = HttpTransport(call_ms=400, trust_cacerts=str(pki / "ca.pem"))

    done = call(transport, _route(mtls_server, []), settings)

    assert isinstance(done.error, CallBudgetExceeded)


def test_an_unreadable_tls_setting_fails_at_once_naming_the_field(
    transport: RemoteTransport, mtls_server: RogueServer, pki: Path
) -> None:
    settings = HttpTransport(
        call_ms=5_000,
        trust_cacerts=str(pki / "ca.pem"),
        client_cert=str(pki / "client.pem"),
        client_key=str(pki / "client.key"),
        client_key_password=str(pki / "nope.txt"),
    )

    done = call(transport, _route(mtls_server, []), settings)

    assert isinstance(done.error, PermanentCallError)
    assert "client_key_password" in str(done.error) and "no such file" in str(done.error)
