"""Dead letters: every input that cannot be processed becomes a record on <app>-dead-letters,
written in the same transaction as the offsets that skip it (docs/architecture.md §9)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from confluent_kafka import Message

from kstatefun.model import Address
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.wire.avro import encode_dead_letter

if TYPE_CHECKING:
    from kstatefun.runtime.commit import Transaction

log = logging.getLogger(__name__)

NULL_KEY = "null-key"
INVALID_KEY = "invalid-key"
NULL_VALUE = "null-value"
UNDECODABLE_VALUE = "undecodable-value"
UNKNOWN_FUNCTION = "unknown-function"
UNKNOWN_EGRESS = "unknown-egress"
FUNCTION_ERROR = "function-error"
DUPLICATE_TOKEN = "duplicate-cancellation-token"
REMOTE_ERROR = "remote-error"
RECORD_TOO_LARGE = "record-too-large"

# a dead letter keeps at most this much of the original key and value (the original record
# stays on its topic, at the source offset the dead letter names)
_KEEP_BYTES = 64 * 1024

REASON_HEADER = "kstatefun.reason"


class DeadLetters:
    __slots__ = ("_topic", "_txn", "counts", "_failures")

    def __init__(self, topic: str, txn: Transaction, metrics: WorkerMetrics) -> None:
        self._topic = topic
        self._txn = txn
        self.counts = metrics.dead_letters
        self._failures = metrics.failures

    def write(
        self,
        source: Message,
        reason: str,
        message: str,
        exc: BaseException | None = None,
        target: Address | None = None,
        caller: Address | None = None,
        typename: str | None = None,
        value: bytes | None = None,
    ) -> None:
        """Dead-letter ``source``; ``value`` defaults to the record's own value."""
        key = source.key()
        if value is None and typename is None:
            value = source.value()
        note = ""
        if (key and len(key) > _KEEP_BYTES) or (value and len(value) > _KEEP_BYTES):
            note = f" (key/value cut to {_KEEP_BYTES} bytes in this dead letter)"
            key = key[:_KEEP_BYTES] if key else key
            value = value[:_KEEP_BYTES] if value else value
        record = {
            "reason": reason,
            "message": message + note,
            "exception_type": None if exc is None else type(exc).__qualname__,
            "source_topic": source.topic(),
            "source_partition": source.partition(),
            "source_offset": source.offset(),
            "target_type": None if target is None else target.typename,
            "target_id": None if target is None else target.id,
            "caller_type": None if caller is None else caller.typename,
            "caller_id": None if caller is None else caller.id,
            "typename": typename,
            "key": key,
            "value": value,
            "timestamp_ms": int(time.time() * 1000),
        }
        self._txn.produce(
            self._topic,
            encode_dead_letter(record),
            key,
            headers=[(REASON_HEADER, reason.encode())],
        )
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if target is not None:
            k = (target.typename, reason)
            self._failures[k] = self._failures.get(k, 0) + 1
        log.warning(
            "dead letter reason=%s topic=%s partition=%d offset=%d address=%s: %s",
            reason,
            source.topic(),
            source.partition(),
            source.offset(),
            target or "-",
            message,
        )
