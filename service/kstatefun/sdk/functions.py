"""Registering functions: ``ValueSpec`` (a persisted value) and ``StatefulFunctions``.

Same names and signatures as StateFun's Python SDK (``statefun.core.ValueSpec``,
``statefun.statefun_builder.StatefulFunctions``). Mistakes raise ConfigError at registration,
before any message is processed.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from keyword import iskeyword
from typing import Any, TypeVar

from kstatefun.errors import ConfigError
from kstatefun.model import split_typename
from kstatefun.sdk.types import Type

F = TypeVar("F", bound=Callable[..., Any])


class ValueSpec:
    """A persisted value of a function: a name (an attribute of ``context.storage``) and a Type.

    The name must be a lower-case Python identifier that is not a keyword. At most one of
    ``expire_after_call`` (no call for that long) and ``expire_after_write`` (no write for that
    long) may be set; a zero duration means no expiry, as in StateFun.
    """

    __slots__ = ("name", "type", "expire_after_call", "expire_after_write")

    def __init__(
        self,
        name: str,
        type: Type,
        expire_after_call: timedelta | None = None,
        expire_after_write: timedelta | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a ValueSpec needs a name, got {name!r}")
        if not name.isidentifier() or iskeyword(name) or not name.islower():
            raise ConfigError(
                f"invalid ValueSpec name '{name}': use a lower-case Python identifier "
                "(letters, digits and '_', not starting with a digit, not a keyword), "
                "since it becomes an attribute of context.storage"
            )
        if not isinstance(type, Type):
            raise ConfigError(
                f"ValueSpec '{name}': type must be a kstatefun Type (e.g. IntType), got {type!r}"
            )
        for label, value in (
            ("expire_after_call", expire_after_call),
            ("expire_after_write", expire_after_write),
        ):
            if value is not None and not isinstance(value, timedelta):
                raise ConfigError(f"ValueSpec '{name}': {label} must be a timedelta or None")
            if value is not None and value < timedelta(0):
                raise ConfigError(f"ValueSpec '{name}': {label} must not be negative")
        if expire_after_call and expire_after_write:
            raise ConfigError(
                f"ValueSpec '{name}': set expire_after_call or expire_after_write, not both"
            )
        self.name = name
        self.type = type
        self.expire_after_call = expire_after_call or None
        self.expire_after_write = expire_after_write or None

    @property
    def after_call(self) -> bool:
        return self.expire_after_call is not None

    @property
    def after_write(self) -> bool:
        return self.expire_after_write is not None

    @property
    def duration(self) -> int:
        """The expiry in milliseconds, 0 when the value never expires (StateFun's field)."""
        ttl = self.expire_after_call or self.expire_after_write
        # rounded up: a sub-millisecond TTL must still expire, not mean "never"
        return max(1, math.ceil(ttl / timedelta(milliseconds=1))) if ttl else 0

    def __repr__(self) -> str:
        ttl = ""
        if self.expire_after_call:
            ttl = f", expire_after_call={self.expire_after_call!r}"
        elif self.expire_after_write:
            ttl = f", expire_after_write={self.expire_after_write!r}"
        return f"ValueSpec({self.name!r}, {self.type!r}{ttl})"


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One registered function type: its code and the persisted values it declares."""

    typename: str
    fun: Callable[..., Any]
    specs: dict[str, ValueSpec]
    is_async: bool


class StatefulFunctions:
    """The functions of one module, by function type (``namespace/name``)."""

    __slots__ = ("_functions",)

    def __init__(self) -> None:
        self._functions: dict[str, FunctionSpec] = {}

    def register(
        self, typename: str, fun: Callable[..., Any], specs: Iterable[ValueSpec] | None = None
    ) -> None:
        """Register ``fun(context, message)`` (plain or ``async``) under ``typename``."""
        if not isinstance(typename, str):
            raise ConfigError(
                f"a function typename must be a str 'namespace/name', got {typename!r}"
            )
        split_typename(typename)
        if typename in self._functions:
            raise ConfigError(f"function '{typename}' is registered twice")
        if not callable(fun):
            raise ConfigError(f"function '{typename}': {fun!r} is not callable")
        _check_arity(typename, fun)
        by_name: dict[str, ValueSpec] = {}
        for spec in specs or ():
            if not isinstance(spec, ValueSpec):
                raise ConfigError(f"function '{typename}': {spec!r} is not a ValueSpec")
            if spec.name in by_name:
                raise ConfigError(
                    f"function '{typename}': ValueSpec '{spec.name}' is declared twice"
                )
            by_name[spec.name] = spec
        is_async = inspect.iscoroutinefunction(fun) or inspect.iscoroutinefunction(
            type(fun).__call__  # an object with an async __call__
        )
        self._functions[typename] = FunctionSpec(typename, fun, by_name, is_async)

    def bind(self, typename: str, specs: Iterable[ValueSpec] | None = None) -> Callable[[F], F]:
        """Decorator form of ``register``, returning the function unchanged, e.g.
        ``@functions.bind("example/greeter", specs=[ValueSpec("seen", IntType)])``.
        """

        def wrapper(fun: F) -> F:
            self.register(typename, fun, specs)
            return fun

        return wrapper

    def for_typename(self, typename: str) -> FunctionSpec | None:
        """The function registered under ``typename``, or None."""
        return self._functions.get(typename)

    def typenames(self) -> list[str]:
        """Every registered function type, in registration order."""
        return list(self._functions)

    def include(self, other: StatefulFunctions) -> None:
        """Add every function of ``other``; a type registered in both raises ConfigError."""
        clash = self._functions.keys() & other._functions.keys()
        if clash:
            raise ConfigError(f"functions registered in both modules: {', '.join(sorted(clash))}")
        self._functions.update(other._functions)

    def __repr__(self) -> str:
        return f"StatefulFunctions({self.typenames()!r})"


def _check_arity(typename: str, fun: Callable[..., Any]) -> None:
    try:
        signature = inspect.signature(fun)
    except (TypeError, ValueError):
        return  # builtins without a signature: let the call decide
    try:
        signature.bind(None, None)
    except TypeError:
        raise ConfigError(
            f"function '{typename}' must take two arguments (context, message), "
            f"its signature is {signature}"
        ) from None


def load_functions(
    refs: Iterable[str], source: Callable[[str], str] | None = None
) -> StatefulFunctions:
    """Import each ``package.module:attribute`` and merge the StatefulFunctions they name.

    ``source(ref)`` says where a reference came from (a flag, module.yaml) in error messages.
    """
    merged = StatefulFunctions()
    for ref in refs:
        where = f" ({source(ref)})" if source is not None else ""
        module_name, sep, attr = ref.partition(":")
        if not sep or not module_name or not attr:
            raise ConfigError(
                f"functions reference '{ref}'{where} must look like 'package.module:attribute'"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(f"cannot import '{module_name}' (from '{ref}'{where}): {e}") from e
        obj: Any = module
        for i, part in enumerate(attr.split(".")):
            if not hasattr(obj, part):
                owner = ".".join([module_name, *attr.split(".")[:i]])
                found = sorted(
                    name for name, v in vars(module).items() if isinstance(v, StatefulFunctions)
                )
                raise ConfigError(
                    f"functions reference '{ref}'{where}: '{owner}' has no attribute '{part}'; "
                    f"StatefulFunctions objects in {module_name}: {', '.join(found) or 'none'}"
                )
            obj = getattr(obj, part)
        if not isinstance(obj, StatefulFunctions):
            raise ConfigError(
                f"functions reference '{ref}'{where} is a {type(obj).__name__}, not a kstatefun "
                "StatefulFunctions object"
            )
        merged.include(obj)
    return merged
