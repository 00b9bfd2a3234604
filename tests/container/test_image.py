"""The worker image as built from the Dockerfile: what it contains, and one worker container
serving the greeter against a real broker, healthy by the image's own HEALTHCHECK."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

from kstatefun.devkafka.broker import free_ports
from tests.container.conftest import measured
from tests.container.runtime import Runtime
from tests.harness import ROOT, read_committed

GOAL_BYTES = 250 * 1000 * 1000
"""The image size goal (docs/operations.md)."""


def test_image_runs_compiled_as_non_root_without_build_tools(runtime: Runtime, image: str) -> None:
    out = runtime.run(
        "run", "--rm", "--entrypoint", "sh", image, "-c",
        "id -u; kstatefun --version; kstatefun --help;"
        " for t in gcc cc make hatchling; do command -v $t; done;"
        " python -c 'import hatchling' 2>&1; ls /src 2>&1; exit 0",
    ).stdout  # fmt: skip
    uid, *rest = out.splitlines()
    assert uid == "10001"
    assert "usage: kstatefun" in out and "{run,dev-kafka," in out
    # the image ships the compiled build (Dockerfile, docs/performance.md)
    assert "(build: compiled)" in out.splitlines()[1], out
    # no compiler, no build backend, no source tree: only the installed wheels
    assert not any(line.startswith("/") for line in rest), out
    assert "No module named 'hatchling'" in out
    assert "No such file or directory" in out
    labels = runtime.run("image", "inspect", "-f", "{{json .Config.Healthcheck}}", image).stdout
    assert "/readyz" in labels, f"the image lost its HEALTHCHECK: {labels}"
    base = runtime.image_size("python:3.11-slim")
    size = runtime.image_size(image)
    own = size - base
    measured(f"base python:3.11-slim {base / 1e6:.0f} MB; kstatefun adds {own / 1e6:.0f} MB")
    assert size <= GOAL_BYTES, (
        f"{size / 1e6:.0f} MB, of which kstatefun's layers {own / 1e6:.0f} MB"
    )


def test_worker_container_greets_exactly_once(
    runtime: Runtime, image: str, kafka_bootstrap: str, create_topic
) -> None:
    """The image's entrypoint and defaults (module, metrics port) with only the broker and
    the application named; host networking reaches the broker's published port."""
    create_topic("greeter-names", partitions=4)
    create_topic("greeter-greetings", partitions=4)
    (metrics_port,) = free_ports(1)
    name = f"kstatefun-test-{uuid.uuid4().hex[:8]}"
    runtime.run(
        "run", "-d", "--name", name, "--network", "host",
        "-e", f"KSTATEFUN_BOOTSTRAP_SERVERS={kafka_bootstrap}",
        "-e", f"KSTATEFUN_APP_ID=greeter-{uuid.uuid4().hex[:8]}",
        "-e", "KSTATEFUN_INSTANCE_ID=worker-1",
        "-e", f"KSTATEFUN_METRICS_PORT={metrics_port}",
        image,
    )  # fmt: skip
    try:
        runtime.wait_healthy(name, timeout=180)
        subprocess.run(
            [sys.executable, "-m", "examples.produce_sample", "--bootstrap-servers",
             kafka_bootstrap],
            cwd=ROOT, check=True, timeout=120,
        )  # fmt: skip
        greetings = read_committed(kafka_bootstrap, "greeter-greetings", 8, timeout=120)
        runtime.run("stop", "-t", "60", name, timeout=120)
        status, code = runtime.state(name)
        logs = runtime.logs(name)
    finally:
        runtime.run("rm", "-f", name, check=False)
    assert (status, code) == ("exited", 0), logs
    assert visits_by_key(greetings) == {
        "ann": [1, 2, 3], "bob": [1, 2], "cleo": [1, 2], "dev": [1]
    }, greetings  # fmt: skip


_VISIT = re.compile(
    r"Hello (\w+)(?:! Nice to meet you\.|, welcome back! This is visit number (\d+)\.)"
)


def visits_by_key(greetings: list[tuple[str, str]]) -> dict[str, list[int]]:
    """The visit numbers each person's greetings carry, in the order they were read."""
    out: dict[str, list[int]] = {}
    for key, text in greetings:
        match = _VISIT.fullmatch(text)
        assert match is not None and match.group(1).lower() == key, (key, text)
        out.setdefault(key, []).append(int(match.group(2) or 1))
    return out
