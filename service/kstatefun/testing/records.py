"""What the harness records for inspection: egress records, dead letters, invocations, timers.

Plain frozen values; each carries the virtual time (``at_ms`` / ``due_ms``) it belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kstatefun.model import Address
from kstatefun.sdk.types import Type


@dataclass(frozen=True, slots=True)
class EgressRecord:
    """One Kafka record a function wrote to a declared egress.

    ``egress`` is the egress id (``kafka_egress_message(typename=...)``), ``key`` is None for a
    record without a key (``key=None`` or ``""``, as StateFun produces it), ``value`` the bytes
    the runtime would produce. ``source`` is the address that wrote it.
    """

    egress: str
    topic: str
    key: str | None
    value: bytes
    source: Address
    at_ms: int

    @property
    def text(self) -> str:
        """The value as UTF-8 text (what ``kafka_egress_message(value="...")`` wrote)."""
        return self.value.decode("utf-8")

    def json(self) -> Any:
        """The value parsed as JSON."""
        return json.loads(self.value)

    def as_type(self, tpe: Type) -> Any:
        """The value decoded by ``tpe`` (for records written with ``value_type=tpe``)."""
        return tpe.deserialize(self.value)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input the runtime would write to ``<app>-dead-letters`` instead of processing it.

    ``reason`` is the runtime's reason name (``function-error``, ``unknown-function``, ...).
    For an ingress record, ``source_topic`` is its topic, ``key``/``value`` its bytes and
    ``target`` is None. For an invocation, ``source_topic`` is None, ``target``/``caller`` are
    its addresses, ``typename``/``value`` its argument and ``key`` the target id (the key the
    runtime's invocation record has). ``exception`` is the exception that caused it, if any.
    """

    reason: str
    message: str
    target: Address | None = None
    caller: Address | None = None
    typename: str | None = None
    value: bytes | None = None
    key: bytes | None = None
    source_topic: str | None = None
    exception: BaseException | None = field(default=None, compare=False)
    at_ms: int = 0

    @property
    def exception_type(self) -> str | None:
        """The exception's class name, as the runtime's dead-letter record stores it."""
        return None if self.exception is None else type(self.exception).__qualname__


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One invocation the harness processed, in processing order (``seq`` from 1).

    ``dead_letter`` is None when its effects were applied, else the dead-letter reason (and
    then none of its effects were applied). ``delayed`` is True for a message delivered by a
    timer (``send_after``); its ``caller`` is the address that scheduled it.
    """

    seq: int
    at_ms: int
    target: Address
    caller: Address | None
    typename: str
    value: bytes | None
    dead_letter: str | None
    delayed: bool = False

    @property
    def ok(self) -> bool:
        return self.dead_letter is None


@dataclass(frozen=True, slots=True)
class PendingTimer:
    """A delayed message scheduled with ``send_after`` that has neither fired nor been
    cancelled. ``cancellation_token`` is ``""`` when it was sent without one."""

    due_ms: int
    sender: Address
    target: Address
    cancellation_token: str
    typename: str
    value: bytes | None
