"""Log output: ``text`` (default) or ``json``, one object per line with the worker's app and
instance on every record."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, str]) -> None:
        super().__init__()
        self._static = static

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self._static,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, fmt: str, app_id: str, instance_id: str) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter({"app": app_id, "instance": instance_id})
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter(
            f"%(asctime)s %(levelname)s %(name)s app={app_id} instance={instance_id} %(message)s"
        )
    handler.setFormatter(formatter)
    root.handlers[:] = [handler]
