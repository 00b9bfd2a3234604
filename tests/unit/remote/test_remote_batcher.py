"""AddressBatcher: one batch in flight per address, in-order batches, bounds, fairness."""

from __future__ import annotations

import pytest

from kstatefun.model import Address, TypedValue
from kstatefun.remote import AddressBatcher, Batch, BatchItem

A = Address("ns/f", "a")
B = Address("ns/f", "b")
C = Address("ns/g", "c")


def item(n: int, caller: Address | None = None) -> BatchItem:
    return BatchItem(caller, TypedValue("ns/t", bytes([n])), ref=n)


def refs(batch: Batch | None) -> list[int]:
    assert batch is not None
    return [i.ref for i in batch.items]


def test_an_idle_address_sends_at_once_and_arrivals_meanwhile_wait() -> None:
    b = AddressBatcher()
    first = b.offer(A, item(1))
    assert refs(first) == [1] and first is not None and first.address == A
    assert b.offer(A, item(2)) is None
    assert b.offer(A, item(3, caller=B)) is None
    assert b.backlog(A) == 2 and b.in_flight(A) is first
    assert b.in_flight_count() == 1 and b.pending_count() == 2

    second = b.complete(A)

    assert refs(second) == [2, 3]
    assert second is not None and second.items[1].caller == B
    assert list(second.invocations()) == [(None, item(2).argument), (B, item(3).argument)]
    assert b.backlog(A) == 0 and b.pending_count() == 0
    assert b.complete(A) is None
    assert b.idle and b.in_flight(A) is None


def test_batches_respect_the_limit_per_function_type_and_keep_order() -> None:
    b = AddressBatcher(lambda typename: 2 if typename == "ns/f" else 100)
    b.offer(A, item(0))
    b.offer(C, item(0))
    for n in range(1, 6):
        b.offer(A, item(n))
        b.offer(C, item(n))

    assert [refs(b.complete(A)), refs(b.complete(A)), refs(b.complete(A))] == [
        [1, 2],
        [3, 4],
        [5],
    ]
    assert refs(b.complete(C)) == [1, 2, 3, 4, 5]


def test_addresses_are_independent() -> None:
    b = AddressBatcher()
    assert refs(b.offer(A, item(1))) == [1]
    assert refs(b.offer(B, item(2))) == [2]
    assert b.offer(A, item(3)) is None

    assert b.complete(B) is None
    assert refs(b.complete(A)) == [3]


def test_batch_ids_are_unique() -> None:
    b = AddressBatcher()
    ids = set()
    for n in range(5):
        batch = b.offer(Address("ns/f", str(n)), item(n))
        assert batch is not None
        ids.add(batch.id)
    assert len(ids) == 5


def test_the_in_flight_cap_queues_addresses_first_come_first_served() -> None:
    b = AddressBatcher(max_in_flight=2)
    b.offer(A, item(1))
    b.offer(B, item(2))
    assert b.offer(C, item(3)) is None  # no slot: C waits
    assert b.offer(C, item(4)) is None
    assert b.offer(A, item(5)) is None  # behind A's batch in flight
    assert b.in_flight_count() == 2 and b.pending_count() == 3

    # A completes with a backlog, but C has been waiting for a slot: C goes first
    nxt = b.complete(A)
    assert nxt is not None and nxt.address == C and refs(nxt) == [3, 4]
    assert b.complete(B) is not None  # B has nothing: its slot goes to A
    assert b.in_flight(A) is not None and refs(b.in_flight(A)) == [5]
    assert b.in_flight_count() == 2


def test_complete_without_a_batch_in_flight_is_a_bug() -> None:
    with pytest.raises(KeyError, match="no batch"):
        AddressBatcher().complete(A)


def test_saturation_follows_the_per_address_backlog_bound() -> None:
    b = AddressBatcher(max_backlog=3)
    b.offer(A, item(0))
    for n in range(1, 3):
        b.offer(A, item(n))
    assert not b.saturated and not b.is_full(A)
    b.offer(A, item(3))
    assert b.saturated and b.is_full(A)
    b.offer(A, item(4))  # never refused: the record is consumed already
    assert b.backlog(A) == 4

    b2 = AddressBatcher(1, max_backlog=3)  # batches of one
    b2.offer(A, item(0))
    for n in range(1, 4):
        b2.offer(A, item(n))
    assert b2.saturated
    b2.complete(A)  # takes one: backlog 2 < 3
    assert not b2.saturated


def test_saturation_follows_the_total_pending_bound() -> None:
    b = AddressBatcher(max_in_flight=1, max_pending=2)
    b.offer(A, item(1))
    b.offer(B, item(2))
    assert not b.saturated
    b.offer(C, item(3))
    assert b.saturated
    b.complete(A)  # B's item leaves the queue for the wire
    assert not b.saturated


def test_clear_forgets_everything_and_returns_what_was_queued() -> None:
    b = AddressBatcher(max_in_flight=1)
    b.offer(A, item(1))
    b.offer(A, item(2))
    b.offer(B, item(3))

    assert sorted(i.ref for i in b.clear()) == [2, 3]
    assert b.idle and not b.saturated
    assert refs(b.offer(A, item(4))) == [4]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        AddressBatcher(0)
    with pytest.raises(ValueError):
        AddressBatcher(max_in_flight=0)
