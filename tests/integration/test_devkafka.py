"""The local development broker: foreground runner, restart after a crash, clear set-up errors."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kstatefun.devkafka
from kstatefun.devkafka import LocalKafka
from kstatefun.devkafka.broker import free_ports
from kstatefun.devkafka.jars import ensure_runtime
from kstatefun.errors import DevKafkaError

pytestmark = pytest.mark.kafka

TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,200}$")


def test_foreground_runner_prints_one_line_serves_clients_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    (port,) = free_ports(1)
    data_dir = tmp_path / "dev"
    with (tmp_path / "stderr.txt").open("wb") as stderr:
        runner = subprocess.Popen(
            [sys.executable, "-m", "kstatefun.devkafka", "--data-dir", str(data_dir)]
            + ["--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_env_with_package(),
        )
    try:
        assert runner.stdout is not None
        first = _read_line(runner.stdout, timeout=120, stderr_file=tmp_path / "stderr.txt")
        assert first == f"bootstrap.servers=127.0.0.1:{port}\n"
        (broker_pid,) = _children(runner.pid)

        bootstrap_servers = first.strip().split("=", 1)[1]
        topic = f"devkafka-fg-{uuid.uuid4().hex[:8]}"
        _create(bootstrap_servers, topic)
        _produce(bootstrap_servers, topic, b"k", b"hello")
        assert _consume_one(bootstrap_servers, topic) == (b"k", b"hello")

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
        assert runner.stdout.read() == b""  # nothing after the one line
        assert not _alive(broker_pid)
        # The broker shut down cleanly (SIGTERM, not the parent-death SIGKILL).
        assert (data_dir / "kafka-logs" / ".kafka_cleanshutdown").exists()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_restart_after_kill_keeps_produced_records_and_the_cluster(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path / "k")
    try:
        bootstrap_servers = broker.start()
        meta = (broker.data_dir / "kafka-logs" / "meta.properties").read_text()
        topic = "devkafka-restart"
        _create(bootstrap_servers, topic)
        _produce(bootstrap_servers, topic, b"k", b"survives")
        crashed_pid = broker.pid
        assert crashed_pid is not None

        broker.kill()
        assert broker.pid is None
        assert not _alive(crashed_pid)
        assert broker.restart() == bootstrap_servers

        assert broker.pid not in (None, crashed_pid)
        # Same storage, not re-formatted: the cluster id and directory id are unchanged.
        assert (broker.data_dir / "kafka-logs" / "meta.properties").read_text() == meta
        assert _consume_one(bootstrap_servers, topic) == (b"k", b"survives")
    finally:
        broker.stop()
    assert not broker.running


def test_start_failure_raises_with_the_broker_log_tail(tmp_path: Path) -> None:
    data_dir = tmp_path / "bad"
    (data_dir / "kafka-logs").mkdir(parents=True)
    # Storage formatted for another node: Kafka refuses to start.
    (data_dir / "kafka-logs" / "meta.properties").write_text(
        "version=1\ncluster.id=hND4YUUvY3YFFSkxTBfDiw\nnode.id=7\n"
        "directory.id=XbBQuCcvUP3tXkeLizd_Sg\n"
    )
    broker = LocalKafka(data_dir)
    with pytest.raises(DevKafkaError) as raised:
        broker.start(timeout=60)
    message = str(raised.value)
    assert "exited with code" in message
    assert str(data_dir) in message
    assert "Stored node id 7 doesn't match" in message  # from the broker's own log
    assert not broker.running


def test_a_cluster_of_two_nodes_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kstatefun.devkafka", "--brokers", "2", "--port", "0"]
        + ["--data-dir", str(tmp_path / "dev")],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env_with_package(),
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "at least 3 nodes (replication factor 3, min.insync.replicas 2)" in result.stderr


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = _start_in_subprocess(tmp_path / "data", path=str(empty))
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("java not found on PATH: install a JDK >= 17")


def test_missing_maven_is_clear_when_the_jars_are_not_cached(tmp_path: Path) -> None:
    java_only = tmp_path / "java-bin"
    java_only.mkdir()
    java = _which("java")
    (java_only / "java").symlink_to(java)
    result = _start_in_subprocess(
        tmp_path / "data", path=str(java_only), cache_dir=tmp_path / "cache"
    )
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mvn not found on PATH: install Apache Maven")
    assert not (tmp_path / "cache" / "kafka-4.1.1" / "lib.ok").exists()


def test_jar_cache_retries_a_half_finished_download_then_is_reused_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    (cache / "lib").mkdir(parents=True)
    (cache / "lib" / "kafka_2.13-4.1.1.jar.part").write_bytes(b"interrupted download")

    runtime = ensure_runtime(cache)

    assert not (cache / "lib" / "kafka_2.13-4.1.1.jar.part").exists()
    assert (runtime.lib_dir / "kafka_2.13-4.1.1.jar").is_file()
    assert (runtime.lib_dir / "log4j-slf4j-impl-2.24.3.jar").is_file()
    assert (runtime.lib_dir / "slf4j-api-1.7.36.jar").is_file()
    assert (cache / "lib.ok").is_file()
    # Once resolved, Maven is no longer needed.
    java_only = tmp_path / "java-bin"
    java_only.mkdir()
    (java_only / "java").symlink_to(_which("java"))
    monkeypatch.setenv("PATH", str(java_only))
    assert ensure_runtime(cache).lib_dir == runtime.lib_dir


def test_session_broker_aborts_a_dead_producers_transaction_quickly(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    create_topic: Callable[..., str],
) -> None:
    topic = create_topic(unique_name("txn"))
    assert TOPIC_NAME.match(topic) and topic.startswith("txn-")
    dead = subprocess.Popen(
        [sys.executable, "-c", _OPEN_TRANSACTION, kafka_bootstrap, topic, unique_name("tx")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert dead.stdout is not None
        assert dead.stdout.readline().strip() == "open"
    finally:
        dead.kill()
        dead.wait()
    killed_at = time.monotonic()
    # A committed record behind the open transaction is invisible to read_committed consumers
    # until the broker aborts that transaction (transaction.timeout.ms = 2 s in the script).
    _produce(kafka_bootstrap, topic, b"k", b"after")
    assert _consume_one(kafka_bootstrap, topic, timeout=30) == (b"k", b"after")
    elapsed = time.monotonic() - killed_at
    print(f"dead transaction aborted after {elapsed:.1f} s")
    assert elapsed < 6.0


def test_unique_name_is_a_short_valid_topic_name(unique_name: Callable[[str], str]) -> None:
    first, second = unique_name("in"), unique_name("in")
    assert first != second
    assert first.startswith("in-test_unique_name_is_a_short_valid_topic_name-")
    long_one = unique_name("p" * 300 + "/weird [chars]")
    assert TOPIC_NAME.match(first) and TOPIC_NAME.match(long_one)


_OPEN_TRANSACTION = """
import sys
from confluent_kafka import Producer
bootstrap, topic, txn_id = sys.argv[1:]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
              "transaction.timeout.ms": 2000})
