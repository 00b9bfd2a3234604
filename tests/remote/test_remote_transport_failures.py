"""How the transport classifies what an endpoint answers: retried, failed at once, timed out.

A local aiohttp server (``rogue``) answers as each test tells it to.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from kstatefun.config.module import TRANSPORT_OKHTTP, HttpTransport
from kstatefun.remote import (
    CallBudgetExceeded,
    Completion,
    MissingStates,
    PermanentCallError,
    RemoteResult,
    RemoteTransport,
)
from kstatefun.remote.proto import request_reply_pb2 as pb
from tests.remote.conftest import RogueServer
from tests.remote.sdk_env import free_port

OCTETS = "application/octet-stream"


def call(transport: RemoteTransport, url: str, settings: HttpTransport) -> Completion:
    transport.submit(1, url, b"request", settings)
    assert transport.wait(settings.call_ms / 1000 + 10), "no completion"
    (done,) = transport.drain()
    return done


def empty_reply() -> web.Response:
    return web.Response(body=b"", content_type=OCTETS)


def missing_reply() -> bytes:
    reply = pb.FromFunction()
    spec = reply.incomplete_invocation_context.missing_values.add()
    spec.state_name = "s"
    spec.type_typename = "io.statefun.types/int"
    return reply.SerializeToString()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 422])
def test_a_4xx_fails_at_once(transport: RemoteTransport, rogue: RogueServer, status: int) -> None:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=status, text="nope, no such function")

    done = call(transport, rogue.route("4xx", answer), HttpTransport(call_ms=5_000))

    assert isinstance(done.error, PermanentCallError)
    assert done.error.status == status
    assert f"HTTP {status}" in str(done.error) and "nope, no such function" in str(done.error)
    assert done.attempts == 1 and rogue.hits["4xx"] == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_until_success(
    transport: RemoteTransport, rogue: RogueServer, status: int
) -> None:
    async def answer(_: web.Request) -> web.Response:
        if rogue.hits["flaky"] <= 3:
            return web.Response(status=status)
        return web.Response(body=missing_reply(), content_type=OCTETS)

    done = call(transport, rogue.route("flaky", answer), HttpTransport(call_ms=5_000))

    assert done.error is None and done.attempts == 4
    assert isinstance(done.reply, MissingStates)


def test_the_budget_bounds_retries_of_an_endpoint_nobody_listens_on(
    transport: RemoteTransport,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/statefun"
    started = time.monotonic()

    done = call(transport, url, HttpTransport(call_ms=500))

    assert isinstance(done.error, CallBudgetExceeded)
    assert "500 ms" in str(done.error) and "Connect" in str(done.error)
    assert done.attempts > 3
    # it gives up once the next backoff (at most 200 ms +20% here) would reach the budget's end
    assert 0.5 - 0.24 - 0.02 < time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [("text/plain", "content type 'text/plain"), ("application/json", "application/json")],
)
def test_a_2xx_with_another_content_type_fails_at_once(
    transport: RemoteTransport, rogue: RogueServer, content_type: str, reason: str
) -> None:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=b"hello", content_type=content_type)

    done = call(transport, rogue.route("ctype", answer), HttpTransport(call_ms=5_000))

    assert isinstance(done.error, PermanentCallError) and reason in str(done.error)
    assert done.attempts == 1


def test_content_type_parameters_and_case_are_accepted(
    transport: RemoteTransport, rogue: RogueServer
) -> None:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=b"", headers={"Content-Type": "Application/Octet-Stream; x=1"})

    done = call(transport, rogue.route("params", answer), HttpTransport(call_ms=5_000))

    assert done.error is None and done.reply == RemoteResult([], [], [], [])


def test_a_garbage_body_fails_at_once(transport: RemoteTransport, rogue: RogueServer) -> None:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=b"\x0a\x05ab", content_type=OCTETS)  # truncated field

    done = call(transport, rogue.route("garbage", answer), HttpTransport(call_ms=5_000))

    assert isinstance(done.error, PermanentCallError)
    assert "malformed" in str(done.error) and "FromFunction" in str(done.error)
    assert done.attempts == 1


def test_an_empty_2xx_body_means_no_effects(transport: RemoteTransport, rogue: RogueServer) -> None:
    async def answer(_: web.Request) -> web.Response:
        return empty_reply()

    done = call(transport, rogue.route("empty", answer), HttpTransport(call_ms=5_000))

    assert done.error is None and done.reply == RemoteResult([], [], [], [])


@pytest.mark.parametrize("chunked", [False, True])
def test_a_reply_over_payload_max_bytes_fails_at_once(
    transport: RemoteTransport, rogue: RogueServer, chunked: bool
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=b"\x00" * 5000, content_type=OCTETS)
        resp = web.StreamResponse(headers={"Content-Type": OCTETS})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"\x00" * 1000)
        await resp.write_eof()
        return resp

    settings = HttpTransport(call_ms=5_000, payload_max_bytes=4096)
    done = call(transport, rogue.route("big", answer), settings)

    assert isinstance(done.error, PermanentCallError)
    assert "payload_max_bytes (4096)" in str(done.error)
    assert done.attempts == 1


def test_a_reply_of_exactly_payload_max_bytes_is_accepted(
    transport: RemoteTransport, rogue: RogueServer
) -> None:
    reply = missing_reply()

    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=reply, content_type=OCTETS)

    settings = HttpTransport(call_ms=5_000, payload_max_bytes=len(reply))
    assert call(transport, rogue.route("exact", answer), settings).error is None


@pytest.mark.parametrize("stall", ["before headers", "mid body"])
def test_a_reply_that_never_ends_times_out_within_the_budget(
    transport: RemoteTransport, rogue: RogueServer, stall: str
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        if stall == "before headers":
            await asyncio.sleep(3600)
        resp = web.StreamResponse(headers={"Content-Type": OCTETS, "Content-Length": "100"})
        await resp.prepare(request)
        await resp.write(b"\x00" * 10)
        await asyncio.sleep(3600)
        return resp

    started = time.monotonic()
    done = call(transport, rogue.route("hang", answer), HttpTransport(call_ms=700))

    assert isinstance(done.error, CallBudgetExceeded)
    assert "no complete reply within" in str(done.error)
    assert 0.6 < time.monotonic() - started < 3.0


def test_okhttp_read_timeout_cuts_a_stalled_read_and_retries(
    transport: RemoteTransport, rogue: RogueServer
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        if rogue.hits["slow"] == 1:
            await asyncio.sleep(3600)
        return empty_reply()

    settings = HttpTransport(type=TRANSPORT_OKHTTP, call_ms=5_000, read_ms=300)
    done = call(transport, rogue.route("slow", answer), settings)

    assert done.error is None and done.attempts == 2


def test_connections_are_kept_alive_and_reused(
    transport: RemoteTransport, rogue: RogueServer
) -> None:
    peers: set[object] = set()

    async def answer(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return empty_reply()

    url = rogue.route("alive", answer)
    for _ in range(20):
        assert call(transport, url, HttpTransport(call_ms=5_000)).error is None

    assert len(peers) == 1


def test_cancelled_requests_never_complete(transport: RemoteTransport, rogue: RogueServer) -> None:
    async def answer(_: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return empty_reply()

    url = rogue.route("cancel", answer)
    settings = HttpTransport(call_ms=5_000)
    transport.submit(1, url, b"", settings)
    transport.submit(2, url, b"", settings)
    transport.cancel(1)
    assert transport.outstanding == 1

    assert transport.wait(5)
    time.sleep(0.5)
    assert [c.request_id for c in transport.drain()] == [2]
    assert transport.outstanding == 0


def test_submit_rejects_an_id_already_in_flight(
    transport: RemoteTransport, rogue: RogueServer
) -> None:
    async def answer(_: web.Request) -> web.Response:
        return empty_reply()

    url = rogue.route("dup", answer)
    transport.submit(1, url, b"", HttpTransport())
    with pytest.raises(ValueError, match="already in flight"):
        transport.submit(1, url, b"", HttpTransport())


def test_unix_domain_socket_endpoints(transport: RemoteTransport, tmp_path: Path) -> None:
    server = RogueServer(unix_path=str(tmp_path / "functions.sock"))
    try:
        paths: list[str] = []

        async def answer(request: web.Request) -> web.Response:
            paths.append(request.path)
            return empty_reply()

        url = server.route("statefun/greeter", answer)
        assert url == f"http+unix://{tmp_path}/functions.sock/statefun/greeter"

        done = call(transport, url, HttpTransport(call_ms=5_000))
    finally:
        server.close()

    assert done.error is None and paths == ["/statefun/greeter"]


def test_a_url_that_cannot_work_fails_at_once(transport: RemoteTransport) -> None:
    done = call(transport, "ftp://example.invalid/x", HttpTransport(call_ms=5_000))
    assert isinstance(done.error, PermanentCallError) and "not an http(s) URL" in str(done.error)

    done = call(transport, "http+unix:///tmp/nosocket/x", HttpTransport(call_ms=5_000))
    assert isinstance(done.error, PermanentCallError) and ".sock" in str(done.error)


def test_close_ends_calls_in_flight_and_the_thread() -> None:
    t = RemoteTransport()
    url = f"http://127.0.0.1:{free_port()}/x"
    t.submit(1, url, b"", HttpTransport(call_ms=60_000))
    started = time.monotonic()

    t.close()

    assert time.monotonic() - started < 3
    assert not t._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        t.submit(2, url, b"", HttpTransport())
