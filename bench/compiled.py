"""A copy of this tree's ``service/`` with W1's hot-path modules compiled by mypyc, for A/B
measurements only (docs/performance.md, "A compiled hot path: mypyc"). kstatefun itself is
not compiled: the package installs and runs as pure Python.

    python -m bench.compiled /tmp/compiled          # builds /tmp/compiled/service
    python -m bench.hotpath --against /tmp/compiled # CPU per event, alternating processes
    python -m bench.run --kstatefun-also compiled=/tmp/compiled ...

Needs what ``make venv`` installs (mypy, which brings mypyc, and setuptools) and a C compiler
with the Python headers. The copy holds the working tree's files, edits included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What the profile of bench/hotpath.py runs through per event. Not sdk/types.py (users
# subclass Type, which a compiled class forbids) nor sdk/storage.py (it builds a class per
# function type at run time).
MODULES = (
    "model.py",
    "kafka/partitioner.py",
    "observability/metrics.py",
    "runtime/commit.py",
    "runtime/dispatcher.py",
    "runtime/effects.py",
    "runtime/router.py",
    "sdk/context.py",
    "sdk/messages.py",
    "state/deadlines.py",
    "state/partitioned.py",
    "state/store.py",
    "timers/store.py",
    "wire/avro.py",
    "wire/protobuf.py",
)

# mypyc compiles only classes it can make native; a tuple subclass has to stay a Python class
_PATCHES = {
    "runtime/dispatcher.py": (
        "class LocalInvocation(tuple",
        "from mypy_extensions import mypyc_attr\n\n\n"
        "@mypyc_attr(native_class=False)\nclass LocalInvocation(tuple",
    ),
}

_SETUP = """\
import os
from setuptools import setup
from mypyc.build import mypycify
args = ["--config-file", os.environ["MYPYC_CONFIG"], *os.environ["MYPYC_SOURCES"].split()]
setup(name="kstatefun-compiled", packages=[], py_modules=[], ext_modules=mypycify(args))
"""


def build(out: Path) -> Path:
    """Copy ``service/`` and ``schemas/`` into ``out``, compile ``MODULES`` there; ``out``."""
    service = out / "service"
    if service.exists():
        shutil.rmtree(service)
    shutil.copytree(ROOT / "service", service, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "schemas", out / "schemas", dirs_exist_ok=True)  # read at run time
    for module, (old, new) in _PATCHES.items():
        path = service / "kstatefun" / module
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"{path}: '{old}' not found; update _PATCHES in bench/compiled.py")
        path.write_text(text.replace(old, new, 1))
    with tempfile.TemporaryDirectory(prefix="kstatefun-mypyc-") as tmp:
        setup = Path(tmp) / "setup.py"
        setup.write_text(_SETUP)
        sources = [f"service/kstatefun/{m}" for m in MODULES]
        env = {
            **os.environ,
            "MYPYPATH": str(service),
            "MYPYC_CONFIG": str(ROOT / "pyproject.toml"),  # the hot modules' mypy overrides
            "MYPYC_SOURCES": " ".join(sources),
        }
        lib, temp = Path(tmp) / "lib", Path(tmp) / "temp"
        build_ext = ["build_ext", "--build-lib", str(lib), "--build-temp", str(temp)]
        subprocess.run([sys.executable, str(setup), *build_ext], cwd=out, env=env, check=True)
        for built in lib.rglob("*.so"):
            # the modules' extensions go next to their sources (an extension module is found
            # before a .py of the same name), the shared runtime at the top of the path entry
            shutil.copy2(built, service / built.relative_to(lib))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compiled", description=__doc__)
    parser.add_argument("out", type=Path, help="directory for the compiled copy")
    args = parser.parse_args(argv)
    out = build(args.out.resolve())
    check = "import kstatefun.runtime.dispatcher as d; print(d.__file__)"
    subprocess.run(
        [sys.executable, "-c", check],
        env={**os.environ, "PYTHONPATH": str(out / "service")},
        check=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
