"""Remote invocations: the worker's side of StateFun's request-reply protocol.

Invocations of a function type served by an HTTP endpoint (module.yaml) go to the per-address
batcher instead of running in-process; at most one request per address is in flight and what
arrives meanwhile goes as the next batch. A completed call's reply becomes one ``Effects``
(runtime/effects.py), checked and applied on the worker's thread, into the open transaction,
by the same ``EffectsApplier`` as an embedded invocation's (through ``EffectsHost``). The
worker commits only when nothing is in flight, so every consumed record's effects are in the
transaction that commits its offset; an abort cancels what is in flight (the rewound records
are offered again).

A call cut short by an abort after an attempt failed is not started over: its progress (when
its first attempt started, how many attempts it made, its last failure) is kept by the origin
of its invocation, which is the same when the abort replays the record, and the replayed call
continues it. So a call that keeps failing ends as one ``remote-error`` dead letter once its
``call`` budget is spent, whatever the transaction timeout (docs/architecture.md, "Remote
functions").
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any, Protocol

from confluent_kafka import Message as KafkaMessage

from kstatefun.config.module import ModuleSpec
from kstatefun.errors import DecodeError
from kstatefun.model import Address, TypedValue
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.remote import (
    AddressBatcher,
    Batch,
    BatchItem,
    CallProgress,
    DelayedCancel,
    ExpireMode,
    MissingStates,
    RemoteCallError,
    RemoteProtocolError,
    RemoteResult,
    RemoteStateRegistry,
    RemoteTransport,
    StateSpec,
    build_ssl_context,
    encode_batch,
)
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.deadletters import DeadLetters, Rejected
from kstatefun.runtime.effects import Effects, StateLayout, timer_origin
from kstatefun.sdk.context import CancelDelayed, DelayedMessage
from kstatefun.sdk.messages import EgressMessage, Message
from kstatefun.state.store import StateStore

log = logging.getLogger(__name__)

# how long past the longest call budget a cut-short call's progress is kept for its replay
_KEEP_PROGRESS_S = 60.0


def _origin(ref: Any) -> Hashable:
    """An invocation's identity that a replay keeps: its record (topic, partition, offset), or
    a direct invocation's origin (runtime/dispatcher.py, LocalInvocation)."""
    origin = getattr(ref, "origin", None)
    return origin if origin is not None else (ref.topic(), ref.partition(), ref.offset())


class EffectsHost(Protocol):
    """What the remote invoker needs of the worker's dispatcher (runtime/dispatcher.py): the
    state to attach, where dead letters and metrics go, and the one check and apply."""

    store: StateStore
    metrics: WorkerMetrics
    dead_letters: DeadLetters

    def check(self, fx: Effects, partition: int) -> None: ...

    def apply(self, fx: Effects, partition: int, now_ms: int, origin: str = "") -> None: ...


def remote_layout(specs: Iterable[StateSpec]) -> StateLayout:
    """The ``StateLayout`` of a remote function type's registered states."""
    specs = list(specs)
    ttl = {
        s.name: s.expire_after_ms
        for s in specs
        if s.expire_mode != ExpireMode.NONE and s.expire_after_ms
    }
    return StateLayout(
        {s.name: s.typename for s in specs},
        ttl,
        tuple(
            (s.name, ttl[s.name])
            for s in specs
            if s.expire_mode == ExpireMode.AFTER_INVOKE and s.name in ttl
        ),
    )


