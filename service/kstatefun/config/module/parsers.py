"""Scalar parsers and checks for module.yaml fields: StateFun/Flink durations and dates,
type names, URLs, properties and offsets; each failure is one message naming the fix."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Final, NoReturn
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from kstatefun.config.module.specs import URL_SCHEMES
from kstatefun.errors import ConfigError
from kstatefun.model import split_typename

_TYPENAME_FIX: Final = "expected 'namespace/name', e.g. 'example/greeter'"


def fail(message: str) -> NoReturn:
    # The message travels in the context so braces such as {function.name} stay literal.
    raise PydanticCustomError("kstatefun", "{message}", {"message": message})


def describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def as_text(value: Any) -> str | None:
    """A scalar as StateFun's Jackson ``asText()`` renders it; ``None`` for non-scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _check_typename(value: str) -> str:
    if value.count("/") != 1 or any(c.isspace() for c in value):
        fail(f"'{value}' is not a valid type name; {_TYPENAME_FIX}")
    try:
        split_typename(value)
    except ConfigError:
        fail(f"'{value}' is not a valid type name; {_TYPENAME_FIX}")
    return value


def _check_function_type(value: str) -> str:
    _check_typename(value)
    if "*" in value:
        fail(
            f"'{value}' is a wildcard, but a target must name one function type, "
            "e.g. 'example/greeter' (wildcards belong in an endpoint's 'functions')"
        )
    return value


def check_function_pattern(value: str) -> str:
    _check_typename(value)
    namespace, name = value.split("/")
    if "*" in namespace or ("*" in name and name != "*"):
        fail(
            f"'{value}' is not a valid function pattern; use 'namespace/name' for one function "
            "type or 'namespace/*' for all types in a namespace, e.g. 'example/*'"
        )
    return value


def _check_nonempty(value: str) -> str:
    if not value.strip():
        fail("must not be empty")
    return value


def whole_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        fail(f"expected a whole number, got {describe(value)}")
    if isinstance(value, str):
        if not re.fullmatch(r"\s*\d+\s*", value):
            fail(f"expected a whole number, got {value!r}")
        return int(value)
    return value


def _positive(value: int) -> int:
    if value < 1:
        fail(f"must be at least 1, got {value}")
    return value


def one_of(allowed: tuple[str, ...], *, ignore_case: bool = False) -> AfterValidator:
    def check(value: str) -> str:
        candidate = value.lower() if ignore_case else value
        if candidate in allowed:
            return candidate
        close = difflib.get_close_matches(candidate, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        fail(f"'{value}' is not one of: {', '.join(allowed)}{hint}")

    return AfterValidator(check)


_NANOS_PER_UNIT: Final = {
    "d": 86_400_000_000_000,
    "h": 3_600_000_000_000,
    "min": 60_000_000_000,
    "s": 1_000_000_000,
    "ms": 1_000_000,
    "µs": 1_000,
    "ns": 1,
}
# Flink TimeUtils labels, plural forms included; a bare number means milliseconds.
_DURATION_LABELS: Final = {
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("h", "hour", "hours"), "h"),
    **dict.fromkeys(("m", "min", "minute", "minutes"), "min"),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("ms", "milli", "millis", "millisecond", "milliseconds"), "ms"),
    **dict.fromkeys(("µs", "micro", "micros", "microsecond", "microseconds"), "µs"),
    **dict.fromkeys(("ns", "nano", "nanos", "nanosecond", "nanoseconds"), "ns"),
}
_DURATION_RE: Final = re.compile(r"(\d+)\s*(\D*?)")
_DURATION_FIX: Final = "write a number and a unit, e.g. '10s', '1 min', '100ms', '2h'"


