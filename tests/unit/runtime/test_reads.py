"""ReadGuard (runtime/reads.py): records a read took before one of its rebalance callbacks
revoked or repositioned their partition are dropped, and a partition still assigned is sought
back to where it restarts, so that nothing is processed twice and nothing is skipped."""

import pytest
from confluent_kafka import OFFSET_INVALID, OFFSET_STORED, KafkaException, TopicPartition
from tests.fakes import Record

from kstatefun.runtime.reads import ReadGuard


class Consumer:
    def __init__(self, assigned, refuse_seek=False):
        self.assigned = set(assigned)
        self.sought = []
        self.refuse_seek = refuse_seek

    def assignment(self):
        return [TopicPartition(t, p) for t, p in sorted(self.assigned)]

    def seek(self, tp):
        if self.refuse_seek:
            raise KafkaException("Erroneous state")
        self.sought.append((tp.topic, tp.partition, tp.offset))


def records(*placements):
    return [Record(t, p, o, b"k", b"v") for t, p, o in placements]


def offsets(batch):
    return [(m.topic(), m.partition(), m.offset()) for m in batch]


def test_a_read_without_callbacks_keeps_its_batch_as_it_is():
    guard = ReadGuard()
    batch = records(("in", 0, 5), ("in", 1, 9))
    guard.start()
    assert guard.fresh(Consumer({("in", 0), ("in", 1)}), batch) is batch


def test_records_of_a_partition_revoked_during_the_read_are_dropped_without_a_seek():
    guard, consumer = ReadGuard(), Consumer({("in", 0)})
    guard.start()
    batch = records(("in", 0, 5), ("in", 1, 9), ("in", 1, 10), ("in", 0, 6))
    guard.revoked([TopicPartition("in", 1)])
    assert offsets(guard.fresh(consumer, batch)) == [("in", 0, 5), ("in", 0, 6)]
    assert consumer.sought == []


def test_a_partition_revoked_and_assigned_again_in_one_read_restarts_where_assigned():
    guard, consumer = ReadGuard(), Consumer({("in", 0), ("in", 1)})
    guard.start()
    guard.revoked([TopicPartition("in", 0), TopicPartition("in", 1)])
    # the assignment's start: a committed offset, and one left to librdkafka to look up
    guard.assigned([TopicPartition("in", 0, 4), TopicPartition("in", 1, OFFSET_INVALID)])
    batch = records(("in", 0, 5), ("in", 1, 9), ("in", 0, 4))
    assert guard.fresh(consumer, batch) == []
    assert consumer.sought == [("in", 0, 4), ("in", 1, OFFSET_STORED)]


def test_a_partition_assigned_for_the_first_time_keeps_its_records():
    guard, consumer = ReadGuard(), Consumer({("in", 0), ("in", 1)})
    guard.start()
    guard.assigned([TopicPartition("in", 1, 0)])
    batch = records(("in", 0, 5), ("in", 1, 0))
    assert offsets(guard.fresh(consumer, batch)) == [("in", 0, 5), ("in", 1, 0)]
    assert consumer.sought == []


def test_a_rewind_in_a_callback_drops_the_kept_partitions_records_and_seeks_again():
    """A commit on revoke failed: the abort sought the kept partition back to 3, the revoked
    one went to its next owner."""
    guard, consumer = ReadGuard(), Consumer({("in", 0)})
    guard.start()
    batch = records(("in", 0, 7), ("in", 1, 8))
    guard.restarted([TopicPartition("in", 0, 3), TopicPartition("in", 1, 6)])
    guard.revoked([TopicPartition("in", 1)])
    assert guard.fresh(consumer, batch) == []
    assert consumer.sought == [("in", 0, 3)]


def test_what_changed_before_a_read_does_not_touch_it():
    guard, consumer = ReadGuard(), Consumer({("in", 0)})
    guard.revoked([TopicPartition("in", 0)])  # between two reads: the fetch queue was purged
    guard.start()
    batch = records(("in", 0, 5))
    assert guard.fresh(consumer, batch) is batch


def test_a_seek_that_fails_stops_the_worker_rather_than_skip_records():
    guard, consumer = ReadGuard(), Consumer({("in", 0)}, refuse_seek=True)
    guard.start()
    guard.restarted([TopicPartition("in", 0, 3)])
    with pytest.raises(KafkaException):
        guard.fresh(consumer, records(("in", 0, 7)))
