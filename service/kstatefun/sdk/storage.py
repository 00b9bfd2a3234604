"""``context.storage``: the persisted values of one function instance, as attributes.

As in StateFun, each registered ValueSpec name is an attribute: reading decodes the stored bytes
(a fresh object each time, so mutating it changes nothing until it is assigned back), assigning
encodes at once, ``del`` deletes. The runtime collects the changes with ``storage_mutations``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from kstatefun.errors import FunctionError
from kstatefun.sdk.functions import ValueSpec
from kstatefun.sdk.types import Type

_UNREAD = object()


class Storage:
    """Address-scoped storage, built once per invocation: ``storage_class(owner, specs)(read)``.

    ``read(name)`` returns the stored bytes of a value or None; it is called at most once per
    name, on first access.
    """

    # Name-mangled (``_Storage__x``): capitalised, so no lower-case ValueSpec name can clash.
    __slots__ = ("__owner", "__specs", "__read", "__raw", "__mutations")

    def __getattr__(self, name: str) -> Any:
        spec = self.__specs.get(name)
        if spec is None:
            raise AttributeError(self.__unknown(name))
        raw = self.__raw
        data = raw.get(name, _UNREAD)
        if data is _UNREAD:
            data = raw[name] = self.__read(name)
        return None if data is None else spec.type.deserialize(data)

    def __setattr__(self, name: str, value: Any) -> None:
        spec = self.__specs.get(name)
        if spec is None:
            raise AttributeError(self.__unknown(name))
        if value is None:
            raise FunctionError(
                f"function '{self.__owner}' assigned None to state '{name}': "
                f"use 'del context.storage.{name}' to delete a value"
            )
        try:
            data = spec.type.serialize(value)
        except Exception as e:
            raise FunctionError(
                f"function '{self.__owner}' cannot store {type(value).__name__} {value!r:.80} "
                f"in state '{name}' of type '{spec.type.typename}': {e}"
            ) from e
        self.__raw[name] = self.__mutations[name] = data

    def __delattr__(self, name: str) -> None:
        if name not in self.__specs:
            raise AttributeError(self.__unknown(name))
        self.__raw[name] = self.__mutations[name] = None

    def __reduce__(self) -> Any:
        raise TypeError("Storage belongs to one invocation and cannot be copied or pickled")

    def __dir__(self) -> list[str]:
        return sorted(self.__specs)

    def __repr__(self) -> str:
        return f"Storage(owner={self.__owner!r}, names={sorted(self.__specs)!r})"

    def __unknown(self, name: str) -> str:
        return f"'{name}' is not a registered ValueSpec for the function '{self.__owner}'"


def storage_class(owner: str, specs: dict[str, ValueSpec]) -> Callable[..., Storage]:
    """``Storage`` for one function, made once per function type: each ValueSpec name is a
    property, which reads faster than ``__getattr__`` (called only after a failed lookup).
    Build an instance with ``cls(read)``."""
    return _storage_class(owner, tuple(specs.items()))


@lru_cache(maxsize=1024)
def _storage_class(owner: str, items: tuple[tuple[str, ValueSpec], ...]) -> Callable[..., Storage]:
    slots = {name: getattr(Storage, f"_Storage__{name}") for name in _SLOTS}
    set_read, set_raw = slots["read"].__set__, slots["raw"].__set__
    set_mutations = slots["mutations"].__set__

    def __init__(self: Storage, read: Callable[[str], bytes | None]) -> None:
        set_read(self, read)
        set_raw(self, {})
        set_mutations(self, {})

    # The owner and the specs are the same for every instance: class attributes, which shadow
    # Storage's slots of the same names, so an instance sets only what is its own.
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__init__": __init__,
        "_Storage__owner": owner,
        "_Storage__specs": dict(items),
    }
    for name, spec in items:
        if not hasattr(Storage, name):  # a name like __init__ stays with __getattr__
            namespace[name] = property(_getter(name, spec.type))
    return type(f"Storage[{owner}]", (Storage,), namespace)


_SLOTS = ("read", "raw", "mutations")


def _getter(name: str, tpe: Type) -> Callable[[Storage], Any]:
    deserialize = tpe.deserialize

    def get(self: Storage) -> Any:
        raw = self._Storage__raw  # type: ignore[attr-defined]
        data = raw.get(name, _UNREAD)
        if data is _UNREAD:
            data = raw[name] = self._Storage__read(name)  # type: ignore[attr-defined]
        return None if data is None else deserialize(data)

    return get


def storage_mutations(storage: Storage) -> dict[str, bytes | None]:
    """What this invocation wrote, by state name: the new bytes, or None for a deletion.

    The dict is the storage's own; read it after the function returns, do not modify it.
    """
    return storage._Storage__mutations
