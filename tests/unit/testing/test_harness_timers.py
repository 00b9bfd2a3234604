"""Delayed messages and cancellation on the virtual clock (issue 4's semantics)."""

from datetime import timedelta

import pytest

from kstatefun import (
    Address,
    IntType,
    StatefulFunctions,
    ValueSpec,
    make_json_type,
    message_builder,
)
from kstatefun.testing import DUPLICATE_CANCELLATION_TOKEN, Harness, HarnessError, PendingTimer

OPS = make_json_type("t/Ops")

functions = StatefulFunctions()


@functions.bind("t/sched", specs=[ValueSpec("calls", IntType)])
def sched(context, message):
    """Runs a list of operations: ["after", ms, target id, text, token?], ["cancel", token],
    ["send", target id, text], ["after_ops", ms, ops] (a delayed message to itself)."""
    context.storage.calls = (context.storage.calls or 0) + 1
    for op in message.as_type(OPS):
        if op[0] == "after":
            _, ms, target_id, text, *token = op
            context.send_after(
                timedelta(milliseconds=ms),
                message_builder("t/sink", target_id, str_value=text),
                *token,
            )
        elif op[0] == "after_ops":
            context.send_after(
                timedelta(milliseconds=op[1]),
                message_builder("t/sched", context.address.id, value=op[2], value_type=OPS),
            )
        elif op[0] == "after_nobody":
            context.send_after(timedelta(0), message_builder("t/nobody", "x", int_value=1))
        elif op[0] == "cancel":
            context.cancel_delayed_message(op[1])
        elif op[0] == "send":
            context.send(message_builder("t/sink", op[1], str_value=op[2]))


@functions.bind("t/sink")
def sink(context, message):
    pass


def ops(h: Harness, id: str, *operations: list[object]) -> None:
    h.send("t/sched", id, list(operations), OPS)


def delivered(h: Harness) -> list[tuple[int, str, str | None, bool]]:
    """(at_ms, text, caller, delayed) of every sink invocation, in order."""
    return [
        (i.at_ms, i.value[2:].decode(), str(i.caller) if i.caller else None, i.delayed)
        for i in h.invocations
        if i.target.typename == "t/sink"
    ]


def test_a_delayed_message_fires_at_its_due_time_from_its_sender():
    h = Harness(functions)
    ops(h, "a", ["after", 1000, "s", "hi", "tk"])
    h.run()
    assert delivered(h) == []
    assert h.timers() == [
        PendingTimer(
            1000,
            Address("t/sched", "a"),
            Address("t/sink", "s"),
            "tk",
            "io.statefun.types/string",
            b"\n\x02hi",
        )
    ]
    assert h.advance(999) == 0
    assert h.clock.now_ms == 999
    assert h.advance(timedelta(milliseconds=1)) == 1
    assert delivered(h) == [(1000, "hi", "t/sched/a", True)]
    assert h.timers() == []
    assert h.advance(timedelta(hours=1)) == 0


def test_due_order_with_ties_in_scheduling_order():
    h = Harness(functions)
    ops(
        h,
        "a",
        ["after", 300, "s", "c"],
        ["after", 100, "s", "a"],
        ["after", 300, "s", "d"],
        ["after", 200, "s", "b"],
    )
    ops(h, "b", ["after", 100, "s", "a2"])
    h.run()
    assert [t.due_ms for t in h.timers()] == [100, 100, 200, 300, 300]
    assert [t.sender.id for t in h.timers("t/sched", "b")] == ["b"]
    h.advance(timedelta(seconds=1))
    assert [(at, text) for at, text, _, _ in delivered(h)] == [
        (100, "a"),
        (100, "a2"),
        (200, "b"),
        (300, "c"),
        (300, "d"),
    ]
    assert h.clock.now_ms == 1000


def test_a_timer_scheduled_by_a_delayed_message_fires_within_the_same_advance():
    h = Harness(functions)
    ops(h, "a", ["after_ops", 100, [["after", 50, "s", "inner"]]], ["after", 400, "s", "outer"])
    h.advance(1000)
    assert [(at, text) for at, text, _, _ in delivered(h)] == [(150, "inner"), (400, "outer")]


def test_delay_zero_is_delivered_after_the_messages_already_queued():
    h = Harness(functions)
    ops(h, "a", ["send", "s", "m1"], ["after", 0, "s", "d0"], ["send", "s", "m2"])
    h.send("t/sink", "s", "queued-before")
    assert h.run() == 5  # no advance needed: a delay of 0 is due now
    assert [text for _, text, _, _ in delivered(h)] == ["queued-before", "m1", "m2", "d0"]
    assert delivered(h)[-1] == (0, "d0", "t/sched/a", True)


