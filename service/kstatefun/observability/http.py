"""The worker's HTTP endpoint: /metrics (Prometheus), /healthz and /readyz.

/healthz: the process is alive and the broker answers a metadata request (cached 2 s).
/readyz: every assigned partition is restored and the worker is processing; the body also
lists the invocations partitions per state (runtime/assignment.py).
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kstatefun.errors import ConfigError

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        broker_ok: Callable[[], bool],
        ready: Callable[[], bool],
        partitions: Callable[[], dict[str, list[int]]] = dict,
    ) -> None:
        self._registry = registry
        self._broker_ok = broker_ok
        self._ready = ready
        self._partitions = partitions
        self._checked_at = 0.0
        self._healthy = False
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server._registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = server.healthy()
                    self._json(200 if ok else 503, {"status": "ok" if ok else "broker unreachable"})
                elif path == "/readyz":
                    ok = server._ready()
                    status = "ready" if ok else "not ready"
                    self._json(200 if ok else 503, {"status": status, **server.partitions()})
                else:
                    self._json(404, {"error": "try /metrics, /healthz or /readyz"})

            def _json(self, code: int, body: dict[str, object]) -> None:
                self._send(code, json.dumps(body).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the worker's log

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} (--metrics-port, --metrics-host): "
                + (
                    "the port is in use; choose another port or stop the process that has it"
                    if e.errno == errno.EADDRINUSE
                    else f"{e.strerror}"
                )
            ) from None
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="kstatefun-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info(
            "metrics and health endpoint url=http://%s:%d/metrics", *self._httpd.server_address[:2]
        )

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def healthy(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at > 2.0:
                try:
                    self._healthy = self._broker_ok()
                except Exception:  # noqa: BLE001 - any failure means unhealthy
                    self._healthy = False
                self._checked_at = now
            return self._healthy

    def partitions(self) -> dict[str, object]:
        """The partitions per state, read from another thread: a copy may fail mid-change."""
        try:
            return {"partitions": self._partitions()}
        except RuntimeError:  # changed size during iteration
            return {}
