"""Worker settings: defaults, overridden by ``KSTATEFUN_*`` environment variables, overridden
by command-line flags. ``config/settings.md`` is the reference for every setting.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NoReturn

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from kstatefun.errors import ConfigError
from kstatefun.kafka.clients import (
    CLASSIC_GROUP_PROPERTIES,
    REBALANCE_PROTOCOL_DEFAULT,
    REDACTED,
    SECURITY_PROPERTIES,
    KafkaProperties,
    is_sensitive,
    redacted,
    security_properties,
)

__all__ = ["CLI_FLAGS", "ENV_PREFIX", "Settings", "env_var", "load_settings"]

log = logging.getLogger(__name__)

ENV_PREFIX: Final = "KSTATEFUN_"

# The settings that have a command-line flag; every setting has an environment variable.
CLI_FLAGS: Final[dict[str, str]] = {
    "module": "--module",
    "functions": "--functions",
    "bootstrap_servers": "--bootstrap-servers",
    "app_id": "--app-id",
    "instance_id": "--instance-id",
    "static_membership": "--static-membership",
    "leave_group_on_stop": "--leave-group-on-stop",
    "state_dir": "--state-dir",
    "partitions": "--partitions",
    "partitioner": "--partitioner",
    "commit_interval_ms": "--commit-interval-ms",
    "metrics_port": "--metrics-port",
    "metrics_host": "--metrics-host",
    "log_format": "--log-format",
}

LOG_LEVELS: Final = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

# Internal topics are named '<app_id>-<suffix>' and topic names are at most 249 characters.
_NAME_RE: Final = re.compile(r"[a-zA-Z0-9._-]+")
_NAME_MAX: Final = 200
_FUNCTION_REF_RE: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

# Kafka security: the secret settings, the file each may come from instead, and the settings
# that only make sense with SASL or with TLS.
_SECRET_FILES: Final = {
    "sasl_password": "sasl_password_file",
    "ssl_key_password": "ssl_key_password_file",
}
_SECRET_SETTINGS: Final = frozenset(_SECRET_FILES)
_SASL_SETTINGS: Final = ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file")
_SSL_SETTINGS: Final = (
    "ssl_ca_location",
    "ssl_certificate_location",
    "ssl_key_location",
    "ssl_key_password",
    "ssl_key_password_file",
    "ssl_endpoint_identification_algorithm",
)
_SECURITY_SETTINGS: Final = (
    "security_protocol",
    *_SASL_SETTINGS,
    *_SSL_SETTINGS,
    "kafka_secret_files",
)
_PASSWORD_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def env_var(setting: str) -> str:
    """The environment variable that sets ``setting``, e.g. ``KSTATEFUN_APP_ID``."""
    return ENV_PREFIX + setting.upper()


def _fail(message: str) -> NoReturn:
    raise PydanticCustomError("kstatefun", "{message}", {"message": message})


def _fail_setting(name: str, message: str) -> NoReturn:
    """An error about setting ``name`` raised while validating another field."""
    raise PydanticCustomError(
        "kstatefun_setting", "{message}", {"message": f"{_describe_setting(name)}: {message}"}
    )


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path} is not a file" + ("" if path.exists() else " (it does not exist)")
    if not os.access(path, os.R_OK):
        return f"{path} is not readable by this process"
    return None


def _check_file(path: Path) -> Path:
    problem = _file_problem(path)
    if problem:
        _fail(problem)
    return path


def _read_secret(name: str, path: Path) -> str:
    """A secret file's text without its final line break; never echoes the content."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail_setting(name, f"{path} is not UTF-8 text")
    except OSError as e:
        _fail_setting(name, f"cannot read {path}: {e.strerror}")
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        _fail_setting(name, f"{path} is empty")
    return secret


def default_state_dir() -> Path | None:
    """Where a worker whose instance id was given keeps its local state when ``state_dir`` is
    not set: ``$XDG_STATE_HOME/kstatefun``, else ``~/.local/state/kstatefun`` (in the image,
    under the home of the user ``kstatefun``). Every file in it is named by app id and instance
    id, so workers with different instance ids on one host never share one. None when no
    writable place exists (e.g. a container run as an arbitrary uid whose home is ``/``)."""
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    try:
        root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    except RuntimeError:  # no HOME and no passwd entry for this uid
        return None
    path = root / "kstatefun"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # created at start if missing: its first existing ancestor
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        return None
    return path


