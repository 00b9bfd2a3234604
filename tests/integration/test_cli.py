"""The command line as a user meets it: bad configuration fails fast with a clear message."""

import subprocess
import sys

from tests.harness import ROOT


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "kstatefun.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_invalid_module_yaml_names_document_field_and_fix(tmp_path):
    module = tmp_path / "module.yaml"
    module.write_text(
        "kind: io.statefun.kafka.v1/ingress\n"
        "spec:\n"
        "  id: test/in\n"
        "  address: 127.0.0.1:1\n"
        "  topics:\n"
        "    - topic: t\n"
        "      valueType: test/Event\n"
        "      targets: [not-a-typename]\n"
    )
    result = run_cli("run", "--module", str(module), "--bootstrap-servers", "127.0.0.1:1")
    assert result.returncode == 2
    err = result.stderr
    assert "kstatefun: error:" in err
    assert "spec.topics[0].targets[0]" in err and "namespace/name" in err
    assert "Traceback" not in err


def test_unregistered_ingress_target_fails_before_touching_kafka(tmp_path):
    module = tmp_path / "module.yaml"
    module.write_text(
        "kind: io.statefun.kafka.v1/ingress\n"
        "spec:\n"
        "  id: test/in\n"
        "  topics:\n"
        "    - topic: t\n"
        "      valueType: test/Event\n"
        "      targets: [test/typo]\n"
        "---\n"
        "kind: io.kstatefun.v1/embedded\n"
        "spec:\n"
        "  functions: [tests.apps.counting:functions]\n"
    )
    result = run_cli("run", "--module", str(module), "--bootstrap-servers", "127.0.0.1:1")
    assert result.returncode == 2
    assert "targets 'test/typo'" in result.stderr and "test/counter" in result.stderr


def test_missing_module_and_bad_functions_reference(tmp_path):
    result = run_cli("run", "--bootstrap-servers", "127.0.0.1:1")
    assert result.returncode == 2 and "--module" in result.stderr
    module = tmp_path / "module.yaml"
    module.write_text(
        "kind: io.statefun.kafka.v1/ingress\nspec:\n  id: test/in\n  topics:\n"
        "    - {topic: t, valueType: test/Event, targets: [test/counter]}\n"
    )
    result = run_cli("run", "--module", str(module), "--functions", "tests.apps.nope:functions")
    assert result.returncode == 2 and "cannot import 'tests.apps.nope'" in result.stderr
