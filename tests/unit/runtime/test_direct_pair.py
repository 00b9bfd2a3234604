"""Ingress partitions assigned before any invocations partition (DirectPath.pair): a group
coordinator that has not seen a just-created invocations topic yet assigns the ingress
partitions alone and the invocations partitions a heartbeat later. Consumed meanwhile, their
records would take the hop and the invocations partitions would then have to drain first; so
they wait, paused, for an invocations partition, at most PAIR_WAIT_S."""

from types import SimpleNamespace

import pytest
from confluent_kafka import TopicPartition

from kstatefun.runtime import direct as direct_module
from kstatefun.runtime.direct import PAIR_WAIT_S, DirectPath

INV = "app-invocations"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(direct_module, "time", clock)
    return clock


def direct() -> DirectPath:
    router = SimpleNamespace(direct=set(), owned=set())
    return DirectPath(None, INV, router, SimpleNamespace(paused=lambda: set()))


def tps(*pairs: tuple[str, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in pairs]


def keys(partitions: list[TopicPartition]) -> list[tuple[str, int]]:
    return sorted((tp.topic, tp.partition) for tp in partitions)


def test_ingress_assigned_alone_waits_and_goes_on_once_invocations_partitions_come(clock):
    d = direct()
    pause: list[TopicPartition] = []
    # 3 invocations partitions; ingress has 4: partition 3 has none of its number, never waits
    first = tps(("in", 0), ("in", 1), ("in", 3))
    assert d.pair(first, first, 3, pause) == []
    assert keys(pause) == [("in", 0), ("in", 1)]
    assert sorted(d.unpaired) == [("in", 0), ("in", 1)]

    # a heartbeat later: invocations 0 and 2 come, and the assignment pauses ingress 0 for
    # the restore of invocations 0; ingress 1 (its invocations partition went elsewhere)
    # resumes now, and takes the hop
    clock.now += 1.0
    restore_pause = tps(("in", 0), (INV, 0), (INV, 2))
    added = tps((INV, 0), (INV, 2))
    assert keys(d.pair(added, first + added, 3, restore_pause)) == [("in", 1)]
    assert d.unpaired == {}
    assert keys(restore_pause) == [(INV, 0), (INV, 2), ("in", 0)]  # nothing added


def test_an_assignment_with_invocations_partitions_pauses_nothing(clock):
    d = direct()
    pause: list[TopicPartition] = []
    assigned = tps(("in", 0), (INV, 0))
    assert d.pair(assigned, assigned, 3, pause) == []
    assert pause == [] and d.unpaired == {}


def test_ingress_waits_no_longer_than_pair_wait_s(clock):
    d = direct()
    assigned = tps(("in", 0), ("in", 1))
    d.pair(assigned, assigned, 2, [])
    clock.now += PAIR_WAIT_S - 0.1
    assert d.check_unpaired() == [] and not d.wake_due
    clock.now += 0.1
    assert keys(d.check_unpaired()) == [("in", 0), ("in", 1)]
    assert d.unpaired == {} and d.wake_due  # resumed by the worker: fetch them at once


def test_revoked_or_lost_partitions_wait_no_more(clock):
    d = direct()
    assigned = tps(("in", 0), ("in", 1))
    d.pair(assigned, assigned, 2, [])
    d.forget(tps(("in", 1)))
    assert sorted(d.unpaired) == [("in", 0)]
    d.lost()
    assert d.unpaired == {}


def test_kept_ingress_partitions_flowing_without_invocations_partitions_go_on(clock):
    """A worker left with ingress partitions and no invocations partition (more ingress
    partitions than P, another worker's invocations) takes one more: only the new one waits."""
    d = direct()
    pause: list[TopicPartition] = []
    kept = tps(("in", 1))
    added = tps(("in", 0))
    assert d.pair(added, kept + added, 3, pause) == []
    assert keys(pause) == [("in", 0)] and sorted(d.unpaired) == [("in", 0)]
