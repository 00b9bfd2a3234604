"""Virtualenvs for the peer frameworks, created once and cached outside the repository.

``$KSTATEFUN_CACHE_DIR/bench-venvs/<name>`` (default ``~/.cache/kstatefun/bench-venvs``). Each
peer gets its own environment so that its dependencies (its own confluent-kafka, aiokafka,
RocksDB bindings) never meet kstatefun's. A marker file holds the requirement the venv was
built for; a changed requirement rebuilds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    marker = venv / ".bench-requirement"
    if python.exists() and marker.exists() and marker.read_text() == requirement:
        return python
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        for cmd in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            [str(python), "-m", "pip", "install", "--quiet", requirement],
        ):
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode
            if rc != 0:
                raise RuntimeError(
                    f"'{' '.join(cmd)}' failed with exit code {rc}; "
                    f"{log.read_text(errors='replace')[-600:]}"
                )
    marker.write_text(requirement)
    return python


def package_version(python: Path, distribution: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version('{distribution}'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() or "?"
