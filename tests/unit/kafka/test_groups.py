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


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Future:
    def __init__(self, value=None, error=None) -> None:
        self.value, self.error, self.is_done = value, error, False

    def done(self) -> bool:
        return self.is_done

    def result(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.value


class _Admin:
    """describe_consumer_groups: the group's members as ``members`` says (member id ->
    partitions of topic "inv"), answered once ``answer()`` is called."""

    def __init__(self) -> None:
        self.members: dict[str, list[int]] = {}
        self.asked: list[_Future] = []
        self.fail = False

    def describe_consumer_groups(self, groups, request_timeout):
        members = [
            SimpleNamespace(
                member_id=m,
                assignment=SimpleNamespace(topic_partitions=[TopicPartition("inv", p) for p in ps]),
            )
            for m, ps in self.members.items()
        ]
        error = KafkaException(KafkaError(KafkaError._TIMED_OUT)) if self.fail else None
        future = _Future(SimpleNamespace(members=members), error)
        self.asked.append(future)
        return {groups[0]: future}

    def answer(self) -> None:
        for f in self.asked:
            f.is_done = True


class _Consumer:
    def __init__(self, member: str, held: list[int]) -> None:
        self.member, self.held = member, held

    def memberid(self) -> str:
        return self.member

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("inv", p) for p in self.held]


def _audit_round(audit, admin, clock, consumer, advance=15.0):
    """One audit: the request sent when due, answered, and the answer read."""
    clock.now += advance
    assert audit.check(consumer) == []  # sends the request, never waits for it
    admin.answer()
    return audit.check(consumer)


def test_the_audit_stops_a_member_that_never_took_what_the_coordinator_assigned_it():
    from kstatefun.kafka.groups import AssignmentAudit

    admin, clock = _Admin(), _Clock()
    audit = AssignmentAudit(admin, "app", every_s=15.0, grace_s=60.0, clock=clock)
    consumer = _Consumer("m1", held=[4])
    admin.members = {"m1": [4, 5], "m2": [0, 1, 2, 3]}
    found = [_audit_round(audit, admin, clock, consumer) for _ in range(5)]
    # first seen untaken at 15 s: reported once 60 s have passed since, not before
    assert found == [[], [], [], [], [("inv", 5)]]


def test_the_audit_forgets_a_partition_once_taken_or_no_longer_assigned():
    from kstatefun.kafka.groups import AssignmentAudit

    admin, clock = _Admin(), _Clock()
    audit = AssignmentAudit(admin, "app", every_s=15.0, grace_s=60.0, clock=clock)
    consumer = _Consumer("m1", held=[4])
    admin.members = {"m1": [4, 5]}
    assert [_audit_round(audit, admin, clock, consumer) for _ in range(4)] == [[]] * 4
    consumer.held = [4, 5]  # taken: the clock starts over if it is assigned and untaken again
    assert _audit_round(audit, admin, clock, consumer) == []
    consumer.held = [4]
    assert [_audit_round(audit, admin, clock, consumer) for _ in range(4)] == [[]] * 4
    admin.members = {"m1": [4]}  # the coordinator took it back: agreed again
    assert [_audit_round(audit, admin, clock, consumer) for _ in range(6)] == [[]] * 6


def test_the_audit_waits_for_a_member_id_and_starts_over_after_a_new_one():
    from kstatefun.kafka.groups import AssignmentAudit

    admin, clock = _Admin(), _Clock()
    audit = AssignmentAudit(admin, "app", every_s=15.0, grace_s=60.0, clock=clock)
    consumer = _Consumer("", held=[])
    clock.now = 15.0
    assert audit.check(consumer) == [] and admin.asked == []  # not in the group yet
    consumer.member = "m1"
    admin.members = {"m1": [5]}
    assert [_audit_round(audit, admin, clock, consumer) for _ in range(4)] == [[]] * 4
    # joined again as another member (a replaced consumer) while a request was in flight
    clock.now += 15.0
    audit.check(consumer)
    consumer.member = "m2"
    admin.answer()
    assert audit.check(consumer) == []
    admin.members = {"m2": [5]}
    found = [_audit_round(audit, admin, clock, consumer) for _ in range(5)]
    assert found == [[], [], [], [], [("inv", 5)]]  # counted from m2's first audit


def test_a_failed_describe_is_asked_again_and_a_member_not_listed_is_joining():
    from kstatefun.kafka.groups import AssignmentAudit

    admin, clock = _Admin(), _Clock()
    audit = AssignmentAudit(admin, "app", every_s=15.0, grace_s=60.0, clock=clock)
    consumer = _Consumer("m1", held=[])
    admin.members = {"m1": [5]}
    assert [_audit_round(audit, admin, clock, consumer) for _ in range(3)] == [[]] * 3
    admin.fail = True  # a coordinator moving: no answer, nothing concluded
    assert _audit_round(audit, admin, clock, consumer) == []
    admin.fail = False
    admin.members = {"m2": [5]}  # m1 not listed (fenced, joining again): start over
    assert _audit_round(audit, admin, clock, consumer) == []
    admin.members = {"m1": [5]}
    found = [_audit_round(audit, admin, clock, consumer) for _ in range(5)]
    assert found == [[], [], [], [], [("inv", 5)]]
    assert audit.check(consumer) == []  # not due: no request
    assert len(admin.asked) == 10
