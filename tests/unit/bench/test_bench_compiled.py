"""bench/compiled.py names the modules it compiles and the source lines it patches in its
copy; a module moved or a class renamed must fail here, not halfway through a build."""

from bench.compiled import _PATCHES, MODULES, ROOT


def test_every_module_to_compile_and_every_patched_line_exists():
    package = ROOT / "service" / "kstatefun"
    assert [m for m in MODULES if not (package / m).is_file()] == []
    for module, (old, _) in _PATCHES.items():
        assert old in (package / module).read_text(), f"{module}: {old!r}"
