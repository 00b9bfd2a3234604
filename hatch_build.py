"""Hatchling build hook: ``KSTATEFUN_COMPILE=1`` compiles kstatefun's hot-path modules
(``MODULES`` in service/kstatefun/buildinfo.py) with mypyc into the wheel, next to their sources.

Only a non-editable wheel compiles (``pip install .``, ``pip wheel .``, the Dockerfile): in an
editable install an extension module would be imported instead of the source being edited,
so that asking for one compiled is an error. Without the variable nothing changes: a pure
Python wheel, and no build dependency beyond hatchling. A build that cannot compile (no C
compiler, no Python headers, a type error mypyc refuses) fails; it never falls back to pure.
"""

from __future__ import annotations

import ast
import os
import shutil
import tempfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ENV = "KSTATEFUN_COMPILE"
# The mypyc whose output was measured and tested (docs/performance.md); setuptools drives the
# C compiler for it. Build dependencies only when compiling.
COMPILE_REQUIRES = ["mypy==2.4.1", "setuptools>=70"]


def compile_wanted() -> bool:
    value = os.environ.get(ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{ENV}={value!r}: set it to 1 to compile the hot path, or 0 / unset")
    return value == "1"


def modules(root: Path) -> tuple[str, ...]:
    """``MODULES`` of kstatefun/buildinfo.py, read without importing kstatefun (whose
    dependencies the build environment does not have)."""
    tree = ast.parse((root / "service" / "kstatefun" / "buildinfo.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
            "MODULES"
        ]:
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("service/kstatefun/buildinfo.py defines no MODULES")


class CompileHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        return list(COMPILE_REQUIRES) if compile_wanted() else []

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or not compile_wanted():
            return
        if version == "editable":
            raise RuntimeError(
                f"{ENV}=1 compiles a non-editable install only (an editable one runs the "
                "sources it links to): install with `pip install .`, or unset it"
            )
        self._tmp = Path(tempfile.mkdtemp(prefix="kstatefun-mypyc-"))
        for built, inside in compile_modules(Path(self.root), modules(Path(self.root)), self._tmp):
            build_data["force_include"][str(built)] = inside
        build_data["pure_python"] = False
        build_data["infer_tag"] = True  # cpXY-cpXY-<platform>: the extensions' interpreter

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def compile_modules(root: Path, names: tuple[str, ...], work: Path) -> list[tuple[Path, str]]:
    """Compile ``names`` (the sources under ``root``/service) in ``work``; returns each built
    extension with its path inside the wheel: one per module, next to its source, and the
    shared library of them all (``kstatefun__mypyc``) at the top."""
    from mypyc.build import mypycify  # the build dependencies, installed when compiling
    from setuptools import Distribution

    service = root / "service"
    sources = [str(service / (name.replace(".", "/") + ".py")) for name in names]
    cwd, mypypath = os.getcwd(), os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = str(service)
    os.chdir(work)  # mypyc and setuptools write relative to it
    try:
        # pyproject.toml's mypy settings: its overrides for the record path's modules
        config = ["--config-file", str(root / "pyproject.toml")]
        extensions = mypycify(
            [*config, *sources], target_dir=str(work / "c"), group_name="kstatefun"
        )
        dist = Distribution({"name": "kstatefun", "ext_modules": extensions})
        build_ext: Any = dist.get_command_obj("build_ext")
        build_ext.build_lib, build_ext.build_temp = str(work / "lib"), str(work / "temp")
        dist.run_command("build_ext")
    finally:
        os.chdir(cwd)
        if mypypath is None:
            os.environ.pop("MYPYPATH", None)
        else:
            os.environ["MYPYPATH"] = mypypath
    lib = work / "lib"
    built = [p for p in lib.rglob("*") if p.name.endswith(tuple(EXTENSION_SUFFIXES))]
    found = {str(p.relative_to(lib)).split(".")[0].replace("/", ".") for p in built}
    missing = sorted(set(names) - found)
    if missing:
        raise RuntimeError(f"mypyc built no extension for {', '.join(missing)}")
    return [(p, str(p.relative_to(lib))) for p in built]
