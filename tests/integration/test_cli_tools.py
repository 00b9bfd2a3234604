"""The operator commands against a live application: one worker of the counting and timers
test apps runs for the whole module, and every command runs as a user runs it, in a
subprocess, reading the application's own topics while the worker works."""

from __future__ import annotations

import base64
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from kstatefun.kafka.partitioner import partition_for_id
from kstatefun.sdk.types import IntType
from tests import kafka_fixture
from tests.harness import ROOT, App, make_app, produce_events, read_committed

pytestmark = pytest.mark.kafka

T = TypeVar("T")

COMMANDS_INGRESS = """\
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: test/commands
  startupPosition:
    type: earliest
  topics:
    - topic: {topic}
      valueType: test/Command
      targets:
        - test/scheduler
---
kind: io.kstatefun.v1/embedded
spec:
  functions:
    - tests.apps.timers:functions
"""


@pytest.fixture(scope="module")
def app(kafka_bootstrap, kafka_admin, tmp_path_factory):
    """tests/apps/counting.py on one ingress and tests/apps/timers.py on a second one."""

    def unique(prefix: str) -> str:
        return kafka_fixture.unique_name(prefix, "cli-tools")

    def create(name: str, partitions: int = 1, config=None) -> str:
        return kafka_fixture.create_topic(kafka_admin, name, partitions, config)

    application = make_app(kafka_bootstrap, tmp_path_factory.mktemp("cli-tools"), unique, create)
    application.commands = create(unique("commands"), partitions=4)
    with application.module.open("a") as f:
        f.write(COMMANDS_INGRESS.format(topic=application.commands))
    application.start_worker("w1")
    try:
        produce_events(kafka_bootstrap, application.ingress, [(b"warm-up", b'{"seq": 0}')])
        warm = read_committed(kafka_bootstrap, application.egress, 1, settle=0)
        assert warm == [("warm-up", "warm-up:1:0")], application.all_logs()
        yield application
    finally:
        application.stop_all()


# --- helpers ----------------------------------------------------------------------------------


