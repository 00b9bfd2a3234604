"""Pending delayed messages (``send_after``): the committed timers per partition, the open
transaction's overlay, and a due-time index (docs/architecture.md, "Delayed messages").

A timer lives in its sender's partition of <app>-timers, keyed by (sender, token): tokens are
scoped to the sender. Keys and values are the timers topic's own bytes (wire/avro.py), as in
StateStore. Firing a timer writes its tombstone into the overlay, so the delivery and the
removal commit together; an abort re-arms it.
"""

from __future__ import annotations

from collections.abc import Iterator

from kstatefun.model import Address
from kstatefun.sdk.messages import Message
from kstatefun.state.deadlines import DeadlineQueue
from kstatefun.state.partitioned import PartitionedOverlay
from kstatefun.wire.avro import encode_timer_key, encode_timer_value, timer_due


class TimerStore(PartitionedOverlay):
    __slots__ = ("_due",)

    def __init__(self) -> None:
        super().__init__()
        self._due = DeadlineQueue()

    def _reindex(self, partition: int) -> None:
        self._due.rebuild(
            partition, [(timer_due(v), k) for k, v in self._committed[partition].items()]
        )

    def _drop_index(self, partition: int) -> None:
        self._due.drop(partition)

    def pending_count(self) -> int:
        return sum(len(t) for t in self._committed.values())

    # --- reads and writes ---------------------------------------------------------------------

    def schedule(self, partition: int, key: bytes, value: bytes, due_ms: int) -> None:
        self._write(partition, key, value)
        self._due.push(partition, due_ms, key)

    def cancel(self, partition: int, key: bytes) -> None:
        if self.get(partition, key) is not None:
            self._write(partition, key, None)

    # --- delayed messages by sender and token (encoded here, via wire/avro.py) ----------------

    def has_token(self, partition: int, sender: Address, token: str) -> bool:
        """Whether ``sender`` has a pending delayed message with cancellation ``token``."""
        key = encode_timer_key(sender.typename, sender.id, token, False)
        return self.get(partition, key) is not None

    def schedule_message(
        self,
        partition: int,
        sender: Address,
        token: str,
        anonymous: bool,
        due_ms: int,
        message: Message,
    ) -> None:
        """Schedule ``message`` from ``sender`` for ``due_ms``. ``anonymous``: ``token`` is no
        user's cancellation token but the runtime's unique id for a tokenless message."""
        target, argument = message.target, message.typed_value
        self.schedule(
            partition,
            encode_timer_key(sender.typename, sender.id, token, anonymous),
            encode_timer_value(
                due_ms, target.typename, target.id, argument.typename, argument.value
            ),
            due_ms,
        )

    def cancel_token(self, partition: int, sender: Address, token: str) -> None:
        """Cancel ``sender``'s pending delayed message with ``token``, if any."""
        self.cancel(partition, encode_timer_key(sender.typename, sender.id, token, False))

    def next_due(self) -> int | None:
        return self._due.next_deadline()

    def pop_due(self, now_ms: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(partition, key, value) of every timer due at ``now_ms``; each is tombstoned in the
        overlay as it is yielded."""
        for partition, due, key in self._due.pop_due(now_ms):
            if partition not in self._committed:
                continue
            value = self.get(partition, key)
            if value is None or timer_due(value) != due:
                continue  # cancelled, already fired, or re-scheduled (its own entry remains)
            self._write(partition, key, None)
            yield partition, key, value

    # --- transaction boundary (same contract as StateStore) -----------------------------------

    def apply_overlay(self, positions: dict[int, int] | None = None) -> None:
        super().apply_overlay(positions)
        self._due.commit()

    def discard_overlay(self) -> None:
        super().discard_overlay()
        self._due.abort()
