"""The peer frameworks' runtimes, built once and cached outside the repository.

Python peers: virtualenvs in ``$KSTATEFUN_CACHE_DIR/bench-venvs/<name>`` (default
``~/.cache/kstatefun/bench-venvs``). Each peer gets its own environment so that its dependencies
(its own confluent-kafka, aiokafka, RocksDB bindings) never meet kstatefun's. A marker file holds
the requirement the venv was built for; a changed requirement rebuilds it.

Kafka Streams: ``bench-venvs/kstreams`` holds the jars Maven resolves for
bench/peers/kstreams/pom.xml (into the local Maven repository ~/.m2 first) and the app's one
class, compiled with javac; the marker holds a hash of the pom and the source, so a change to
either rebuilds it.

The compiled build of kstatefun itself (bench/compiled.py) is cached the same way, in
``bench-venvs/kstatefun-compiled``. A build holds a lock file next to its directory: two
benchmark runs may start at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from kstatefun.devkafka.jars import _locked  # the broker jars' lock file, the same way

PEERS: dict[str, str] = {
    "quix": "quixstreams==3.28.1",
    "faust": "faust-streaming==0.15.3",
}
SHOWN: dict[str, tuple[str, ...]] = {  # the versions a result names
    "quix": ("quixstreams", "confluent-kafka", "rocksdict"),
    "faust": ("faust-streaming", "aiokafka"),
}


def cache_dir() -> Path:
    root = os.environ.get("KSTATEFUN_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "kstatefun"
    return base / "bench-venvs"


def ensure(name: str, log: Path) -> Path:
    """The python of the venv for peer ``name``, built if missing; raises RuntimeError with
    the installer's output when it cannot be built."""
    requirement = PEERS[name]
    venv = cache_dir() / name
    python = venv / "bin" / "python"
    build_once(
        venv,
        requirement,
        log,
        [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            [str(python), "-m", "pip", "install", "--quiet", requirement],
        ],
    )
    return python


def package_version(python: Path, distribution: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version('{distribution}'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() or "?"


KSTREAMS_SOURCE = Path(__file__).resolve().parent / "peers" / "kstreams"
KSTREAMS_MAIN = "kstatefun.bench.KStreamsBench"


def ensure_kstreams(log: Path) -> tuple[str, str]:
    """``(java, classpath)`` of the Kafka Streams contender, built if missing; RuntimeError
    (saying what to install) when java is missing, or javac or mvn when it must be built, or
    when the build fails."""
    pom = KSTREAMS_SOURCE / "pom.xml"
    sources = sorted(str(p) for p in KSTREAMS_SOURCE.glob("src/main/java/**/*.java"))
    digest = hashlib.sha256(pom.read_bytes())
    for source in sources:
        digest.update(Path(source).read_bytes())
    home = cache_dir() / "kstreams"
    lib, classes = home / "lib", home / "classes"
    needed = ("java",) if _built(home, digest.hexdigest()) else ("java", "javac", "mvn")
    tools = {tool: shutil.which(tool) for tool in needed}
    missing = [tool for tool, path in tools.items() if path is None]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found on PATH: install a JDK >= 17 and Apache Maven to "
            "build and run the Kafka Streams contender (bench/peers/kstreams/)"
        )
    build_once(
        home,
        digest.hexdigest(),
        log,
        [
            [  # writes nothing next to the pom, only into the cache
                str(tools.get("mvn")),
                "-B",
                "-q",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={lib}",
            ],
            [str(tools.get("javac")), "-d", str(classes), "-cp", f"{lib}/*", *sources],
        ],
    )
    return str(tools["java"]), f"{classes}:{lib}/*"


def kstreams_version(java: str, classpath: str) -> str:
    """The versions a result names: Kafka Streams, its RocksDB binding and the JVM."""
    lib = Path(classpath.split(":")[-1].rstrip("*"))

    def jar_version(artifact: str) -> str:
        found = sorted(lib.glob(f"{artifact}-[0-9]*.jar"))
        return found[-1].stem.removeprefix(f"{artifact}-") if found else "?"

    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    jvm = ((out.stderr or out.stdout).splitlines() or ["java ?"])[0].replace('"', "")
    streams, rocksdb = jar_version("kafka-streams"), jar_version("rocksdbjni")
    return f"kafka-streams {streams}, rocksdbjni {rocksdb}, {jvm}"


def build_once(home: Path, fingerprint: str, log: Path, commands: list[list[str]]) -> None:
    """Run ``commands`` to build ``home`` unless its marker holds ``fingerprint`` already."""
    if _built(home, fingerprint):
        return
    home.parent.mkdir(parents=True, exist_ok=True)
    with _locked(home.parent / f".{home.name}.lock"):
        if _built(home, fingerprint):  # another run built it while this one waited
            return
        if home.exists():
            shutil.rmtree(home)
        with log.open("ab") as out:
            for cmd in commands:
                out.write(f"$ {' '.join(cmd)}\n".encode())
                out.flush()
                rc = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, timeout=900
                ).returncode
                if rc != 0:
                    raise RuntimeError(
                        f"'{' '.join(cmd)}' failed with exit code {rc}; "
                        f"{log.read_text(errors='replace')[-600:]}"
                    )
        (home / _MARKER).write_text(fingerprint)


_MARKER = ".bench-requirement"  # in a built directory: what it was built for


def _built(home: Path, fingerprint: str) -> bool:
    marker = home / _MARKER
    return marker.exists() and marker.read_text() == fingerprint
