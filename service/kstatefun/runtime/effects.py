"""Effects: what one invocation (or one remote batch for one address) does, and the one place
that checks and applies it.

An embedded call (runtime/dispatcher.py, from ``sdk/context.Context`` and the storage
mutations) and a remote reply (runtime/remote.py, from ``remote/protocol.RemoteResult``) each
become one ``Effects``. ``EffectsApplier.check`` refuses, before anything applies, what cannot
be produced (a record over the size limit, an egress that does not resolve, a cancellation
token still pending); ``EffectsApplier.apply`` then writes everything, in the order below, to a
state target, a timer target and an output. The worker's are its StateStore, TimerStore and
open transaction; the test harness (testing/harness.py) passes in-memory ones, so user tests
run these same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kstatefun.config.module import PLAYGROUND_EGRESS_ID
from kstatefun.kafka.clients import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES
from kstatefun.model import Address, TypedValue
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.deadletters import Rejected
from kstatefun.sdk.context import CancelDelayed, DelayedMessage
from kstatefun.sdk.functions import FunctionSpec
from kstatefun.sdk.messages import EgressMessage, Message
from kstatefun.wire.protobuf import KAFKA_PRODUCER_RECORD_TYPENAME, decode_kafka_producer_record

EgressRecord = tuple[str, bytes | None, bytes]  # topic, key, value: a resolved egress record

_NONE: tuple[()] = ()

# the most a state value, message or egress record may take: the rest of a record is overhead
_LIMIT = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class StateLayout:
    """What apply needs to know of one function type's states, derived once per type: each
    state's type name, the TTL of those that expire, and those every invocation refreshes."""

    typenames: Mapping[str, str]
    ttl_ms: Mapping[str, int]  # only the states that expire
    after_call: tuple[tuple[str, int], ...]  # (name, ttl ms) of expire-after-call states

    @staticmethod
    def of(spec: FunctionSpec) -> StateLayout:
        """The layout of an embedded function's ValueSpecs."""
        ttl = {name: s.duration for name, s in spec.specs.items() if s.duration > 0}
        return StateLayout(
            {name: s.type.typename for name, s in spec.specs.items()},
            ttl,
            tuple(
                (name, ttl[name]) for name, s in spec.specs.items() if s.after_call and name in ttl
            ),
        )


class Effects:
    """One invocation's (or one remote batch's) effects on the world, before they apply.

    ``writes``: the new bytes of each state written, None for a deletion (typed and timed by
    ``layout``); ``outgoing``: messages, sent with ``target`` as their caller; ``egress`` and
    ``delayed`` (``send_after`` and cancellations) in call order. ``count``: how many
    invocations these are (a remote batch: several). ``state_key``: the state target's key of
    ``target`` if the caller has it at hand. ``records`` is filled by ``check``: the resolved
    egress records."""

    __slots__ = (
        "target",
        "layout",
        "writes",
        "outgoing",
        "egress",
        "delayed",
        "count",
        "state_key",
        "records",
    )

    def __init__(
        self,
        target: Address,
        layout: StateLayout,
        writes: Mapping[str, bytes | None],
        outgoing: Sequence[Message] = _NONE,
        egress: Sequence[EgressMessage] = _NONE,
        delayed: Sequence[DelayedMessage | CancelDelayed] = _NONE,
        count: int = 1,
        state_key: Any = None,
    ) -> None:
        self.target = target
        self.layout = layout
        self.writes = writes
        self.outgoing = outgoing
        self.egress = egress
        self.delayed = delayed
        self.count = count
        self.state_key = state_key
        self.records: Sequence[EgressRecord] = _NONE


# --- where effects go -------------------------------------------------------------------------


class StateTarget(Protocol):
    """Function state by (partition, key of an address, state name)."""

    def key_of(self, address: Address) -> Any: ...

    def write(
        self,
        partition: int,
        key: Any,
        name: str,
        typename: str,
        value: bytes | None,
        expire_at_ms: int | None,
    ) -> None: ...

    def refresh(self, partition: int, key: Any, name: str, now_ms: int, expire_at_ms: int) -> None:
        """Move a live value's expiry to ``expire_at_ms`` (an expired or absent one stays)."""


