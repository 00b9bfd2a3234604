"""State TTL on the virtual clock: StateFun's expire_after_write and expire_after_call."""

import json
from datetime import timedelta

import pytest

from kstatefun import StatefulFunctions, StringType, ValueSpec, kafka_egress_message
from kstatefun.testing import Harness

TTL = timedelta(seconds=10)
NAMES = ("w", "c", "forever")


@pytest.fixture
def h() -> Harness:
    functions = StatefulFunctions()

    @functions.bind(
        "t/ttl",
        specs=[
            ValueSpec("w", StringType, expire_after_write=TTL),
            ValueSpec("c", StringType, expire_after_call=TTL),
            ValueSpec("forever", StringType),
        ],
    )
    def ttl(context, message):
        """'set <name> <value>', 'del <name>', 'boom' (raises after reading) or anything else
        (reads only). Every call records what it read in the 'seen' egress."""
        command, *args = message.as_string().split()
        storage = context.storage
        read = {name: getattr(storage, name) for name in NAMES}
        context.send_egress(
            kafka_egress_message(typename="t/seen", topic="seen", value=json.dumps(read))
        )
        if command == "set":
            setattr(storage, args[0], args[1])
        elif command == "del":
            delattr(storage, args[0])
        elif command == "boom":
            raise RuntimeError("boom")

    return Harness(functions)


def call(h: Harness, command: str, id: str = "a") -> dict[str, str | None]:
    h.send("t/ttl", id, command)
    h.run()
    return h.egress("t/seen")[-1].json()


def test_expire_after_write_counts_from_the_last_write(h):
    call(h, "set w v1")
    assert h.expires_at("t/ttl", "a") == {"w": 10_000}
    h.advance(5_000)
    call(h, "set w v2")
    h.advance(9_999)  # t = 14_999; reads do not refresh expire_after_write
    assert call(h, "get")["w"] == "v2"
    assert h.state("t/ttl", "a") == {"w": "v2"}
    h.advance(1)  # t = 15_000: expired exactly ttl after the write
    assert h.state("t/ttl", "a") == {}
    assert call(h, "get")["w"] is None


def test_expire_after_call_refreshes_on_every_invocation_of_the_address(h):
    call(h, "set c v")
    h.advance(9_000)
    call(h, "noop")  # does not touch c, still refreshes it
    assert h.expires_at("t/ttl", "a") == {"c": 19_000}
    call(h, "noop", id="b")  # another address: no effect on a
    h.advance(9_999)
    assert h.state("t/ttl", "a") == {"c": "v"}
    h.advance(1)
    assert h.state("t/ttl", "a") == {}
    assert call(h, "get")["c"] is None


def test_an_expired_value_is_never_returned_even_without_inspection(h):
    call(h, "set c v")
    call(h, "set w v")
    h.advance(TTL)
    assert call(h, "get") == {"w": None, "c": None, "forever": None}
    call(h, "set c again")
    assert h.state("t/ttl", "a") == {"c": "again"}


def test_a_dead_lettered_invocation_refreshes_nothing(h):
    call(h, "set c v")
    h.advance(9_000)
    call(h, "boom")
    assert [d.reason for d in h.dead_letters] == ["function-error"]
    assert h.expires_at("t/ttl", "a") == {"c": 10_000}
    h.advance(1_000)
    assert h.state("t/ttl", "a") == {}


def test_values_without_ttl_never_expire_and_deletes_remove_expiry(h):
    call(h, "set forever v")
    call(h, "set w v")
    call(h, "del w")
    h.advance(timedelta(days=365))
    assert h.state("t/ttl", "a") == {"forever": "v"}
    assert h.expires_at("t/ttl", "a") == {"forever": None}


def test_seeded_state_expires_from_when_it_was_seeded(h):
    h.advance(1_000)
    h.set_state("t/ttl", "a", w="seeded", forever="x")
    assert h.expires_at("t/ttl", "a") == {"w": 11_000, "forever": None}
    h.advance(TTL)
    assert h.state("t/ttl", "a") == {"forever": "x"}
