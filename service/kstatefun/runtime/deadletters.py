"""Dead letters: every input that cannot be processed becomes a record on <app>-dead-letters,
written in the same transaction as the offsets that skip it (docs/architecture.md §9).

Besides the Avro record, headers carry what does not fit one line: ``kstatefun.detail`` (a
function error's formatted traceback, a remote error's response body start, cut to
``DETAIL_BYTES``) and ``kstatefun.http-status`` (a remote error's last HTTP status). Headers
leave the record's schema, and so every dead letter written before, as it is."""

from __future__ import annotations

import logging
import time
import traceback
from typing import TYPE_CHECKING

from confluent_kafka import Message

from kstatefun.errors import DecodeError
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
DETAIL_HEADER = "kstatefun.detail"
STATUS_HEADER = "kstatefun.http-status"
# a detail keeps its end (a traceback's innermost frames and the exception) within this size
DETAIL_BYTES = 4096
_CUT = "... (cut)\n"


class Rejected(Exception):
    """An invocation's effects cannot be applied (runtime/effects.py); carries the dead-letter
    reason. Not the function's exception: a dead letter for it names no exception type."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def reason_of(error: BaseException, otherwise: str) -> tuple[str, BaseException | None]:
    """The dead-letter reason for an invocation that failed with ``error`` (``otherwise`` for
    an error of the function or endpoint itself), and the exception the dead letter reports."""
    if isinstance(error, Rejected):
        return error.reason, None
    if isinstance(error, DecodeError):
        return UNDECODABLE_VALUE, error
    return otherwise, error


def function_failure(
    error: BaseException, target: Address
) -> tuple[str, str, BaseException | None]:
    """(reason, message, exception to report) of an embedded invocation of ``target`` that
    failed with ``error``, in the runtime and in the test harness alike."""
    reason, exc = reason_of(error, FUNCTION_ERROR)
    if reason != FUNCTION_ERROR:
        return reason, str(error), exc
    return reason, f"function '{target}' raised {type(error).__name__}: {error}", exc


def detail_of(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` (a function's error), at most ``DETAIL_BYTES``."""
    return cut_detail("".join(traceback.format_exception(exc)))


def cut_detail(text: str) -> str:
    data = text.encode()
    if len(data) <= DETAIL_BYTES:
        return text
    return _CUT + data[len(_CUT) - DETAIL_BYTES :].decode("utf-8", "ignore")


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
        detail: str | None = None,
        http_status: int | None = None,
    ) -> None:
        """Dead-letter ``source``; ``value`` defaults to the record's own value. ``detail``
        defaults to the traceback of a function error's ``exc``."""
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
            # a direct invocation's partition() is its target's (runtime/dispatcher.py)
            "source_partition": getattr(source, "source_partition", source.partition)(),
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
        if detail is None and reason == FUNCTION_ERROR and exc is not None:
            detail = detail_of(exc)
        detail = cut_detail(detail) if detail else None
        headers = _headers(reason, detail, http_status)
        self._txn.produce(self._topic, encode_dead_letter(record), key, headers=headers)
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if target is not None:
            k = (target.typename, reason)
            self._failures[k] = self._failures.get(k, 0) + 1
        log.warning(
            "dead letter reason=%s topic=%s partition=%d offset=%d address=%s: %s%s",
            reason,
            source.topic(),
            source.partition(),
            source.offset(),
            target or "-",
            message,
            f"\n{detail.rstrip()}" if detail else "",
        )


def _headers(reason: str, detail: str | None, http_status: int | None) -> list[tuple[str, bytes]]:
    headers = [(REASON_HEADER, reason.encode())]
    if detail:
        headers.append((DETAIL_HEADER, detail.encode()))
    if http_status is not None:
        headers.append((STATUS_HEADER, str(http_status).encode()))
    return headers
