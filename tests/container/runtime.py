"""The container runtime `make test-container` drives: a Docker engine or podman, as found.

Nothing is installed here: a machine without either fails the tests with what to install
(CI sets podman up with .ci/container-setup first).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.harness import ROOT

IMAGE = "kstatefun:latest"
"""The worker image's tag; docker-compose.yml names the same one."""

_CMD_TIMEOUT_S = 600.0


class NoContainerRuntime(RuntimeError):
    """Neither a Docker engine nor podman (with a compose tool) can be used."""


@dataclass(frozen=True)
class Runtime:
    cli: str
    """``docker`` or ``podman``."""
    compose: tuple[str, ...]
    """``docker compose`` or ``podman-compose``."""

    @property
    def podman(self) -> bool:
        return os.path.basename(self.cli) == "podman"

    def run(
        self, *args: str, timeout: float = _CMD_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``<cli> args...``; on ``check``, a failure raises with the command's output."""
        return _run([self.cli, *args], timeout=timeout, check=check)

    def compose_run(
        self, project: str, *args: str, timeout: float = _CMD_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The compose tool on the repository's docker-compose.yml as project ``project``."""
        command = [*self.compose, "-f", str(ROOT / "docker-compose.yml"), "-p", project, *args]
        return _run(command, timeout=timeout, check=check, cwd=ROOT)

    def build_image(self) -> float:
        """Build the Dockerfile as IMAGE; returns the seconds it took."""
        started = time.monotonic()
        # --format docker: OCI images (podman's default) drop the HEALTHCHECK.
        extra = ["--format", "docker"] if self.podman else []
        self.run("build", *extra, "-t", IMAGE, str(ROOT), timeout=900)
        return time.monotonic() - started

    def image_size(self, image: str = IMAGE) -> int:
        return int(self.run("image", "inspect", "-f", "{{.Size}}", image).stdout.strip())

    def healthy(self, container: str) -> bool:
        """Whether the image's HEALTHCHECK passes now. podman runs it on request (nothing
        schedules health checks without systemd); Docker's engine runs it on its interval."""
        if self.podman:
            return (
                self.run("healthcheck", "run", container, check=False, timeout=60).returncode == 0
            )
        status = self.run("inspect", "-f", "{{.State.Health.Status}}", container).stdout
        return status.strip() == "healthy"

    def state(self, container: str) -> tuple[str, int]:
        """(status, exit code) of a container, e.g. ("running", 0) or ("exited", 2)."""
        out = self.run("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container)
        status, code = out.stdout.split()
        return status, int(code)

    def wait_healthy(self, container: str, timeout: float) -> None:
        """Until the container's health check passes; AssertionError (with its log) if it
        stops running or stays unhealthy for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.healthy(container):
            status, code = self.state(container)
            if status not in ("running", "created", "configured", "restarting"):
                raise AssertionError(
                    f"container {container} is {status} (exit code {code}) before it got "
                    f"healthy:\n{self.logs(container)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"container {container} not healthy within {timeout} s:\n{self.logs(container)}"
                )
            time.sleep(1)

    def logs(self, container: str, lines: int = 40) -> str:
        out = self.run("logs", "--tail", str(lines), container, check=False, timeout=60)
        return out.stdout + out.stderr

    def sigkill(self, container: str) -> None:
        """SIGKILL the container's main process: a crash, not a stop."""
        self.run("kill", "--signal", signal.SIGKILL.name, container)


def find_runtime() -> Runtime:
    """Docker when its engine answers, else podman; NoContainerRuntime says what is missing."""
    tried = []
    docker = shutil.which("docker")
    if docker is not None:
        info = _run([docker, "info"], timeout=30, check=False)
        if info.returncode == 0:
            if _run([docker, "compose", "version"], timeout=30, check=False).returncode != 0:
                raise NoContainerRuntime(
                    f"a Docker engine answers but `docker compose` is missing: install the "
                    f"Docker Compose plugin ({docker} compose version failed)"
                )
            return Runtime(docker, (docker, "compose"))
        tried.append(f"{docker} info failed: {_last_line(info.stderr)}")
    podman = shutil.which("podman")
    if podman is not None:
        info = _run([podman, "info"], timeout=60, check=False)
        if info.returncode == 0:
            compose = shutil.which("podman-compose")
            if compose is None:
                raise NoContainerRuntime(
                    "podman works but podman-compose is not on PATH: `pip install "
                    "podman-compose` (CI: .ci/container-setup installs it)"
                )
            return Runtime(podman, (compose,))
        tried.append(f"{podman} info failed: {_last_line(info.stderr)}")
    raise NoContainerRuntime(
        "make test-container needs a container runtime: a Docker engine with the compose "
        "plugin, or podman with podman-compose. "
        + ("; ".join(tried) if tried else "Neither docker nor podman is on PATH")
        + ". On Debian CI machines, .ci/container-setup installs podman and builds the base "
        "images (then `. ~/.cache/kstatefun/containers/env`)."
    )


def _run(
    command: Sequence[str], *, timeout: float, check: bool, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(command),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited with {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
