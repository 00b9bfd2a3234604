"""A single-node KRaft Kafka broker run as a local JVM process, for development and tests.

The broker binds to 127.0.0.1 only and keeps everything in one data directory::

    <data_dir>/server.properties   written on every start (mode 0600 with a SASL_SSL listener)
    <data_dir>/kafka-logs/         log.dirs; formatted once (meta.properties marks it)
    <data_dir>/broker.log          log4j2: WARN and above, plus "Kafka Server started"
    <data_dir>/broker.out          the JVM's own stdout/stderr (crashes, bad options)

The JVM runs in its own process group and, on Linux, is killed when the thread that started it
dies; brokers still running at interpreter exit are killed too.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from kstatefun.devkafka.jars import KafkaRuntime, ensure_runtime
from kstatefun.devkafka.security import LISTENER, SCRAM_ITERATIONS, SaslSslConfig
from kstatefun.errors import DevKafkaError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"

TUNING: Mapping[str, str] = {
    # Single node: internal topics cannot have more than one replica.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    # Few internal partitions: the first group / transaction is coordinated in milliseconds.
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.num.partitions": "4",
    "num.partitions": "1",
    # Tests join groups constantly; waiting for more members only slows them down.
    "group.initial.rebalance.delay.ms": "0",
    # KIP-848 groups (rebalance_protocol consumer, the default): the broker times sessions and
    # heartbeats. At its defaults (45 s, at least 45 s; heartbeats every 5 s) a killed worker's
    # partitions would wait 45 s and every assignment step up to 5 s. 10 s and 1 s are what
    # kstatefun asks of a classic group (kafka/clients.py); the lower bounds let a test give
    # its group a shorter session (the group config consumer.session.timeout.ms).
    "group.consumer.session.timeout.ms": "10000",
    "group.consumer.min.session.timeout.ms": "2000",
    "group.consumer.heartbeat.interval.ms": "1000",
    "group.consumer.min.heartbeat.interval.ms": "500",
    # A dead producer's open transaction is aborted soon after its transaction.timeout.ms.
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    # After kill(), the restarted controller keeps the dead incarnation's registration until its
    # session expires; the default 9 s would make every chaos-test restart take 10 s.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    # Topics are created deliberately, with their settings checked.
    "auto.create.topics.enable": "false",
    # Changelogs are compacted; the default 128 MiB dedupe buffer is mostly resident memory.
    "log.cleaner.enable": "true",
    "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
}
"""Broker settings for development and tests; also applied to a Docker broker by the tests."""

JVM_OPTIONS: tuple[str, ...] = (
    "-Xmx512m",
    "-Xms64m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

_LOG_DIRS = "kafka-logs"
_LOG_TAIL_LINES = 40


def new_cluster_id() -> str:
    """A KRaft cluster id: URL-safe base64 of 16 random bytes, unpadded, not starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


# Where free_ports looks first: below the kernel's ephemeral range, which it reads from here.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10_000


