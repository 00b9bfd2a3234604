"""The Kafka broker's Java runtime: the JDK on PATH and the broker's jars, resolved once by Maven.

The jars live in a cache directory outside the repository (``$KSTATEFUN_CACHE_DIR/kafka-4.1.1``,
default ``~/.cache/kstatefun/kafka-4.1.1``). A marker file holding the fingerprint of the
generated pom is written only after Maven succeeded, so an interrupted download is retried and a
changed dependency list is resolved again.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kstatefun.errors import DevKafkaError

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "1.7.36"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
MIN_JAVA_MAJOR = 17

CACHE_DIR_ENV = "KSTATEFUN_CACHE_DIR"
LOG_FILE_PROPERTY = "kstatefun.broker.log"
"""JVM system property naming the file the broker's log4j2 configuration writes to."""

_MVN_TIMEOUT_S = 1800.0
_MARKER = "lib.ok"

# (groupId, artifactId, version). Kafka's POM carries no logging binding; slf4j-api is pinned to
# the 1.7 line that log4j-slf4j-impl binds to.
_DEPENDENCIES: tuple[tuple[str, str, str], ...] = (
    ("org.apache.kafka", f"kafka_{SCALA_VERSION}", KAFKA_VERSION),
    ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-api", LOG4J_VERSION),
    ("org.slf4j", "slf4j-api", SLF4J_VERSION),
)


# WARN and above from everything, plus the INFO line "Kafka Server started" (KafkaRaftServer),
# into the file named by -Dkstatefun.broker.log. Nothing goes to the console. The broker's own
# clients warn every 50 ms while its listener comes up; only their errors are kept.
def log4j2_xml(info_loggers: tuple[str, ...] = ()) -> str:
    """The brokers' log4j2 configuration; ``info_loggers`` also log at INFO."""
    extra = "".join(f'\n    <Logger name="{name}" level="info"/>' for name in info_loggers)
    return f"""\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <File name="broker" fileName="${{sys:{LOG_FILE_PROPERTY}}}" append="true" immediateFlush="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.server.KafkaRaftServer" level="info"/>{extra}
    <Logger name="org.apache.kafka.clients.NetworkClient" level="error"/>
    <Root level="warn">
      <AppenderRef ref="broker"/>
    </Root>
  </Loggers>
</Configuration>
"""


_LOG4J2_XML = log4j2_xml()


@dataclass(frozen=True, slots=True)
class KafkaRuntime:
    """A JDK and a directory holding every jar the broker needs at runtime."""

    java: str
    lib_dir: Path
    log4j_config: Path

    def java_command(
        self,
        main_class: str,
        args: Sequence[str],
        *,
        log_file: Path,
        jvm_options: Sequence[str] = (),
    ) -> list[str]:
        """The argv that runs ``main_class`` on the broker's classpath, logging to ``log_file``."""
        return [
            self.java,
            *jvm_options,
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            f"-D{LOG_FILE_PROPERTY}={log_file}",
            "-cp",
            str(self.lib_dir / "*"),
            main_class,
            *args,
        ]