p.init_transactions(30)
p.begin_transaction()
p.produce(topic, b"never-committed", b"k")
p.flush(30)
print("open", flush=True)
import time
time.sleep(600)
"""


def _start_in_subprocess(
    data_dir: Path, *, path: str, cache_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kstatefun.devkafka import LocalKafka\n"
        "from kstatefun.errors import DevKafkaError\n"
        "try:\n"
        "    LocalKafka(Path(sys.argv[1])).start()\n"
        "except DevKafkaError as e:\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
    )
    env = _env_with_package()
    env["PATH"] = path
    if cache_dir is not None:
        env["KSTATEFUN_CACHE_DIR"] = str(cache_dir)
    return subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env_with_package() -> dict[str, str]:
    """The environment, with the directory holding the kstatefun package on PYTHONPATH."""
    package_root = Path(kstatefun.devkafka.__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(package_root), env.get("PYTHONPATH", "")) if p
    )
    return env


def _read_line(stream: IO[bytes], timeout: float, stderr_file: Path) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
        if not ready:
            pytest.fail(f"no line on stdout within {timeout} s; stderr:\n{stderr_file.read_text()}")
        chunk = os.read(fd, 1)
        if not chunk:
            pytest.fail(f"stdout closed after {data!r}; stderr:\n{stderr_file.read_text()}")
        data += chunk
    return data.decode()


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _which(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, f"{name} must be on PATH for this test"
    return found


def _create(bootstrap_servers: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(timeout=30)


def _produce(bootstrap_servers: str, topic: str, key: bytes, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all"})
    errors: list[object] = []
    producer.produce(topic, value, key, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(30) == 0
    assert errors == [None]


def _consume_one(bootstrap_servers: str, topic: str, timeout: float = 30) -> tuple[bytes, bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"devkafka-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            key, value = message.key(), message.value()
            assert key is not None and value is not None
            return key, value
        pytest.fail(f"no committed record on {topic} within {timeout} s")
    finally:
        consumer.close()
