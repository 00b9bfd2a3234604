"""Assignment recovery (state/recovery.py) and the restorer's reading rule, with a changelog
stand-in: kept state is checked against its topic and caught up, never trusted as it is."""

from confluent_kafka import TopicPartition
from tests.fakes import Record

from kstatefun.state.recovery import recover
from kstatefun.state.restore import ChangelogRestorer
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import encode_timer_value

TOPIC = "app-timers"


class Changelog:
    """A consumer over an in-memory log: (key, value) per committed record, None per marker."""

    def __init__(self, logs):
        self.logs = logs  # partition -> list of (key, value) | None
        self.assigned = []
        self.reads = 0
        self._pos = {}

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return 0, len(self.logs.get(tp.partition, []))

    def incremental_assign(self, tps):
        self.assigned += [tp.partition for tp in tps]
        self._pos.update({tp.partition: max(tp.offset, 0) for tp in tps})

    def consume(self, n, timeout=None):
        self.reads += 1
        out = []
        for p, pos in self._pos.items():
            for offset in range(pos, len(self.logs[p])):
                if self.logs[p][offset] is not None:
                    out.append(Record(TOPIC, p, offset, *self.logs[p][offset]))
            self._pos[p] = len(self.logs[p])
        return out

    def position(self, tps):
        return [TopicPartition(TOPIC, tp.partition, self._pos[tp.partition]) for tp in tps]

    def incremental_unassign(self, tps):
        for tp in tps:
            self._pos.pop(tp.partition)

    def unassign(self):
        self._pos = {}
        self.assigned = []


def timer(due_ms):
    return encode_timer_value(due_ms, "t/target", "id", "t/type", b"v")


def test_a_kept_partition_written_by_another_worker_is_caught_up_and_reindexed():
    store = TimerStore()
    changelog = Changelog({0: [(b"a", timer(10)), None]})
    restorer = ChangelogRestorer(lambda: changelog, TOPIC)
    assert recover(store, restorer, {0}) == [0]
    assert store.position(0) == 2 and store.get(0, b"a") is not None

    store.schedule(0, b"b", timer(20), 20)  # this worker's own commit: record 2, marker 3
    store.apply_overlay({0: 3})
    changelog.logs[0] += [(b"b", timer(20)), None]
    changelog.logs[0] += [(b"a", None), (b"c", timer(5)), None]  # another owner, meanwhile

    assert recover(store, restorer, {0}) == []  # kept, not restored from scratch
    assert store.position(0) == 7
    assert store.get(0, b"a") is None and store.get(0, b"c") is not None
    assert [k for _, k, _ in store.pop_due(100)] == [b"c", b"b"]  # the index knows c


def test_a_kept_partition_nobody_else_wrote_costs_no_read():
    store = TimerStore()
    changelog = Changelog({0: [(b"a", timer(10)), None], 1: []})
    restorer = ChangelogRestorer(lambda: changelog, TOPIC)
    recover(store, restorer, {0, 1})
    store.schedule(0, b"b", timer(20), 20)
    store.apply_overlay({0: 3})
    changelog.logs[0] += [(b"b", timer(20)), None]  # only this worker's commit and its marker
    reads = changelog.reads

    assert recover(store, restorer, {0}) == []
    assert changelog.reads == reads and store.position(0) == 3
    assert store.partitions() == {0}  # partition 1 is no longer owned: dropped


def test_a_partition_owned_again_after_being_dropped_is_restored_from_scratch():
    store = TimerStore()
    changelog = Changelog({0: [(b"a", timer(10)), None]})
    restorer = ChangelogRestorer(lambda: changelog, TOPIC)
    recover(store, restorer, {0})
    recover(store, restorer, set())
    changelog.logs[0] += [(b"a", None), None]
    assert recover(store, restorer, {0}) == [0]
    assert store.get(0, b"a") is None and store.position(0) == 4


class LaggingLeader(Changelog):
    """A newly elected leader: its first answers put the end before what was committed."""

    def __init__(self, logs, stale_answers):
        super().__init__(logs)
        self.stale_answers = stale_answers

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        if self.stale_answers:
            self.stale_answers -= 1
            return 0, 0
        return super().get_watermark_offsets(tp, timeout, cached)

    def list_topics(self, topic=None, timeout=None):
        return None


def test_an_end_behind_the_kept_position_is_waited_out_not_taken_for_a_new_topic():
    store = TimerStore()
    changelog = LaggingLeader({0: [(b"a", timer(10)), None]}, stale_answers=0)
    restorer = ChangelogRestorer(lambda: changelog, TOPIC)
    recover(store, restorer, {0})
    changelog.stale_answers = 3  # the partition's leader moved meanwhile
    assert recover(store, restorer, {0}) == []
    assert store.get(0, b"a") is not None and store.position(0) == 2
    assert changelog.stale_answers == 0
