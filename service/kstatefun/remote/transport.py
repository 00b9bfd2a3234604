"""The HTTP transport for remote functions: many requests in flight, none blocking the worker.

The worker's loop is single-threaded and synchronous; remote calls must not stall it. So
:class:`RemoteTransport` runs an asyncio event loop with aiohttp in ONE background thread:

- the main thread hands requests over with :meth:`RemoteTransport.submit` (never blocks);
- the loop POSTs them over pooled keep-alive connections, one ``aiohttp`` session per
  endpoint (its transport settings and its origin), retrying as :class:`RetryPolicy` says
  within the endpoint's ``call`` budget, and decodes the reply;
- each finished request becomes one :class:`Completion` on a thread-safe queue that the main
  thread empties with :meth:`RemoteTransport.drain` (never blocks) and may sleep on with
  :meth:`RemoteTransport.wait`.

What is accepted: a 2xx reply with content type ``application/octet-stream``, at most
``payload_max_bytes`` long, that decodes as a ``FromFunction``. Connection errors, timeouts,
5xx, 408 and 429 are retried; any other status, another content type, an oversized body or a
malformed one fail at once (:class:`PermanentCallError`), and retries that outlast the
budget fail with :class:`CallBudgetExceeded`. The transport never touches state or Kafka.

The budget is the invocation's, not the request's: a caller that cancels a request (its
transaction aborted) and submits it again with the same :class:`CallProgress` continues the
budget and the attempt count where they were, so a call that keeps failing ends once its
budget is spent, however often it is cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from kstatefun.config.module import TRANSPORT_OKHTTP, HttpTransport
from kstatefun.errors import ConfigError, KStatefunError
from kstatefun.remote.protocol import (
    MalformedReplyError,
    MissingStates,
    RemoteResult,
    decode_reply,
)

__all__ = [
    "CONTENT_TYPE",
    "CallBudgetExceeded",
    "CallProgress",
    "Completion",
    "PermanentCallError",
    "RemoteCallError",
    "RemoteTransport",
    "RetryPolicy",
    "build_ssl_context",
]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/octet-stream"
_HEADERS = {"Content-Type": CONTENT_TYPE}
_CHUNK = 64 * 1024
# how much of an error reply's body a failure keeps (for a dead letter's detail)
BODY_KEEP = 2048


class RemoteCallError(KStatefunError):
    """A remote call failed for good; ``str(error)`` is the reason for the dead letter."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status  # the (last) HTTP status received, if any
        self.body = body  # the start of the response body with that status, if any


class PermanentCallError(RemoteCallError):
    """A reply that can never succeed (a 4xx other than 408/429, another content type, a body
    over ``payload_max_bytes``, a malformed body, a setting that cannot work); not retried."""


class CallBudgetExceeded(RemoteCallError):
    """Retryable failures went on until the endpoint's ``call`` budget was spent."""


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not."""

    status: int | None = None
    body: str | None = None


class _OutOfBudget(_Retryable):
    """An attempt was cut short by the end of the call budget."""


@dataclass(slots=True)
class CallProgress:
    """One invocation's call against its ``call`` budget: when its first attempt started, how
    many attempts it has made and what the last failure was. The transport updates it (on its
    own thread) while the call runs; the caller keeps it across cancellations and passes it to
    :meth:`RemoteTransport.submit` again to continue the call rather than start it over."""

    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    status: int | None = None  # the last HTTP status an attempt received
    body: str | None = None  # the start of that response's body
    cause: str | None = None  # the last failure other than running out of budget

    @property
    def failed(self) -> bool:
        """Whether an attempt has failed (not counting running out of budget)."""
        return self.cause is not None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to retry a remote call and how long to wait first: the one place that decides.

    The n-th retry waits ``initial_backoff_ms * multiplier**(n-1)``, at most
    ``max_backoff_ms`` (so a recovered endpoint is noticed within that), spread by
    ``±jitter`` so that many addresses do not retry in step. A call gives up as soon as the
    next wait would reach the end of its budget, so it ends at most one backoff early.
    """

    initial_backoff_ms: float = 10.0
    max_backoff_ms: float = 2_000.0
    multiplier: float = 2.0
    jitter: float = 0.2

    @staticmethod
    def retryable_status(status: int) -> bool:
        """Whether an HTTP status may succeed on another attempt: 5xx, 408 and 429."""
        return status >= 500 or status in (408, 429)

    def backoff_ms(self, retry: int, remaining_ms: float) -> float | None:
        """How long to wait before retry number ``retry`` (1-based), or ``None``: give up,
        because the budget left would be spent waiting (an attempt after it could not
        succeed in time)."""
        delay = min(self.initial_backoff_ms * self.multiplier ** (retry - 1), self.max_backoff_ms)
        if self.jitter:
            delay *= 1.0 + random.uniform(-self.jitter, self.jitter)
        if remaining_ms - delay < 1.0:
            return None
        return delay


