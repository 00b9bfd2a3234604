"""Stored bytes as something a person can read, and command-line text as typed bytes.

Known StateFun built-in types (``io.statefun.types/*``) are decoded; other values are shown as
JSON when they parse as JSON, as text when they are printable UTF-8, and as hex (short) or
base64 (long) otherwise. The raw bytes are always in the ``--json`` output, base64-encoded.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

from kstatefun.errors import ConfigError, DecodeError
from kstatefun.model import split_typename
from kstatefun.sdk.types import (
    BoolType,
    DoubleType,
    FloatType,
    IntType,
    LongType,
    StringType,
    Type,
)

BUILTIN: dict[str, Type] = {
    t.typename: t for t in (BoolType, IntType, LongType, FloatType, DoubleType, StringType)
}
SHORT_NAMES = {t.rpartition("/")[2]: t for t in BUILTIN}  # "int" → "io.statefun.types/int"

_HEX_MAX = 32  # longer raw values are shown as base64
_JSON_START = tuple('{["-0123456789') + ("true", "false", "null")


@dataclass(frozen=True, slots=True)
class Shown:
    """A value ready to print: its type name, raw bytes and, when decodable, its value."""

    typename: str | None
    data: bytes | None
    value: Any  # JSON-able; None when not decoded (see format)
    format: str  # builtin | json | text | raw | none (no bytes at all)
    note: str = ""  # why a value of a known type was not decoded

    def text(self, limit: int | None = None) -> str:
        """One-line human form, cut to about ``limit`` characters."""
        if self.format == "none":
            out = "(none)"
        elif self.format in ("builtin", "json"):
            out = json.dumps(self.value, ensure_ascii=False)
            if self.format == "builtin" and not isinstance(self.value, str):
                out = str(self.value).lower() if isinstance(self.value, bool) else str(self.value)
        elif self.format == "text":
            out = json.dumps(self.value, ensure_ascii=False)  # quoted, escapes newlines
        else:
            assert self.data is not None
            if len(self.data) <= _HEX_MAX:
                out = f"hex:{self.data.hex()}"
            else:
                out = f"base64:{base64.b64encode(self.data).decode()} ({len(self.data)} bytes)"
        if limit is not None and len(out) > limit:
            out = out[: max(limit - 1, 1)] + "…"
        return out + (f" ({self.note})" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "typename": self.typename,
            "format": self.format,
            "value": self.value,
            "base64": None if self.data is None else base64.b64encode(self.data).decode(),
            "size": None if self.data is None else len(self.data),
        }


def show(typename: str | None, data: bytes | None) -> Shown:
    """Decode ``data`` for display, as well as its type name allows."""
    if data is None:
        return Shown(typename, None, None, "none")
    known = BUILTIN.get(typename or "")
    if known is not None:
        try:
            value = known.deserialize(data)
        except DecodeError:
            return _guess(typename, data, note=f"not a valid {typename}")
        if known is FloatType:
            value = _shortest_float32(value)
        return Shown(typename, data, value, "builtin")
    return _guess(typename, data)


def _guess(typename: str | None, data: bytes, note: str = "") -> Shown:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Shown(typename, data, None, "raw", note)
    if text.lstrip().startswith(_JSON_START):
        try:
            return Shown(typename, data, json.loads(text), "json", note)
        except ValueError:
            pass
    if text and all(c.isprintable() or c in "\n\t\r" for c in text):
        return Shown(typename, data, text, "text", note)
    return Shown(typename, data, None, "raw", note)


def _shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32, so 0.1 shows as 0.1."""
    packed = struct.pack("<f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


# --- text → bytes -----------------------------------------------------------------------------


def resolve_type(name: str) -> str:
    """A full type name: ``int`` is ``io.statefun.types/int``; others must be namespace/name."""
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    split_typename(name)
    return name


def encode(typename: str, text: str, raw: bool = False) -> bytes:
    """``text`` as the bytes of a ``typename`` value.

    Built-in types are parsed (``int`` from ``42``, ``bool`` from ``true``) and encoded as
    StateFun's protobuf wrappers; any other type takes JSON text, sent as UTF-8 unchanged
    (``raw`` skips the JSON check).
    """
    known = BUILTIN.get(typename)
    if known is None:
        if not raw:
            try:
                json.loads(text)
            except ValueError as e:
                raise ConfigError(
                    f"--value is not valid JSON for type '{typename}' ({e}): pass JSON, a "
                    "built-in --type (string, int, long, bool, float, double), or --raw to "
                    "send the text as UTF-8 bytes unchanged"
                ) from None
        return text.encode("utf-8")
    try:
        value: Any
        if known is StringType:
            value = text
        elif known is BoolType:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            value = lowered in ("true", "1", "yes")
        elif known in (IntType, LongType):
            value = int(text.strip())
        else:
            assert known in (FloatType, DoubleType)
            value = float(text.strip())
        return known.serialize(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--value {text!r} is not a valid {typename}: {e}") from None
