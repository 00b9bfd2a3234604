"""Where a group's coordinator is, from metadata (kafka/groups.py), with a fake client."""

from types import SimpleNamespace

from confluent_kafka import KafkaError, KafkaException

from kstatefun.kafka.groups import OFFSETS_TOPIC, coordinator_elected, coordinator_partition


def metadata(leaders, brokers=(1, 2, 3), error=None):
    partitions = {p: SimpleNamespace(leader=leader) for p, leader in enumerate(leaders)}
    topic = SimpleNamespace(partitions=partitions, error=error)
    return SimpleNamespace(topics={OFFSETS_TOPIC: topic}, brokers={b: object() for b in brokers})


class Client:
    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def list_topics(self, topic=None, timeout=-1):
        self.asked.append((topic, timeout))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


GROUP = "app"  # its partition among 5: abs(hash("app")) % 5
P = coordinator_partition(GROUP, 5)


def leaders_with(p_leader, others=1):
    return [p_leader if p == P else others for p in range(5)]


def test_a_live_leader_of_the_groups_partition_is_an_elected_coordinator():
    client = Client(metadata(leaders_with(2)))
    assert coordinator_elected(client, GROUP, 2.0) is True
    assert client.asked == [(OFFSETS_TOPIC, 2.0)]


def test_no_leader_or_a_leader_gone_from_the_brokers_is_not():
    assert coordinator_elected(Client(metadata(leaders_with(-1))), GROUP, 1.0) is False
    gone = metadata(leaders_with(3), brokers=(1, 2))  # the other partitions' leaders are live
    assert coordinator_elected(Client(gone), GROUP, 1.0) is False


def test_no_metadata_is_not_an_elected_coordinator():
    down = KafkaException(KafkaError(KafkaError._TRANSPORT, "all brokers down"))
    assert coordinator_elected(Client(down), GROUP, 1.0) is False
    denied = metadata([1] * 5, error=KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert coordinator_elected(Client(denied), GROUP, 1.0) is False


def test_the_partition_is_the_brokers_abs_of_the_java_hash():
    assert coordinator_partition("hello", 50) == 99162322 % 50
    assert coordinator_partition("polygenelubricants", 50) == 0  # Utils.abs(MIN) == 0