class Completion(NamedTuple):
    """The outcome of one submitted request: ``reply`` on success, else ``error``."""

    request_id: int
    reply: RemoteResult | MissingStates | None
    error: RemoteCallError | None
    attempts: int
    elapsed_ms: float

    @property
    def ok(self) -> bool:
        return self.error is None


# --- TLS --------------------------------------------------------------------------------------


def _resource_path(location: str, field: str) -> Path:
    # StateFun takes a file path or a JVM classpath resource; only files exist here.
    if location.startswith("classpath:"):
        raise ConfigError(
            f"transport.{field} '{location}' is a JVM classpath resource, which kstatefun "
            "cannot read; give a file path instead"
        )
    path = Path(location.removeprefix("file:")).expanduser()
    if not path.is_file():
        raise ConfigError(f"transport.{field} '{location}': no such file")
    return path


def build_ssl_context(settings: HttpTransport) -> ssl.SSLContext:
    """The TLS context for an https endpoint with these transport settings.

    ``trust_cacerts``: PEM file of the CA certificates to trust (else the system's);
    ``client_cert`` + ``client_key`` (PEM) for mutual TLS; ``client_key_password``: as in
    StateFun, the path of a file holding the key's password. Paths may start with ``file:``
    or ``~``. Raises :class:`ConfigError` naming the field at fault.
    """
    cafile = None
    if settings.trust_cacerts:
        cafile = str(_resource_path(settings.trust_cacerts, "trust_cacerts"))
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(
            f"transport.trust_cacerts '{settings.trust_cacerts}' is not a PEM file of CA "
            f"certificates: {e}"
        ) from None
    if bool(settings.client_cert) != bool(settings.client_key):
        raise ConfigError(
            "transport.client_cert and transport.client_key go together for mutual TLS; "
            "set both or neither"
        )
    if settings.client_cert and settings.client_key:
        cert = _resource_path(settings.client_cert, "client_cert")
        key = _resource_path(settings.client_key, "client_key")
        password: str | None = None
        if settings.client_key_password:
            pw_file = _resource_path(settings.client_key_password, "client_key_password")
            password = pw_file.read_text(encoding="utf-8")
        try:
            context.load_cert_chain(cert, key, password=password)
        except ssl.SSLError:
            if password is None or password == password.rstrip("\r\n"):
                raise ConfigError(
                    f"transport.client_cert '{settings.client_cert}' and client_key "
                    f"'{settings.client_key}' do not load as a PEM certificate and its key "
                    "(wrong password, or they do not match?)"
                ) from None
            # A password file usually ends with a newline that is not part of the password.
            context.load_cert_chain(cert, key, password=password.rstrip("\r\n"))
    return context


# --- endpoints --------------------------------------------------------------------------------


class _Target(NamedTuple):
    """Where a URL goes: the session key and the URL to request through that session."""

    key: tuple[Any, ...]
    url: str
    tls: bool
    unix_socket: str | None


def _target(url: str, settings: HttpTransport) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http+unix", "https+unix"):
        # StateFun: the socket file is the path up to its first segment ending in '.sock'.
        segments = parts.path.split("/")
        for i, segment in enumerate(segments):
            if segment.endswith(".sock"):
                socket_path = "/".join(segments[: i + 1]) or "/"
                rest = "/" + "/".join(segments[i + 1 :])
                break
        else:
            raise PermanentCallError(
                f"'{url}' names no unix socket: its path must contain a file ending in '.sock'"
            )
        if scheme == "https+unix":
            raise PermanentCallError(
                f"'{url}': TLS over a unix domain socket (https+unix) is not supported; "
                "use http+unix"
            )
        tls = False
        query = f"?{parts.query}" if parts.query else ""
        local = f"http://localhost{rest}{query}"
        return _Target((settings, "unix", socket_path), local, tls, socket_path)
    if scheme not in ("http", "https") or not parts.hostname:
        raise PermanentCallError(f"'{url}' is not an http(s) URL")
    tls = scheme == "https"
    port = parts.port or (443 if tls else 80)
    return _Target((settings, scheme, parts.hostname, port), url, tls, None)


# --- the transport ----------------------------------------------------------------------------


