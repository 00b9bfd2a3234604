"""Waking a consumer's fetchers after a resume (kafka/fetchers.py), with a fake consumer."""

from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition

from kstatefun.kafka.fetchers import WAKE_TIMEOUT_S, wake_fetchers


class Consumer:
    def __init__(self, fail=False):
        self.asked = []
        self.fail = fail

    def offsets_for_times(self, partitions, timeout=-1):
        self.asked.append(([(tp.topic, tp.partition, tp.offset) for tp in partitions], timeout))
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer"))
        return partitions


def test_one_latest_offset_request_for_the_partitions_bounded_by_its_timeout():
    consumer = Consumer()
    wake_fetchers(consumer, [TopicPartition("in", 0, 17), TopicPartition("inv", 3)])
    assert consumer.asked == [([("in", 0, OFFSET_END), ("inv", 3, OFFSET_END)], WAKE_TIMEOUT_S)]


def test_nothing_to_wake_asks_nothing_and_a_failed_request_is_not_an_error():
    consumer = Consumer(fail=True)
    wake_fetchers(consumer, [])
    assert consumer.asked == []
    wake_fetchers(consumer, [TopicPartition("in", 1)])  # does not raise
    assert len(consumer.asked) == 1
