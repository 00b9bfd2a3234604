"""A remote call's ``call`` budget spans the transactions that abort it (runtime/remote.py):
the worker's side, RemoteInvoker with the real dispatcher, against a local endpoint, with the
transaction cut short (``abort``) and its records offered again round after round, as the
worker does when calls outlast half the transaction timeout."""

from __future__ import annotations

import time

from aiohttp import web

from kstatefun.remote.proto import request_reply_pb2 as pb
from kstatefun.wire.avro import decode_dead_letter
from tests.fakes import Record, Txn
from tests.fuzz.test_fuzz_remote import make_invoker, to_fn

BUDGET_MS = 1500
ROUND_S = 0.4  # how long each transaction lets the calls run before it aborts
MAX_ROUNDS = 60  # a budget that restarted with each round would never be spent


def _ok_reply() -> bytes:
    reply = pb.FromFunction()
    out = reply.invocation_result.outgoing_messages.add()
    out.target.namespace, out.target.type, out.target.id = "rm", "sink", "x"
    out.argument.typename, out.argument.has_value, out.argument.value = "t/x", True, b"ok"
    return reply.SerializeToString()


OK = _ok_reply()


async def fail_on_boom(request: web.Request) -> web.Response:
    if b"boom" in await request.read():
        return web.Response(status=500, text="Traceback (most recent call last): boom")
    return web.Response(body=OK, content_type="application/octet-stream")


def dead_letters(txn: Txn) -> list[dict]:
    return [decode_dead_letter(v) for _, _, v, *_ in txn.of("app-dead-letters")]


def run_rounds(invoker, dispatcher, txn, arguments: list[bytes]) -> tuple[int, list]:
    """Offer the records, let the calls run for a round, abort; again, until a dead letter is
    written. Returns the number of rounds and what the last one produced; it was not aborted
    and ran to idle."""
    for rounds in range(1, MAX_ROUNDS + 1):
        start = len(txn.produced)
        for offset, argument in enumerate(arguments):
            record = Record("app-invocations", 0, offset, b"a", b"")
            dispatcher.invoke(record, to_fn("a", argument), None)
        deadline = time.monotonic() + ROUND_S
        while time.monotonic() < deadline and not dead_letters(txn):
            invoker.wait(0.02)
            invoker.poll()
        if dead_letters(txn):
            end = time.monotonic() + 30
            while not invoker.idle:
                assert time.monotonic() < end, "calls still in flight after the dead letter"
                invoker.wait(0.05)
                invoker.poll()
            invoker.settled()  # the transaction commits
            return rounds, txn.produced[start:]
        invoker.abort()
    raise AssertionError(f"no dead letter after {MAX_ROUNDS} aborted transactions")


def test_a_call_that_keeps_failing_spends_its_budget_across_aborts(rogue):
    invoker, dispatcher, txn = make_invoker(rogue.route("b1/fn", fail_on_boom), BUDGET_MS)
    try:
        rounds, _ = run_rounds(invoker, dispatcher, txn, [b"boom"])
    finally:
        invoker.close()
    assert rounds > 1  # the budget outlasted a transaction: the call continued in the next
    (letter,) = dead_letters(txn)
    assert letter["reason"] == "remote-error" and letter["source_offset"] == 0
    assert f"within the call budget of {BUDGET_MS} ms" in letter["message"]
    assert "HTTP 500" in letter["message"]
    # the status and the start of the body, for `dead-letters tail`
    headers = dict(txn.of("app-dead-letters")[0][4])
    assert headers["kstatefun.http-status"] == b"500"
    assert headers["kstatefun.detail"] == b"HTTP 500\nTraceback (most recent call last): boom"
    assert invoker._ledger == {}  # what the aborts noted goes with the commit


def test_batch_mates_of_a_failing_call_get_a_budget_of_their_own(rogue):
    """A good invocation queued behind the failing one (their batch is cut short by aborts)
    is not dead-lettered with it: it goes alone with its own budget and is applied."""
    invoker, dispatcher, txn = make_invoker(rogue.route("b2/fn", fail_on_boom), BUDGET_MS)
    try:
        _, committed = run_rounds(invoker, dispatcher, txn, [b"good0", b"boom", b"good2"])
    finally:
        invoker.close()
    assert [d["source_offset"] for d in dead_letters(txn)] == [1]
    # the committed transaction: both good invocations' results and the one dead letter
    assert sorted(topic for topic, *_ in committed) == [
        "app-dead-letters",
        "app-invocations",
        "app-invocations",
    ]
    assert invoker._ledger == {}
