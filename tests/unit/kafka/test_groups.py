"""Whether a group's coordinator answers (kafka/groups.py), with a fake consumer; and where a
group's coordinator partition is."""

from types import SimpleNamespace

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kstatefun.kafka.groups import coordinator_answers


class Consumer:
    """``committed`` answers with ``answer``: offsets (a list) or an exception to raise."""

    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def committed(self, partitions, timeout=-1):
        self.asked.append(([(tp.topic, tp.partition, tp.offset) for tp in partitions], timeout))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


SENT = [TopicPartition("in", 3, 120), TopicPartition("in", 5, 7)]


def answered(offset=-1001, error=None):
    """What ``committed`` returns: the partition with its offset and error (read-only on a
    real TopicPartition)."""
    return [SimpleNamespace(topic="in", partition=3, offset=offset, error=error)]


def test_a_coordinator_that_returns_the_committed_offset_answers():
    consumer = Consumer(answered(100))
    assert coordinator_answers(consumer, SENT, 2.0) is True
    # one partition is enough to reach the coordinator; the offset to send is not asked for
    assert consumer.asked == [([("in", 3, -1001)], 2.0)]


def test_a_partition_never_committed_is_an_answer_too():
    assert coordinator_answers(Consumer(answered(-1001)), SENT, 1.0) is True


def test_no_answer_in_time_is_no_answer():
    """The coordinator's broker is down, frozen, or the coordinator is still loading the group
    (librdkafka retries until the timeout, then raises)."""
    for code in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._WAIT_COORD):
        consumer = Consumer(KafkaException(KafkaError(code, "no coordinator")))
        assert coordinator_answers(consumer, SENT, 1.0) is False


def test_an_unstable_offset_is_no_answer():
    """A transactional commit to the partition is pending: a producer's request reached the
    coordinator, so its call is not the one stuck looking for it."""
    unstable = answered(error=KafkaError(KafkaError.UNSTABLE_OFFSET_COMMIT))
    assert coordinator_answers(Consumer(unstable), SENT, 1.0) is False


def test_nothing_to_ask_about_is_no_answer():
    consumer = Consumer(answered(1))
    assert coordinator_answers(consumer, [], 1.0) is False
    assert consumer.asked == []


def test_member_epoch_reads_librdkafkas_serialized_group_metadata():
    from confluent_kafka import Consumer as RealConsumer

    from kstatefun.kafka.groups import member_epoch

    # a consumer that never joined: librdkafka's own serialization, generation -1
    consumer = RealConsumer({"group.id": "g", "bootstrap.servers": "127.0.0.1:9"})
    try:
        assert member_epoch(consumer.consumer_group_metadata()) == -1
    finally:
        consumer.close()
    assert member_epoch(b"CGMDv2:\x00\x00\x00\x07g\x00m\x00\x00") == 7
    assert member_epoch(b"something else") is None
    assert member_epoch(b"CGMDv2:\x00") is None
