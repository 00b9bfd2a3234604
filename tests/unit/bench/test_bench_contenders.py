"""The benchmark's contender list: a contender that cannot be built stays in it with the
reason, so the report says why it did not run instead of the run failing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bench.contenders import KStreams, build, byte_compile


def test_kafka_streams_without_a_jdk_or_maven_is_listed_with_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("KSTATEFUN_CACHE_DIR", str(tmp_path / "cache"))
    [kstreams] = build("127.0.0.1:1", tmp_path, {"kstreams"})
    assert isinstance(kstreams, KStreams)
    assert kstreams.error is not None
    assert "java, javac, mvn not found on PATH" in kstreams.error
    assert "install a JDK >= 17 and Apache Maven" in kstreams.error


def test_a_checkout_is_byte_compiled_as_an_installed_package_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # PYTHONDONTWRITEBYTECODE
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("X = 1\n")
    byte_compile(tmp_path)
    assert [p.name.split(".")[0] for p in (package / "__pycache__").iterdir()] == ["mod"]
