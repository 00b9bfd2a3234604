"""kafka/membership.py's group requests against a real broker: a static member that a consumer
left in its group (librdkafka's close: epoch -2) is described, released and removed, and a
killed one's successor is admitted at once. The same checks run over SASL_SSL in
tests/integration/test_security.py."""

import subprocess
import sys
import time
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from kstatefun.kafka.membership import (
    release_predecessor,
    release_static_member,
    remove_static_members,
    static_member_id,
)

pytestmark = pytest.mark.kafka


def joined_static_member(conf: dict[str, Any], topic: str, group: str, instance: str) -> Consumer:
    consumer = Consumer(
        {**conf, "group.id": group, "group.protocol": "consumer", "group.instance.id": instance}
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    while not consumer.assignment():
        assert time.monotonic() < deadline, "the consumer never joined its group"
        consumer.poll(0.1)
    return consumer


def check_release_and_remove(conf: dict[str, Any], topic: str, group: str) -> None:
    """What both this module and the SASL_SSL test check, with client configuration ``conf``."""
    joined_static_member(conf, topic, group, "m1").close()  # stays in the group (epoch -2)
    admin = AdminClient(conf)
    member = static_member_id(admin, group, "m1", 10)
    assert member is not None
    release_static_member(conf, group, "m1", member)  # -2 once more: accepted
    assert remove_static_members(conf, group, ["m1", "m2"]) == {
        "m1": None,
        "m2": "UNKNOWN_MEMBER_ID",  # never a member
    }
    assert static_member_id(admin, group, "m1", 10) is None


def test_a_static_member_left_in_the_group_is_released_and_removed(
    kafka_bootstrap, create_topic, unique_name
):
    check_release_and_remove(
        {"bootstrap.servers": kafka_bootstrap}, create_topic(unique_name("in")), unique_name("g")
    )


def test_a_killed_static_members_successor_is_admitted_at_once_after_the_release(
    kafka_bootstrap, create_topic, unique_name
):
    """Without the release the group refuses the successor (UNRELEASED_INSTANCE_ID, fatal to
    its consumer) until the killed member's session ends."""
    conf = {"bootstrap.servers": kafka_bootstrap}
    topic, group = create_topic(unique_name("in"), partitions=3), unique_name("g")
    killed = (  # a member killed without leaving: joins, then exits without closing
        "import os, sys; from tests.integration.test_membership import joined_static_member; "
        "joined_static_member({'bootstrap.servers': sys.argv[1]}, sys.argv[2], sys.argv[3], "
        "'m1'); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", killed, kafka_bootstrap, topic, group], check=True)
    assert release_predecessor(AdminClient(conf), conf, group, "m1")
    fatal = []
    successor = Consumer(
        {
            **conf,
            "group.id": group,
            "group.protocol": "consumer",
            "group.instance.id": "m1",
            "error_cb": lambda err: fatal.append(err) if err.fatal() else None,
        }
    )
    try:
        successor.subscribe([topic])
        deadline = time.monotonic() + 5  # the group's session (10 s) has not ended by then
        while len(successor.assignment()) < 3:
            assert not fatal and time.monotonic() < deadline, fatal
            successor.poll(0.1)
    finally:
        successor.close()
    assert not release_predecessor(AdminClient(conf), conf, unique_name("none"), "m1")
