"""The real StateFun Python SDK, in its own virtualenv, serving test functions over HTTP.

``apache-flink-statefun==3.3.0`` pins ``protobuf<4``, which cannot live in kstatefun's own
environment, so it gets a virtualenv of its own, cached outside the repository
(``~/.cache/kstatefun/statefun-sdk-3.3.0``, or ``$KSTATEFUN_SDK_VENV``). A marker file is
written only once the install succeeded and the SDK imports, so an interrupted install is
redone. ``sdk_server.py`` (run with that venv's Python) serves the functions.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SDK_REQUIREMENTS = ("apache-flink-statefun==3.3.0", "aiohttp>=3.9,<4")
VENV_ENV = "KSTATEFUN_SDK_VENV"
DEFAULT_VENV = Path.home() / ".cache" / "kstatefun" / "statefun-sdk-3.3.0"
MARKER = ".kstatefun-ready"
SERVER_SCRIPT = Path(__file__).with_name("sdk_server.py")


class SdkEnvError(RuntimeError):
    """The SDK virtualenv could not be created or the SDK server did not start."""


def venv_dir() -> Path:
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_sdk_venv() -> Path:
    """The Python of the SDK virtualenv, created on first use (about 20 s), cached after."""
    venv = venv_dir()
    marker = venv / MARKER
    wanted = "\n".join(SDK_REQUIREMENTS) + "\n"
    if marker.is_file() and marker.read_text() == wanted:
        return _python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be creating it right now
        if marker.is_file() and marker.read_text() == wanted:
            return _python(venv)
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(_python(venv)), "-m", "pip", "install", "--quiet", *SDK_REQUIREMENTS],
            [str(_python(venv)), "-c", "import statefun, aiohttp, google.protobuf"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise SdkEnvError(
                    f"creating the StateFun SDK virtualenv at {venv} failed: "
                    f"{' '.join(step)}\n{done.stdout}\n{done.stderr}"
                )
        marker.write_text(wanted)
    return _python(venv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SdkServer:
    """A running ``sdk_server.py``: functions under ``/{anything}`` on 127.0.0.1."""

    process: subprocess.Popen[str]
    port: int
    log: Path  # the server's stderr (tracebacks of functions that raise)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "statefun") -> str:
        return f"{self.base_url}/{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.unlink(missing_ok=True)


def start_sdk_server(
    python: Path, port: int = 0, timeout: float = 30.0, script: Path | None = None
) -> SdkServer:
    """Start ``script`` (default ``sdk_server.py``) with the SDK venv's ``python``; returns
    once it listens."""
    fd, log_name = tempfile.mkstemp(prefix="statefun-sdk-server-", suffix=".log")
    log = Path(log_name)
    with os.fdopen(fd, "w") as log_file:
        # stderr to a file: a pipe nobody reads would fill up and stall the server
        process = subprocess.Popen(
            [str(python), str(script or SERVER_SCRIPT), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("LISTENING "):
            return SdkServer(process, int(line.split()[1]), log)
        if not line and process.poll() is not None:
            break
    process.kill()
    process.wait(10)
    raise SdkEnvError(f"the StateFun SDK server did not start: {line!r}\n{log.read_text()}")


@contextlib.contextmanager
def sdk_server(python: Path, port: int = 0, script: Path | None = None) -> Iterator[SdkServer]:
    server = start_sdk_server(python, port, script=script)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def sdk_app_server(script: Path) -> Iterator[SdkServer]:
    """The SDK's venv (made once) serving ``script``; a test that cannot have it fails, naming
    why (module-scoped fixtures of the e2e tests)."""
    import pytest

    try:
        python = ensure_sdk_venv()
    except SdkEnvError as e:
        pytest.fail(str(e), pytrace=False)
    with sdk_server(python, script=script) as server:
        yield server
