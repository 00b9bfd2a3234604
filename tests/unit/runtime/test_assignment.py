"""The per-partition lifecycle (runtime/assignment.py) with a changelog stand-in: a partition
restores one batch per step of the loop, stays paused until its state and timers are complete,
and the partitions that have nothing to restore are resumed at once."""

from confluent_kafka import TopicPartition
from tests.fakes import Record

from kstatefun.runtime.assignment import (
    BUSY_STEP_RECORDS,
    STEP_WAIT_S,
    Assignment,
    PartitionState,
)
from kstatefun.state.recovery import Recovery
from kstatefun.state.restore import RESTORE_BATCH, ChangelogRestorer
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import encode_changelog_value, encode_timer_value

INV = "app-invocations"


class SlowChangelog:
    """A restore consumer over an in-memory log that hands out one record per consume."""

    def __init__(self, topic, logs):
        self.topic, self.logs = topic, logs  # partition -> list of (key, value)
        self._pos = {}

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return 0, len(self.logs.get(tp.partition, []))

    def incremental_assign(self, tps):
        self._pos.update({tp.partition: max(tp.offset, 0) for tp in tps})

    def consume(self, n, timeout=None):
        for p, pos in self._pos.items():
            if pos < len(self.logs[p]):
                self._pos[p] = pos + 1
                return [Record(self.topic, p, pos, *self.logs[p][pos])]
        return []

    def position(self, tps):
        return [TopicPartition(self.topic, tp.partition, self._pos[tp.partition]) for tp in tps]

    def incremental_unassign(self, tps):
        for tp in tps:
            self._pos.pop(tp.partition)

    def unassign(self):
        self._pos = {}


class GroupConsumer:
    def __init__(self):
        self.resumed, self.sought = [], []

    def resume(self, tps):
        self.resumed += [(tp.topic, tp.partition) for tp in tps]

    def seek(self, tp):
        self.sought.append((tp.topic, tp.partition, tp.offset))


def v(n):
    return encode_changelog_value("t/int", str(n).encode())


def timer(due_ms):
    return encode_timer_value(due_ms, "t/target", "id", "t/type", b"v")


def make(state_log, timer_log):
    store, timers, group = StateStore(), TimerStore(), GroupConsumer()
    restored = []
    assignment = Assignment(
        group,
        INV,
        [
            Recovery(store, ChangelogRestorer(lambda: SlowChangelog("c", state_log), "c")),
            Recovery(timers, ChangelogRestorer(lambda: SlowChangelog("t", timer_log), "t")),
        ],
        lambda p, ingress: restored.append((p, [(tp.topic, tp.partition) for tp in ingress])),
    )
    return assignment, store, timers, group, restored


def tps(*pairs):
    return [TopicPartition(t, p) for t, p in pairs]


def test_a_partition_processes_only_once_its_state_and_timers_are_restored():
    state_log = {0: [(b"a", v(1)), (b"b", v(2)), (b"a", v(3))], 1: []}
    timer_log = {0: [(b"y", timer(6)), (b"x", timer(5))], 1: []}
    assignment, store, timers, group, restored = make(state_log, timer_log)
    pause = assignment.assign(tps((INV, 0), (INV, 1), ("in", 0), ("in", 1), ("in", 7)))
    # each partition's invocations and same-numbered ingress wait; ingress 7 has no restore
    assert sorted((tp.topic, tp.partition) for tp in pause) == [
        (INV, 0),
        (INV, 1),
        ("in", 0),
        ("in", 1),
    ]
    assert assignment.starting and not assignment.ready

    assignment.step()  # begins: partition 1 has nothing to read and is resumed at once
    assert group.resumed == [(INV, 1)] and restored == [(1, [("in", 1)])]
    assert assignment.states == {0: PartitionState.RESTORING, 1: PartitionState.CATCHING_UP}

    steps = 0
    while assignment.restoring:
        assert (INV, 0) not in group.resumed  # paused for as long as a record is unread
        # no timer fires before the whole partition is in: its timers (2 records) complete a
        # step before its state (3); one fired then would take the hop and be overtaken
        assert list(timers.pop_due(100)) == []
        assignment.step()
        steps += 1
    assert steps == 3  # one record per step: the restore went step by step
    assert group.resumed == [(INV, 1), (INV, 0)] and restored[-1] == (0, [("in", 0)])
    assert store.position(0) == 3 and dict(store.rows(0).items()) == {b"a": v(3), b"b": v(2)}
    assert [k for _, k, _ in timers.pop_due(100)] == [b"x", b"y"]
    assignment.caught_up(0)
    assert assignment.states[0] is PartitionState.LIVE and assignment.ready
    assert assignment.summary() == {"catching-up": [1], "live": [0]}


def test_a_revocation_mid_restore_leaves_the_partition_to_be_restored_anew():
    state_log = {0: [(b"a", v(1)), (b"b", v(2))]}
    assignment, store, timers, group, restored = make(state_log, {0: []})
    assignment.assign(tps((INV, 0)))
    assignment.step()
    assignment.step()  # one record of two
    assignment.revoke()
    assignment.revoked()
    assert not assignment.restoring and store.position(0) is None and restored == []

    assignment.assign(tps((INV, 0)))
    while assignment.restoring:
        assignment.step()
    assert store.position(0) == 2 and dict(store.rows(0).items()) == {b"a": v(1), b"b": v(2)}