def test_cancelled_messages_never_fire_and_unknown_or_fired_tokens_are_no_ops():
    h = Harness(functions)
    ops(h, "a", ["after", 100, "s", "cancelled", "tk"], ["after", 100, "s", "fires", "t2"])
    h.run()
    ops(h, "a", ["cancel", "tk"], ["cancel", "never-used"])
    h.advance(100)
    ops(h, "a", ["cancel", "t2"])  # already fired
    h.advance(1000)
    assert [text for _, text, _, _ in delivered(h)] == ["fires"]
    assert h.dead_letters == []
    assert h.timers() == []


def test_tokens_are_scoped_to_the_sender_address():
    h = Harness(functions)
    ops(h, "a", ["after", 100, "s", "from a", "tk"])
    ops(h, "b", ["after", 100, "s", "from b", "tk"])
    ops(h, "a", ["cancel", "tk"])
    h.advance(100)
    assert [(text, caller) for _, text, caller, _ in delivered(h)] == [("from b", "t/sched/b")]
    assert h.dead_letters == []


def test_scheduling_a_pending_token_is_a_dead_letter_without_effects():
    h = Harness(functions)
    ops(h, "a", ["after", 100, "s", "first", "tk"])
    ops(h, "a", ["send", "s", "not sent"], ["after", 50, "s", "second", "tk"])
    ops(h, "a", ["after", 10, "s", "x", "dup"], ["after", 20, "s", "y", "dup"])
    h.advance(1000)
    assert [(d.reason, d.target) for d in h.dead_letters] == [
        (DUPLICATE_CANCELLATION_TOKEN, Address("t/sched", "a")),
        (DUPLICATE_CANCELLATION_TOKEN, Address("t/sched", "a")),
    ]
    assert "token 'tk', which is still pending" in h.dead_letters[0].message
    assert [text for _, text, _, _ in delivered(h)] == ["first"]
    assert h.state("t/sched", "a") == {"calls": 1}


def test_cancel_then_reschedule_in_one_invocation_replaces_and_a_fired_token_is_reusable():
    h = Harness(functions)
    ops(h, "a", ["after", 100, "s", "old", "tk"])
    ops(h, "a", ["cancel", "tk"], ["after", 500, "s", "new", "tk"])
    ops(h, "a", ["after", 10, "s", "gone", "t2"], ["cancel", "t2"])
    h.advance(500)
    ops(h, "a", ["after", 1, "s", "again", "tk"])
    h.advance(1)
    assert [(at, text) for at, text, _, _ in delivered(h)] == [(500, "new"), (501, "again")]
    assert h.dead_letters == []


def test_messages_without_a_token_never_conflict():
    h = Harness(functions)
    ops(h, "a", ["after", 5, "s", "x"], ["after", 5, "s", "y"])
    ops(h, "a", ["after", 5, "s", "z", ""])
    h.advance(5)
    assert [text for _, text, _, _ in delivered(h)] == ["x", "y", "z"]


def test_a_negative_delay_or_an_empty_cancel_token_is_an_error_the_function_sees():
    h = Harness(functions)
    ops(h, "a", ["after", -1, "s", "never"])
    ops(h, "a", ["cancel", ""])
    h.advance(10)
    negative, empty = h.dead_letters
    assert negative.reason == empty.reason == "function-error"
    assert "ValueError: send_after() takes a delay of zero or more" in negative.message
    assert "ValueError" in empty.message
    assert h.timers() == [] and delivered(h) == []


def test_a_delayed_message_to_an_unknown_type_is_dead_lettered_when_it_fires():
    h = Harness(functions)
    ops(h, "a", ["after_nobody"])
    h.run()
    [dead] = h.dead_letters
    assert (dead.reason, dead.target, dead.caller) == (
        "unknown-function",
        Address("t/nobody", "x"),
        Address("t/sched", "a"),
    )
    assert h.invocations[-1].delayed


def test_advance_arguments():
    h = Harness(functions, start_ms=1_700_000_000_000)
    with pytest.raises(ValueError, match="backwards"):
        h.advance(-1)
    with pytest.raises(TypeError, match="timedelta or milliseconds"):
        h.advance(1.5)  # type: ignore[arg-type]
    ops(h, "a", ["after", 60_000, "s", "a minute later"])
    h.advance(timedelta(minutes=1))
    assert delivered(h) == [(1_700_000_060_000, "a minute later", "t/sched/a", True)]


def test_a_timer_loop_hits_the_step_limit_of_one_advance():
    loop = StatefulFunctions()

    @loop.bind("t/tick")
    def tick(context, message):
        context.send_after(
            timedelta(milliseconds=1), message_builder("t/tick", "a", int_value=1), "tick"
        )

    h = Harness(loop, step_limit=50)
    h.send("t/tick", "a", 0)
    assert h.advance(10) == 11
    with pytest.raises(HarnessError, match="50 invocations ran and 1 are still queued"):
        h.advance(timedelta(minutes=1))
