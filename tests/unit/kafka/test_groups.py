"""Whether a group's coordinator answers, asked by a client of its own (kafka/groups.py)."""

from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaError, KafkaException

from kstatefun.kafka import groups


class FakeAdmin:
    made: list["FakeAdmin"] = []
    outcome: object = None

    def __init__(self, conf):
        self.conf = conf
        self.asked = []
        FakeAdmin.made.append(self)

    def describe_consumer_groups(self, group_ids, request_timeout):
        self.asked.append((group_ids, request_timeout))
        future: Future = Future()
        if isinstance(FakeAdmin.outcome, BaseException):
            future.set_exception(FakeAdmin.outcome)
        elif FakeAdmin.outcome is not None:
            future.set_result(FakeAdmin.outcome)
        return {g: future for g in group_ids}  # no outcome: never done


@pytest.fixture
def admin(monkeypatch):
    FakeAdmin.made = []
    monkeypatch.setattr(groups, "AdminClient", FakeAdmin)
    return FakeAdmin


def ask(timeout_s=0.05):
    return groups.coordinator_answers(
        "b1:9092,b2:9092", {"security.protocol": "SSL"}, "app", timeout_s
    )


def test_a_described_group_means_its_coordinator_answers(admin):
    admin.outcome = "description"
    assert ask(2.0) is True
    (client,) = admin.made  # a fresh client, connected like the worker's own
    assert client.conf["bootstrap.servers"] == "b1:9092,b2:9092"
    assert client.conf["security.protocol"] == "SSL"
    assert client.asked == [(["app"], 2.0)]


def test_a_coordinator_that_is_loading_or_gone_does_not_answer(admin):
    admin.outcome = KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "loading"))
    assert ask() is False


def test_no_answer_within_the_timeout_is_no_answer(admin):
    admin.outcome = None
    assert ask(0.01) is False
