"""Worker settings: flags beat environment beats defaults; bad values name setting, env, flag."""

import logging
from pathlib import Path

import pydantic
import pytest

from kstatefun.config import CLI_FLAGS, Settings, env_var, load_settings
from kstatefun.config import settings as settings_module
from kstatefun.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.upper().startswith("KSTATEFUN_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(REPO)


def test_defaults(monkeypatch):
    monkeypatch.setattr(settings_module.socket, "gethostname", lambda: "worker-7.local")
    s = load_settings()
    assert s.module is None
    assert s.functions == []
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.app_id == "kstatefun"
    assert s.instance_id == "worker-7.local"
    assert s.state_dir is None  # the host name is no promise of a stable name: both off
    assert s.static_membership is False
    assert s.partitions is None  # chosen at start from the topics
    assert s.commit_interval_ms == 100
    assert s.max_batch_records == 500
    assert s.transaction_timeout_ms == 10_000
    assert s.log_level == "INFO"
    assert s.kafka_properties == {}
    assert s.rebalance_protocol == "consumer"  # KIP-848


def test_default_instance_id_is_made_legal(monkeypatch):
    monkeypatch.setattr(settings_module.socket, "gethostname", lambda: "my host (1)")
    assert load_settings().instance_id == "my-host--1"


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("KSTATEFUN_MODULE", "config/module.yaml")
    monkeypatch.setenv("KSTATEFUN_BOOTSTRAP_SERVERS", "k1:9092, k2:9093")
    monkeypatch.setenv("KSTATEFUN_APP_ID", "shop")
    monkeypatch.setenv("KSTATEFUN_INSTANCE_ID", "w1")
    monkeypatch.setenv("KSTATEFUN_STATE_DIR", "/var/lib/kstatefun")
    monkeypatch.setenv("KSTATEFUN_PARTITIONS", "16")
    monkeypatch.setenv("KSTATEFUN_COMMIT_INTERVAL_MS", "50")
    monkeypatch.setenv("KSTATEFUN_MAX_BATCH_RECORDS", "1000")
    monkeypatch.setenv("KSTATEFUN_TRANSACTION_TIMEOUT_MS", "30000")
    monkeypatch.setenv("KSTATEFUN_LOG_LEVEL", "debug")
    monkeypatch.setenv("KSTATEFUN_FUNCTIONS", "examples.greeter:functions, app.fns:all,")
    monkeypatch.setenv(
        "KSTATEFUN_KAFKA_PROPERTIES", '{"linger.ms": 5, "enable.idempotence": true, "a": "b"}'
    )
    s = load_settings()
    assert s.module == Path("config/module.yaml")
    assert s.bootstrap_servers == "k1:9092,k2:9093"
    assert (s.app_id, s.instance_id) == ("shop", "w1")
    assert s.state_dir == Path("/var/lib/kstatefun")
    assert s.static_membership is True  # the instance id was given
    assert (s.partitions, s.commit_interval_ms, s.max_batch_records) == (16, 50, 1000)
    assert s.transaction_timeout_ms == 30_000
    assert s.log_level == "DEBUG"
    assert s.functions == ["examples.greeter:functions", "app.fns:all"]
    assert s.kafka_properties == {"linger.ms": "5", "enable.idempotence": "true", "a": "b"}


def test_flags_beat_environment_and_none_means_not_given(monkeypatch):
    monkeypatch.setenv("KSTATEFUN_PARTITIONS", "16")
    monkeypatch.setenv("KSTATEFUN_APP_ID", "from-env")
    s = load_settings(partitions=4, app_id=None, module=None, functions=None)
    assert s.partitions == 4
    assert s.app_id == "from-env"


def test_functions_flag_accepts_list_or_comma_string():
    assert load_settings(functions=["a:b", "c.d:e"]).functions == ["a:b", "c.d:e"]
    assert load_settings(functions="a:b,c.d:e").functions == ["a:b", "c.d:e"]
    # A repeatable flag whose values are themselves comma-separated.
    assert load_settings(functions=["a:b,c:d", " e:f "]).functions == ["a:b", "c:d", "e:f"]


def test_empty_environment_variable_is_ignored(monkeypatch):
    monkeypatch.setenv("KSTATEFUN_PARTITIONS", "")
    assert load_settings().partitions is None


def test_settings_are_immutable():
    s = load_settings()
    with pytest.raises(pydantic.ValidationError):
        s.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("partitions", "0", "must be at least 1"),
        ("partitions", "many", "expected a whole number, got 'many'"),
        ("commit_interval_ms", "0", "must be at least 1"),
        ("app_id", "my app", "may only contain letters, digits, '.', '_' and '-'"),
        ("app_id", "a" * 201, "keep it at most 200"),
        ("instance_id", "w/1", "may only contain letters"),
        ("bootstrap_servers", " , ", "comma-separated host:port"),
        ("functions", "examples.greeter", "is not 'package.module:attribute'"),
    ],
)
def test_invalid_flag_settings_name_setting_env_and_flag(monkeypatch, setting, value, problem):
    monkeypatch.setenv(env_var(setting), value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert f"setting '{setting}' ({env_var(setting)}, {CLI_FLAGS[setting]})" in message
    assert problem in message


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("max_batch_records", "0", "must be at least 1"),
        ("transaction_timeout_ms", "500", "must be at least 1000"),
        ("log_level", "loud", "'loud' is not one of: CRITICAL, ERROR, WARNING, INFO, DEBUG"),
        ("kafka_properties", "[1, 2]", "expected a JSON object"),
        ("kafka_properties", '{"a": [1]}', "property 'a' needs a plain value"),
    ],
)
def test_invalid_env_only_settings_name_setting_and_env(monkeypatch, setting, value, problem):
    monkeypatch.setenv(env_var(setting), value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert f"setting '{setting}' ({env_var(setting)})" in message
    assert problem in message


def test_kafka_properties_that_are_not_json(monkeypatch):
    monkeypatch.setenv("KSTATEFUN_KAFKA_PROPERTIES", "linger.ms=5")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "setting 'kafka_properties' (KSTATEFUN_KAFKA_PROPERTIES)" in message
    assert "not valid JSON" in message and '{"compression.type": "lz4"' in message


def test_transaction_timeout_must_exceed_commit_interval():
    with pytest.raises(ConfigError, match=r"transaction_timeout_ms \(2000\) must be longer"):
        load_settings(commit_interval_ms=5000, transaction_timeout_ms=2000)


def test_classic_group_properties_are_refused_with_the_consumer_protocol():
    with pytest.raises(ConfigError) as info:
        load_settings(kafka_properties={"session.timeout.ms": "6000", "linger.ms": "5"})
    message = str(info.value)
    assert "kafka_properties sets session.timeout.ms" in message
    assert "consumer.session.timeout.ms" in message and "KSTATEFUN_REBALANCE_PROTOCOL" in message
    s = load_settings(rebalance_protocol="eager", kafka_properties={"session.timeout.ms": "6000"})
    assert s.kafka_properties["session.timeout.ms"] == "6000"


def test_several_invalid_settings_are_reported_together(monkeypatch):
    monkeypatch.setenv("KSTATEFUN_PARTITIONS", "0")
    with pytest.raises(ConfigError) as info:
        load_settings(app_id="bad id")
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid settings:"
    assert any("KSTATEFUN_PARTITIONS" in line for line in lines[1:])
    assert any("--app-id" in line for line in lines[1:])


def test_unknown_override_suggests_the_setting():
    with pytest.raises(ConfigError, match="unknown setting 'partitons'; did you mean 'partitions'"):
        load_settings(partitons=3)


def test_unknown_environment_variable_is_warned_about(monkeypatch, caplog):
    monkeypatch.setenv("KSTATEFUN_PARTITONS", "3")
    with caplog.at_level(logging.WARNING, logger="kstatefun.config.settings"):
        s = load_settings()
    assert s.partitions is None  # chosen at start from the topics
    assert "env=KSTATEFUN_PARTITONS" in caplog.text
    assert "did_you_mean=KSTATEFUN_PARTITIONS" in caplog.text


def test_reference_documents_every_setting_env_var_and_flag():
    reference = (REPO / "config" / "settings.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`{name}`" in reference, name
        assert f"`{env_var(name)}`" in reference, name
    for flag in CLI_FLAGS.values():
        assert f"`{flag}`" in reference, flag


def test_min_insync_replicas_above_the_replication_factor_is_refused():
    with pytest.raises(ConfigError, match=r"min_insync_replicas \(3\) is larger than"):
        load_settings(replication_factor=2, min_insync_replicas=3)
    s = load_settings(replication_factor=3, min_insync_replicas=2)
    assert (s.replication_factor, s.min_insync_replicas) == (3, 2)


def test_the_rocksdb_store_needs_a_state_dir(tmp_path):
    with pytest.raises(ConfigError, match="state_store rocksdb .* needs state_dir"):
        load_settings(state_store="rocksdb")
    s = load_settings(state_store="rocksdb", state_dir=tmp_path)
    assert (s.state_store, s.state_dir) == ("rocksdb", tmp_path)
    assert load_settings().state_store == "memory"


# --- the defaults a given instance id brings -------------------------------------------------


@pytest.fixture
def state_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "kstatefun"  # need not exist yet: the worker creates it


def test_a_given_instance_id_turns_static_membership_and_the_state_dir_on(monkeypatch, state_home):
    by_flag = load_settings(instance_id="w1")
    assert (by_flag.static_membership, by_flag.state_dir) == (True, state_home)
    monkeypatch.setenv("KSTATEFUN_INSTANCE_ID", "w2")
    by_env = load_settings()
    assert (by_env.static_membership, by_env.state_dir) == (True, state_home)


def test_without_xdg_state_home_the_state_dir_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings(instance_id="w1").state_dir == tmp_path / ".local/state/kstatefun"


def test_two_instances_sharing_the_default_dir_use_their_own_files(state_home):
    one, two = load_settings(instance_id="w1"), load_settings(instance_id="w2")
    assert one.state_dir == two.state_dir
    assert one.state_path("sqlite") == state_home / "kstatefun-w1.sqlite"
    assert one.state_path("rocksdb") != two.state_path("rocksdb")


def test_each_default_can_be_turned_off_or_set(monkeypatch, state_home, tmp_path):
    s = load_settings(instance_id="w1", static_membership=False, state_dir=Path("none"))
    assert (s.static_membership, s.state_dir) == (False, None)
    monkeypatch.setenv("KSTATEFUN_STATIC_MEMBERSHIP", "false")
    monkeypatch.setenv("KSTATEFUN_STATE_DIR", "None")
    s = load_settings(instance_id="w1")
    assert (s.static_membership, s.state_dir) == (False, None)
    s = load_settings(instance_id="w1", static_membership=True, state_dir=tmp_path)
    assert (s.static_membership, s.state_dir) == (True, tmp_path)
    # and without an instance id, each can be turned on
    monkeypatch.delenv("KSTATEFUN_STATIC_MEMBERSHIP")
    monkeypatch.delenv("KSTATEFUN_STATE_DIR")
    s = load_settings(static_membership=True, state_dir=tmp_path)
    assert (s.static_membership, s.state_dir) == (True, tmp_path)


def test_no_writable_default_state_dir_means_none_and_a_warning(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker / "state"))  # below a file: unwritable
    with caplog.at_level(logging.WARNING):
        s = load_settings(instance_id="w1")
    assert (s.static_membership, s.state_dir) == (True, None)
    assert "no writable default state directory" in caplog.text


def test_a_given_instance_id_satisfies_the_rocksdb_store(state_home):
    s = load_settings(instance_id="w1", state_store="rocksdb")
    assert s.state_path("rocksdb") == state_home / "kstatefun-w1.rocksdb"