def default_cache_dir() -> Path:
    """``$KSTATEFUN_CACHE_DIR/kafka-<version>``, or ``~/.cache/kstatefun/kafka-<version>``."""
    root = os.environ.get(CACHE_DIR_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "kstatefun"
    return base / f"kafka-{KAFKA_VERSION}"


def find_java() -> str:
    """The ``java`` on PATH, checked to be at least version 17; DevKafkaError otherwise."""
    java = shutil.which("java")
    if java is None:
        raise DevKafkaError(
            f"java not found on PATH: install a JDK >= {MIN_JAVA_MAJOR} (e.g. OpenJDK "
            f"{MIN_JAVA_MAJOR}) and put its bin directory on PATH to run the local Kafka broker"
        )
    major = _java_major_version(java)
    if major is not None and major < MIN_JAVA_MAJOR:
        raise DevKafkaError(
            f"{java} is Java {major}; Kafka {KAFKA_VERSION} needs a JDK >= {MIN_JAVA_MAJOR}: "
            f"install one and put it first on PATH"
        )
    return java


def ensure_runtime(cache_dir: Path | None = None) -> KafkaRuntime:
    """Return the broker runtime, resolving the jars with Maven on first use.

    Safe to call from several processes at once: resolution holds a lock file in the cache dir.
    Raises DevKafkaError when java or (on first use) mvn is missing, or Maven fails.
    """
    java = find_java()
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DevKafkaError(
            f"cannot create the Kafka jar cache {cache}: {e}; set {CACHE_DIR_ENV} to a writable "
            f"directory"
        ) from e
    lib_dir = cache / "lib"
    pom = _pom_xml()
    fingerprint = hashlib.sha256(pom.encode()).hexdigest()
    marker = cache / _MARKER
    if not _is_resolved(marker, lib_dir, fingerprint):
        with _locked(cache / ".lock"):
            if not _is_resolved(marker, lib_dir, fingerprint):
                _resolve(cache, lib_dir, pom, marker, fingerprint)
    log4j_config = cache / "log4j2.xml"
    _write_if_changed(log4j_config, _LOG4J2_XML)
    return KafkaRuntime(java=java, lib_dir=lib_dir, log4j_config=log4j_config)


def _is_resolved(marker: Path, lib_dir: Path, fingerprint: str) -> bool:
    try:
        return marker.read_text().strip() == fingerprint and lib_dir.is_dir()
    except OSError:
        return False


def _resolve(cache: Path, lib_dir: Path, pom: str, marker: Path, fingerprint: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevKafkaError(
            f"mvn not found on PATH: install Apache Maven (3.6+) to download the Kafka "
            f"{KAFKA_VERSION} jars into {lib_dir} (needed once)"
        )
    marker.unlink(missing_ok=True)
    if lib_dir.exists():
        shutil.rmtree(lib_dir)
    pom_file = cache / "pom.xml"
    pom_file.write_text(pom)
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom_file),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={lib_dir}",
    ]
    logger.info(
        "resolving Kafka jars kafka_version=%s cache_dir=%s (first run, needs Maven Central)",
        KAFKA_VERSION,
        cache,
    )
    started = time.monotonic()
    try:
        result = subprocess.run(
            command,
            cwd=cache,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise DevKafkaError(
            f"mvn did not resolve the Kafka {KAFKA_VERSION} jars into {lib_dir} within "
            f"{_MVN_TIMEOUT_S:.0f} s: check access to Maven Central (proxy: ~/.m2/settings.xml)"
        ) from e
    if result.returncode != 0 or not any(lib_dir.glob("kafka_*.jar")):
        tail = _tail_lines((result.stdout or "") + (result.stderr or ""), 25)
        raise DevKafkaError(
            f"mvn could not resolve the Kafka {KAFKA_VERSION} jars into {lib_dir} (exit code "
            f"{result.returncode}; pom {pom_file}); check access to Maven Central (proxy: "
            f"~/.m2/settings.xml). Maven said:\n{tail}"
        )
    marker.write_text(fingerprint + "\n")
    logger.info(
        "resolved Kafka jars jars=%d seconds=%.1f lib_dir=%s",
        len(list(lib_dir.glob("*.jar"))),
        time.monotonic() - started,
        lib_dir,
    )


def _pom_xml() -> str:
    dependencies = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in _DEPENDENCIES
    )
    return f"""\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by kstatefun.devkafka.jars; only used to download the broker's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.kstatefun.devkafka</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{DEPENDENCY_PLUGIN_VERSION}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


@functools.lru_cache(maxsize=8)
def _java_major_version(java: str) -> int | None:
    """The major version ``java -version`` reports, or None when it cannot be told."""
    try:
        result = subprocess.run(
            [java, "-version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DevKafkaError(f"cannot run {java} -version: {e}; check the JDK installation") from e
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older call themselves "1.8.0_x".
    return int(match.group(2) or 0) if major == 1 else major


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _tail_lines(text: str, n: int) -> str:
    return "\n".join(text.strip().splitlines()[-n:])
