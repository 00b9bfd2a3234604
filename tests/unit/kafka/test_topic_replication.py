"""Internal topics' replication: the cluster's default unless set, and what counts as weak."""

from kstatefun.kafka.topics import InternalTopics, internal_topic_specs, replication_problems


def test_specs_use_the_cluster_default_unless_set():
    topics = InternalTopics("app")
    for spec in internal_topic_specs(topics, 4):
        assert spec.replication_factor == -1  # NewTopic: the broker's default.replication.factor
        assert "min.insync.replicas" not in spec.config
    for spec in internal_topic_specs(topics, 4, replication_factor=3, min_insync_replicas=2):
        assert spec.replication_factor == 3
        assert spec.config["min.insync.replicas"] == "2"
        assert "cleanup.policy" in spec.config  # the topic's own settings stay


def test_single_replica_is_fine_on_a_single_broker_only():
    assert replication_problems(1, 1, brokers=1, wanted=None) == []
    [(problem, why)] = replication_problems(1, 1, brokers=3, wanted=None)
    assert "replication factor 1 on a cluster of 3 brokers" in problem
    assert "loses" in why


def test_fewer_replicas_than_the_setting():
    [(problem, _)] = replication_problems(2, 1, brokers=3, wanted=3)
    assert "replication factor 2 but replication_factor is 3" in problem
    assert replication_problems(3, 2, brokers=3, wanted=3) == []


def test_no_more_replicas_than_min_insync_stops_commits_when_one_broker_is_down():
    [(problem, why)] = replication_problems(2, 2, brokers=3, wanted=None)
    assert "min.insync.replicas 2" in problem
    assert "one broker down" in why
    assert replication_problems(3, 2, brokers=3, wanted=None) == []