def run_cli(
    bootstrap: str, app_id: str, *args: str, expect: int = 0
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kstatefun.cli",
            *args,
            "--bootstrap-servers",
            bootstrap,
            "--app-id",
            app_id,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == expect, (
        f"kstatefun {' '.join(args)} exited {result.returncode}, expected {expect}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def cli(app: App, *args: str, expect: int = 0) -> str:
    return run_cli(app.bootstrap, app.app_id, *args, expect=expect).stdout


def cli_json(app: App, *args: str) -> Any:
    return json.loads(cli(app, *args, "--json"))


def tail(app: App, *args: str) -> list[dict[str, Any]]:
    """Every dead letter of the app (JSON Lines of `dead-letters tail --json`)."""
    out = cli(app, "dead-letters", "tail", "--json", "-n", "100000", *args)
    return [json.loads(line) for line in out.splitlines()]


def letters_of(app: App, target_id: str, *args: str) -> list[dict[str, Any]]:
    return [d for d in tail(app, *args) if d["target"] and d["target"]["id"] == target_id]


def eventually(check: Callable[[], T], timeout: float = 45.0) -> T:
    """``check()``'s result once it stops failing its assertions."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def label(letter: dict[str, Any]) -> str:
    return f"{letter['partition']}:{letter['offset']}"


# --- send, state --------------------------------------------------------------------------------


def test_send_to_an_address_then_state_get_and_history(app):
    out = cli(app, "send", "--topic", app.ingress, "--key", "ann", "--value", '{"seq": 1}')
    assert f"with key 'ann' to {app.ingress}" in out
    sent = cli_json(
        app, "send", "--to", "test/counter/ann", "--type", "test/Event", "--value", '{"seq": 2}'
    )
    partition = partition_for_id("ann", app.partitions, "crc32")
    assert sent["topic"] == f"{app.app_id}-invocations" and sent["partition"] == partition
    assert sent["argument"]["typename"] == "test/Event"

    def count_is_two() -> dict[str, Any]:
        doc = cli_json(app, "state", "get", "test/counter", "ann")
        states = [(s["state"], s["typename"], s["status"], s["value"]) for s in doc["states"]]
        assert states == [("count", "io.statefun.types/int", "live", 2)], doc
        return doc

    doc = eventually(count_is_two)
    assert doc["topic"] == f"{app.app_id}-changelog" and doc["partition"] == partition
    assert base64.b64decode(doc["states"][0]["base64"]) == IntType.serialize(2)

    human = cli(app, "state", "get", "test/counter", "ann")
    assert human.startswith(f"test/counter/ann: 1 value(s) ({app.app_id}-changelog partition")
    assert re.search(r"^count\s+io\.statefun\.types/int\s+\S+Z\s+\d+\s+-\s+2$", human, re.M), human

    history = cli_json(app, "state", "history", "test/counter", "ann")["versions"]
    assert [(v["state"], v["value"]) for v in history] == [("count", 1), ("count", 2)]
    assert history[0]["offset"] < history[1]["offset"]
    now_ms = time.time() * 1000
    assert all(now_ms - 120_000 < v["timestamp_ms"] <= now_ms + 1000 for v in history)
    human = cli(app, "state", "history", "test/counter", "ann")
    assert "2 version(s) still on the changelog" in human and "compaction" in human
    assert (
        len(re.findall(r"^\d+\s+\S+Z\s+count\s+io\.statefun\.types/int\s+[12]$", human, re.M)) == 2
    )

    # a typo in the function type finds nothing, and says which type has state under that id
    out = cli(app, "state", "get", "test/countr", "ann")
    assert "test/countr/ann: no state" in out and "for: test/counter" in out


def test_state_list_and_export_read_every_address_of_a_type(app):
    events = [(f"lst-{k}".encode(), b'{"seq": 1}') for k in "abc"] + [(b"lst-b", b'{"seq": 2}')]
    produce_events(app.bootstrap, app.ingress, events)

    def three_listed() -> dict[str, Any]:
        doc = cli_json(app, "state", "list", "test/counter", "--prefix", "lst-")
        assert [(a["id"], a["states"]) for a in doc["addresses"]] == [
            ("lst-a", ["count"]),
            ("lst-b", ["count"]),
            ("lst-c", ["count"]),
        ], doc
        return doc

    doc = eventually(three_listed)
    assert doc["more"] == 0 and all(a["written"].endswith("Z") for a in doc["addresses"])
    limited = cli_json(app, "state", "list", "test/counter", "--prefix", "lst-", "--limit", "2")
    assert [a["id"] for a in limited["addresses"]] == ["lst-a", "lst-b"] and limited["more"] == 1
    human = cli(app, "state", "list", "test/counter", "--prefix", "lst-", "--limit", "2")
    assert "3 address(es) of test/counter with ids starting 'lst-'" in human
    assert re.search(r"^lst-a\s+count\s+\S+Z$", human, re.M) and "and 1 more" in human
    assert "no address of test/nobody has state" in cli(app, "state", "list", "test/nobody")

    lines = [json.loads(line) for line in cli(app, "state", "export", "test/counter").splitlines()]
    assert all(d["type"] == "test/counter" for d in lines)
    ids = [d["id"] for d in lines]
    assert ids == sorted(ids) and {"lst-a", "lst-b", "lst-c"} <= set(ids)
    exported = {d["id"]: d["states"]["count"] for d in lines if d["id"].startswith("lst-")}
    assert {i: s["value"] for i, s in exported.items()} == {"lst-a": 1, "lst-b": 2, "lst-c": 1}
    assert base64.b64decode(exported["lst-b"]["base64"]) == IntType.serialize(2)
    assert exported["lst-b"]["typename"] == "io.statefun.types/int"


# --- timers -------------------------------------------------------------------------------------


def test_timers_list_shows_pending_delayed_messages_of_the_sender(app):
    schedule = [
        {"op": "schedule", "seq": 1, "delay_ms": 600_000, "token": "later"},
        {"op": "schedule", "seq": 2, "delay_ms": 300_000},  # anonymous
    ]
    scheduled_ms = time.time() * 1000
    for command in schedule:
        cli(app, "send", "--topic", app.commands, "--key", "tim", "--value", json.dumps(command))

    def two_pending() -> dict[str, Any]:
        doc = cli_json(app, "timers", "list", "test/scheduler", "tim")
        assert len(doc["timers"]) == 2, doc
        return doc

    doc = eventually(two_pending)
    assert doc["topic"] == f"{app.app_id}-timers"
    assert doc["partition"] == partition_for_id("tim", app.partitions, "crc32")
    anonymous, later = doc["timers"]  # soonest first
    assert anonymous["anonymous"] and anonymous["token"] is None
    assert later["token"] == "later" and not later["anonymous"]
    for timer, command in ((later, schedule[0]), (anonymous, schedule[1])):
        assert timer["target"] == {"type": "test/echo", "id": "tim"}
        assert timer["argument"]["typename"] == "test/Echo"
        assert timer["argument"]["value"]["seq"] == command["seq"]
        assert abs(timer["due_ms"] - (scheduled_ms + command["delay_ms"])) < 30_000

    human = cli(app, "timers", "list", "test/scheduler", "tim")
    assert "test/scheduler/tim: 2 pending delayed message(s)" in human
    assert re.search(
        r"^\(anonymous\)\s+\S+Z\s+in 4m\d\ds\s+test/echo/tim\s+test/Echo\s", human, re.M
    )
    assert re.search(r"^later\s+\S+Z\s+in 9m\d\ds\s+test/echo/tim\s+test/Echo\s", human, re.M)
    # timers belong to the sender, not to the target
    assert "no pending delayed messages" in cli(app, "timers", "list", "test/echo", "tim")

    produce_events(app.bootstrap, app.commands, [(b"tim", b'{"op": "cancel", "token": "later"}')])

    def only_anonymous_left() -> None:
        timers = cli_json(app, "timers", "list", "test/scheduler", "tim")["timers"]
        assert [t["token"] for t in timers] == [None], timers

    eventually(only_anonymous_left)


# --- dead letters -------------------------------------------------------------------------------


def test_dead_letters_tail_decodes_reason_origin_and_values(app):
    cli(app, "send", "--topic", app.ingress, "--key", "bad1", "--value", '{"seq": 3, "boom": true}')
    cli(app, "send", "--to", "test/counter/bad2", "--type", "int", "--value=-7")

    def both() -> dict[str, dict[str, Any]]:
        found = {d["target"]["id"]: d for d in tail(app) if d["target"]}
        assert {"bad1", "bad2"} <= set(found)
        return found

    found = eventually(both)
    invocations = f"{app.app_id}-invocations"
    boom = found["bad1"]
    assert boom["reason"] == "function-error" and boom["exception_type"] == "RuntimeError"
    assert "function 'test/counter/bad1' raised RuntimeError: boom requested" in boom["message"]
    # the ingress record sat in its target's partition: delivered directly, so the dead letter
    # names the ingress record itself as its source
    assert boom["source"]["topic"] == app.ingress
    assert boom["source"]["partition"] == partition_for_id("bad1", app.partitions, "crc32")
    assert found["bad2"]["source"]["topic"] == invocations
    assert boom["target"] == {"type": "test/counter", "id": "bad1"} and boom["caller"] is None
    assert boom["key"]["value"] == "bad1"
    assert boom["value"]["typename"] == "test/Event"
    assert boom["value"]["value"] == {"seq": 3, "boom": True}
    # the function's traceback: file, line and the exception
    assert boom["detail"].startswith("Traceback (most recent call last):")
    assert 'tests/apps/counting.py", line' in boom["detail"]
    assert boom["detail"].rstrip().endswith("RuntimeError: boom requested by the test")
    assert boom["http_status"] is None
    wrong = found["bad2"]
    assert wrong["reason"] == "undecodable-value" and "as 'test/Event'" in wrong["message"]
    assert wrong["value"]["typename"] == "io.statefun.types/int" and wrong["value"]["value"] == -7

    only = tail(app, "--reason", "function-error")
    assert only and {d["reason"] for d in only} == {"function-error"}
    assert (
        len(tail(app)) >= 2
        and len(cli(app, "dead-letters", "tail", "--json", "-n", "1").splitlines()) == 1
    )

    human = cli(app, "dead-letters", "tail", "-n", "100000")
    block = human.split(f"[{label(boom)}] ", 1)[1].split("\n\n", 1)[0]
    assert block.split("\n")[0].endswith("function-error (RuntimeError)")
    assert f"source    {app.ingress} partition {boom['source']['partition']} offset" in block
    assert "target    test/counter/bad1" in block and "caller    -" in block
    assert 'key       "bad1"' in block
    assert 'argument  test/Event {"seq": 3, "boom": true}' in block
    assert "\n  detail    Traceback (most recent call last):\n" in block
    assert "            RuntimeError: boom requested by the test" in block


def test_dead_letters_tail_follow_prints_new_ones_until_stopped(app):
    produce_events(app.bootstrap, app.ingress, [(b"fol1", None)])
    eventually(lambda: _assert_null_value_for(app, "fol1"))
    command = ["dead-letters", "tail", "--follow", "--reason", "null-value", "-n", "1", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kstatefun.cli", *command]
        + ["--bootstrap-servers", app.bootstrap, "--app-id", app.app_id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=30))
        assert first["key"]["value"] == "fol1" and first["reason"] == "null-value"
        produce_events(app.bootstrap, app.ingress, [(b"fol2", None)])
        second = json.loads(lines.get(timeout=30))
        assert second["key"]["value"] == "fol2" and second["source"]["topic"] == app.ingress
    finally:
        proc.terminate()
        code = proc.wait(30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""


def _assert_null_value_for(app: App, key: str) -> dict[str, Any]:
    matches = [d for d in tail(app, "--reason", "null-value") if d["key"]["value"] == key]
    assert matches
    return matches[-1]


def test_replay_after_fixing_the_cause_delivers_once(app, kafka_admin):
    missing = kafka_fixture.unique_name("created-later", "cli-tools")
    value = json.dumps({"seq": 11, "egress_topic": missing})
    cli(app, "send", "--topic", app.ingress, "--key", "rep1", "--value", value)
    letter = eventually(lambda: _one(letters_of(app, "rep1", "--reason", "unknown-egress")))
    assert f"names topic '{missing}', which does not exist" in letter["message"]

    dry = cli(app, "dead-letters", "replay", "--offset", label(letter), "--dry-run")
    assert f"would replay [{label(letter)}] unknown-egress to test/counter/rep1" in dry
    kafka_fixture.create_topic(kafka_admin, missing, 1)  # the fix
    out = cli(app, "dead-letters", "replay", "--offset", label(letter))
    assert f"replayed [{label(letter)}] unknown-egress to test/counter/rep1" in out
    assert "1 selected, 1 replayed, 0 skipped" in out

    # the function ran again and wrote its egress record, once (the dry run wrote nothing)
    assert read_committed(app.bootstrap, missing, 1, timeout=60, settle=1.5) == [(None, "never")]
    assert len(letters_of(app, "rep1", "--reason", "unknown-egress")) == 1


def _one(items: list[T]) -> T:
    assert len(items) == 1, items
    return items[0]


def test_replay_rebuilds_invocations_with_target_caller_and_type(app):
    cli(
        app, "send", "--topic", app.ingress, "--key", "rep2", "--value", '{"seq": 12, "boom": true}'
    )
    cli(
        app,
        "send",
        "--topic",
        app.ingress,
        "--key",
        "rep3",
        "--value",
        '{"seq": 13, "stray": true}',
    )
    boom = eventually(lambda: _one(letters_of(app, "rep2")))
    stray = eventually(lambda: _one(letters_of(app, "rep3", "--reason", "unknown-function")))
    assert stray["target"] == {"type": "test/nobody", "id": "rep3"}
    assert stray["caller"] == {"type": "test/counter", "id": "rep3"}

    doc = cli_json(app, "dead-letters", "replay", "--offset", label(boom), "--offset", label(stray))
    assert doc["skipped"] == [] and len(doc["replayed"]) == 2
    written = {r["target"]: r for r in doc["replayed"]}
    for target, id in (("test/counter/rep2", "rep2"), ("test/nobody/rep3", "rep3")):
        assert written[target]["to_topic"] == f"{app.app_id}-invocations"
        assert written[target]["partition"] == partition_for_id(id, app.partitions, "crc32")

    # neither is fixed: each fails again, from the replayed record, with the same invocation
    for old, target in ((boom, "test/counter/rep2"), (stray, "test/nobody/rep3")):
        new = eventually(lambda old=old: _one(_replayed_letters(app, old)))
        assert new["source"]["offset"] == written[target]["offset"]
        for field in ("reason", "target", "caller", "key"):
            assert new[field] == old[field], field
        assert new["value"]["typename"] == old["value"]["typename"]
        assert new["value"]["base64"] == old["value"]["base64"]


def _replayed_letters(app: App, old: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in letters_of(app, old["target"]["id"]) if d["offset"] != old["offset"]]


def test_replay_of_an_ingress_record_goes_back_to_its_topic(app):
    produce_events(app.bootstrap, app.ingress, [(b"rep4", None)])
    old = eventually(lambda: _assert_null_value_for(app, "rep4"))
    assert old["source"]["topic"] == app.ingress and old["target"] is None

    out = cli(app, "dead-letters", "replay", "--reason", "null-value", "--offset", label(old))
    assert f"replayed [{label(old)}] null-value to its source topic ({app.ingress} partition" in out
    assert "it will be dead-lettered again" in out

    def again() -> dict[str, Any]:
        new = _assert_null_value_for(app, "rep4")
        assert new["offset"] != old["offset"]
        return new

    new = eventually(again)
    assert new["source"]["topic"] == app.ingress
    assert new["source"]["partition"] == old["source"]["partition"]
    assert new["source"]["offset"] > old["source"]["offset"]


# --- topics -------------------------------------------------------------------------------------


def test_topics_check_passes_on_the_running_application(app):
    out = cli(app, "topics", "check", "--module", str(app.module))
    assert f"P={app.partitions}, from {app.app_id}-invocations" in out and "all good" in out
    for topic in (f"{app.app_id}-changelog", app.ingress, app.commands):
        assert re.search(rf"^\s+ok\s+{re.escape(topic)}\s", out, re.M), out
    doc = cli_json(app, "topics", "check", "--module", str(app.module))
    assert doc["ok"] and doc["partitions"] == app.partitions and doc["ingress_checked"]
    assert all(t["problems"] == [] and t["exists"] for t in doc["topics"])
    assert len(doc["topics"]) == 7  # 4 internal, the meta topic, 2 ingress


def test_topics_check_names_each_problem_and_its_fix(
    kafka_bootstrap, unique_name, create_topic, tmp_path
):
    app_id = unique_name("broken")
    create_topic(f"{app_id}-invocations", 4)
    create_topic(f"{app_id}-changelog", 2, {"cleanup.policy": "delete"})
    create_topic(f"{app_id}-timers", 4, {"cleanup.policy": "compact"})
    absent = unique_name("absent")
    module = tmp_path / "module.yaml"
    module.write_text(
        "kind: io.statefun.kafka.v1/ingress\nspec:\n  id: test/in\n  topics:\n"
        f"    - {{topic: {absent}, valueType: test/Event, targets: [test/counter]}}\n"
    )
    result = run_cli(kafka_bootstrap, app_id, "topics", "check", "--module", str(module), expect=1)
    out = result.stdout
    assert re.search(rf"^\s+FAIL\s+{app_id}-changelog\s", out, re.M), out
    assert f"has 2 partitions but {app_id}-invocations has 4" in out and "co-partitioned" in out
    assert "has cleanup.policy=delete but needs cleanup.policy=compact" in out
    assert f"--entity-name {app_id}-changelog --add-config cleanup.policy=compact" in out
    assert re.search(rf"^\s+FAIL\s+{app_id}-dead-letters\s.*missing$", out, re.M), out
    assert re.search(rf"^\s+FAIL\s+{absent}\s", out, re.M) and "kstatefun never creates" in out
    assert re.search(rf"^\s+ok\s+{app_id}-invocations\s", out, re.M)
    assert re.search(rf"^\s+ok\s+{app_id}-timers\s", out, re.M)
    assert re.search(rf"^\s+FAIL\s+{app_id}-meta\s.*missing$", out, re.M), out
    assert out.rstrip().endswith("5 problems found")

    # a partition count given explicitly is what the topics are checked against
    args = ("topics", "check", "--partitions", "2", "--json")
    doc = json.loads(run_cli(kafka_bootstrap, app_id, *args, expect=1).stdout)
    problems = {t["topic"]: [p["problem"] for p in t["problems"]] for t in doc["topics"]}
    assert problems[f"{app_id}-invocations"] == [
        "has 4 partitions but --partitions says 2: the workers would refuse to start"
    ]
    assert not doc["ok"] and not doc["ingress_checked"]


def test_topics_check_covers_the_meta_and_playground_egress_topics(
    kafka_bootstrap, unique_name, create_topic, tmp_path
):
    app_id = unique_name("pg")
    for role, config in (("invocations", {}), ("changelog", {"cleanup.policy": "compact"})):
        create_topic(f"{app_id}-{role}", 2, config)
    create_topic(f"{app_id}-timers", 2, {"cleanup.policy": "compact"})
    create_topic(f"{app_id}-dead-letters", 1)
    create_topic(f"{app_id}-meta", 2, {"retention.ms": "-1"})
    create_topic(f"{app_id}-playground-split", 2)
    module = tmp_path / "module.yaml"
    module.write_text(
        "kind: io.statefun.playground.v1/egress\nspec:\n  port: 1\n"
        "  topics:\n    - missing\n    - split\n"
    )
    args = ("topics", "check", "--module", str(module))
    out = run_cli(kafka_bootstrap, app_id, *args, expect=1).stdout
    assert re.search(rf"^\s+FAIL\s+{app_id}-playground-missing\s.*missing$", out, re.M), out
    assert f"--topic {app_id}-playground-missing --partitions 1 " in out
    assert "has 2 partitions but needs 1: it hands records out in one order" in out
    assert "has 2 partitions but needs 1: its first record is the application's part" in out
    assert "read the partitioner from" in out
    assert out.rstrip().endswith("3 problems found")


def test_topics_check_reports_replication_below_the_setting(
    kafka_bootstrap, unique_name, create_topic, monkeypatch
):
    app_id = unique_name("rf")
    for role, config in (("invocations", {}), ("changelog", {"cleanup.policy": "compact"})):
        create_topic(f"{app_id}-{role}", 2, config)
    doc = json.loads(run_cli(kafka_bootstrap, app_id, "topics", "check", "--json", expect=1).stdout)
    changelog = next(t for t in doc["topics"] if t["role"] == "changelog")
    assert changelog["replication_factor"] == 1 and changelog["problems"] == []
    monkeypatch.setenv("KSTATEFUN_REPLICATION_FACTOR", "2")
    out = run_cli(kafka_bootstrap, app_id, "topics", "check", expect=1).stdout
    assert re.search(rf"^\s+FAIL\s+{app_id}-changelog\s.*replicas=1", out, re.M), out
    assert "has replication factor 1 but replication_factor is 2" in out
    assert "kafka-reassign-partitions.sh" in out


# --- errors -------------------------------------------------------------------------------------


def test_errors_name_what_is_wrong_and_exit_2(app):
    err = run_cli(app.bootstrap, "no-such-app", "state", "get", "test/counter", "x", expect=2)
    assert "has no topic 'no-such-app-changelog'" in err.stderr and "--app-id" in err.stderr
    checks = [
        (("send", "--to", "test/counter", "--value", "x"), "is not an address: write TYPE/ID"),
        (("send", "--to", "test/counter/x", "--type", "int", "--value", "ten"), "not a valid io"),
        (
            ("send", "--to", "test/counter/x", "--type", "test/Event", "--value", "{"),
            "not valid JSON",
        ),
        (("send", "--topic", "no-such-topic", "--value", "x"), "'no-such-topic' does not exist"),
        (("dead-letters", "replay"), "select the dead letters to replay"),
        (("dead-letters", "replay", "--offset", "0:99999999"), "no dead letter at 0:99999999"),
        (("dead-letters", "tail", "--reason", "boom"), "is not a dead-letter reason"),
    ]
    for args, message in checks:
        result = run_cli(app.bootstrap, app.app_id, *args, expect=2)
        assert message in result.stderr, (args, result.stderr)
