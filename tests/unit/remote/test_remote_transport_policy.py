"""The transport's decisions that need no network: retry policy, URL targets, TLS settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from kstatefun.config.module import HttpTransport
from kstatefun.errors import ConfigError
from kstatefun.remote import PermanentCallError, RetryPolicy, build_ssl_context
from kstatefun.remote.transport import _target


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff_ms=10, max_backoff_ms=100, multiplier=2, jitter=0)
    assert [policy.backoff_ms(n, 10_000) for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]


def test_backoff_gives_up_when_waiting_would_spend_the_budget() -> None:
    policy = RetryPolicy(initial_backoff_ms=10, jitter=0)
    assert policy.backoff_ms(1, 11.5) == 10
    assert policy.backoff_ms(1, 10.5) is None
    assert policy.backoff_ms(1, 0) is None


def test_jitter_stays_within_its_bounds() -> None:
    policy = RetryPolicy(initial_backoff_ms=100, jitter=0.2)
    delays = [policy.backoff_ms(1, 10_000) for _ in range(200)]
    assert all(d is not None and 80 <= d <= 120 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (599, True), (408, True), (429, True)]
    + [(400, False), (401, False), (404, False), (409, False), (413, False), (301, False)],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert RetryPolicy.retryable_status(status) is retryable


def test_targets_share_a_session_per_origin_and_settings() -> None:
    s1, s2 = HttpTransport(), HttpTransport(call_ms=1)
    a = _target("http://fns:8000/statefun/greeter", s1)
    b = _target("http://fns:8000/other", s1)
    assert a.key == b.key and not a.tls and a.url == "http://fns:8000/statefun/greeter"
    assert _target("http://fns:8001/x", s1).key != a.key
    assert _target("http://fns:8000/x", s2).key != a.key
    https = _target("HTTPS://fns/x", s1)
    assert https.tls and https.key[1:] == ("https", "fns", 443)


def test_unix_socket_targets_split_at_the_sock_file() -> None:
    t = _target("http+unix:///run/fns/functions.sock/statefun/greeter?x=1", HttpTransport())
    assert t.unix_socket == "/run/fns/functions.sock"
    assert t.url == "http://localhost/statefun/greeter?x=1" and not t.tls
    root = _target("http+unix:///tmp/f.sock", HttpTransport())
    assert root.unix_socket == "/tmp/f.sock" and root.url == "http://localhost/"


@pytest.mark.parametrize(
    "url", ["ftp://x/y", "http:///nohost", "http+unix:///tmp/nosock/x", "https+unix:///a.sock/x"]
)
def test_urls_that_cannot_work(url: str) -> None:
    with pytest.raises(PermanentCallError):
        _target(url, HttpTransport())


def test_ssl_context_defaults_to_the_system_trust_store() -> None:
    context = build_ssl_context(HttpTransport())
    assert context.check_hostname


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (HttpTransport(trust_cacerts="classpath:ca.pem"), "JVM classpath resource"),
        (HttpTransport(trust_cacerts="/nonexistent/ca.pem"), "trust_cacerts"),
        (HttpTransport(client_cert="/nonexistent/c.pem"), "set both or neither"),
        (HttpTransport(client_key="/nonexistent/k.pem"), "set both or neither"),
    ],
)
def test_tls_settings_that_cannot_work_name_the_field(
    settings: HttpTransport, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build_ssl_context(settings)


def test_a_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a PEM file"):
        build_ssl_context(HttpTransport(trust_cacerts=str(bogus)))
    with pytest.raises(ConfigError, match="do not load"):
        build_ssl_context(HttpTransport(client_cert=str(bogus), client_key=str(bogus)))