def _below_ephemeral() -> range | None:
    """The ports between ``_LOWEST_PORT`` and the kernel's ephemeral range (None: unknown)."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(_LOWEST_PORT, low) if low - _LOWEST_PORT >= 1000 else None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago, for listeners
    that bind them later (a broker, or a node restarted on its old ports). Taken below the
    ephemeral range where the kernel says where it starts: a port from that range can be taken
    meanwhile as the local end of an outgoing connection, as every client's are."""
    sockets: list[socket.socket] = []
    candidates = _below_ephemeral()
    order = random.sample(candidates, min(len(candidates), 50 * count)) if candidates else []
    try:
        for port in order:
            if len(sockets) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        while len(sockets) < count:  # no such range, or nothing free in it
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_until_ready(
    bootstrap_servers: str,
    timeout: float,
    *,
    still_starting: Callable[[], None] = lambda: None,
) -> None:
    """Block until a client can list topics through ``bootstrap_servers``.

    ``still_starting`` is called between attempts and may raise to give up early (the broker
    process died). Raises TimeoutError when the broker does not answer within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    # Probe the port first: librdkafka logs every refused connection.
    while not _accepts_connections(host, int(port)):
        still_starting()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{bootstrap_servers} accepted no connection within {timeout} s")
        time.sleep(0.1)
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
        # Keeps librdkafka's connection chatter off stderr while the broker comes up.
        "logger": logging.getLogger(f"{__name__}.client"),
    }
    admin = AdminClient(config)
    while True:
        still_starting()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{bootstrap_servers} returned no metadata within {timeout} s")
        try:
            metadata = admin.list_topics(timeout=min(2.0, remaining))
            if metadata.brokers:
                return
        except KafkaException:
            pass
        time.sleep(0.1)


class LocalKafka:
    """A single-node Kafka 4.1 broker (KRaft, broker+controller) in a local JVM.

    Usage::

        with LocalKafka(Path("/tmp/k")) as kafka:
            produce_to(kafka.bootstrap_servers)

    The data directory survives stop(), kill() and restart(); it is formatted only when it holds
    no ``meta.properties``. Port 0 picks a free port once, kept across restarts.

    With ``sasl_ssl`` the broker also listens for SASL_SSL (SCRAM over TLS) on
    ``sasl_ssl_bootstrap_servers``; ``bootstrap_servers`` stays PLAINTEXT. Its SCRAM users are
    created when the storage is formatted, or through the Admin API when the data directory was
    formatted before.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        controller_port: int = 0,
        *,
        sasl_ssl: SaslSslConfig | None = None,
        node_id: int = 1,
        tuning: Mapping[str, str] = TUNING,
        jvm_options: tuple[str, ...] = JVM_OPTIONS,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        # a node of a LocalKafkaCluster: its id, the cluster's settings and its controller quorum
        # (node_id@host:port,...; None: this node alone) and cluster id (None: a new one)
        self.node_id = node_id
        self.tuning = tuning
        self.jvm_options = jvm_options
        self.quorum_voters: str | None = None
        self.cluster_id: str | None = None
        picked = iter(free_ports(3))
        self.port = port or next(picked)
        self.controller_port = controller_port or next(picked)
        self.sasl_ssl = sasl_ssl
        self.sasl_ssl_port = (sasl_ssl.port or next(picked)) if sasl_ssl is not None else None
        ports = [p for p in (self.port, self.controller_port, self.sasl_ssl_port) if p]
        if len(set(ports)) != len(ports):
            raise DevKafkaError(
                f"port, controller_port and the SASL_SSL port must differ, got {ports}: give "
                "each listener its own port"
            )
        self._process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._runtime: KafkaRuntime | None = None
        self._log_offsets: dict[Path, int] = {}
        self._started = 0.0

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``, for clients' ``bootstrap.servers``."""
        return f"{HOST}:{self.port}"

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT`` of the SASL_SSL listener; DevKafkaError without ``sasl_ssl``."""
        if self.sasl_ssl_port is None:
            raise DevKafkaError("this LocalKafka was created without sasl_ssl")
        return f"{HOST}:{self.sasl_ssl_port}"

    @property
    def pid(self) -> int | None:
        """The broker JVM's process id while it runs (or until it is reaped), else None."""
        return self._process.pid if self._process is not None else None

    @property
    def log_file(self) -> Path:
        """The broker's log4j2 log."""
        return self.data_dir / "broker.log"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker and return ``bootstrap_servers`` once a client can list topics.

        The first call on a machine may first download the broker's jars with Maven (not counted
        in ``timeout``). Raises DevKafkaError, with the tail of the broker's log, when the broker
        exits or does not answer within ``timeout`` seconds; the process is killed then.
        """
        if self.running:
            return self.bootstrap_servers
        formatted_before = self.launch()
        return self.await_ready(timeout, formatted_before)

    def launch(self) -> bool:
        """Start the JVM without waiting for it (the nodes of a cluster start together: none
        answers before a quorum of controllers runs). Returns whether the storage was formatted
        before; pass that to :meth:`await_ready`."""
        self._reap()
        runtime = self._runtime or ensure_runtime()
        self._runtime = runtime
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = self.data_dir / "server.properties"
        _write_properties(properties, self._settings(), private=self.sasl_ssl is not None)
        for port in (self.port, self.controller_port, self.sasl_ssl_port):
            if port is not None:
                _check_port_free(port)
        formatted_before = (self.data_dir / _LOG_DIRS / "meta.properties").exists()
        if not formatted_before:
            self._format(runtime, properties)

        self._started = time.monotonic()
        self._log_offsets = {path: _size(path) for path in self._log_files()}
        out = (self.data_dir / "broker.out").open("ab")
        command = runtime.java_command(
            "kafka.Kafka", [str(properties)], log_file=self.log_file, jvm_options=self.jvm_options
        )
        try:
            self._process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )
        except OSError as e:
            out.close()
            raise DevKafkaError(f"cannot start {runtime.java} for the Kafka broker: {e}") from e
        self._out = out
        _running_brokers.add(self)
        return formatted_before

    def await_ready(self, timeout: float, formatted_before: bool = True) -> str:
        """After :meth:`launch`: wait until a client can list topics through this node; kills it
        and raises DevKafkaError when it exits or does not answer within ``timeout``."""
        try:
            wait_until_ready(self.bootstrap_servers, timeout, still_starting=self._check_alive)
            if self.sasl_ssl is not None and formatted_before:
                self._upsert_scram_users(self.sasl_ssl, timeout)
        except TimeoutError as e:
            self.kill()
            raise DevKafkaError(
                f"Kafka broker in {self.data_dir} did not accept clients on "
                f"{self.bootstrap_servers} within {timeout} s; last lines of its logs:\n"
                f"{self.log_tail()}"
            ) from e
        except BaseException:  # it died (DevKafkaError), or the caller was interrupted
            self.kill()
            raise
        logger.info(
            "kafka broker started bootstrap_servers=%s pid=%s seconds=%.1f data_dir=%s",
            self.bootstrap_servers,
            self.pid,
            time.monotonic() - self._started,
            self.data_dir,
        )
        return self.bootstrap_servers

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the broker down (SIGTERM), SIGKILL it if it is still alive after ``timeout``."""
        process = self._process
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "kafka broker ignored SIGTERM, killing it pid=%s timeout_s=%s",
                    process.pid,
                    timeout,
                )
                self.kill()
                return
        self._reap()

    def kill(self) -> None:
        """SIGKILL the broker (no clean shutdown) and wait until it is gone."""
        process = self._process
        # poll() first: once reaped, the pid (and process group id) may belong to someone else.
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        self._reap()

    def restart(self, timeout: float = 90.0) -> str:
        """Stop the broker if it runs, then start it again on the same data dir and ports."""
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines the broker logged since its latest start (log4j2 log and JVM output)."""
        parts = []
        for path in self._log_files():
            text = _read_tail(path, lines, self._log_offsets.get(path, 0))
            if text:
                parts.append(f"--- {path}\n{text}")
        return "\n".join(parts) or "(the broker wrote no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalKafka({self.bootstrap_servers}, data_dir={self.data_dir}, pid={self.pid})"

    def _settings(self) -> dict[str, str]:
        listeners = f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}"
        advertised = f"PLAINTEXT://{HOST}:{self.port}"
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        security: dict[str, str] = {}
        if self.sasl_ssl is not None and self.sasl_ssl_port is not None:
            listeners += f",{LISTENER}://{HOST}:{self.sasl_ssl_port}"
            advertised += f",{LISTENER}://{HOST}:{self.sasl_ssl_port}"
            protocols += f",{LISTENER}:{LISTENER}"
            security = self.sasl_ssl.broker_properties()
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum_voters
            or f"{self.node_id}@{HOST}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": advertised,
            "listener.security.protocol.map": protocols,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / _LOG_DIRS),
            **self.tuning,
            **security,
        }

    def _upsert_scram_users(self, config: SaslSslConfig, timeout: float) -> None:
        """Create or update the SCRAM users through the PLAINTEXT listener (KIP-554)."""
        admin_config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": logging.getLogger(f"{__name__}.client"),
        }
        admin = AdminClient(admin_config)
        mechanism = ScramMechanism[config.mechanism.replace("-", "_")]
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(
                name, ScramCredentialInfo(mechanism, SCRAM_ITERATIONS), password.encode("utf-8")
            )
            for name, password in config.users.items()
        ]
        futures = admin.alter_user_scram_credentials(upserts, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
            except KafkaException as e:
                raise DevKafkaError(f"creating SCRAM user {name!r} failed: {e}") from e
        logger.info("kafka SCRAM users upserted users=%s", ",".join(config.users))

    def _format(self, runtime: KafkaRuntime, properties: Path) -> None:
        cluster_id = self.cluster_id or new_cluster_id()
        scram = self.sasl_ssl.format_arguments() if self.sasl_ssl is not None else []
        command = runtime.java_command(
            "kafka.tools.StorageTool",
            ["format", "-t", cluster_id, "-c", str(properties), *scram],
            log_file=self.log_file,
            jvm_options=("-Xmx256m", "-XX:TieredStopAtLevel=1"),
        )
        try:
            result = subprocess.run(
                command,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DevKafkaError(f"formatting Kafka storage in {self.data_dir} failed: {e}") from e
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise DevKafkaError(
                f"formatting Kafka storage in {self.data_dir / _LOG_DIRS} failed (exit code "
                f"{result.returncode}):\n{output}\n{self.log_tail()}"
            )
        logger.info("kafka storage formatted cluster_id=%s data_dir=%s", cluster_id, self.data_dir)

    def _log_files(self) -> tuple[Path, Path]:
        return self.log_file, self.data_dir / "broker.out"

    def _check_alive(self) -> None:
        process = self._process
        if process is not None and process.poll() is not None:
            raise DevKafkaError(
                f"Kafka broker in {self.data_dir} exited with code {process.returncode} during "
                f"start-up; last lines of its logs:\n{self.log_tail()}"
            )

    def _reap(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None
        if self._process is None:
            _running_brokers.discard(self)
            if self._out is not None:
                self._out.close()
                self._out = None


# Strong references: a broker nobody holds any more must still be killed at exit.
_running_brokers: set[LocalKafka] = set()


@atexit.register
def _kill_leftover_brokers() -> None:
    for broker in list(_running_brokers):
        broker.kill()


def _render_properties(settings: Mapping[str, str]) -> str:
    lines = ["# Written by kstatefun.devkafka on every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _write_properties(path: Path, settings: Mapping[str, str], *, private: bool) -> None:
    """Write server.properties; ``private`` (it holds keystore passwords): owner-only, 0600."""
    text = _render_properties(settings)
    if not private:
        path.write_text(text)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may exist from a start without sasl_ssl
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise DevKafkaError(
                f"port {port} on {HOST} is already in use ({e.strerror}): stop whatever listens "
                f"there or choose another port"
            ) from e


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The broker leads its own process group (start_new_session).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_tail(path: Path, lines: int, start: int = 0) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(start, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.strip().splitlines()[-lines:])


_PR_SET_PDEATHSIG = 1


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn making the child get SIGKILL when the starting thread dies (Linux only).

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only armed when starting
    from the main thread; elsewhere the atexit hook is the fallback.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook
