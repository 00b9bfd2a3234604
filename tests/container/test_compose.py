"""docker-compose.yml as shipped: the stack starts, greets the sample visits, survives a worker
SIGKILLed mid-stream with exactly-once output, and stops cleanly.

`docker compose up` starts it in one go; podman-compose (1.6, with podman 4.3) cannot wait on
`condition: service_healthy` / `service_completed_successfully`, so for podman the test starts
it in the same stages those conditions describe.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.container.conftest import measured
from tests.container.runtime import IMAGE, Runtime
from tests.container.test_image import visits_by_key

WORKERS = ("worker-1", "worker-2")
ROUNDS = 40  # of the sample's eight visits, after its first round


class Stack:
    def __init__(self, runtime: Runtime, project: str) -> None:
        self.runtime = runtime
        self.project = project

    def container(self, service: str) -> str:
        out = self.runtime.run(
            "ps", "-a", "-q",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        assert len(out) == 1, f"{self.project}: {len(out)} containers for {service}: {out}"
        return out[0]

    def up(self) -> None:
        if not self.runtime.podman:
            self.runtime.compose_run(self.project, "up", "-d", timeout=600)
            return
        compose = self.runtime.compose_run
        compose(self.project, "up", "-d", "--no-deps", "kafka")
        self.runtime.wait_healthy(self.container("kafka"), timeout=180)
        compose(self.project, "up", "-d", "--no-deps", "topics")
        topics = self.container("topics")
        self.runtime.run("wait", topics, timeout=180)
        assert self.runtime.state(topics) == ("exited", 0), self.runtime.logs(topics)
        compose(self.project, "up", "-d", "--no-deps", *WORKERS, "producer")

    def read_greetings(self, expected: int, timeout: float) -> list[tuple[str, str]]:
        """The greetings, read_committed with the command docker-compose.yml documents, once
        at least ``expected`` arrived (then 5 s more without a record, to see duplicates)."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.runtime.run(
                "exec", self.container("kafka"), "/opt/kafka/bin/kafka-console-consumer.sh",
                "--bootstrap-server", "kafka:9092", "--topic", "greeter-greetings",
                "--from-beginning", "--isolation-level", "read_committed",
                "--property", "print.key=true", "--timeout-ms", "5000",
                check=False, timeout=120,
            )  # fmt: skip
            lines = out.stdout.splitlines()
            records = [tuple(line.split("\t", 1)) for line in lines if "\t" in line]
            if len(records) >= expected or time.monotonic() > deadline:
                return records  # type: ignore[return-value]

    def produce(self, *args: str) -> subprocess.Popen[str]:
        """The sample producer in a container of its own on the stack's network."""
        return subprocess.Popen(
            [self.runtime.cli, "run", "--rm", "--network", f"{self.project}_default",
             "--entrypoint", "python", IMAGE, "-m", "examples.produce_sample",
             "--bootstrap-servers", "kafka:9092", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip


@pytest.fixture
def stack(runtime: Runtime, image: str) -> Iterator[Stack]:
    stack = Stack(runtime, f"kstatefun-test-{uuid.uuid4().hex[:8]}")
    try:
        yield stack
    finally:
        runtime.compose_run(stack.project, "down", "-v", "-t", "30", check=False, timeout=300)


def test_compose_stack_greets_exactly_once_across_a_sigkill(runtime: Runtime, stack: Stack):
    started = time.monotonic()
    stack.up()
    workers = [stack.container(w) for w in WORKERS]
    for worker in workers:
        runtime.wait_healthy(worker, timeout=180)
    measured(f"compose stack up and both workers healthy in {time.monotonic() - started:.0f} s")

    # the compose file's one-shot producer: eight visits
    first = stack.read_greetings(8, timeout=180)
    assert visits_by_key(first) == {"ann": [1, 2, 3], "bob": [1, 2], "cleo": [1, 2], "dev": [1]}

    stream = stack.produce("--rounds", str(ROUNDS), "--pause", "0.25")
    try:
        time.sleep(3)  # not a timing assertion: only so that the kill lands mid-stream
        assert stream.poll() is None, f"the stream ended before the kill: {stream.stdout}"
        runtime.sigkill(workers[0])
        # a restart policy may already have brought it back; starting it is then a no-op
        runtime.run("start", workers[0])
        out, _ = stream.communicate(timeout=300)
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.wait()
    assert stream.returncode == 0, out
    assert f"produced {8 * ROUNDS} visits" in out, out

    rounds = 1 + ROUNDS
    want = {
        "ann": list(range(1, 3 * rounds + 1)),
        "bob": list(range(1, 2 * rounds + 1)),
        "cleo": list(range(1, 2 * rounds + 1)),
        "dev": list(range(1, rounds + 1)),
    }
    greetings = stack.read_greetings(8 * rounds, timeout=240)
    assert visits_by_key(greetings) == want, f"{len(greetings)} greetings"

    # a clean stop: SIGTERM commits and leaves the group, exit code 0
    runtime.compose_run(stack.project, "stop", "-t", "30", *WORKERS, timeout=300)
    for worker in workers:
        assert runtime.state(worker) == ("exited", 0), runtime.logs(worker)
    measured(f"compose test end to end {time.monotonic() - started:.0f} s")
