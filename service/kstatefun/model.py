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


# Address and TypedValue are made for every invocation: their ``__init__`` sets the slots
# through the slot descriptors, about half the cost of a frozen dataclass's generated one
# (``object.__setattr__`` per field); ``frozen`` still refuses assignment.


@dataclass(frozen=True, slots=True, init=False)
class Address:
    """One function instance: a function type (``namespace/name``) and an id."""

    typename: str
    id: str

    def __init__(self, typename: str, id: str) -> None:
        _set_address_typename(self, typename)
        _set_address_id(self, id)

    @property
    def namespace(self) -> str:
        return split_typename(self.typename)[0]

    @property
    def name(self) -> str:
        return split_typename(self.typename)[1]

    def __str__(self) -> str:
        return f"{self.typename}/{self.id}"


_set_address_typename = vars(Address)["typename"].__set__
_set_address_id = vars(Address)["id"].__set__


@dataclass(frozen=True, slots=True, init=False)
class TypedValue:
    """A value on the wire: its type name and its serialized bytes (``None`` when absent)."""

    typename: str
    value: bytes | None

    def __init__(self, typename: str, value: bytes | None) -> None:
        _set_typed_value_typename(self, typename)
        _set_typed_value_value(self, value)

    @property
    def has_value(self) -> bool:
        return self.value is not None


_set_typed_value_typename = vars(TypedValue)["typename"].__set__
_set_typed_value_value = vars(TypedValue)["value"].__set__
