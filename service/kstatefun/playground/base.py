"""The HTTP plumbing both playground servers share: bind (with a plain error), serve, stop."""

from __future__ import annotations

import errno
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kstatefun.errors import ConfigError

log = logging.getLogger(__name__)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: curl loops and tests reuse the connection

    def reply(self, code: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def error(self, code: int, text: str) -> None:
        self.reply(code, (text + "\n").encode(), "text/plain; charset=utf-8")

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class Server:
    """A threaded HTTP server on ``host:port`` for ``handler``; ``what`` names it in errors."""

    def __init__(self, what: str, host: str, port: int, handler: type[Handler]) -> None:
        try:
            self._httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            busy = e.errno == errno.EADDRINUSE
            raise ConfigError(
                f"{what}: cannot listen on {host}:{port}: "
                + (
                    "the port is in use (another worker of a playground application on this "
                    "host?); change spec.port in module.yaml or stop the other process"
                    if busy
                    else f"{e.strerror}; check spec.port in module.yaml and playground_host"
                )
            ) from None
        self._httpd.daemon_threads = True
        self._httpd.server = self  # type: ignore[attr-defined]
        self.what = what
        self._started = False
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"kstatefun-{what}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self._started = True
        host, port = self._httpd.server_address[:2]
        log.info("%s listening url=http://%s:%d/", self.what, host, port)

    def stop(self) -> None:
        if self._started:  # shutdown() waits for serve_forever, forever if it never ran
            self._httpd.shutdown()
        self._httpd.server_close()