class RemoteTransport:
    """Async HTTP client in one background thread; see the module docstring.

    ``submit``, ``cancel``, ``drain``, ``wait`` and ``close`` are for one thread (the
    worker's); everything else runs on the transport's own thread.
    """

    def __init__(
        self,
        retry: RetryPolicy | None = None,
        decode: Callable[[bytes], RemoteResult | MissingStates] = decode_reply,
        *,
        name: str = "kstatefun-remote",
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._decode = decode
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._wake_scheduled = False
        self._done: deque[Completion] = deque()
        self._done_event = threading.Event()
        self._live: set[int] = set()  # submitted, not yet drained nor cancelled (main thread)
        self._closed = False
        # loop-thread state
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}
        self._ssl: dict[HttpTransport, ssl.SSLContext] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- main-thread API ----------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Requests submitted whose completion has not been drained (nor cancelled)."""
        return len(self._live)

    def submit(
        self,
        request_id: int,
        url: str,
        body: bytes,
        settings: HttpTransport,
        progress: CallProgress | None = None,
    ) -> CallProgress:
        """POST ``body`` to ``url``; one :class:`Completion` with ``request_id`` follows.

        ``progress``: continue a call that was cancelled (same budget, attempts counted on);
        without it the budget starts now. Returns the progress the call updates.

        An id may be used again once its completion was drained (e.g. to resend a batch
        after the missing-state handshake), not while it is in flight.
        """
        if self._closed:
            raise RuntimeError("the remote transport is closed")
        if request_id in self._live:
            raise ValueError(f"request {request_id} is already in flight")
        if progress is None:
            progress = CallProgress()
        self._live.add(request_id)
        self._inbox.append((request_id, url, body, settings, progress))
        self._wake()
        return progress

    def cancel(self, request_id: int) -> None:
        """Stop a request: :meth:`drain` will not return its completion."""
        if request_id not in self._live or self._closed:
            return
        self._live.discard(request_id)
        self._inbox.append((request_id,))
        self._wake()

    def drain(self) -> list[Completion]:
        """Every completion that arrived since the last drain, oldest first; never blocks."""
        self._done_event.clear()
        done, live = self._done, self._live
        out = []
        while done:
            completion = done.popleft()
            if completion.request_id in live:  # else cancelled meanwhile
                live.remove(completion.request_id)
                out.append(completion)
        return out

    def wait(self, timeout: float) -> bool:
        """Sleep until a completion is ready to drain or ``timeout`` seconds pass; True when
        one is ready."""
        if self._done:
            return True
        return self._done_event.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what is in flight, close the connections and stop the thread."""
        if self._closed:
            return
        self._closed = True
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
                with contextlib.suppress(Exception):
                    fut.result(timeout)
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> RemoteTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wake(self) -> None:
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._loop.call_soon_threadsafe(self._take_inbox)

    # --- loop thread --------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _take_inbox(self) -> None:
        # Reset the flag before reading: an item appended after this point schedules again.
        self._wake_scheduled = False
        inbox, tasks, loop = self._inbox, self._tasks, self._loop
        while inbox:
            op = inbox.popleft()
            if len(op) == 1:
                task = tasks.pop(op[0], None)
                if task is not None:
                    task.cancel()
                continue
            request_id = op[0]
            task = loop.create_task(self._call(*op))
            tasks[request_id] = task

    async def _shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            with contextlib.suppress(Exception):
                await session.close()

    def _complete(self, completion: Completion) -> None:
        self._tasks.pop(completion.request_id, None)
        self._done.append(completion)
        if not self._done_event.is_set():  # set() wakes the waiter: once per drain is enough
            self._done_event.set()

    async def _call(
        self,
        request_id: int,
        url: str,
        body: bytes,
        settings: HttpTransport,
        progress: CallProgress,
    ) -> None:
        began = time.monotonic()
        deadline = progress.started + settings.call_ms / 1000
        attempts = 0  # of this submission (the progress counts those of earlier ones too)
        reply: RemoteResult | MissingStates | None = None
        error: RemoteCallError | None = None
        try:
            target = _target(url, settings)
            session = self._session(target, settings)
            while True:
                attempts += 1
                progress.attempts += 1
                try:
                    reply = await self._attempt(session, target, body, settings, deadline)
                    break
                except _Retryable as e:
                    if e.status is not None:
                        progress.status, progress.body = e.status, e.body
                    if not isinstance(e, _OutOfBudget):
                        progress.cause = str(e)
                    remaining_ms = (deadline - time.monotonic()) * 1000
                    delay = self.retry.backoff_ms(progress.attempts, remaining_ms)
                    if delay is None:
                        why = f"last error: {e}"
                        if isinstance(e, _OutOfBudget) and progress.cause is not None:
                            why += f"; before that: {progress.cause}"
                        spent_s = time.monotonic() - progress.started
                        error = CallBudgetExceeded(
                            f"POST {url} did not succeed within the call budget of "
                            f"{settings.call_ms} ms ({progress.attempts} attempts in "
                            f"{spent_s:.1f} s); {why}",
                            status=progress.status,
                            body=progress.body,
                        )
                        log.warning(
                            "remote call failed url=%s attempts=%d reason=%s",
                            url,
                            progress.attempts,
                            e,
                        )
                        break
                    level = logging.WARNING if progress.attempts == 1 else logging.DEBUG
                    log.log(
                        level,
                        "remote call failed, retrying url=%s attempt=%d backoff_ms=%.0f reason=%s",
                        url,
                        progress.attempts,
                        delay,
                        e,
                    )
                    await asyncio.sleep(delay / 1000)
        except PermanentCallError as e:
            error = e
            log.warning("remote call failed url=%s reason=%s", url, e)
        except asyncio.CancelledError:
            return
        except Exception as e:  # a bug here must not lose the completion
            log.exception("remote call crashed url=%s", url)
            error = PermanentCallError(f"POST {url} failed: {type(e).__name__}: {e}")
        elapsed_ms = (time.monotonic() - began) * 1000
        self._complete(Completion(request_id, reply, error, attempts, elapsed_ms))

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        target: _Target,
        body: bytes,
        settings: HttpTransport,
        deadline: float,
    ) -> RemoteResult | MissingStates:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _OutOfBudget("no call budget left")
        url = target.url
        try:
            async with asyncio.timeout(remaining):
                async with session.post(url, data=body, headers=_HEADERS) as resp:
                    status = resp.status
                    if not 200 <= status < 300:
                        reason = f"HTTP {status} {resp.reason or ''}".rstrip()
                        text = await _body_start(resp)
                        if text.strip():
                            reason = f"{reason}: {_one_line(text, 200)}"
                        if self.retry.retryable_status(status):
                            raise _RetryableStatus(reason, status, text)
                        raise PermanentCallError(
                            f"POST {url} answered {reason}", status=status, body=text
                        )
                    ctype = resp.headers.get("Content-Type", "")
                    if ctype.partition(";")[0].strip().lower() != CONTENT_TYPE:
                        raise PermanentCallError(
                            f"POST {url} answered HTTP {status} with content type "
                            f"'{ctype or 'none'}', expected '{CONTENT_TYPE}'",
                            status=status,
                        )
                    payload = await _read_limited(resp, settings.payload_max_bytes, url)
        except aiohttp.ServerTimeoutError as e:  # connect or read timeout (a TimeoutError too)
            raise _Retryable(f"{type(e).__name__}: {e}") from None
        except TimeoutError:
            raise _OutOfBudget(
                f"no complete reply within {remaining * 1000:.0f} ms (call budget)"
            ) from None
        except (aiohttp.ClientError, OSError) as e:
            raise _Retryable(f"{type(e).__name__}: {e}") from None
        try:
            return self._decode(payload)
        except MalformedReplyError as e:
            raise PermanentCallError(f"POST {url} answered a malformed body: {e}") from None

    def _session(self, target: _Target, settings: HttpTransport) -> aiohttp.ClientSession:
        session = self._sessions.get(target.key)
        if session is not None:
            return session
        ssl_context: ssl.SSLContext | bool = False
        if target.tls:
            context = self._ssl.get(settings)
            if context is None:
                try:
                    context = self._ssl[settings] = build_ssl_context(settings)
                except ConfigError as e:
                    raise PermanentCallError(str(e)) from None
            ssl_context = context
        pool: dict[str, Any] = {"limit": settings.pool_size}
        if settings.pool_ttl_ms > 0:
            pool["keepalive_timeout"] = settings.pool_ttl_ms / 1000
        else:
            pool["force_close"] = True
        connector: aiohttp.BaseConnector
        if target.unix_socket is not None:
            connector = aiohttp.UnixConnector(path=target.unix_socket, **pool)
        else:
            connector = aiohttp.TCPConnector(ssl=ssl_context, **pool)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.connect_ms / 1000,
            # okhttp's read timeout; StateFun's async transport has only the call budget.
            sock_read=settings.read_ms / 1000 if settings.type == TRANSPORT_OKHTTP else None,
        )
        session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, raise_for_status=False, auto_decompress=True
        )
        self._sessions[target.key] = session
        return session


class _RetryableStatus(_Retryable):
    def __init__(self, message: str, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


async def _body_start(resp: aiohttp.ClientResponse) -> str:
    # The start of an error body helps a dead letter's reader (a stack trace, a message).
    with contextlib.suppress(Exception):
        data = await resp.content.read(BODY_KEEP)
        return data.decode("utf-8", "replace")
    return ""


def _one_line(text: str, limit: int) -> str:
    return " ".join(text[: limit * 2].split())[:limit]


async def _read_limited(resp: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    length = resp.content_length
    if length is not None and length > limit:
        raise PermanentCallError(
            f"POST {url} answered {length} bytes, over payload_max_bytes ({limit})"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PermanentCallError(
                f"POST {url} answered more than payload_max_bytes ({limit}) bytes"
            )
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
