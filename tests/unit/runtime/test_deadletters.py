"""What a dead letter carries besides its Avro record: the detail and HTTP status headers."""

import logging

from tests.fakes import Record, Txn
from tests.unit.runtime.test_dispatcher import invoke, make

from kstatefun import StatefulFunctions
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime import deadletters as dl
from kstatefun.runtime.deadletters import DeadLetters


def headers_of(txn):
    (letter,) = txn.of("app-dead-letters")
    return {k: v.decode() for k, v in letter[4]}


def deep(n):
    if n:
        deeper(n - 1)  # two alternating frames: Python does not fold them into one line
    raise ValueError("at the bottom")


def deeper(n):
    deep(n)


def test_a_function_error_carries_its_traceback_in_the_dead_letter_and_the_log(caplog):
    functions = StatefulFunctions()

    @functions.bind("ns/f")
    def f(context, message):
        return 1 + "one"

    d, _, txn = make(functions)
    with caplog.at_level(logging.WARNING, logger="kstatefun.runtime.deadletters"):
        invoke(d)
    detail = headers_of(txn)[dl.DETAIL_HEADER]
    assert detail.startswith("Traceback (most recent call last):")
    assert 'test_deadletters.py", line' in detail and "in f" in detail
    assert 'return 1 + "one"' in detail
    assert detail.rstrip().endswith("TypeError: unsupported operand type(s) for +: 'int' and 'str'")
    assert dl.STATUS_HEADER not in headers_of(txn)
    assert "in f" in caplog.text and "Traceback" in caplog.text


def test_a_long_traceback_keeps_its_end_within_the_limit():
    functions = StatefulFunctions()

    @functions.bind("ns/f")
    def f(context, message):
        deep(200)

    d, _, txn = make(functions)
    invoke(d)
    detail = headers_of(txn)[dl.DETAIL_HEADER]
    assert len(detail.encode()) <= dl.DETAIL_BYTES
    assert detail.startswith("... (cut)\n")
    assert detail.rstrip().endswith("ValueError: at the bottom")


def test_a_remote_error_carries_its_status_and_body_and_input_errors_carry_none():
    txn = Txn()
    dlq = DeadLetters("app-dead-letters", txn, WorkerMetrics())
    record = Record("in", 0, 7, b"k", b"v")
    dlq.write(record, dl.REMOTE_ERROR, "failed", detail="HTTP 500\nboom", http_status=500)
    assert headers_of(txn) == {
        dl.REASON_HEADER: "remote-error",
        dl.DETAIL_HEADER: "HTTP 500\nboom",
        dl.STATUS_HEADER: "500",
    }
    txn = Txn()
    DeadLetters("app-dead-letters", txn, WorkerMetrics()).write(
        record, dl.UNDECODABLE_VALUE, "not JSON", ValueError("x")
    )
    assert headers_of(txn) == {dl.REASON_HEADER: "undecodable-value"}