def test_an_assignment_without_partitions_drops_what_the_stores_held():
    assignment, store, timers, group, restored = make({0: [(b"a", v(1))]}, {0: []})
    assignment.assign(tps((INV, 0)))
    while assignment.restoring:
        assignment.step()
    assignment.revoke()
    assignment.revoked()
    assignment.assign([])
    assert assignment.starting
    assignment.step()
    assert store.partitions() == set() and timers.partitions() == set() and assignment.ready


def test_records_of_a_held_partition_are_sought_back_not_processed():
    assignment, *_, group, _ = make({0: [(b"a", v(1))]}, {0: []})
    assignment.assign(tps((INV, 0), (INV, 1)))
    batch = [Record(INV, 1, 4, b"k", b"v"), Record(INV, 0, 9, b"k", b"v")]
    assignment.step()  # partition 1 restored at once, 0 still reading
    kept = assignment.unheld(batch)
    assert [r.partition() for r in kept] == [1] and group.sought == [(INV, 0, 9)]


def test_an_incremental_assignment_joins_the_restore_in_progress_and_pauses_nothing_kept():
    state_log = {0: [(b"a", v(1)), (b"b", v(2)), (b"c", v(3))], 1: [(b"x", v(9))], 2: []}
    assignment, store, timers, group, restored = make(state_log, {0: [], 1: [], 2: []})
    assignment.assign(tps((INV, 0), (INV, 2), ("in", 2)))
    assignment.step()  # begins: 2 is empty, 0 reads one record per step
    assignment.step()
    assert assignment.states[2] is PartitionState.CATCHING_UP
    assignment.caught_up(2)

    # partition 1 joins; 0 and 2 stay (cooperative: the callback names only what is added)
    kept = tps((INV, 0), (INV, 2), ("in", 2))
    pause = assignment.assign(tps((INV, 1), ("in", 1)), [*kept, *tps((INV, 1), ("in", 1))])
    assert sorted((tp.topic, tp.partition) for tp in pause) == [(INV, 1), ("in", 1)]
    assert assignment.states[2] is PartitionState.LIVE  # a kept partition keeps processing
    while assignment.restoring:
        assignment.step()
    # partition 0 went on from where it was: its rows are whole, read once
    assert dict(store.rows(0).items()) == {b"a": v(1), b"b": v(2), b"c": v(3)}
    assert store.position(0) == 3 and store.position(1) == 1
    assert sorted(p for p, _ in restored) == [0, 1, 2]


def test_an_incremental_revocation_stops_only_the_partitions_that_move():
    state_log = {0: [(b"a", v(1)), (b"b", v(2))], 1: []}
    assignment, store, timers, group, restored = make(state_log, {0: [], 1: []})
    assignment.assign(tps((INV, 0), (INV, 1), ("in", 0), ("in", 1)))
    assignment.step()
    assignment.step()  # 1 is restored (empty), 0 has read one record of two
    assert assignment.states == {0: PartitionState.RESTORING, 1: PartitionState.CATCHING_UP}

    # invocations partition 0 moves away, its ingress partition stays: resumed, it takes the
    # hop through <app>-invocations from now on
    assignment.revoke(tps((INV, 0)))
    assert assignment.assigned and assignment.states[1] is PartitionState.CATCHING_UP
    resume = assignment.revoked(tps((INV, 0)))
    assert [(tp.topic, tp.partition) for tp in resume] == [("in", 0)]
    assert assignment.states == {1: PartitionState.CATCHING_UP} and not assignment.restoring
    # nothing of partition 0 is left to fire or expire here; partition 1 is untouched
    assert store.partitions() == {1} and timers.partitions() == {1}
    assert store.position(1) == 0


class CountingChangelog(SlowChangelog):
    """Notes what each consume asked for."""

    asked: list = []

    def consume(self, n, timeout=None):
        CountingChangelog.asked.append((n, timeout))
        return super().consume(n, timeout)


def test_a_busy_worker_restores_in_small_steps_that_do_not_wait():
    state_log = {0: [(b"a", v(1)), (b"b", v(2)), (b"c", v(3))]}
    store, timers = StateStore(), TimerStore()
    CountingChangelog.asked = []
    assignment = Assignment(
        GroupConsumer(),
        INV,
        [
            Recovery(store, ChangelogRestorer(lambda: CountingChangelog("c", state_log), "c")),
            Recovery(timers, ChangelogRestorer(lambda: SlowChangelog("t", {0: []}), "t")),
        ],
        lambda p, ingress: None,
    )
    assignment.assign(tps((INV, 0)))
    assignment.step()  # begins
    assignment.step(busy=True)  # records flow on the other partitions
    assignment.step()  # idle
    assert CountingChangelog.asked == [
        (BUSY_STEP_RECORDS, 0.0),
        (RESTORE_BATCH, STEP_WAIT_S),
    ]
    assert BUSY_STEP_RECORDS < RESTORE_BATCH
