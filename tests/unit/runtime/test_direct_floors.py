"""The floors of messages between functions of partitions owned here (runtime/local.py), as
the worker's DirectPath keeps them: set at assignment to each added invocations partition's end
(and each kept one's, read later),
passed once the consumer (or the committed offset) reaches it, raised again by an abort and
read then from the partition's present end."""

from types import SimpleNamespace

import pytest
from confluent_kafka import TopicPartition

from kstatefun.runtime import direct as direct_module
from kstatefun.runtime.direct import DirectPath

INV = "app-invocations"


class Consumer:
    """Positions and high watermarks, as the worker's consumers give them."""

    def __init__(self, positions, ends):
        self.positions, self.ends = positions, ends

    def position(self, tps):
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, -1001))
            for tp in tps
        ]

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return 0, self.ends[tp.partition]


@pytest.fixture
def no_throttle(monkeypatch):
    monkeypatch.setattr(direct_module, "DRAIN_CHECK_S", 0.0)


def test_an_added_partition_waits_for_its_end_and_so_does_a_kept_one(no_throttle):
    """A gained partition's previous owner may have sent into the kept partition 2 as well."""
    consumer = Consumer({0: 0, 1: 0, 2: 4}, {0: 7, 1: 0, 2: 5})
    router = SimpleNamespace(direct=set(), owned={0, 1, 2})
    d = DirectPath(consumer, INV, router, SimpleNamespace(paused=lambda: set()))
    d.plan(consumer, [TopicPartition(INV, 0), TopicPartition(INV, 1)], [TopicPartition(INV, 2)])
    assert d.local.floors == {0: 7, 2: None}  # partition 1 is empty; 2 reads its end later
    consumer.ends[2] = 6  # more came meanwhile: the floor is at least the end at assignment
    d.check_floors(consumer, {})
    assert d.local.floors == {0: 7, 2: 6}
    consumer.positions[0] = 7
    consumer.positions[2] = 6
    d.check_floors(consumer, {})
    assert d.local.floors == {}


def test_an_assignment_that_gains_no_invocations_partition_floors_nothing(no_throttle):
    consumer = Consumer({0: 0}, {0: 7})
    router = SimpleNamespace(direct=set(), owned={0})
    d = DirectPath(consumer, INV, router, SimpleNamespace(paused=lambda: set()))
    d.plan(consumer, [TopicPartition("ingress", 0)], [TopicPartition(INV, 0)])
    assert d.local.floors == {}


def test_a_committed_offset_past_the_end_passes_a_floor_before_any_fetch(no_throttle):
    consumer = Consumer({}, {0: 7})  # not fetched yet: no position
    router = SimpleNamespace(direct=set(), owned={0})
    d = DirectPath(consumer, INV, router, SimpleNamespace(paused=lambda: set()))
    d.plan(consumer, [TopicPartition(INV, 0)])
    d.check_floors(consumer, {(INV, 0): 6})
    assert d.local.floors == {0: 7}
    d.check_floors(consumer, {(INV, 0): 7})
    assert d.local.floors == {}


def test_after_an_abort_every_owned_partition_waits_for_its_present_end(no_throttle):
    consumer = Consumer({0: 3, 1: 9}, {0: 3, 1: 12})
    router = SimpleNamespace(direct=set(), owned={0, 1})
    d = DirectPath(consumer, INV, router, SimpleNamespace(paused=lambda: set()))
    d.redrain()
    assert d.local.floors == {0: None, 1: None}
    d.check_floors(consumer, {})  # reads the ends: 0 is there already, 1 is not
    assert d.local.floors == {1: 12}
    d.forget([TopicPartition(INV, 1)])
    assert d.local.floors == {} and router.owned == {0}
