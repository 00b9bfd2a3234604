"""StateFun's request-reply protocol: encode a batch, decode a reply, remember state specs.

The wire messages are in ``proto/request_reply.proto`` (docs/architecture.md, "Remote
functions"). This module turns them into the runtime's neutral values and back, so nothing
outside ``remote/`` sees a protobuf object:

- :func:`encode_batch` builds the ``ToFunction`` body for one address: every registered state
  (the name alone when it holds nothing) and the invocations in order, each with its caller.
- :func:`decode_reply` reads a ``FromFunction`` body into :class:`RemoteResult` (the batch's
  effects) or :class:`MissingStates` (the function wants states it was not sent; register
  them and send the same batch again). A body that is not a valid ``FromFunction`` raises
  :class:`MalformedReplyError`.
- :class:`RemoteStateRegistry` holds, per function type, the state specs the functions have
  declared through that handshake, and checks replies against them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from google.protobuf.message import DecodeError as _ProtobufDecodeError

from kstatefun.errors import KStatefunError
from kstatefun.model import Address, TypedValue, split_typename
from kstatefun.remote.proto import request_reply_pb2 as pb

__all__ = [
    "UNSET_STATE_TYPE",
    "DelayedCancel",
    "DelayedSend",
    "EgressRecord",
    "ExpireMode",
    "MalformedReplyError",
    "MissingStates",
    "OutgoingMessage",
    "RemoteProtocolError",
    "RemoteResult",
    "RemoteStateRegistry",
    "StateMutation",
    "StateRegistrationError",
    "StateSpec",
    "StateTypeConflictError",
    "StateValue",
    "decode_reply",
    "encode_batch",
]

# What StateFun registers for a state whose spec carries no type name (older SDKs).
UNSET_STATE_TYPE = "io.statefun.types/unset"


class RemoteProtocolError(KStatefunError):
    """A remote function's reply breaks the request-reply protocol; the batch cannot succeed."""


class MalformedReplyError(RemoteProtocolError):
    """The reply body is not a ``FromFunction`` message, or holds values no runtime can use."""


class StateRegistrationError(RemoteProtocolError):
    """A reply names a state in a way that contradicts what the function declared before."""


class StateTypeConflictError(StateRegistrationError):
    """A state's type name differs from the one registered for it."""


class ExpireMode(enum.IntEnum):
    """``ExpirationSpec.ExpireMode``: when a state value expires."""

    NONE = 0
    AFTER_WRITE = 1
    AFTER_INVOKE = 2  # after any call to the function that owns it (read or write)


class StateSpec(NamedTuple):
    """One state a remote function declares (``ValueSpec`` in the SDKs)."""

    name: str
    typename: str
    expire_mode: ExpireMode = ExpireMode.NONE
    expire_after_ms: int = 0


class StateValue(NamedTuple):
    """A state attached to a request: ``value is None`` sends the name alone (no value)."""

    name: str
    typename: str | None
    value: bytes | None


class StateMutation(NamedTuple):
    """A state write from a reply; ``value is None`` means delete (the SDKs then send no
    type name: ``typename`` is ``""``)."""

    name: str
    typename: str
    value: bytes | None


class OutgoingMessage(NamedTuple):
    """A message the function sent to another function (``context.send``)."""

    target: Address
    argument: TypedValue


class EgressRecord(NamedTuple):
    """A record the function sent to an egress (``context.send_egress``).

    ``egress`` is the egress id (``namespace/type``) as declared in module.yaml; for Kafka
    egress the argument is a ``KafkaProducerRecord`` (see ``wire/protobuf.py``).
    """

    egress: str
    argument: TypedValue


class DelayedSend(NamedTuple):
    """``send_after``: deliver ``argument`` to ``target`` after ``delay_ms``.

    An empty ``cancellation_token`` means the message cannot be cancelled.
    """

    delay_ms: int
    target: Address
    argument: TypedValue
    cancellation_token: str

    @property
    def is_cancellation_request(self) -> bool:
        return False


class DelayedCancel(NamedTuple):
    """``cancel_delayed_message``: cancel the pending delayed message with this token."""

    cancellation_token: str

    @property
    def is_cancellation_request(self) -> bool:
        return True


class RemoteResult(NamedTuple):
    """The effects of one batch, each kind in the order the function produced it.

    The SDKs collect effects per batch, not per invocation: ``outgoing`` holds the messages of
    every invocation of the batch in invocation order, ``delayed`` and ``egress`` likewise, and
    ``mutations`` the final value of each state the batch changed (at most one per state).
    """

    mutations: list[StateMutation]
    outgoing: list[OutgoingMessage]
    delayed: list[DelayedSend | DelayedCancel]
    egress: list[EgressRecord]

    @property
    def is_empty(self) -> bool:
        return not (self.mutations or self.outgoing or self.delayed or self.egress)


