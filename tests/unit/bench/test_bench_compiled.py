"""bench/compiled.py: the benchmark's compiled build of this tree is rebuilt when a source
changes, and a build that fails leaves the contender in the list with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import compiled
from bench.contenders import build


def test_a_changed_source_changes_the_fingerprint(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "service" / "kstatefun").mkdir(parents=True)
    (tmp_path / "schemas").mkdir()
    source = tmp_path / "service" / "kstatefun" / "model.py"
    source.write_text("A = 1\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    monkeypatch.setattr(compiled, "ROOT", tmp_path)
    before = compiled.fingerprint()
    assert compiled.fingerprint() == before
    source.write_text("A = 2\n")
    assert compiled.fingerprint() != before


def test_a_failed_build_is_listed_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KSTATEFUN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(
        compiled, "install_command", lambda service: ["sh", "-c", "echo no compiler; exit 3"]
    )
    [contender] = build("127.0.0.1:1", tmp_path, {"kstatefun-compiled"})
    assert contender.name == "kstatefun-compiled"
    assert contender.error is not None
    assert "could not build kstatefun compiled" in contender.error
    assert "exit code 3" in contender.error and "no compiler" in contender.error
