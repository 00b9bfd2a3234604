"""What can be checked of the container set-up without a container runtime: the compose file
parses and references what exists, the image's contents exist and install, and the container's
command works outside a container against a real broker. `make test-container`
(tests/container) builds and runs them for real."""

import json
import os
import re
import subprocess
import sys
import zipfile

import pytest
import yaml

from kstatefun.config.settings import Settings
from kstatefun.devkafka.broker import free_ports
from tests.harness import ROOT, read_committed

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_compose_references_what_exists():
    services = COMPOSE["services"]
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    settings_env = {f"KSTATEFUN_{name.upper()}" for name in Settings.model_fields}
    workers = [s for s in services.values() if s.get("build") == "."]
    assert {s["image"] for s in workers} == {"kstatefun:latest"}  # built once, used thrice
    assert len(workers) >= 3  # two workers and the producer
    for service in workers:
        for key in service.get("environment", {}):
            assert key in settings_env, f"{key} is not a kstatefun setting"
    worker_env = services["worker-1"]["environment"]
    assert worker_env["KSTATEFUN_MODULE"].startswith("/app/")
    assert (ROOT / worker_env["KSTATEFUN_MODULE"].removeprefix("/app/")).is_file()
    assert (
        services["worker-1"]["environment"]["KSTATEFUN_INSTANCE_ID"]
        != (services["worker-2"]["environment"]["KSTATEFUN_INSTANCE_ID"])
    )
    producer_cmd = services["producer"]["entrypoint"]
    module = producer_cmd[producer_cmd.index("-m") + 1]
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()


def test_dockerfile_copies_what_exists_and_runs_as_non_root():
    # from the build context, not from another stage (COPY --from=...)
    for src in re.findall(r"^COPY (?!--)(\S+(?: \S+)*) \S+$", DOCKERFILE, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), path
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.M).group(1))
    assert entry == ["kstatefun", "run"]
    assert "KSTATEFUN_MODULE=/app/config/module.yaml" in DOCKERFILE


def test_wheel_carries_the_avro_schemas(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("kstatefun-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for schema in ("invocation", "changelog_key", "changelog_value", "dead_letter"):
        assert f"kstatefun/schemas/{schema}.avsc" in names
    assert "kstatefun/runtime/worker.py" in names


@pytest.mark.kafka
def test_the_container_command_runs_outside_docker(kafka_bootstrap, create_topic, tmp_path):
    """worker-1's environment and entrypoint, with the broker address swapped for ours and the
    metrics port for a free one (the compose file's 9464 may be taken on this host)."""
    create_topic("greeter-names", partitions=4)
    create_topic("greeter-greetings", partitions=4)
    env = dict(os.environ, **COMPOSE["services"]["worker-1"]["environment"])
    env["KSTATEFUN_MODULE"] = str(ROOT / "config" / "module.yaml")
    env["KSTATEFUN_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    env["KSTATEFUN_METRICS_PORT"] = str(free_ports(1)[0])
    # worker-1 is a named worker: its default state directory goes here, not in this host's
    # home, where an earlier run's snapshot would outlive that run's broker
    env["XDG_STATE_HOME"] = str(tmp_path)
    kstatefun = os.path.join(os.path.dirname(sys.executable), "kstatefun")
    worker = subprocess.Popen([kstatefun, "run"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "examples.produce_sample",
                "--bootstrap-servers",
                kafka_bootstrap,
            ],
            cwd=ROOT,
            check=True,
            timeout=60,
        )
        greetings = read_committed(kafka_bootstrap, "greeter-greetings", 8, settle=0.5)
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode()[-3000:]
    texts = sorted(v for _, v in greetings)
    assert len(texts) == 8
    assert "Hello Ann, welcome back! This is visit number 3." in texts
    assert "Hello Dev! Nice to meet you." in texts


def test_health_checks_probe_the_workers_endpoints():
    """The image's HEALTHCHECK asks /readyz on $KSTATEFUN_METRICS_PORT; the compose workers keep
    it (no override) and leave the port on."""
    healthcheck = re.search(r"^HEALTHCHECK .*?\n(?:\s+.*\n)*", DOCKERFILE, re.M).group(0)
    assert "/readyz" in healthcheck and "os.environ['KSTATEFUN_METRICS_PORT']" in healthcheck
    assert "KSTATEFUN_METRICS_PORT=9464" in DOCKERFILE
    for name in ("worker-1", "worker-2"):
        worker = COMPOSE["services"][name]
        assert "healthcheck" not in worker
        assert int(worker["environment"]["KSTATEFUN_METRICS_PORT"]) > 0
