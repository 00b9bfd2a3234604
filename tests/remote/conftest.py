"""Fixtures for the remote-function tests: the real SDK server, a misbehaving server, a
transport. None of them needs Kafka."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from kstatefun.remote import RemoteTransport, RetryPolicy
from tests.remote import sdk_env


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The Python of the cached StateFun SDK virtualenv (created on first use)."""
    try:
        return sdk_env.ensure_sdk_venv()
    except sdk_env.SdkEnvError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def sdk(sdk_python: Path) -> Iterator[sdk_env.SdkServer]:
    """The SDK test functions (tests/remote/sdk_server.py), served for the whole session."""
    with sdk_env.sdk_server(sdk_python) as server:
        yield server


@pytest.fixture
def transport() -> Iterator[RemoteTransport]:
    """A transport whose retries start at 5 ms, so failure tests stay fast."""
    t = RemoteTransport(RetryPolicy(initial_backoff_ms=5, max_backoff_ms=200))
    try:
        yield t
    finally:
        t.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RogueServer:
    """An aiohttp server in a thread of its own, answering as each test tells it to."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, unix_path: str | None = None
    ) -> None:
        self.ssl_context = ssl_context
        self.unix_path = unix_path
        self.routes: dict[str, Handler] = {}
        self.hits: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="rogue-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("rogue server did not start")

    def url(self, path: str) -> str:
        scheme = "http" if self.ssl_context is None else "https"
        if self.unix_path is not None:
            return f"{scheme}+unix://{self.unix_path}/{path}"
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    def route(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return self.url(path)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["tail"]
        self.hits[path] = self.hits.get(path, 0) + 1
        handler = self.routes.get(path)
        if handler is None:
            return web.Response(status=599, text=f"no route {path}")
        return await handler(request)

    async def _main(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._dispatch)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1
        )
        await runner.setup()
        site: web.BaseSite
        if self.unix_path is not None:
            site = web.UnixSite(runner, self.unix_path, ssl_context=self.ssl_context)
            await site.start()
        else:
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            await site.start()
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def rogue() -> Iterator[RogueServer]:
    server = RogueServer()
    try:
        yield server
    finally:
        server.close()