def parse_duration_ms(value: str | int) -> int:
    """Parse a StateFun/Flink duration (``15min``, ``10 s``, ``100ms``, ``2m``) to milliseconds.

    A bare number is milliseconds, as in Flink's ``TimeUtils.parseDuration``; sub-millisecond
    remainders are truncated. Raises :class:`ConfigError` naming the accepted units otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"expected a duration, got {describe(value)}; {_DURATION_FIX}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"duration {value} is negative; {_DURATION_FIX}")
        return value
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None:
        raise ConfigError(f"'{value}' is not a duration; {_DURATION_FIX}")
    number, label = int(match.group(1)), match.group(2).strip().lower()
    if not label:
        return number
    unit = _DURATION_LABELS.get(label)
    if unit is None:
        units = "d, h, min (or m), s, ms, µs, ns"
        raise ConfigError(f"'{value}' has an unknown time unit '{label}'; use one of: {units}")
    return number * _NANOS_PER_UNIT[unit] // 1_000_000


def _duration(value: Any) -> int:
    try:
        return parse_duration_ms(value)
    except ConfigError as exc:
        fail(str(exc))


def _nonzero_duration(value: int) -> int:
    if value == 0:
        fail("a timeout must be longer than 0, e.g. '10s'")
    return value


_DATE_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)"
)
_DATE_FIX: Final = (
    "use StateFun's format 'yyyy-MM-dd HH:mm:ss.SSS Z', e.g. '2020-02-01 04:15:00.000 +0000'"
)


def parse_date_ms(value: Any) -> int:
    text = as_text(value)
    match = _DATE_RE.fullmatch(text.strip()) if text is not None else None
    if text is None or match is None:
        fail(f"{describe(value)} is not a date; {_DATE_FIX}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7) or "0", match.group(8)
    if offset == "Z":
        tz = UTC
    else:
        digits = offset[1:].replace(":", "").ljust(4, "0")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = timezone(delta if offset[0] == "+" else -delta)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        fail(f"'{text}' is not a valid date ({exc}); {_DATE_FIX}")
    millis = int(fraction.ljust(9, "0")[:3])
    return int(moment.timestamp()) * 1000 + millis


def _property_entry(value: Any) -> tuple[str, str]:
    if not isinstance(value, Mapping) or len(value) != 1:
        fail(f"expected a single-key map such as '- max.poll.records: 500', got {describe(value)}")
    ((key, raw),) = value.items()
    text = as_text(raw)
    if text is None:
        fail(f"property '{key}' needs a plain value (text or number), got {describe(raw)}")
    return str(key), text


def as_entry_list(value: Any) -> Any:
    # StateFun writes properties and offsets as a list of single-key maps; a plain mapping is
    # accepted too because it is what YAML users reach for first.
    if isinstance(value, Mapping):
        return [{k: v} for k, v in value.items()]
    if value is not None and not isinstance(value, list):
        fail(f"expected a list of single-key maps, got {describe(value)}")
    return value


def offset_entry(value: Any) -> tuple[str, int, int]:
    fix = "write '- <topic>/<partition>: <offset>', e.g. '- greeter-names/0: 42'"
    if not isinstance(value, Mapping) or len(value) != 1:
        fail(f"expected a single-key map; {fix}")
    ((key, raw),) = value.items()
    topic, sep, partition = str(key).rpartition("/")
    if not sep or not topic or not partition.isdigit():
        fail(f"'{key}' is not '<topic>/<partition>'; {fix}")
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        fail(f"offset for '{key}' must be a whole number >= 0, got {describe(raw)}; {fix}")
    return topic, int(partition), raw


def _unique_keys(entries: list[tuple[str, Any]] | None) -> list[tuple[str, Any]] | None:
    seen: set[str] = set()
    for key, *_ in entries or ():
        if key in seen:
            fail(f"'{key}' is set twice; keep one entry")
        seen.add(key)
    return entries


def unique_offsets(entries: list[tuple[str, int, int]] | None) -> list[tuple[str, int, int]]:
    seen: set[tuple[str, int]] = set()
    for topic, partition, _ in entries or ():
        if (topic, partition) in seen:
            fail(f"'{topic}/{partition}' is listed twice; keep one offset per partition")
        seen.add((topic, partition))
    return entries or []


def check_url_template(value: str) -> str:
    parts = urlsplit(value)
    example = "e.g. 'http://functions:8000/{function.name}'"
    if parts.scheme not in URL_SCHEMES:
        fail(
            f"'{value}' must start with one of {', '.join(s + '://' for s in URL_SCHEMES)}; "
            f"{example}"
        )
    if parts.scheme in ("http", "https") and not parts.netloc:
        fail(f"'{value}' has no host; {example}")
    try:
        parts.port  # noqa: B018 - parsed on access; raises for a port that is not 0-65535
    except ValueError as exc:
        fail(f"'{value}' has an invalid port ({exc}); {example}")
    return value


def check_function_ref(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", value):
        fail(
            f"'{value}' is not 'package.module:attribute'; name the StatefulFunctions object to "
            "load, e.g. 'examples.greeter:functions'"
        )
    return value


def as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def unique_refs(refs: list[str]) -> list[str]:
    for i, ref in enumerate(refs):
        if ref in refs[:i]:
            fail(f"'{ref}' is listed twice; list it once")
    return refs


def _port(value: int) -> int:
    if not 1 <= value <= 65_535:
        fail(f"expected a TCP port from 1 to 65535, got {value}")
    return value


def check_playground_topic(value: str) -> str:
    # it names a Kafka topic of the application (kafka/topics.py)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", value):
        fail(
            f"'{value}' is not a valid playground topic; use letters, digits, '.', '_' and '-' "
            "(at most 200), e.g. 'greetings'"
        )
    return value


TypeName = Annotated[str, AfterValidator(_check_typename)]
FunctionType = Annotated[str, AfterValidator(_check_function_type)]
DurationMs = Annotated[int, BeforeValidator(_duration)]
Timeout = Annotated[int, BeforeValidator(_duration), AfterValidator(_nonzero_duration)]
PositiveNumber = Annotated[int, BeforeValidator(whole_number), AfterValidator(_positive)]
NonEmpty = Annotated[str, AfterValidator(_check_nonempty)]
Properties = Annotated[
    list[Annotated[tuple[str, str], BeforeValidator(_property_entry)]],
    BeforeValidator(as_entry_list),
    AfterValidator(_unique_keys),
]
Port = Annotated[int, BeforeValidator(whole_number), AfterValidator(_port)]
