"""The command line as a user meets it: bad configuration fails fast with a clear message."""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile

import pytest

from kstatefun.cli import build_parser
from tests.harness import ROOT, make_app


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "kstatefun.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def embedded_module(tmp_path, target: str, functions: str):
    """A module.yaml of one ingress topic with ``target`` and embedded ``functions``."""
    module = tmp_path / "module.yaml"
    module.write_text(
        "kind: io.statefun.kafka.v1/ingress\n"
        "spec:\n"
        "  id: test/in\n"
        "  topics:\n"
        "    - topic: t\n"
        "      valueType: test/Event\n"
        f"      targets: [{target}]\n"
        "---\n"
        "kind: io.kstatefun.v1/embedded\n"
        "spec:\n"
        f"  functions: [{functions}]\n"
    )
    return module


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
    module = embedded_module(tmp_path, "test/typo", "tests.apps.counting:functions")
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
    result = run_cli("run", "--module", str(module), "--functions", "tests.apps.counting:nope")
    assert result.returncode == 2, result.stderr
    assert "functions reference 'tests.apps.counting:nope' (--functions" in result.stderr
    assert "has no attribute 'nope'" in result.stderr and "functions" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_matches_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    result = run_cli("--version")
    assert result.returncode == 0
    # then the build, "(build: pure)" or "(build: compiled)" (tests/unit/test_buildinfo.py)
    assert result.stdout.startswith(f"kstatefun {project['version']} (build: ")


def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_no_help_text_shows_doc_markup():
    for parser in _all_parsers(build_parser()):
        text = parser.format_help()
        for markup in ("``", "`", "**", ":func:", ":class:"):
            assert markup not in text, f"{parser.prog} --help shows {markup!r}:\n{text}"


def test_run_help_shows_every_default_and_the_exit_codes():
    run = next(p for p in _all_parsers(build_parser()) if p.prog.endswith(" run"))
    for action in run._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in (action.help or "").lower() or "required" in (action.help or ""), (
                action.option_strings
            )
    text = run_cli("run", "--help").stdout
    assert "exit codes:" in text
    for code in ("0", "1", "2", "3", "4"):
        assert f"\n  {code}  " in text, code


def test_dev_kafka_help_names_java_maven_and_the_download():
    text = run_cli("dev-kafka", "--help").stdout
    assert "Java 17" in text and "Maven" in text and "Maven Central" in text
    assert "~/.cache/kstatefun/kafka-" in text and "KSTATEFUN_CACHE_DIR" in text


@pytest.mark.kafka
def test_a_metrics_port_in_use_is_a_plain_error(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = app.start_worker("w1", "--metrics-port", str(port)).wait(120)
    log = app.log("w1")
    assert code == 2, log
    assert f"cannot serve metrics on 127.0.0.1:{port} (--metrics-port" in log
    assert "in use" in log and "Traceback" not in log


def test_the_wheel_ships_the_apache_license_and_py_typed(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("kstatefun-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "kstatefun/py.typed" in names
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        license_text = z.read(license_name).decode()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    assert "License: Apache-2.0" in metadata.splitlines()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in license_text


def test_sigterm_while_the_worker_is_still_starting_is_a_clean_stop(tmp_path):
    """Before the worker exists there is nothing to commit: exit 0 (the documented clean
    stop), not death by SIGTERM's default action (-15)."""
    module = embedded_module(tmp_path, "test/counter", "tests.apps.slow_import:functions")
    marker = tmp_path / "importing"
    env = dict(os.environ, TEST_IMPORT_MARKER=str(marker), TEST_IMPORT_SLEEP_S="60")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kstatefun.cli", "run", "--module", str(module)]
        + ["--bootstrap-servers", "127.0.0.1:1", "--app-id", "slow"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():  # the worker is importing its functions
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "before the worker started: stopping" in output
