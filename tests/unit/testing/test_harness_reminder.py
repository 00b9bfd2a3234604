"""examples/reminder.py on the virtual clock: delayed messages, cancellation, session TTL."""

import json
from datetime import timedelta

import pytest
from examples.reminder import MODULE_YAML, SESSION_TTL

from kstatefun.config import parse_module
from kstatefun.testing import DUPLICATE_CANCELLATION_TOKEN, Harness


@pytest.fixture
def h() -> Harness:
    return Harness(module=parse_module(MODULE_YAML), egress_topics=["reminders-due"])


def request(h: Harness, user: str, **fields: object) -> None:
    h.send_ingress("reminder-requests", user, json.dumps(fields))


def due(h: Harness) -> list[str]:
    return [r.text for r in h.egress("example/reminders", topic="reminders-due")]


def test_a_reminder_fires_once_after_its_delay():
    h = Harness(module=parse_module(MODULE_YAML))
    request(h, "ann", remind="standup", after_s=600)
    h.run()
    assert [(t.due_ms, t.cancellation_token) for t in h.timers()] == [(600_000, "standup")]
    h.advance(timedelta(seconds=599))
    assert due(h) == []
    h.advance(timedelta(seconds=1))
    assert due(h) == ["ann: standup (#1 this session)"]
    assert h.egress()[0].key == "ann"
    h.advance(timedelta(days=1))
    assert len(due(h)) == 1


def test_reminders_of_one_user_fire_in_due_order(h):
    request(h, "ann", remind="lunch", after_s=3600)
    request(h, "ann", remind="standup", after_s=600)
    request(h, "bob", remind="standup", after_s=600)  # same token, other address
    h.advance(timedelta(hours=2))
    assert due(h) == [
        "ann: standup (#2 this session)",
        "bob: standup (#1 this session)",
        "ann: lunch (#1 this session)",
    ]


def test_a_cancelled_reminder_never_fires(h):
    request(h, "ann", remind="standup", after_s=600)
    request(h, "ann", remind="lunch", after_s=900)
    h.advance(timedelta(seconds=300))
    request(h, "ann", cancel="standup")
    request(h, "ann", cancel="no-such-reminder")
    h.advance(timedelta(hours=1))
    request(h, "ann", cancel="lunch")  # already fired: nothing happens
    h.run()
    assert due(h) == ["ann: lunch (#2 this session)"]
    assert h.dead_letters == []


def test_setting_a_pending_reminder_again_is_a_dead_letter_unless_it_replaces(h):
    request(h, "ann", remind="standup", after_s=600)
    request(h, "ann", remind="standup", after_s=60)
    h.run()
    [dead] = h.dead_letters
    assert dead.reason == DUPLICATE_CANCELLATION_TOKEN
    assert h.state("example/reminder", "ann") == {"session": {"reminders": 1}}

    request(h, "ann", remind="standup", after_s=60, replace=True)
    h.advance(timedelta(minutes=20))
    assert due(h) == ["ann: standup (#2 this session)"]


def test_the_session_expires_thirty_minutes_after_the_last_reminder_was_set(h):
    request(h, "ann", remind="a", after_s=60)
    h.advance(timedelta(minutes=20))
    request(h, "ann", remind="b", after_s=60)
    h.run()
    assert h.expires_at("example/reminder", "ann") == {"session": (20 * 60 + 30 * 60) * 1000}
    # The delivered reminder invokes the address but does not write: no refresh.
    h.advance(SESSION_TTL - timedelta(milliseconds=1))
    assert h.state("example/reminder", "ann") == {"session": {"reminders": 2}}
    h.advance(timedelta(milliseconds=1))
    assert h.state("example/reminder", "ann") == {}
    request(h, "ann", remind="c", after_s=60)
    h.advance(timedelta(minutes=1))
    assert due(h) == [
        "ann: a (#1 this session)",
        "ann: b (#2 this session)",
        "ann: c (#1 this session)",
    ]
