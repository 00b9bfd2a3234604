"""``Harness``: run StatefulFunctions in memory, with the runtime's semantics and a virtual clock.

Owns the in-memory run: the FIFO queue that stands in for the Kafka topics (one of the orders
the runtime can produce), the virtual clock, and what a test can inspect. The rules are the
runtime's own: an invocation's effects are checked and applied by runtime/effects.py (against
the in-memory state, timers and output of testing/), its failures classified by
runtime/deadletters.py, and an ingress record is judged by runtime/router.py. See
docs/testing.md.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

from kstatefun.config.module import PLAYGROUND_EGRESS_ID, ModuleSpec, load_module
from kstatefun.errors import ConfigError, KStatefunError
from kstatefun.model import Address, TypedValue, split_typename
from kstatefun.playground.egress import decode_egress_record
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.effects import Effects, EffectsApplier, EgressRoutes
from kstatefun.runtime.router import ingress_value_problem
from kstatefun.sdk.context import Context
from kstatefun.sdk.functions import StatefulFunctions, load_functions
from kstatefun.sdk.messages import Message, message_builder
from kstatefun.sdk.storage import storage_class, storage_mutations
from kstatefun.sdk.types import BoolType, FloatType, IntType, StringType, Type
from kstatefun.testing.records import DeadLetter, EgressRecord, InvocationRecord, PendingTimer
from kstatefun.testing.state import Cells, FunctionInfo, MemoryState
from kstatefun.testing.timers import TimerQueue, VirtualClock

log = logging.getLogger(__name__)

DUPLICATE_CANCELLATION_TOKEN = dl.DUPLICATE_TOKEN
"""Dead-letter reason ``duplicate-cancellation-token``: ``send_after`` with a cancellation token
that is still pending for the same address (the runtime's ``deadletters.DUPLICATE_TOKEN``)."""

DEFAULT_STEP_LIMIT = 1_000_000

_NO_CELLS: Cells = {}


class HarnessError(KStatefunError):
    """The test used the harness wrongly (unknown ingress topic, a run that never quiesces, ...).

    Never raised for a function's own failures: those become dead letters, as in the runtime.
    """


class _Queued(NamedTuple):
    target: Address
    caller: Address | None
    argument: TypedValue
    delayed: bool


class _Output:
    """The harness's output for runtime/effects.py: messages join the FIFO queue, egress
    records are kept for inspection."""

    __slots__ = ("_queue", "_egress", "_clock")

    def __init__(self, queue: deque[_Queued], egress: list[EgressRecord], clock: VirtualClock):
        self._queue, self._egress, self._clock = queue, egress, clock

    def send(self, sender: Address, message: Message) -> None:
        self._queue.append(_Queued(message.target, sender, message.typed_value, False))

    def emit(self, sender: Address, egress: str, record: tuple[str, bytes | None, bytes]) -> None:
        topic, key, value = record
        text_key = None if key is None else key.decode()
        self._egress.append(
            EgressRecord(egress, topic, text_key, value, sender, self._clock.now_ms)
        )


class Harness:
    """Runs functions in memory: no Kafka, no threads, no wall clock, no randomness.

    ``functions`` is a ``StatefulFunctions`` (or several, merged); without it the functions
    listed by the module's ``io.kstatefun.v1/embedded`` documents are imported, as
    ``kstatefun run`` does. ``module`` (a ``ModuleSpec`` or a module.yaml path) gives the
    ingress routes for ``send_ingress`` and the declared egresses; every ingress target must be
    a registered function (``ConfigError`` otherwise, as at worker start).

    ``egresses``: the egress ids functions may write to. Default: the module's egresses; with
    no module, any egress id is accepted. ``egress_topics``: the topics that exist; a record to
    another topic is dead-lettered as ``unknown-egress``. Default: every topic exists.
    ``start_ms``: the virtual clock's start. ``step_limit``: how many invocations one ``run``
    or ``advance`` may process before it raises ``HarnessError`` (None: no limit), so that a
    message loop fails the test instead of hanging it.

    Guarantees, matching the runtime:

    - Messages are processed one at a time from one FIFO queue, so the invocations of an
      address run one after another in arrival order, and messages from one sender to one
      receiver keep their order. The same inputs always give the same results.
    - An invocation applies all of its effects (state writes and deletes, messages, egress
      records, delayed messages and cancellations) or none, and then it is a dead letter with
      the runtime's reason: ``function-error`` (the function raised), ``undecodable-value``
      (a ``DecodeError``), ``unknown-function``, ``unknown-egress``,
      ``duplicate-cancellation-token`` (``send_after`` with a token still pending for that
      address) or ``record-too-large`` (an effect over the runtime's record size limit). The
      check and the apply are the runtime's own (runtime/effects.py).
    - ``async def`` functions are awaited on the harness's own event loop, one at a time.
    """

    def __init__(
        self,
        functions: StatefulFunctions | Iterable[StatefulFunctions] | None = None,
        module: ModuleSpec | str | Path | None = None,
        *,
        egresses: Iterable[str] | None = None,
        egress_topics: Iterable[str] | None = None,
        start_ms: int = 0,
        step_limit: int | None = DEFAULT_STEP_LIMIT,
    ) -> None:
        spec = module if isinstance(module, ModuleSpec) or module is None else load_module(module)
        self._functions = _merge(functions, spec)
        self._module = spec
        self._routes = {} if spec is None else _routes(spec, self._functions)
        if egresses is not None:
            self._egresses: frozenset[str] | None = frozenset(egresses)
        elif spec is not None:
            self._egresses = frozenset(e.id for e in spec.egresses)
            if spec.playground_egress is not None:
                self._egresses |= {PLAYGROUND_EGRESS_ID}
        else:
            self._egresses = None
        self._playground_topics = (
            spec.playground_egress.topics
            if spec is not None and spec.playground_egress is not None
            else None
        )
        self._step_limit = step_limit

        self.clock = VirtualClock(start_ms)
        self._queue: deque[_Queued] = deque()
        self._state = MemoryState()
        self._timers = TimerQueue()
        self._info: dict[str, FunctionInfo | None] = {}
        self._egress: list[EgressRecord] = []
        self._dead_letters: list[DeadLetter] = []
        self._invocations: list[InvocationRecord] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._close_loop: weakref.finalize[Any, Any] | None = None
        self._effects = EffectsApplier(
            EgressRoutes(
                self._egresses,
                None if egress_topics is None else frozenset(egress_topics).__contains__,
                None if self._playground_topics is None else self._playground_record,
            ),
            self._state,
            self._timers,
            _Output(self._queue, self._egress, self.clock),
        )

    # --- input --------------------------------------------------------------------------------

    def send(
        self,
        target: str | Message,
        id: str | None = None,
        value: Any = None,
        value_type: Type | str | None = None,
        *,
        caller: Address | None = None,
    ) -> None:
        """Queue a message to the function ``target`` with ``id``; ``run()`` delivers it.

        ``value_type`` is a ``Type`` to serialize ``value`` with, or a type name when
        ``value`` is already bytes (e.g. to test an undecodable value). Without it a ``str`` is
        a ``StringType``, a ``bool`` a ``BoolType``, an ``int`` an ``IntType`` and a ``float`` a
        ``FloatType``, as ``message_builder``'s ``*_value`` arguments. ``target`` may instead
        be a ``Message`` built with ``message_builder``. ``caller`` is the address the
        function sees as ``context.caller`` (None, as for ingress, by default).
        """
        if isinstance(target, Message):
            if id is not None or value is not None or value_type is not None:
                raise TypeError("send(message) takes no id, value or value_type")
            message = target
        else:
            if id is None:
                raise TypeError("send() needs the target id: send(typename, id, value)")
            message = _build(target, id, value, value_type)
        if caller is not None and not isinstance(caller, Address):
            raise TypeError(f"caller must be an Address or None, got {type(caller).__name__}")
        self._queue.append(_Queued(message.target, caller, message.typed_value, False))

    def send_ingress(self, topic: str, key: str | bytes | None, value: bytes | str | None) -> None:
        """Route one record of the ingress ``topic`` as the runtime's router does.

        The key (UTF-8; a ``str`` is encoded) is the target id, and the value is delivered
        unchanged, typed with the topic's ``valueType``: one message per target listed for the
        topic, in the listed order, without a caller. A record without a key, with a key that
        is not UTF-8 or without a value is a dead letter (``null-key``, ``invalid-key``,
        ``null-value``) and reaches no function, as is a value on an
        ``io.statefun.types/string`` topic that is not StateFun's StringWrapper
        (``undecodable-value``). ``run()`` delivers the messages.
        """
        route = self._routes.get(topic)
        if route is None:
            known = ", ".join(sorted(self._routes)) or "none"
            where = "in the module" if self._module is not None else "(pass module=...)"
            raise HarnessError(
                f"'{topic}' is not an ingress topic {where}; ingress topics: {known}"
            )
        raw_key = key.encode() if isinstance(key, str) else key
        data = value.encode() if isinstance(value, str) else value
        if raw_key is None:
            self._dead_ingress(
                topic,
                raw_key,
                data,
                dl.NULL_KEY,
                "ingress record has no key; the key is the target id",
            )
            return
        if not raw_key:
            self._dead_ingress(
                topic,
                raw_key,
                data,
                dl.INVALID_KEY,
                "ingress key is empty; the key is the target id",
            )
            return
        try:
            id = raw_key.decode()
        except UnicodeDecodeError as e:
            self._dead_ingress(
                topic, raw_key, data, dl.INVALID_KEY, f"ingress key is not valid UTF-8: {e}", e
            )
            return
        if data is None:
            self._dead_ingress(
                topic, raw_key, data, dl.NULL_VALUE, "ingress record has no value (a tombstone?)"
            )
            return
        typename, targets = route
        problem = ingress_value_problem(topic, typename, data)
        if problem is not None:
            self._dead_ingress(topic, raw_key, data, dl.UNDECODABLE_VALUE, problem)
            return
        argument = TypedValue(typename, data)
        for target in targets:
            self._queue.append(_Queued(Address(target, id), None, argument, False))

    def set_state(self, typename: str, id: str, **values: Any) -> None:
        """Store values for an address as if an invocation had written them now (TTLs start
        now), e.g. ``set_state("example/counter", "ann", visits=3)``."""
        fn = self._require(typename)
        address = Address(typename, id)
        for name, value in values.items():
            spec = fn.spec.specs.get(name)
            if spec is None:
                raise HarnessError(
                    f"'{name}' is not a registered ValueSpec for the function '{typename}'"
                )
            self._state.set(address, fn, name, spec.type.serialize(value), self.clock.now_ms)

    # --- running ------------------------------------------------------------------------------

    def run(self, max_steps: int | None = None) -> int:
        """Process queued messages until none is left (quiescence), and return how many.

        Delayed messages that are due at the current virtual time fire first at every step,
        joining the end of the queue; ``run`` never moves the clock (see ``advance``). With
        ``max_steps``, stop after that many invocations even if more are queued. Raises
        ``HarnessError`` when more than ``step_limit`` invocations would run.
        """
        if max_steps is not None:
            return self._run(max_steps, strict=False)
        return self._run(self._step_limit, strict=True)

    def advance(self, delta: timedelta | int) -> int:
        """Move the virtual clock forward by ``delta`` (a timedelta or milliseconds).

        First runs what is queued at the current time. Then the clock moves to each due time
        in turn, up to ``now + delta``: the timers due then fire (in due order, ties in
        scheduling order) and everything runs to quiescence before the clock moves on, so a
        delayed message scheduled by a delayed message also fires if it is due in time. TTL
        expiry is judged at the time the clock stands at. Returns how many invocations ran.
        """
        ms = delta // timedelta(milliseconds=1) if isinstance(delta, timedelta) else delta
        if not isinstance(ms, int) or isinstance(ms, bool):
            raise TypeError(f"advance() takes a timedelta or milliseconds, got {delta!r}")
        if ms < 0:
            raise ValueError(f"advance() cannot move the clock backwards ({delta!r})")
        end = self.clock.now_ms + ms
        limit = self._step_limit
        steps = self._run(limit, strict=True)
        while True:
            due = self._timers.next_due()
            if due is None or due > end:
                break
            self.clock._set(max(due, self.clock.now_ms))
            steps += self._run(None if limit is None else limit - steps, strict=True, done=steps)
        self.clock._set(end)
        return steps

    def close(self) -> None:
        """Close the event loop of ``async`` functions (also done when the harness is freed)."""
        if self._close_loop is not None:
            self._close_loop()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- inspection ---------------------------------------------------------------------------

    def state(self, typename: str, id: str) -> dict[str, Any]:
        """The current values of an address, decoded by their ValueSpec types, in declaration
        order. Missing, deleted and expired values are left out."""
        fn = self._require(typename)
        cells = self._state.live(Address(typename, id), fn, self.clock.now_ms) or _NO_CELLS
        return {
            name: spec.type.deserialize(cells[name].data)
            for name, spec in fn.spec.specs.items()
            if name in cells
        }

    def raw_state(self, typename: str, id: str) -> dict[str, bytes]:
        """The current values of an address as stored bytes (what the changelog would hold)."""
        fn = self._require(typename)
        cells = self._state.live(Address(typename, id), fn, self.clock.now_ms) or _NO_CELLS
        return {name: cells[name].data for name in fn.spec.specs if name in cells}

    def expires_at(self, typename: str, id: str) -> dict[str, int | None]:
        """When each current value of an address expires (virtual ms; None: never)."""
        fn = self._require(typename)
        cells = self._state.live(Address(typename, id), fn, self.clock.now_ms) or _NO_CELLS
        return {name: cells[name].expire_at for name in fn.spec.specs if name in cells}

    def egress(
        self, egress_typename: str | None = None, *, topic: str | None = None
    ) -> list[EgressRecord]:
        """Egress records written so far, in the order they were written; optionally only
        those of one egress id and/or topic."""
        return [
            r
            for r in self._egress
            if (egress_typename is None or r.egress == egress_typename)
            and (topic is None or r.topic == topic)
        ]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """Dead letters so far, in order."""
        return list(self._dead_letters)

    @property
    def invocations(self) -> list[InvocationRecord]:
        """Every invocation processed so far, dead-lettered ones included, in order."""
        return list(self._invocations)

    def timers(self, typename: str | None = None, id: str | None = None) -> list[PendingTimer]:
        """Pending delayed messages in firing order; optionally only those a function type
        (and id) scheduled."""
        return [
            PendingTimer(
                t.due_ms,
                t.sender,
                t.message.target,
                t.token,
                t.message.typed_value.typename,
                t.message.typed_value.value,
            )
            for t in self._timers.pending()
            if (typename is None or t.sender.typename == typename)
            and (id is None or t.sender.id == id)
        ]

    @property
    def queued(self) -> int:
        """How many messages wait for ``run()`` (delayed messages not yet due excluded)."""
        return len(self._queue)

    def _run(self, limit: int | None, strict: bool, done: int = 0) -> int:
        queue, timers, clock = self._queue, self._timers, self.clock
        steps = 0
        while True:
            if timers.is_due(clock.now_ms):
                self._fire_due()
            if not queue:
                return steps
            if limit is not None and steps >= limit:
                if not strict:
                    return steps
                raise HarnessError(
                    f"{done + steps} invocations ran and {len(queue)} are still queued: do "
                    "functions message each other in a loop? Pass step_limit=None (or a larger "
                    "limit) to Harness if that many are expected"
                )
            self._invoke(queue.popleft())
            steps += 1

    # --- one invocation -----------------------------------------------------------------------

    def _invoke(self, item: _Queued) -> None:
        target, caller, argument, delayed = item
        now = self.clock.now_ms
        try:
            fn = self._info[target.typename]
        except KeyError:
            fn = self._lookup(target.typename)
        if fn is None:
            self._dead_invocation(
                item,
                dl.UNKNOWN_FUNCTION,
                f"no function is registered for type '{target.typename}'",
            )
            return
        spec = fn.spec
        cells = self._state.live(target, fn, now)
        found = cells if cells is not None else _NO_CELLS

        def read(name: str) -> bytes | None:
            cell = found.get(name)
            return None if cell is None else cell.data

        storage = storage_class(target.typename, spec.specs)(read)
        context = Context(target, caller, storage)
        try:
            result = spec.fun(context, Message(target, argument))
            if spec.is_async or asyncio.iscoroutine(result):
                self._await(result)
            fx = Effects(
                target,
                fn.layout,
                storage_mutations(storage),
                context.outgoing,
                context.egress,
                context.delayed,
            )
            self._effects.check(fx, 0)
        except HarnessError:
            raise
        except Exception as e:
            self._dead_invocation(item, *dl.function_failure(e, target))
            return
        self._effects.apply(fx, 0, now)
        self._invocations.append(
            InvocationRecord(
                len(self._invocations) + 1,
                now,
                target,
                caller,
                argument.typename,
                argument.value,
                None,
                delayed,
            )
        )

    def _playground_record(self, value: TypedValue) -> tuple[str, bytes | None, bytes]:
        assert self._playground_topics is not None
        topic, payload = decode_egress_record(self._playground_topics, value)
        return topic, None, payload

    def _fire_due(self) -> None:
        queue = self._queue
        for timer in self._timers.pop_due(self.clock.now_ms):
            message = timer.message
            queue.append(_Queued(message.target, timer.sender, message.typed_value, True))

    def _await(self, awaitable: Awaitable[Any]) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise HarnessError(
                "an async function cannot run while an event loop is already running in this "
                "thread: call the harness from a plain (not async) test"
            )
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.new_event_loop()
            self._close_loop = weakref.finalize(self, loop.close)
        loop.run_until_complete(awaitable)

    # --- helpers ------------------------------------------------------------------------------

    def _lookup(self, typename: str) -> FunctionInfo | None:
        spec = self._functions.for_typename(typename)
        info = None if spec is None else FunctionInfo.of(spec)
        self._info[typename] = info
        return info

    def _require(self, typename: str) -> FunctionInfo:
        fn = self._info.get(typename) or self._lookup(typename)
        if fn is None:
            registered = ", ".join(self._functions.typenames()) or "none"
            raise HarnessError(
                f"no function is registered for type '{typename}' (registered: {registered})"
            )
        return fn

    def _dead_invocation(
        self, item: _Queued, reason: str, text: str, exc: BaseException | None = None
    ) -> None:
        target, caller, argument, delayed = item
        now = self.clock.now_ms
        self._dead_letters.append(
            DeadLetter(
                reason,
                text,
                target,
                caller,
                argument.typename,
                argument.value,
                target.id.encode(),
                None,
                exc,
                now,
            )
        )
        self._invocations.append(
            InvocationRecord(
                len(self._invocations) + 1,
                now,
                target,
                caller,
                argument.typename,
                argument.value,
                reason,
                delayed,
            )
        )
        log.debug("dead letter reason=%s address=%s: %s", reason, target, text)

    def _dead_ingress(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        text: str,
        exc: BaseException | None = None,
    ) -> None:
        self._dead_letters.append(
            DeadLetter(
                reason,
                text,
                value=value,
                key=key,
                source_topic=topic,
                exception=exc,
                at_ms=self.clock.now_ms,
            )
        )
        log.debug("dead letter reason=%s topic=%s: %s", reason, topic, text)


def _routes(
    module: ModuleSpec, functions: StatefulFunctions
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Ingress topic → (valueType, targets); every target must be registered."""
    routes = {}
    registered = set(functions.typenames())
    for ingress in module.ingresses:
        for t in ingress.topics:
            for target in t.targets:
                if target not in registered:
                    raise ConfigError(
                        f"ingress '{ingress.id}' topic '{t.topic}' targets '{target}', "
                        "but no function of that type is registered (registered: "
                        f"{', '.join(sorted(registered)) or 'none'})"
                    )
            routes[t.topic] = (t.value_type, tuple(t.targets))
    return routes


def _merge(
    functions: StatefulFunctions | Iterable[StatefulFunctions] | None, module: ModuleSpec | None
) -> StatefulFunctions:
    if functions is None:
        if module is None or not module.embedded:
            raise ConfigError(
                "the harness needs functions: pass a StatefulFunctions, or a module whose "
                "io.kstatefun.v1/embedded document lists them"
            )
        return load_functions(module.embedded)
    if isinstance(functions, StatefulFunctions):
        return functions
    merged = StatefulFunctions()
    for f in functions:
        if not isinstance(f, StatefulFunctions):
            raise ConfigError(f"expected StatefulFunctions, got {type(f).__name__}")
        merged.include(f)
    return merged


def _build(typename: str, id: str, value: Any, value_type: Type | str | None) -> Message:
    if value is None:
        raise TypeError("send() needs a value: a message without a value cannot be sent")
    if isinstance(value_type, str):
        split_typename(value_type)
        if not isinstance(value, bytes | bytearray):
            raise TypeError(
                f"with a type name as value_type, value must be bytes, got {type(value).__name__}"
            )
        if not isinstance(id, str) or not id:
            raise ValueError(f"target id must be a non-empty str, got {id!r}")
        split_typename(typename)
        return Message(Address(typename, id), TypedValue(value_type, bytes(value)))
    if value_type is None:
        if isinstance(value, bool):
            value_type = BoolType
        elif isinstance(value, int):
            value_type = IntType
        elif isinstance(value, float):
            value_type = FloatType
        elif isinstance(value, str):
            value_type = StringType
        else:
            raise TypeError(
                f"cannot tell the type of a {type(value).__name__} value: pass value_type= "
                "(a Type, or a type name for bytes)"
            )
    return message_builder(typename, id, value=value, value_type=value_type)