def _default_instance_id() -> str:
    # Stable across restarts on the same host, so the transactional id fences a crashed
    # predecessor; hostnames are already almost always legal, this makes sure.
    name = re.sub(r"[^a-zA-Z0-9._-]", "-", socket.gethostname())[:_NAME_MAX].strip("-")
    return name or "worker"


class Settings(BaseSettings):
    """Everything a worker needs besides module.yaml. Immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    module: Path | None = None
    functions: Annotated[list[str], NoDecode] = Field(default_factory=list)
    bootstrap_servers: str = "127.0.0.1:9092"
    app_id: str = "kstatefun"
    instance_id: str = Field(default_factory=_default_instance_id)
    # both default on when instance_id is given, else off (_defaults_for_a_named_instance)
    static_membership: bool = False
    # a clean stop removes this static member from the group at once (kafka/membership.py):
    # for a worker stopped for good (scale-in); a restart then rebalances twice
    leave_group_on_stop: bool = False
    # eager: every rebalance revokes everything; cooperative and consumer (KIP-848, the
    # default) stop only the partitions that move (kafka/clients.py, docs/architecture.md
    # "Which rebalance protocol")
    rebalance_protocol: Literal["eager", "cooperative", "consumer"] = REBALANCE_PROTOCOL_DEFAULT
    state_dir: Path | None = None
    # where committed state lives: memory (state_dir: a SQLite snapshot), or rocksdb in state_dir
    state_store: Literal["memory", "rocksdb"] = "memory"
    # >= 1: copies of every changelog partition not owned (state/standby.py); needs rocksdb
    standby_replicas: int = Field(0, ge=0)
    # None: the existing internal topics' count, else chosen at start (kafka/topics.py)
    partitions: int | None = Field(None, ge=1)
    # None: the recorded one, else crc32 for a new application (kafka/topics.py)
    partitioner: Literal["crc32", "murmur2"] | None = None
    commit_interval_ms: int = Field(100, ge=1)
    max_batch_records: int = Field(500, ge=1)
    # a message between functions of one partition runs in its sender's transaction when this
    # worker owns that partition (runtime/local.py); false: every message takes the hop
    local_messages: bool = True
    transaction_timeout_ms: int = Field(10_000, ge=1_000)
    # None: 60 s, or twice the loop's longest bounded wait if longer (Worker._make_watchdog)
    watchdog_timeout_s: int | None = Field(None, ge=0)
    kafka_retry_timeout_s: int = Field(120, ge=1)
    # None: the cluster's defaults (default.replication.factor, min.insync.replicas)
    replication_factor: int | None = Field(None, ge=1)
    min_insync_replicas: int | None = Field(None, ge=1)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    metrics_port: int = Field(0, ge=0, le=65_535)
    metrics_host: str = "127.0.0.1"
    playground_host: str = "127.0.0.1"  # where the io.statefun.playground.v1 servers listen
    # Kafka security (kafka/clients.py maps them to librdkafka properties). Declared before
    # kafka_properties, whose validator merges them in.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"] | None
    ) = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: Path | None = None
    ssl_endpoint_identification_algorithm: Literal["https", "none"] | None = None
    kafka_secret_files: dict[str, Path] = Field(default_factory=dict)
    kafka_properties: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_a_named_instance(cls, data: Any) -> Any:
        """A given instance id (flag or env; not the host name) says the worker comes back
        under the same name: then static membership and a state directory default to on, so
        that a restart resumes at once from its local snapshot instead of waiting out its
        predecessor's session and restoring the whole changelog. ``state_dir`` "none" turns
        the directory off, ``static_membership`` false the membership."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        named = data.get("instance_id") is not None
        if data.get("static_membership") is None:
            data["static_membership"] = named
        state_dir = data.get("state_dir")
        if state_dir is not None and str(state_dir).strip().lower() == "none":
            data["state_dir"] = None
        elif state_dir is None and named:
            data["state_dir"] = default_state_dir()
            if data["state_dir"] is None:
                log.warning(
                    "no writable default state directory ($XDG_STATE_HOME/kstatefun or "
                    "~/.local/state/kstatefun): every start restores the whole changelog; set "
                    "state_dir (--state-dir or %s) to a writable directory, or to none",
                    env_var("state_dir"),
                )
        return data

    @field_validator("functions", mode="before")
    @classmethod
    def _split_functions(cls, value: Any) -> Any:
        # Env gives one comma-separated string; a repeatable flag gives a list of them.
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            return value  # the type check reports it
        return [part.strip() for item in items for part in item.split(",") if part.strip()]

    @field_validator("functions")
    @classmethod
    def _check_functions(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not _FUNCTION_REF_RE.fullmatch(ref):
                _fail(
                    f"'{ref}' is not 'package.module:attribute'; name the StatefulFunctions "
                    "object to load, e.g. 'examples.greeter:functions' (comma-separate several)"
                )
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",")]
        if not value.strip() or any(not s or " " in s for s in servers):
            _fail("expected comma-separated host:port pairs, e.g. 'kafka1:9092,kafka2:9092'")
        return ",".join(servers)

    @field_validator("app_id", "instance_id")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            _fail(
                f"'{value}' may only contain letters, digits, '.', '_' and '-' "
                "(it becomes part of Kafka topic names and the transactional id)"
            )
        if len(value) > _NAME_MAX:
            _fail(f"is {len(value)} characters long; keep it at most {_NAME_MAX}")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            _fail(f"'{value}' is not one of: {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("ssl_endpoint_identification_algorithm", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "ssl_certificate_location",
        "ssl_key_location",
        "sasl_password_file",
        "ssl_key_password_file",
    )
    @classmethod
    def _check_files(cls, value: Path | None) -> Path | None:
        return None if value is None else _check_file(value)

    @field_validator("ssl_ca_location")
    @classmethod
    def _check_ca(cls, value: Path | None) -> Path | None:
        # 'probe': librdkafka looks for the system's CA certificates itself.
        return value if value is None or str(value) == "probe" else _check_file(value)

    @field_validator("sasl_username")
    @classmethod
    def _check_username(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            _fail("is blank")
        return value

    @field_validator("kafka_secret_files")
    @classmethod
    def _check_secret_files(cls, value: dict[str, Path]) -> dict[str, Path]:
        for prop, path in value.items():
            if prop in SECURITY_PROPERTIES.values():
                name = next(n for n, p in SECURITY_PROPERTIES.items() if p == prop)
                _fail(f"'{prop}' has a setting of its own: use {env_var(name)}")
            problem = _file_problem(path)
            if problem:
                _fail(f"['{prop}'] {problem}")
        return value

    @field_validator("kafka_properties", mode="before")
    @classmethod
    def _stringify_properties(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            _fail(
                'expected a JSON object of librdkafka properties, e.g. {"linger.ms": "5"}, '
                f"got a JSON {type(value).__name__}"
            )
        out: dict[str, str] = {}
        for key, raw in value.items():
            if isinstance(raw, bool):
                out[str(key)] = "true" if raw else "false"
            elif isinstance(raw, int | float | str):
                out[str(key)] = str(raw)
            else:
                shown = REDACTED if is_sensitive(str(key)) else repr(raw)
                _fail(f"property '{key}' needs a plain value (text or number), got {shown}")
        return out

    @field_validator("kafka_properties")
    @classmethod
    def _add_security_properties(
        cls, value: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        """Merge the security settings and secret files into the properties every client gets;
        check that together they make sense. Secrets stay out of repr() (KafkaProperties)."""
        data = info.data
        if any(name not in data for name in _SECURITY_SETTINGS):
            return KafkaProperties(value)  # a security setting is invalid; that error is reported
        given = {name: data[name] for name in _SECURITY_SETTINGS if data[name]}
        for secret, file_setting in _SECRET_FILES.items():
            if secret in given and file_setting in given:
                _fail_setting(
                    file_setting,
                    f"{secret} ({env_var(secret)}) is set too: give the secret one way",
                )
            if file_setting in given:
                given[secret] = SecretStr(_read_secret(file_setting, given[file_setting]))
        mapped = security_properties(given)
        for prop, path in given.get("kafka_secret_files", {}).items():
            mapped[prop] = _read_secret("kafka_secret_files", path)
        for prop in mapped:
            if prop in value:
                name = next((n for n, p in SECURITY_PROPERTIES.items() if p == prop), None)
                source = _describe_setting(name) if name else f"kafka_secret_files ['{prop}']"
                _fail_setting(
                    "kafka_properties",
                    f"'{prop}' is also set by {source}: set it in one place",
                )
        merged = KafkaProperties({**value, **mapped})
        _check_security(given, merged)
        return merged

    def state_path(self, suffix: str) -> Path:
        """This worker's file (or directory) ``<app_id>-<instance_id>.<suffix>`` in state_dir:
        named by both, so that workers sharing a directory never share state."""
        assert self.state_dir is not None
        return self.state_dir / f"{self.app_id}-{self.instance_id}.{suffix}"

    @model_validator(mode="after")
    def _check_state_store(self) -> Settings:
        if self.state_store == "rocksdb" and self.state_dir is None:
            raise PydanticCustomError(
                "kstatefun_pair",
                "{message}",
                {
                    "message": (
                        "state_store rocksdb keeps the state on disk and needs state_dir "
                        "(--state-dir or KSTATEFUN_STATE_DIR, or the default one that a given "
                        "--instance-id brings): the directory for its database"
                    )
                },
            )
        if self.standby_replicas and self.state_store != "rocksdb":
            raise PydanticCustomError(
                "kstatefun_pair",
                "{message}",
                {
                    "message": (
                        f"standby_replicas {self.standby_replicas} needs state_store rocksdb "
                        "(KSTATEFUN_STATE_STORE=rocksdb and a state_dir): a standby writes "
                        "its copy into the worker's local database, where a takeover finds it; "
                        "set standby_replicas to 0 for the memory store"
                    )
                },
            )
        return self

    @model_validator(mode="after")
    def _check_rebalance_protocol(self) -> Settings:
        """librdkafka refuses the classic protocols' group settings with KIP-848: say which
        setting is at fault and where the value lives instead, before any client is made."""
        classic = [p for p in CLASSIC_GROUP_PROPERTIES if p in self.kafka_properties]
        if self.rebalance_protocol == "consumer" and classic:
            raise PydanticCustomError(
                "kstatefun_pair",
                "{message}",
                {
                    "message": (
                        f"kafka_properties sets {', '.join(classic)}, which rebalance_protocol "
                        "consumer (KIP-848, the default) does not take: the broker times the "
                        "sessions and assigns the partitions (the group's "
                        "consumer.session.timeout.ms and consumer.heartbeat.interval.ms, see "
                        "docs/operations.md). Remove it, or set rebalance_protocol "
                        f"({env_var('rebalance_protocol')}) to eager or cooperative"
                    )
                },
            )
        return self

    @model_validator(mode="after")
    def _check_timeouts(self) -> Settings:
        if self.transaction_timeout_ms <= self.commit_interval_ms:
            raise PydanticCustomError(
                "kstatefun_pair",
                "{message}",
                {
                    "message": (
                        f"transaction_timeout_ms ({self.transaction_timeout_ms}) must be longer "
                        f"than commit_interval_ms ({self.commit_interval_ms}), or every "
                        "transaction would time out before it commits"
                    )
                },
            )
        rf, isr = self.replication_factor, self.min_insync_replicas
        if rf is not None and isr is not None and isr > rf:
            raise PydanticCustomError(
                "kstatefun_pair",
                "{message}",
                {
                    "message": (
                        f"min_insync_replicas ({isr}) is larger than replication_factor ({rf}): "
                        "no write to the internal topics could ever succeed; use e.g. "
                        "replication_factor 3 with min_insync_replicas 2"
                    )
                },
            )
        return self


def _check_security(given: dict[str, Any], props: dict[str, str]) -> None:
    """Settings that librdkafka would ignore or reject only at connection time."""
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    mechanism = props.get("sasl.mechanism", "GSSAPI").upper()
    sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
    where = (
        "security_protocol"
        if "security_protocol" in given
        else "kafka_properties ['security.protocol']"
        if "security.protocol" in props
        else "the default"
    )
    env = env_var("security_protocol")
    for name in _SASL_SETTINGS:
        if name in given and not sasl:
            _fail_setting(
                name,
                f"needs security_protocol SASL_SSL or SASL_PLAINTEXT ({env}), "
                f"but {where} is {protocol}",
            )
    for name in _SSL_SETTINGS:
        if name in given and not tls:
            _fail_setting(
                name,
                f"needs security_protocol SSL or SASL_SSL ({env}), but {where} is {protocol}",
            )
    for name in ("sasl_username", "sasl_password", "sasl_password_file"):
        if name in given and mechanism not in _PASSWORD_MECHANISMS:
            set_by = "sasl_mechanism" if "sasl.mechanism" in props else "librdkafka's default"
            _fail_setting(
                name,
                f"is used only by the mechanisms {', '.join(_PASSWORD_MECHANISMS)}, but "
                f"{set_by} is {mechanism}: set sasl_mechanism ({env_var('sasl_mechanism')})",
            )
    if sasl and mechanism in _PASSWORD_MECHANISMS:
        if "sasl.username" not in props:
            _fail_setting("sasl_username", f"sasl_mechanism {mechanism} needs a user name")
        if "sasl.password" not in props:
            _fail_setting(
                "sasl_password",
                f"sasl_mechanism {mechanism} needs a password: set {env_var('sasl_password')} "
                f"or {env_var('sasl_password_file')}",
            )
        if mechanism == "PLAIN" and not tls:
            log.warning(
                "sasl_mechanism=PLAIN over %s sends the Kafka password unencrypted; "
                "use security_protocol=SASL_SSL",
                protocol,
            )
    if ("ssl.certificate.location" in props) != ("ssl.key.location" in props):
        _fail_setting(
            "ssl_key_location"
            if "ssl.certificate.location" in props
            else "ssl_certificate_location",
            "ssl_certificate_location and ssl_key_location go together (the client certificate "
            "and its private key, PEM): set both or neither",
        )
    if ("ssl_key_password" in given or "ssl_key_password_file" in given) and (
        "ssl.key.location" not in props
    ):
        _fail_setting(
            "ssl_key_password",
            "is the password of ssl_key_location's private key, which is not set",
        )


def _describe_setting(name: str) -> str:
    flag = CLI_FLAGS.get(name)
    return f"setting '{name}' ({env_var(name)}" + (f", {flag})" if flag else ")")


def _translate(error: Any) -> str:
    loc = error["loc"]
    kind, ctx = error["type"], error.get("ctx") or {}
    if not loc:
        return f"settings: {ctx.get('message', error['msg'])}"
    name = str(loc[0])
    where = _describe_setting(name)
    if len(loc) > 1:
        where += f" [{'.'.join(str(p) for p in loc[1:])}]"
    got = REDACTED if name in _SECRET_SETTINGS else error.get("input")
    if name == "kafka_properties" and isinstance(got, dict):
        got = redacted(got)
    if kind == "kstatefun_setting":
        return str(ctx["message"])
    if kind == "kstatefun":
        return f"{where}: {ctx['message']}"
    if kind == "greater_than_equal":
        return f"{where}: must be at least {ctx['ge']}, got {got!r}"
    if kind == "less_than_equal":
        return f"{where}: must be at most {ctx['le']}, got {got!r}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{where}: expected a whole number, got {got!r}"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(name, Settings.model_fields, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown setting '{name}'{hint} (known: {', '.join(Settings.model_fields)})"
    return f"{where}: {error['msg']}, got {got!r}"


def _warn_unknown_env() -> None:
    known = {env_var(name) for name in Settings.model_fields}
    for key in os.environ:
        upper = key.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1)
            hint = f" did_you_mean={close[0]}" if close else ""
            log.warning("unknown kstatefun environment variable ignored env=%s%s", key, hint)


def load_settings(**cli_overrides: Any) -> Settings:
    """Build :class:`Settings`: flags given here (not ``None``) beat ``KSTATEFUN_*``
    environment variables, which beat the defaults.

    Raises one :class:`ConfigError` naming every invalid setting with its environment
    variable and flag.
    """
    overrides = {name: value for name, value in cli_overrides.items() if value is not None}
    unknown = [name for name in overrides if name not in Settings.model_fields]
    if unknown:
        messages = [_translate({"loc": (n,), "type": "extra_forbidden"}) for n in unknown]
        raise ConfigError("; ".join(messages))
    _warn_unknown_env()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        messages = [_translate(e) for e in exc.errors()]
        if len(messages) == 1:
            raise ConfigError(f"invalid {messages[0]}") from None
        raise ConfigError("invalid settings:\n" + "\n".join(f"  - {m}" for m in messages)) from None
    except SettingsError as exc:
        # Raised while decoding a JSON-valued environment variable (kafka_properties).
        match = re.search(r'field "(\w+)"', str(exc))
        name = match.group(1) if match else "kafka_properties"
        raise ConfigError(
            f"invalid {_describe_setting(name)}: not valid JSON; write a JSON object, "
            'e.g. {"compression.type": "lz4", "linger.ms": "5"}'
        ) from None
