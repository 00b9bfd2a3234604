"""This tree's kstatefun as the compiled build (``KSTATEFUN_COMPILE=1``, hatch_build.py),
installed into a directory of its own so that the benchmarks run it beside the pure one
(docs/performance.md, "The compiled build").

    python -m bench.compiled DIR                    # installs it into DIR/service
    python -m bench.hotpath --against DIR           # CPU per event, pure vs compiled
    python -m bench.run --kstatefun-also compiled=DIR ...

``make bench`` needs none of this by hand: its contender ``kstatefun-compiled`` is this
build, cached under ``$KSTATEFUN_CACHE_DIR/bench-venvs`` and rebuilt when a source changes.
Building needs a C compiler and the Python headers; pip fetches mypyc into the build's own
environment. The build holds the working tree's files, edits included.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from bench import venvs

ROOT = Path(__file__).resolve().parents[1]


def install_command(service: Path) -> list[str]:
    """pip installs this tree's kstatefun, compiled, into ``service`` (no dependencies: the
    benchmark's venv has them)."""
    return [
        "env",
        "KSTATEFUN_COMPILE=1",
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(service),
        str(ROOT),
    ]


def fingerprint() -> str:
    """What the build is made of: a change to any of it builds again."""
    digest = hashlib.sha256()
    files = sorted((ROOT / "service").rglob("*.py")) + sorted((ROOT / "schemas").rglob("*"))
    for path in [ROOT / "pyproject.toml", ROOT / "hatch_build.py", *files]:
        if path.is_file():
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def loaded_build(service: Path) -> str:
    """What a process with ``service`` on its path runs: compiled, pure or partly compiled
    (kstatefun/buildinfo.py)."""
    check = "from kstatefun import buildinfo; print(buildinfo.build())"
    env = {**os.environ, "PYTHONPATH": str(service)}
    out = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def ensure(log: Path) -> Path:
    """The ``service`` directory (for PYTHONPATH) of the cached compiled build of this tree,
    built if missing or stale; RuntimeError with pip's output when it cannot be built, or
    when what it built does not load compiled."""
    home = venvs.cache_dir() / "kstatefun-compiled"
    venvs.build_once(home, fingerprint(), log, [install_command(home / "service")])
    build = loaded_build(home / "service")
    if build != "compiled":
        raise RuntimeError(f"{home / 'service'} loads as {build}, not compiled")
    return home / "service"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compiled", description=__doc__)
    parser.add_argument("out", type=Path, help="directory for the compiled build")
    args = parser.parse_args(argv)
    service = args.out.resolve() / "service"
    subprocess.run(install_command(service), check=True)
    build = loaded_build(service)
    print(f"{service}: {build}")
    return 0 if build == "compiled" else 1


if __name__ == "__main__":
    raise SystemExit(main())