class RemoteInvoker:
    def __init__(
        self,
        module: ModuleSpec,
        dispatcher: EffectsHost,
        max_in_flight: int = 256,
        max_backlog: int = 10_000,
        target_s: float = 1.0,
        initial_budget: int = 1_000,
        transaction_timeout_ms: int | None = None,
    ) -> None:
        self._module = module
        self._dispatcher = dispatcher
        for endpoint in module.endpoints:
            build_ssl_context(endpoint.transport)  # a bad TLS path stops the worker at start
        self._batcher = AddressBatcher(
            self._batch_limit, max_in_flight=max_in_flight, max_backlog=max_backlog
        )
        self._registry = RemoteStateRegistry()
        self._transport: RemoteTransport | None = None
        self._sent: dict[int, tuple[Batch, list[str], CallProgress]] = {}
        self._served: dict[str, bool] = {}
        # a failed batch of several invocations is retried one invocation at a time, so only
        # the invocation that fails becomes a dead letter (StateFun fails the whole batch)
        self._isolating: dict[Address, deque[BatchItem]] = {}
        self._single_ids = itertools.count(1 << 48)
        # Calls cut short by an abort, by the origin of their invocation: (when noted, the
        # progress to continue), or (when noted, None) for an invocation that was in a batch of
        # several: it goes alone next time, with a budget of its own (the batch's failure or
        # slowness may not be its own). Entries go when their invocation's transaction commits.
        self._ledger: dict[Hashable, tuple[float, CallProgress | None]] = {}
        self._finished: list[Hashable] = []  # origins done in the open transaction
        self._keep_s = (
            max((e.transport.call_ms for e in module.endpoints), default=0) / 1000
            + _KEEP_PROGRESS_S
        )
        if transaction_timeout_ms is not None:
            self._explain_budgets(transaction_timeout_ms)
        # Invocations one transaction may offer: sized from the rate the endpoints completed
        # the last transaction's calls at, so that a transaction (which commits only when its
        # calls are done) lasts about ``target_s`` however slow the functions are.
        self.budget = initial_budget
        self._target_s = target_s
        self._offered = 0
        self._first_offer = 0.0

    def _explain_budgets(self, transaction_timeout_ms: int) -> None:
        limit_ms = transaction_timeout_ms // 2
        for endpoint in self._module.endpoints:
            call_ms = endpoint.transport.call_ms
            if call_ms <= limit_ms:
                continue
            log.warning(
                "endpoint functions=%s: its call budget (%d ms) is longer than %d ms, half of "
                "transaction_timeout_ms (%d ms) and how long a transaction waits for its remote "
                "calls. A call still running then is cut short with its transaction: one "
                "whose attempts keep failing continues in the next transaction and holds back "
                "this worker's other records until its budget is spent and it becomes a "
                "remote-error dead letter; one whose attempt needs more than %d ms starts over "
                "with every transaction, never succeeds, and holds them back meanwhile. "
                "To let one attempt use the whole budget, set transaction_timeout_ms to at "
                "least %d (2 x call; the brokers' transaction.max.timeout.ms permitting) or "
                "lower the endpoint's call timeout",
                endpoint.functions,
                call_ms,
                limit_ms,
                transaction_timeout_ms,
                limit_ms,
                2 * call_ms,
            )

    def _batch_limit(self, typename: str) -> int:
        endpoint = self._module.endpoint_for(typename)
        return endpoint.max_num_batch_requests if endpoint is not None else 1000

    def serves(self, typename: str) -> bool:
        served = self._served.get(typename)
        if served is None:
            served = self._served[typename] = self._module.endpoint_for(typename) is not None
        return served

    @property
    def idle(self) -> bool:
        return self._batcher.idle

    @property
    def saturated(self) -> bool:
        """Consume nothing more for now: the batcher is full, or the open transaction has
        offered its budget of invocations."""
        return self._offered >= self.budget or self._batcher.saturated

    @property
    def room(self) -> int:
        """How many more records the open transaction may consume (at least 1)."""
        return max(1, self.budget - self._offered)

    def settled(self) -> None:
        """The open transaction's calls are all done and it is about to commit: size the next
        transaction's budget from the rate they completed at."""
        if self._offered:
            elapsed = max(time.monotonic() - self._first_offer, 1e-3)
            rate = self._offered / elapsed
            self.budget = max(1, min(self._batcher.max_pending, round(rate * self._target_s)))
        self._offered = 0
        if self._ledger:
            for origin in self._finished:
                self._ledger.pop(origin, None)
            self._forget_stale()
        self._finished.clear()

    def too_slow(self) -> int:
        """The open transaction's calls did not finish in time (it will be aborted): offer at
        most half as many next time; returns the new budget."""
        self.budget = max(1, min(self.budget, self._offered) // 2)
        return self.budget

    def in_flight(self) -> int:
        return 0 if self._transport is None else self._transport.outstanding

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- offering and sending -----------------------------------------------------------------

    def offer(
        self, record: KafkaMessage, target: Address, caller: Address | None, argument: TypedValue
    ) -> None:
        if not self._offered:
            self._first_offer = time.monotonic()
        self._offered += 1
        batch = self._batcher.offer(target, BatchItem(caller, argument, ref=record))
        if batch is not None:
            self._send(batch)

    def _send(self, batch: Batch, progress: CallProgress | None = None) -> None:
        """Send ``batch``; ``progress``: continue that call (a resend after the missing-state
        handshake) instead of starting one."""
        if self._transport is None:
            self._transport = RemoteTransport()
        if progress is None and self._ledger:
            batch, progress = self._resume(batch)
        address = batch.address
        partition = batch.items[0].ref.partition()
        store = self._dispatcher.store
        key = store.key_of(address)
        now_ms = int(time.time() * 1000)

        def read(name: str) -> bytes | None:
            return store.read(partition, key, name, now_ms)

        states = self._registry.attach(address.typename, read)
        endpoint = self._module.endpoint_for(address.typename)
        assert endpoint is not None
        body = encode_batch(address, states, batch.invocations())
        progress = self._transport.submit(
            batch.id, endpoint.url_for(address.typename), body, endpoint.transport, progress
        )
        self._sent[batch.id] = (batch, [s.name for s in states], progress)

    def _resume(self, batch: Batch) -> tuple[Batch, CallProgress | None]:
        """``batch`` about to be sent while calls cut short by an abort are noted: a single
        invocation continues its call; a batch holding one of them is sent one invocation at a
        time, so that each continues its own."""
        ledger = self._ledger
        if len(batch.items) > 1:
            if not any(_origin(item.ref) in ledger for item in batch.items):
                return batch, None
            queue = deque(batch.items)
            self._isolating[batch.address] = queue
            batch = Batch(next(self._single_ids), batch.address, [queue.popleft()])
        noted = ledger.get(_origin(batch.items[0].ref))
        return batch, None if noted is None else noted[1]

    def _forget_stale(self) -> None:
        """Progress of invocations that were not replayed here (their partition moved to
        another worker) is dropped once no budget could still be running."""
        oldest = time.monotonic() - self._keep_s
        for origin in [o for o, (noted, _) in self._ledger.items() if noted < oldest]:
            del self._ledger[origin]

    # --- completions --------------------------------------------------------------------------

    def poll(self) -> int:
        """Apply every completed request; returns how many completed."""
        if self._transport is None:
            return 0
        done = self._transport.drain()
        for c in done:
            sent = self._sent.pop(c.request_id, None)
            if sent is None:
                continue  # cancelled by an abort
            batch, attached, progress = sent
            address = batch.address
            metrics = self._dispatcher.metrics
            metrics.remote_call_latency.observe(c.elapsed_ms / 1000)
            metrics.remote_retries += max(0, c.attempts - 1)
            if c.error is not None:
                metrics.remote_failures += 1
            try:
                if c.error is not None:
                    raise c.error
                if isinstance(c.reply, MissingStates):
                    self._registry.register(address.typename, c.reply.specs, attached)
                    self._send(batch, progress)  # the same call again, now with the states
                    continue
                assert isinstance(c.reply, RemoteResult)
                self._apply(batch, c.reply)
                self._done(batch)
            except (RemoteCallError, RemoteProtocolError, Rejected, DecodeError) as e:
                if len(batch.items) > 1:
                    log.info(
                        "remote batch failed, retrying its %d invocations one by one "
                        "address=%s: %s",
                        len(batch.items),
                        address,
                        e,
                    )
                    self._isolating[address] = deque(batch.items)
                else:
                    self._dead_letter(batch, e)
                    self._done(batch)
            isolating = self._isolating.get(address)
            if isolating:
                self._send(Batch(next(self._single_ids), address, [isolating.popleft()]))
                continue
            self._isolating.pop(address, None)
            following = self._batcher.complete(address)
            if following is not None:
                self._send(following)
        return len(done)

    def _done(self, batch: Batch) -> None:
        if self._ledger:  # their progress goes once the open transaction commits
            self._finished.extend(_origin(item.ref) for item in batch.items)

    def wait(self, timeout: float) -> None:
        if self._transport is not None and self._transport.outstanding:
            self._transport.wait(timeout)

    def wait_idle(self, timeout_s: float | None = None) -> None:
        """Block until nothing is in flight or queued (before a commit)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._batcher.idle:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("remote requests still in flight")
            self.wait(0.05)
            self.poll()

    def abort(self) -> None:
        """The transaction aborted: forget everything in flight; the rewound records come
        again and are offered anew, and the calls cut short after a failed attempt continue
        where they were. A call whose first attempt was still waiting starts over: nothing
        failed yet, and the wait is most likely the endpoint working through this worker's
        own backlog (the halved transaction budget shortens it)."""
        now = time.monotonic()
        ledger = self._ledger
        if self._transport is not None:
            for request_id, (batch, _, progress) in self._sent.items():
                self._transport.cancel(request_id)
                if not progress.failed:
                    continue
                if len(batch.items) == 1:
                    ledger[_origin(batch.items[0].ref)] = (progress.started, progress)
                else:
                    for item in batch.items:
                        ledger.setdefault(_origin(item.ref), (now, None))
        for queue in self._isolating.values():  # failed in a batch, not yet retried alone
            for item in queue:
                ledger.setdefault(_origin(item.ref), (now, None))
        self._finished.clear()
        if ledger:
            self._forget_stale()
        self._sent.clear()
        self._isolating.clear()
        self._batcher.clear()
        self._offered = 0

    # --- applying -----------------------------------------------------------------------------

    def _apply(self, batch: Batch, reply: RemoteResult) -> None:
        """Check and apply one reply's effects; raises (nothing applied) if they cannot be."""
        address = batch.address
        ftype = address.typename
        registry = self._registry
        registry.check_mutations(ftype, reply.mutations)
        fx = Effects(
            address,
            remote_layout(registry.specs(ftype)),
            {m.name: m.value for m in reply.mutations},
            [Message(o.target, o.argument) for o in reply.outgoing],
            [EgressMessage(e.egress, e.argument) for e in reply.egress],
            [
                CancelDelayed(op.cancellation_token)
                if isinstance(op, DelayedCancel)
                else DelayedMessage(
                    op.delay_ms, Message(op.target, op.argument), op.cancellation_token
                )
                for op in reply.delayed
            ],
            count=len(batch.items),
        )
        last = batch.items[-1].ref
        partition = last.partition()
        host = self._dispatcher
        host.check(fx, partition)
        host.apply(fx, partition, int(time.time() * 1000), timer_origin(last) if fx.delayed else "")

    def _dead_letter(self, batch: Batch, error: Exception) -> None:
        reason, exc = dl.reason_of(error, dl.REMOTE_ERROR)
        status = body = None
        if isinstance(error, RemoteCallError):
            status, body = error.status, error.body
        detail = None if status is None else f"HTTP {status}\n{body or ''}"
        for item in batch.items:
            record: Any = item.ref
            self._dispatcher.dead_letters.write(
                record,
                reason,
                f"remote function '{batch.address}': {error}",
                exc,
                target=batch.address,
                caller=item.caller,
                typename=item.argument.typename,
                value=item.argument.value,
                detail=detail,
                http_status=status,
            )
