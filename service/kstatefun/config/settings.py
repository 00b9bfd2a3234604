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

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from kstatefun.errors import ConfigError

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
    "state_dir": "--state-dir",
    "partitions": "--partitions",
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


def env_var(setting: str) -> str:
    """The environment variable that sets ``setting``, e.g. ``KSTATEFUN_APP_ID``."""
    return ENV_PREFIX + setting.upper()


def _fail(message: str) -> NoReturn:
    raise PydanticCustomError("kstatefun", "{message}", {"message": message})


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
    state_dir: Path | None = None
    partitions: int = Field(8, ge=1)
    commit_interval_ms: int = Field(100, ge=1)
    max_batch_records: int = Field(500, ge=1)
    transaction_timeout_ms: int = Field(10_000, ge=1_000)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    metrics_port: int = Field(0, ge=0, le=65_535)
    metrics_host: str = "127.0.0.1"
    kafka_properties: dict[str, str] = Field(default_factory=dict)

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

    @field_validator("kafka_properties", mode="before")
    @classmethod
    def _stringify_properties(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            _fail(
                'expected a JSON object of librdkafka properties, e.g. {"linger.ms": "5"}, '
                f"got {value!r}"
            )
        out: dict[str, str] = {}
        for key, raw in value.items():
            if isinstance(raw, bool):
                out[str(key)] = "true" if raw else "false"
            elif isinstance(raw, int | float | str):
                out[str(key)] = str(raw)
            else:
                _fail(f"property '{key}' needs a plain value (text or number), got {raw!r}")
        return out

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
        return self


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
    got = error.get("input")
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