class TimerTarget(Protocol):
    """Pending delayed messages, by sender and cancellation token."""

    def has_token(self, partition: int, sender: Address, token: str) -> bool: ...

    def schedule_message(
        self,
        partition: int,
        sender: Address,
        token: str,
        anonymous: bool,
        due_ms: int,
        message: Message,
    ) -> None: ...

    def cancel_token(self, partition: int, sender: Address, token: str) -> None: ...


class Output(Protocol):
    """Where messages and egress records go."""

    def send(self, sender: Address, message: Message) -> None: ...

    def emit(self, sender: Address, egress: str, record: EgressRecord) -> None: ...


def timer_origin(source: Any) -> str:
    """An invocation's identity for the keys of its tokenless delayed messages: unique, and the
    same on a replay (a direct invocation's origin, else "<partition>-<offset>")."""
    return getattr(source, "origin", None) or f"{source.partition()}-{source.offset()}"


# --- egress resolution ------------------------------------------------------------------------


class EgressRoutes:
    """Which egress ids and topics a function may write to.

    ``declared``: the egress ids (None: any); ``topic_exists``: whether a topic exists (None:
    every topic); ``playground``: the record for a value sent to io.statefun.playground/egress
    (None: no playground egress), raising ValueError for a bad one."""

    __slots__ = ("declared", "topic_exists", "playground")

    def __init__(
        self,
        declared: Collection[str] | None,
        topic_exists: Callable[[str], bool] | None = None,
        playground: Callable[[TypedValue], EgressRecord] | None = None,
    ) -> None:
        self.declared = declared
        self.topic_exists = topic_exists
        self.playground = playground

    def resolve(self, msg: EgressMessage) -> EgressRecord:
        """The Kafka record for ``msg``; ``Rejected`` (``unknown-egress``) says why none."""
        if msg.typename == PLAYGROUND_EGRESS_ID and self.playground is not None:
            try:
                return self.playground(msg.typed_value)
            except ValueError as e:
                raise Rejected(dl.UNKNOWN_EGRESS, str(e)) from e
        declared = self.declared
        if declared is not None and msg.typename not in declared:
            names = ", ".join(sorted(declared)) or "none"
            raise Rejected(
                dl.UNKNOWN_EGRESS,
                f"egress '{msg.typename}' is not declared in module.yaml (declared: {names}); "
                "add an io.statefun.kafka.v1/egress document with that id",
            )
        record: EgressRecord
        if msg.kafka_record is not None:  # built in-process: no protobuf round trip
            record = msg.kafka_record
        else:
            tv = msg.typed_value
            if tv.typename != KAFKA_PRODUCER_RECORD_TYPENAME or tv.value is None:
                raise Rejected(
                    dl.UNKNOWN_EGRESS,
                    f"egress '{msg.typename}' is a Kafka egress and takes records built with "
                    f"kafka_egress_message(), got a value of type '{tv.typename}'",
                )
            topic, text_key, value = decode_kafka_producer_record(tv.value)
            record = (topic, None if text_key is None else text_key.encode(), value)
        if self.topic_exists is not None and not self.topic_exists(record[0]):
            raise Rejected(
                dl.UNKNOWN_EGRESS,
                f"egress '{msg.typename}' names topic '{record[0]}', which does not exist; "
                "create it",
            )
        return record


# --- check and apply --------------------------------------------------------------------------


