"""kstatefun/buildinfo.py and hatch_build.py: which modules the compiled build compiles, which
build this test run imports, and when the build hook refuses to compile.

``make test-unit`` runs the editable (pure) install and ``make test-compiled`` the compiled
wheel; the latter sets KSTATEFUN_TEST_BUILD=compiled, so each fails if the other build ran."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tests.harness import ROOT

from kstatefun import buildinfo

hatch_build = pytest.importorskip("hatch_build", reason="hatchling is in the dev extra")


def test_every_module_to_compile_is_a_source_of_the_package():
    service = ROOT / "service"
    assert [
        m for m in buildinfo.MODULES if not (service / f"{m.replace('.', '/')}.py").is_file()
    ] == []
    # the build hook reads the list without importing kstatefun: the same list
    assert hatch_build.modules(ROOT) == buildinfo.MODULES


def test_this_run_imports_the_build_it_was_asked_to_test():
    expected = os.environ.get("KSTATEFUN_TEST_BUILD", "pure")
    assert buildinfo.build() == expected
    if expected == "compiled":
        import kstatefun.runtime.dispatcher as dispatcher

        assert dispatcher.__file__ is not None and not dispatcher.__file__.endswith(".py")


def test_kstatefun_version_says_which_build_runs():
    out = subprocess.run(
        [sys.executable, "-m", "kstatefun.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.strip() == f"kstatefun {buildinfo.version()} (build: {buildinfo.build()})"


def test_an_editable_install_is_never_compiled(tmp_path, monkeypatch):
    from hatchling.build import build_editable

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("KSTATEFUN_COMPILE", "1")
    with pytest.raises(RuntimeError, match=r"KSTATEFUN_COMPILE=1 compiles a non-editable"):
        build_editable(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_compiling_is_asked_with_1_and_nothing_else(monkeypatch):
    for value, wanted in (("1", True), ("0", False), ("", False)):
        monkeypatch.setenv("KSTATEFUN_COMPILE", value)
        assert hatch_build.compile_wanted() is wanted
        # mypyc is a build dependency only when compiling
        requires = hatch_build.CompileHook.dependencies(None)
        assert requires == (hatch_build.COMPILE_REQUIRES if wanted else [])


def test_a_misspelt_request_to_compile_fails_the_build(monkeypatch):
    monkeypatch.setenv("KSTATEFUN_COMPILE", "yes")
    with pytest.raises(ValueError, match="KSTATEFUN_COMPILE='yes': set it to 1"):
        hatch_build.compile_wanted()