class MissingStates(NamedTuple):
    """``IncompleteInvocationContext``: the function needs these states before it can run."""

    specs: list[StateSpec]


# --- encoding ---------------------------------------------------------------------------------

_split = lru_cache(maxsize=4096)(split_typename)


def encode_batch(
    target: Address,
    states: Iterable[tuple[str, str | None, bytes | None]],
    invocations: Iterable[tuple[Address | None, TypedValue]],
) -> bytes:
    """The ``ToFunction`` body that invokes ``target`` once per invocation, in order.

    ``states`` are ``(name, typename, value)``: pass every registered state of the function
    type (see :meth:`RemoteStateRegistry.attach`); a state with ``value is None`` is sent as
    its name alone, which the SDKs read as "no value". ``invocations`` are
    ``(caller, argument)``; ``caller is None`` for a message from an ingress.
    """
    request = pb.ToFunction()
    batch = request.invocation
    namespace, name = _split(target.typename)
    address = batch.target
    address.namespace = namespace
    address.type = name
    address.id = target.id
    add_state = batch.state.add
    for state_name, typename, value in states:
        pv = add_state()
        pv.state_name = state_name
        if value is not None:
            sv = pv.state_value
            sv.typename = typename or UNSET_STATE_TYPE
            sv.has_value = True
            sv.value = value
    add_invocation = batch.invocations.add
    for caller, argument in invocations:
        inv = add_invocation()
        if caller is not None:
            c_namespace, c_name = _split(caller.typename)
            c = inv.caller
            c.namespace = c_namespace
            c.type = c_name
            c.id = caller.id
        arg = inv.argument
        arg.typename = argument.typename
        if argument.value is not None:
            arg.has_value = True
            arg.value = argument.value
    return request.SerializeToString()


# --- decoding ---------------------------------------------------------------------------------

_DELETE = pb.FromFunction.PersistedValueMutation.DELETE
_MODIFY = pb.FromFunction.PersistedValueMutation.MODIFY


def decode_reply(body: bytes) -> RemoteResult | MissingStates:
    """Read a ``FromFunction`` reply.

    An empty body (or a ``FromFunction`` with no response set) is a batch with no effects.
    Raises :class:`MalformedReplyError` when ``body`` is not a ``FromFunction`` or carries
    values no runtime can apply (an address without a type, an unknown mutation type, an egress
    without a name).
    """
    reply = pb.FromFunction()
    try:
        reply.ParseFromString(body)
    except _ProtobufDecodeError as e:
        raise MalformedReplyError(
            f"the reply ({len(body)} bytes) is not a StateFun FromFunction message: {e}"
        ) from None
    which = reply.WhichOneof("response")
    if which == "incomplete_invocation_context":
        return MissingStates([_spec(s) for s in reply.incomplete_invocation_context.missing_values])
    if which is None:
        return RemoteResult([], [], [], [])
    r = reply.invocation_result
    return RemoteResult(
        [_mutation(m) for m in r.state_mutations],
        [
            OutgoingMessage(_address(m.target, "an outgoing message"), _typed(m.argument))
            for m in r.outgoing_messages
        ],
        [_delayed(d) for d in r.delayed_invocations],
        [_egress(e) for e in r.outgoing_egresses],
    )


def _typed(tv: pb.TypedValue) -> TypedValue:
    # has_value decides; a value without it is ignored, as the SDKs do.
    return TypedValue(tv.typename, tv.value if tv.has_value else None)


def _address(a: pb.Address, what: str) -> Address:
    namespace, name, id_ = a.namespace, a.type, a.id
    if not namespace or not name:
        raise MalformedReplyError(
            f"{what} targets '{namespace}/{name}/{id_}', which has no function type "
            "(namespace and type must both be set)"
        )
    return Address(f"{namespace}/{name}", id_)


def _mutation(m: pb.FromFunction.PersistedValueMutation) -> StateMutation:
    if not m.state_name:
        raise MalformedReplyError("a state mutation has no state name")
    if m.mutation_type == _DELETE:
        return StateMutation(m.state_name, m.state_value.typename, None)
    if m.mutation_type == _MODIFY:
        sv = m.state_value
        return StateMutation(m.state_name, sv.typename, sv.value if sv.has_value else None)
    raise MalformedReplyError(
        f"the mutation of state '{m.state_name}' has unknown mutation type {m.mutation_type} "
        "(expected DELETE=0 or MODIFY=1); is the function's SDK newer than StateFun 3.3?"
    )


def _delayed(d: pb.FromFunction.DelayedInvocation) -> DelayedSend | DelayedCancel:
    if d.is_cancellation_request:
        return DelayedCancel(d.cancellation_token)
    return DelayedSend(
        d.delay_in_ms,
        _address(d.target, "a delayed message"),
        _typed(d.argument),
        d.cancellation_token,
    )