class EffectsApplier:
    """Checks and applies Effects to one state target, timer target and output."""

    __slots__ = ("routes", "_state", "_timers", "_out")

    def __init__(
        self, routes: EgressRoutes, state: StateTarget, timers: TimerTarget, out: Output
    ) -> None:
        self.routes = routes
        self._state = state
        self._timers = timers
        self._out = out

    def check(self, fx: Effects, partition: int) -> None:
        """Raise ``Rejected`` (with the dead-letter reason) if ``fx`` cannot apply in full;
        else fill ``fx.records`` with its resolved egress records. Changes nothing else."""
        if fx.egress:
            fx.records = list(map(self.routes.resolve, fx.egress))
        # Refuse an effect too large to produce: a produce failing for size would abort the
        # transaction and replay it forever.
        largest = 0
        for v in fx.writes.values():
            if v is not None and len(v) > largest:
                largest = len(v)
        if fx.outgoing or fx.delayed:
            largest = max(largest, _largest_message(fx))
        for _, key, value in fx.records:
            size = len(value) + len(key) if key else len(value)
            if size > largest:
                largest = size
        if largest > _LIMIT:
            raise Rejected(
                dl.RECORD_TOO_LARGE,
                f"an effect of {largest} bytes exceeds the {_LIMIT}-byte limit of a record "
                "(state value, message, delayed message or egress record)",
            )
        if fx.delayed:
            self._check_tokens(fx.target, fx.delayed, partition)

    def _check_tokens(
        self, sender: Address, ops: Sequence[DelayedMessage | CancelDelayed], partition: int
    ) -> None:
        """A token still pending cannot be scheduled again; ops are judged in call order, so
        cancelling and then re-scheduling a token in one invocation is allowed."""
        changes: dict[str, bool] = {}  # this invocation's own schedules (True) and cancels
        for op in ops:
            token = op.cancellation_token
            if isinstance(op, CancelDelayed):
                changes[token] = False
            elif token:
                pending = changes.get(token)
                if pending is None:
                    pending = self._timers.has_token(partition, sender, token)
                if pending:
                    raise Rejected(
                        dl.DUPLICATE_TOKEN,
                        f"function '{sender}' scheduled a delayed message with cancellation "
                        f"token '{token}', which is still pending: cancel it first or use "
                        "another token",
                    )
                changes[token] = True

    def apply(self, fx: Effects, partition: int, now_ms: int, origin: str = "") -> None:
        """Apply checked effects: state writes (TTLs from ``now_ms``) and refreshes, delayed
        messages and cancellations, messages, egress records. ``origin`` (``timer_origin``)
        keys the delayed messages without a token; needed only when there are some."""
        target, layout, writes = fx.target, fx.layout, fx.writes
        if writes or layout.after_call:
            state = self._state
            key = fx.state_key
            if key is None:
                key = state.key_of(target)
            ttl_ms, typenames, write = layout.ttl_ms, layout.typenames, state.write
            for name, value in writes.items():
                ttl = ttl_ms.get(name) if ttl_ms else None
                write(partition, key, name, typenames[name], value, now_ms + ttl if ttl else None)
            for name, ttl in layout.after_call:
                if name not in writes:
                    state.refresh(partition, key, name, now_ms, now_ms + ttl)
        if fx.delayed:
            self._apply_timers(target, fx.delayed, partition, now_ms, origin)
        if fx.outgoing:
            send = self._out.send
            for message in fx.outgoing:
                send(target, message)
        if fx.records:
            emit = self._out.emit
            for msg, record in zip(fx.egress, fx.records, strict=True):
                emit(target, msg.typename, record)

    def _apply_timers(
        self,
        sender: Address,
        ops: Sequence[DelayedMessage | CancelDelayed],
        partition: int,
        now_ms: int,
        origin: str,
    ) -> None:
        timers = self._timers
        for i, op in enumerate(ops):
            if isinstance(op, CancelDelayed):
                timers.cancel_token(partition, sender, op.cancellation_token)
            elif op.cancellation_token:
                timers.schedule_message(
                    partition,
                    sender,
                    op.cancellation_token,
                    False,
                    now_ms + op.delay_ms,
                    op.message,
                )
            else:  # unique and deterministic: a replay after an abort writes the same key
                timers.schedule_message(
                    partition, sender, f"{origin}-{i}", True, now_ms + op.delay_ms, op.message
                )


def _largest_message(fx: Effects) -> int:
    """The largest value of ``fx``'s messages and delayed messages (for ``check``)."""
    largest = 0
    for m in fx.outgoing:
        v = m.typed_value.value
        if v and len(v) > largest:
            largest = len(v)
    for op in fx.delayed:
        if isinstance(op, DelayedMessage):
            v = op.message.typed_value.value
            if v and len(v) > largest:
                largest = len(v)
    return largest
