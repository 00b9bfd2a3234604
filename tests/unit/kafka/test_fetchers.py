"""Waking a consumer's fetchers after a resume (kafka/fetchers.py), with a fake consumer."""

from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition

from kstatefun.kafka.fetchers import WAKE_TIMEOUT_S, wake_fetchers


class Consumer:
    def __init__(self, assigned, fail=None):
        self.assigned = assigned
        self.asked = []
        self.fail = fail  # which call raises: "assignment" or "offsets"

    def assignment(self):
        if self.fail == "assignment":  # a consumer whose handles are being destroyed
            raise KafkaException(KafkaError(KafkaError._DESTROY, "Failed to get assignment"))
        return self.assigned

    def offsets_for_times(self, partitions, timeout=-1):
        self.asked.append(([(tp.topic, tp.partition, tp.offset) for tp in partitions], timeout))
        if self.fail == "offsets":
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer"))
        return partitions


def test_one_latest_offset_request_for_the_assigned_partitions_bounded_by_its_timeout():
    consumer = Consumer([TopicPartition("in", 0, 17), TopicPartition("inv", 3)])
    wake_fetchers(consumer)
    assert consumer.asked == [([("in", 0, OFFSET_END), ("inv", 3, OFFSET_END)], WAKE_TIMEOUT_S)]


def test_nothing_assigned_asks_nothing_and_failures_are_not_errors():
    consumer = Consumer([])
    wake_fetchers(consumer)
    assert consumer.asked == []
    for fail in ("assignment", "offsets"):
        wake_fetchers(Consumer([TopicPartition("in", 1)], fail=fail))  # does not raise