def _egress(e: pb.FromFunction.EgressMessage) -> EgressRecord:
    if not e.egress_namespace or not e.egress_type:
        raise MalformedReplyError(
            f"an egress message names egress '{e.egress_namespace}/{e.egress_type}'; both the "
            "namespace and the type must be set"
        )
    return EgressRecord(f"{e.egress_namespace}/{e.egress_type}", _typed(e.argument))


def _spec(s: pb.FromFunction.PersistedValueSpec) -> StateSpec:
    if not s.state_name:
        raise MalformedReplyError("a missing state spec has no state name")
    es = s.expiration_spec
    try:
        mode = ExpireMode(es.mode)
    except ValueError:
        raise MalformedReplyError(
            f"state '{s.state_name}' has unknown expire mode {es.mode} "
            "(expected NONE=0, AFTER_WRITE=1 or AFTER_INVOKE=2)"
        ) from None
    return StateSpec(
        s.state_name,
        s.type_typename or UNSET_STATE_TYPE,
        mode,
        es.expire_after_millis if mode is not ExpireMode.NONE else 0,
    )


# --- state registry ---------------------------------------------------------------------------


class RemoteStateRegistry:
    """The states each remote function type has declared, learned from ``MissingStates``.

    StateFun keeps the same registry: a function type starts with no states, its first batch
    goes without any, and the function answers with the specs it needs. Registration is by
    type, so every address of the type is sent every registered state from then on. A spec
    is registered once; a later spec or mutation with another type name for the same state
    is an error (:class:`StateTypeConflictError`), as in StateFun. Expiration settings of an
    already registered state are kept.
    """

    __slots__ = ("_specs",)

    def __init__(self) -> None:
        self._specs: dict[str, dict[str, StateSpec]] = {}

    def specs(self, function_type: str) -> Sequence[StateSpec]:
        """The registered specs of ``function_type``, in registration order."""
        specs = self._specs.get(function_type)
        return () if specs is None else tuple(specs.values())

    def spec(self, function_type: str, state: str) -> StateSpec | None:
        specs = self._specs.get(function_type)
        return None if specs is None else specs.get(state)

    def register(
        self,
        function_type: str,
        missing: Iterable[StateSpec],
        attached: Collection[str] = (),
    ) -> list[StateSpec]:
        """Register the specs a function reported missing; returns those that were new.

        ``attached`` names the states the request carried. A function that reports one of
        those missing would get the same request again and again, so that raises
        :class:`StateRegistrationError`; so does a spec whose type name conflicts with the
        registered one (:class:`StateTypeConflictError`). Nothing is registered when it
        raises. An empty result without an error means another batch registered the specs
        first: send this batch again, now with them.
        """
        missing = list(missing)
        known = self._specs.get(function_type, {})
        new: list[StateSpec] = []
        for spec in missing:
            typename = spec.typename or UNSET_STATE_TYPE
            registered = known.get(spec.name)
            if registered is not None and registered.typename != typename:
                raise StateTypeConflictError(
                    f"function '{function_type}' declares state '{spec.name}' with type "
                    f"'{typename}', but it is registered with type '{registered.typename}'; "
                    "a state keeps its type: give the new type a new state name"
                )
            if spec.name in attached:
                raise StateRegistrationError(
                    f"function '{function_type}' reports state '{spec.name}' missing although "
                    "the request carried it; check that the function's SDK speaks StateFun's "
                    "request-reply protocol (v3)"
                )
            if registered is None and all(s.name != spec.name for s in new):
                new.append(spec._replace(typename=typename))
        if new:
            specs = self._specs.setdefault(function_type, {})
            for spec in new:
                specs[spec.name] = spec
        return new

    def attach(self, function_type: str, read: Callable[[str], bytes | None]) -> list[StateValue]:
        """The states to send with a batch for an address of ``function_type``.

        ``read(state_name)`` returns the address's current value of that state or ``None``.
        Each value goes with its registered type name, as StateFun does.
        """
        specs = self._specs.get(function_type)
        if not specs:
            return []
        return [StateValue(s.name, s.typename, read(s.name)) for s in specs.values()]

    def check_mutations(self, function_type: str, mutations: Iterable[StateMutation]) -> None:
        """Raise :class:`StateRegistrationError` unless every mutation is of a registered state
        and every write carries that state's type name."""
        specs = self._specs.get(function_type, {})
        for m in mutations:
            spec = specs.get(m.name)
            if spec is None:
                declared = ", ".join(specs) or "none"
                raise StateRegistrationError(
                    f"function '{function_type}' changed state '{m.name}', which it never "
                    f"declared (declared: {declared}); declare it with a ValueSpec"
                )
            if m.value is not None and (m.typename or UNSET_STATE_TYPE) != spec.typename:
                raise StateTypeConflictError(
                    f"function '{function_type}' wrote state '{m.name}' as type "
                    f"'{m.typename}', but it is registered with type '{spec.typename}'; "
                    "a state keeps its type: give the new type a new state name"
                )
