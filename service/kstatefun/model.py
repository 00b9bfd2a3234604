"""The vocabulary every layer shares: type names, addresses and typed values.

See docs/architecture.md §2. These are plain, immutable values; nothing here touches Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass

from kstatefun.errors import ConfigError


def split_typename(typename: str) -> tuple[str, str]:
    """Split ``namespace/name`` into its two parts, raising a clear error otherwise."""
    namespace, sep, name = typename.rpartition("/")
    if not sep or not namespace or not name:
        raise ConfigError(
            f"'{typename}' is not a valid type name: use the form 'namespace/name', "
            "e.g. 'example/greeter'"
        )
    return namespace, name


@dataclass(frozen=True, slots=True)
class Address:
    """One function instance: a function type (``namespace/name``) and an id."""

    typename: str
    id: str

    @property
    def namespace(self) -> str:
        return split_typename(self.typename)[0]

    @property
    def name(self) -> str:
        return split_typename(self.typename)[1]

    def __str__(self) -> str:
        return f"{self.typename}/{self.id}"


@dataclass(frozen=True, slots=True)
class TypedValue:
    """A value on the wire: its type name and its serialized bytes (``None`` when absent)."""

    typename: str
    value: bytes | None

    @property
    def has_value(self) -> bool:
        return self.value is not None
