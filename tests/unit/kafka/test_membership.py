"""kafka/membership.py without a broker: the SCRAM exchange against RFC 7677's example, which
security settings it speaks, and how bootstrap addresses are read. The group requests
themselves are tested against real brokers (tests/integration/test_membership.py, the SASL_SSL
case in tests/integration/test_security.py, tests/e2e/test_static_membership.py)."""

import socket
import threading

import pytest

from kstatefun.kafka.membership import (
    MembershipError,
    Scram,
    Security,
    Unsupported,
    _bootstrap_addresses,
    release_static_member,
    remove_static_members,
)

# RFC 7677, section 3: user "user", password "pencil"
NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_sha_256_follows_rfc_7677():
    scram = Scram("SCRAM-SHA-256", "user", "pencil", NONCE)
    assert scram.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert scram.final(SERVER_FIRST) == CLIENT_FINAL
    scram.check(SERVER_FINAL)


def test_scram_refuses_a_wrong_server_signature_and_a_foreign_nonce():
    scram = Scram("SCRAM-SHA-256", "user", "pencil", NONCE)
    with pytest.raises(MembershipError, match="signature"):
        scram.check(SERVER_FINAL)  # before the exchange: nothing to match
    scram.final(SERVER_FIRST)
    with pytest.raises(MembershipError, match="signature"):
        scram.check(b"v=AAAA")
    with pytest.raises(MembershipError, match="nonce"):
        Scram("SCRAM-SHA-256", "user", "pencil", "other").final(SERVER_FIRST)


def test_scram_escapes_the_user_name():
    assert Scram("SCRAM-SHA-512", "a=b,c", "p", "n").first() == b"n,,n=a=3Db=2Cc,r=n"


@pytest.mark.parametrize(
    ("conf", "problem"),
    [
        ({"security.protocol": "SASL_SSL"}, "GSSAPI"),  # librdkafka's default mechanism
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}, "OAUTHBEARER"),
        ({"security.protocol": "other"}, "OTHER"),
    ],
)
def test_security_it_does_not_speak_is_refused(conf, problem):
    with pytest.raises(Unsupported, match=problem):
        Security.from_config(conf)


def test_security_from_librdkafka_properties():
    assert Security.from_config({}).protocol == "PLAINTEXT"
    security = Security.from_config(
        {
            "security.protocol": "sasl_ssl",
            "sasl.mechanisms": "scram-sha-512",
            "sasl.username": "u",
            "sasl.password": "p",
            "ssl.endpoint.identification.algorithm": "none",
        }
    )
    assert (security.protocol, security.mechanism, security.username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "u",
    )
    assert security.check_hostname is False


def test_bootstrap_addresses():
    assert _bootstrap_addresses("a:1, PLAINTEXT://b:2,[::1]:3,") == [
        ("a", 1),
        ("b", 2),
        ("::1", 3),
    ]


def test_a_broker_that_does_not_answer_is_a_membership_error():
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    conf = {"bootstrap.servers": f"127.0.0.1:{port}"}
    with pytest.raises(MembershipError, match="no bootstrap server answered"):
        remove_static_members(conf, "g", ["w1"], timeout_s=1.0)

    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts, then hangs up
        conf = {"bootstrap.servers": f"127.0.0.1:{server.getsockname()[1]}"}

        def hang_up() -> None:
            conn, _ = server.accept()
            conn.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        with pytest.raises(MembershipError, match="did not answer|closed the connection"):
            release_static_member(conf, "g", "w1", "member", timeout_s=1.0)
        thread.join()
