"""A minimal stand-in for the runtime's remote dispatch, for the tests: state in a dict.

It wires the remote pieces the way the worker does (see the report in the remote issue): the
batcher decides what to send, the registry what states to attach, the transport sends, and
completions are applied on the caller's thread, one address at a time, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kstatefun.config.module import HttpTransport
from kstatefun.model import Address, TypedValue
from kstatefun.remote import (
    AddressBatcher,
    Batch,
    BatchItem,
    MissingStates,
    RemoteCallError,
    RemoteProtocolError,
    RemoteResult,
    RemoteStateRegistry,
    RemoteTransport,
    encode_batch,
)


@dataclass
class Outcome:
    batch: Batch
    result: RemoteResult | None = None
    error: Exception | None = None
    handshakes: int = 0


@dataclass
class RemoteDriver:
    transport: RemoteTransport
    url_for: Callable[[str], str]
    settings: HttpTransport = HttpTransport(call_ms=10_000)
    batch_limit: int = 1000
    max_in_flight: int = 1000
    registry: RemoteStateRegistry = field(default_factory=RemoteStateRegistry)
    state: dict[tuple[Address, str], tuple[str, bytes]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    peak_in_flight: int = 0

    def __post_init__(self) -> None:
        self.batcher = AddressBatcher(self.batch_limit, max_in_flight=self.max_in_flight)
        self._sent: dict[int, tuple[Batch, list[str], int]] = {}

    def offer(self, address: Address, argument: TypedValue, caller: Address | None = None) -> None:
        batch = self.batcher.offer(address, BatchItem(caller, argument, ref=argument))
        if batch is not None:
            self._send(batch, 0)

    def _send(self, batch: Batch, handshakes: int) -> None:
        address = batch.address

        def read(name: str) -> bytes | None:
            held = self.state.get((address, name))
            return None if held is None else held[1]

        states = self.registry.attach(address.typename, read)
        body = encode_batch(address, states, batch.invocations())
        self._sent[batch.id] = (batch, [s.name for s in states], handshakes)
        self.transport.submit(batch.id, self.url_for(address.typename), body, self.settings)
        self.peak_in_flight = max(self.peak_in_flight, self.transport.outstanding)

    def _handle(self, request_id: int, reply: object, error: RemoteCallError | None) -> None:
        batch, attached, handshakes = self._sent.pop(request_id)
        address = batch.address
        outcome = Outcome(batch, handshakes=handshakes)
        try:
            if error is not None:
                raise error
            if isinstance(reply, MissingStates):
                self.registry.register(address.typename, reply.specs, attached)
                self._send(batch, handshakes + 1)  # the same batch again, now with the states
                return
            assert isinstance(reply, RemoteResult)
            self.registry.check_mutations(address.typename, reply.mutations)
            for m in reply.mutations:
                if m.value is None:
                    self.state.pop((address, m.name), None)
                else:
                    self.state[(address, m.name)] = (m.typename, m.value)
            outcome.result = reply
        except (RemoteCallError, RemoteProtocolError) as e:
            outcome.error = e  # the runtime dead-letters every invocation of the batch
        self.outcomes.append(outcome)
        following = self.batcher.complete(address)
        if following is not None:
            self._send(following, 0)

    def run_until_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.batcher.idle:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"still busy after {timeout} s: in flight {self.batcher.in_flight_count()}, "
                    f"queued {self.batcher.pending_count()}"
                )
            self.transport.wait(0.1)
            for c in self.transport.drain():
                self._handle(c.request_id, c.reply, c.error)

    def outcomes_of(self, address: Address) -> list[Outcome]:
        return [o for o in self.outcomes if o.batch.address == address]
