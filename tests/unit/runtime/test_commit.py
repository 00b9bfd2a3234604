"""The commit protocol's offsets (what each transaction sends with the group's metadata), and
what it does when the producer is fenced or its epoch was bumped."""

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException
from tests.fakes import Record

from kstatefun.errors import FencedError, KafkaUnavailableError
from kstatefun.kafka import errors as kafka_errors
from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime import commit as commit_module
from kstatefun.runtime.commit import Transaction


class FakeProducer:
    def __init__(self) -> None:
        self.offsets: list[dict[tuple[str, int], int]] = []
        self.commits = 0
        self.queued = 0  # records produced and not acknowledged yet
        self.unacknowledged_at_offsets: list[int] = []

    def init_transactions(self, timeout):
        pass

    def begin_transaction(self):
        pass

    def produce(self, *args, **kwargs):
        self.queued += 1

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout):
        self.queued = 0
        return 0

    def __len__(self):  # records not yet acknowledged (librdkafka's out queue)
        return self.queued

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        assert metadata == "generation-7"
        self.unacknowledged_at_offsets.append(self.queued)
        self.offsets.append({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def commit_transaction(self, timeout):
        self.commits += 1


class FakeConsumer:
    def consumer_group_metadata(self):
        return "generation-7"


def make_txn():
    producer = FakeProducer()
    txn = Transaction(lambda: producer, FakeConsumer(), [], WorkerMetrics())
    return txn, producer


def test_consumed_offsets_are_sent_and_become_the_fence_offsets():
    txn, producer = make_txn()
    txn.fence_offsets = {("in", 0): 5, ("inv", 0): 9}
    txn.begin()
    txn.track([Record("in", 0, 5, b"k", b"v"), Record("in", 0, 6, b"k", b"v")])
    txn.commit()
    assert producer.offsets == [{("in", 0): 7}]
    assert txn.fence_offsets == {("in", 0): 7, ("inv", 0): 9}


def test_every_record_is_acknowledged_before_the_offsets_are_sent():
    """A refused offset commit (the member epoch bumped by an assignment) aborts, and an abort
    that purges unsent records costs the next transaction a producer epoch bump (0.5 s)."""
    txn, producer = make_txn()
    txn.begin()
    txn.track([Record("in", 0, 5, b"k", b"v")])
    txn.produce("out", b"egress")
    txn.commit()
    assert producer.unacknowledged_at_offsets == [0]


def test_a_transaction_that_consumed_nothing_still_carries_the_group_generation():
    """Only fired timers or TTL deletions: without offsets the broker would not check the
    group generation, and a zombie whose partitions moved on could commit them."""
    txn, producer = make_txn()
    txn.fence_offsets = {("in", 0): 5, ("inv", 1): 9}
    txn.begin()
    txn.produce("out", b"fired")
    txn.commit()
    assert producer.commits == 1
    assert producer.offsets == [{("in", 0): 5, ("inv", 1): 9}]


# --- fenced vs. bumped ----------------------------------------------------------------------


# the messages librdkafka gives a fatal _FENCED error, from the broker's error
OLD_EPOCH = (
    "Failed to commit offsets to transaction on broker 127.0.0.1:9092/2: Broker: Producer "
    "attempted an operation with an old epoch"
)
NEWER_PRODUCER = (
    "Failed to end transaction: Broker: There is a newer producer with the same "
    "transactionalId which fences the current one"
)


def fatal(code, message):
    return KafkaException(KafkaError(code, message, fatal=True))


class FencingProducer(FakeProducer):
    """Fails send_offsets_to_transaction with ``error`` ``times`` times; from then on the
    producer is in librdkafka's fatal state: every transactional call raises the same error."""

    created = 0

    def __init__(self, error=None, init_errors=()):
        super().__init__()
        self.error = error
        self.broken = False
        self.init_errors = list(init_errors)
        self.inits = 0

    def init_transactions(self, timeout):
        self.inits += 1
        if self.init_errors:
            raise self.init_errors.pop(0)

    def begin_transaction(self):
        if self.broken:
            raise self.error

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        if self.error is not None:
            self.broken = True
            raise self.error
        super().send_offsets_to_transaction(offsets, metadata, timeout)

    def abort_transaction(self, timeout):
        if self.broken:
            raise self.error


class Rewinds:
    def __init__(self):
        self.seeks = []

    def consumer_group_metadata(self):
        return "generation-7"

    def seek(self, tp):
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def txn_with(producers):
    made = iter(producers)
    consumer = Rewinds()
    return Transaction(lambda: next(made), consumer, [], WorkerMetrics()), consumer


def one_transaction(txn):
    txn.begin()
    txn.track([Record("in", 0, 5, b"k", b"v")])
    txn.commit()


def test_a_bumped_epoch_aborts_rewinds_and_goes_on_with_a_new_producer():
    bumped = FencingProducer(fatal(KafkaError._FENCED, OLD_EPOCH))
    fresh = FencingProducer()
    txn, consumer = txn_with([bumped, fresh])
    with pytest.raises(KafkaException):  # the worker logs it and replays
        one_transaction(txn)
    assert consumer.seeks == [("in", 0, 5)]  # rewound to the transaction's first offset
    assert txn.producer is fresh and fresh.inits == 1  # took the transactional id back
    assert txn.metrics.epoch_bumps == 1
    one_transaction(txn)  # the replay commits on the new producer
    assert fresh.offsets == [{("in", 0): 6}] and fresh.commits == 1


def test_invalid_producer_epoch_by_code_is_a_bump_too():
    bumped = FencingProducer(fatal(KafkaError.INVALID_PRODUCER_EPOCH, "old"))
    fresh = FencingProducer()
    txn, _ = txn_with([bumped, fresh])
    with pytest.raises(KafkaException):
        one_transaction(txn)
    assert txn.producer is fresh


def test_a_newer_producer_with_the_same_id_is_a_real_fence():
    fenced = FencingProducer(fatal(KafkaError._FENCED, NEWER_PRODUCER))
    txn, _ = txn_with([fenced, FencingProducer()])
    with pytest.raises(FencedError, match="taken over by another process.*newer producer"):
        one_transaction(txn)
    assert txn.producer is fenced  # no new producer: it would fence the other process


# librdkafka's own text when the coordinator answered PRODUCER_FENCED: it says nothing of why
GENERIC = "Failed to end transaction: Local: This instance has been fenced by a newer instance"


def test_a_fence_of_a_transaction_older_than_its_timeout_is_a_bump():
    """Only a transaction open longer than transaction.timeout.ms can have been aborted by the
    coordinator (seen after a broker kill -9 with the generic text, issue 12)."""
    bumped = FencingProducer(fatal(KafkaError._FENCED, GENERIC))
    fresh = FencingProducer()
    txn, consumer = txn_with([bumped, fresh])
    txn.begin()
    txn.track([Record("in", 0, 5, b"k", b"v")])
    txn.opened_at -= 10.5  # open past the 10 s transaction timeout
    with pytest.raises(KafkaException):
        txn.commit()
    assert txn.producer is fresh and consumer.seeks == [("in", 0, 5)]


def test_a_fence_of_a_young_transaction_is_real():
    fenced = FencingProducer(fatal(KafkaError._FENCED, GENERIC))
    txn, _ = txn_with([fenced, FencingProducer()])
    with pytest.raises(FencedError, match="taken over by another process"):
        one_transaction(txn)  # open for milliseconds: the coordinator cannot have timed it out
    assert txn.producer is fenced


def test_epoch_bumps_are_bounded(monkeypatch):
    monkeypatch.setattr(commit_module, "MAX_EPOCH_BUMPS", 2)
    error = fatal(KafkaError._FENCED, OLD_EPOCH)
    txn, _ = txn_with([FencingProducer(error) for _ in range(4)])
    for _ in range(2):
        with pytest.raises(KafkaException):
            one_transaction(txn)
    with pytest.raises(FencedError, match=r"epoch was bumped 3 times within 600 s"):
        one_transaction(txn)


def test_bumps_outside_the_window_do_not_count(monkeypatch):
    monkeypatch.setattr(commit_module, "MAX_EPOCH_BUMPS", 1)
    error = fatal(KafkaError._FENCED, OLD_EPOCH)
    txn, _ = txn_with([FencingProducer(error) for _ in range(3)])
    now = [0.0]
    txn._clock = lambda: now[0]
    for _ in range(2):
        with pytest.raises(KafkaException):
            one_transaction(txn)
        now[0] += commit_module.EPOCH_BUMP_WINDOW_S + 1
    assert txn.metrics.epoch_bumps == 2


def test_a_coordinator_that_is_moving_is_waited_out_by_init_transactions(monkeypatch):
    monkeypatch.setattr(
        kafka_errors, "POLICY", kafka_errors.RetryPolicy(timeout_s=5, backoff_s=0.001)
    )
    moving = KafkaException(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, "moving"))
    producer = FencingProducer(init_errors=[moving, moving])
    txn, _ = txn_with([producer])
    assert producer.inits == 3
    one_transaction(txn)
    assert producer.commits == 1


# --- a producer stuck in send_offsets_to_transaction (librdkafka #5456, #5511) ------------------


class StuckProducer(FencingProducer):
    """send_offsets_to_transaction never returns (until the test releases it), as librdkafka's
    does when it waits for a decommissioned group coordinator; every other call would refuse to
    run concurrently with it."""

    def __init__(self, release):
        super().__init__()
        self.release = release
        self.calls_after = 0

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        self.release.wait()

    def commit_transaction(self, timeout):
        self.calls_after += 1
        raise KafkaException(KafkaError(KafkaError._CONFLICT, "send_offsets in progress"))

    abort_transaction = commit_transaction


@pytest.fixture
def release():
    event = threading.Event()
    yield event
    event.set()  # lets the helper threads of the stuck calls finish


def stuck_txn(monkeypatch, producers, transaction_timeout_s=0.05, coordinator_answers=None):
    """A Transaction over ``producers`` whose stuck-producer waits take milliseconds."""
    monkeypatch.setattr(commit_module, "STUCK_GRACE_S", 0.0)
    monkeypatch.setattr(commit_module, "STUCK_PROBE_AFTER_S", 0.01)
    monkeypatch.setattr(commit_module, "STUCK_CONFIRM_S", 0.01)
    made = iter(producers)
    consumer = Rewinds()
    txn = Transaction(
        lambda: next(made),
        consumer,
        [],
        WorkerMetrics(),
        transaction_timeout_s=transaction_timeout_s,
        coordinator_answers=coordinator_answers,
    )
    return txn, consumer


def test_a_producer_stuck_in_send_offsets_is_given_up_and_replaced(monkeypatch, release):
    stuck = StuckProducer(release)
    fresh = FencingProducer()
    txn, consumer = stuck_txn(monkeypatch, [stuck, fresh])
    with pytest.raises(KafkaException, match="send_offsets_to_transaction did not return"):
        one_transaction(txn)
    assert stuck.calls_after == 0  # neither committed nor aborted through the stuck producer
    assert consumer.seeks == [("in", 0, 5)]  # rewound: the records are processed again
    assert txn.producer is fresh and fresh.inits == 1  # fences the stuck one on the broker
    assert not txn.is_open and txn.metrics.stuck_producers == 1 and txn.metrics.aborts == 1
    one_transaction(txn)  # the replay commits on the new producer
    assert fresh.offsets == [{("in", 0): 6}] and fresh.commits == 1


def test_a_stuck_producer_is_given_up_once_the_group_coordinator_answers(monkeypatch, release):
    """The coordinator answers the consumer while the call stays blocked: given up then, not
    at the transaction timeout (a minute here, so a wrong path would show in the reason)."""
    asked = []

    def answers(partitions, timeout_s):
        asked.append(([(tp.topic, tp.partition) for tp in partitions], timeout_s))
        return True

    stuck = StuckProducer(release)
    fresh = FencingProducer()
    txn, consumer = stuck_txn(
        monkeypatch, [stuck, fresh], transaction_timeout_s=60, coordinator_answers=answers
    )
    with pytest.raises(KafkaException, match="coordinator answered the consumer"):
        one_transaction(txn)
    # asked about the partitions whose offsets the blocked call sends
    assert asked == [([("in", 0)], commit_module.STUCK_PROBE_TIMEOUT_S)]
    assert stuck.calls_after == 0 and txn.producer is fresh and fresh.inits == 1
    assert consumer.seeks == [("in", 0, 5)] and txn.metrics.stuck_producers == 1


def test_each_stuck_producer_is_given_up_once_the_coordinator_answers(monkeypatch, release):
    """The coordinator's answer is a real request, not cached metadata: a second producer stuck
    right after the first (the coordinator moved again) is given up as early."""
    asked = []
    txn, _ = stuck_txn(
        monkeypatch,
        [StuckProducer(release), StuckProducer(release), FencingProducer()],
        transaction_timeout_s=60,
        coordinator_answers=lambda partitions, timeout_s: asked.append(timeout_s) or True,
    )
    for _ in range(2):
        with pytest.raises(KafkaException, match="coordinator answered the consumer"):
            one_transaction(txn)
    assert len(asked) == 2 and txn.metrics.stuck_producers == 2
    one_transaction(txn)  # the third producer commits the replay
    assert txn.producer.commits == 1


def test_a_slow_first_answer_is_timed_again(monkeypatch, release):
    """The first answer waited for the coordinator to load the group: its time would stretch
    the confirmation (twice as long as the answer took), so a second question times the
    coordinator itself; a fast first answer is not asked twice (the tests above)."""
    import time

    took = iter([0.3, 0.0])  # loading, then loaded
    asked = []

    def answers(partitions, timeout_s):
        asked.append(timeout_s)
        time.sleep(next(took))
        return True

    txn, _ = stuck_txn(
        monkeypatch,
        [StuckProducer(release), FencingProducer(), FencingProducer()],
        transaction_timeout_s=60,
        coordinator_answers=answers,
    )
    monkeypatch.setattr(commit_module, "STUCK_CONFIRM_S", 0.2)
    with pytest.raises(KafkaException, match=r"answered the consumer \(in 0\.0 s\)"):
        one_transaction(txn)
    assert len(asked) == 2 and txn.metrics.stuck_producers == 1


def test_a_coordinator_that_does_not_answer_yet_is_waited_for(monkeypatch, release):
    """While the coordinator moves (no answer), the call is waited for up to the transaction
    timeout, asking again meanwhile; then the producer is given up all the same."""
    asked = []

    def answers(partitions, timeout_s):
        asked.append(timeout_s)
        return False

    txn, _ = stuck_txn(
        monkeypatch,
        [StuckProducer(release), FencingProducer()],
        transaction_timeout_s=0.2,
        coordinator_answers=answers,
    )
    with pytest.raises(KafkaException, match="without an answer from the group's coordinator"):
        one_transaction(txn)
    assert len(asked) >= 2  # asked again while waiting
    assert txn.metrics.stuck_producers == 1


def test_a_coordinator_that_answers_late_gives_the_producer_up_then(monkeypatch, release):
    """No answer while the coordinator moves, then an answer: given up once it answers (and
    the call still blocks), long before the transaction timeout."""
    answers_given = iter([False, False, True])
    txn, _ = stuck_txn(
        monkeypatch,
        [StuckProducer(release), FencingProducer()],
        transaction_timeout_s=60,
        coordinator_answers=lambda partitions, timeout_s: next(answers_given),
    )
    with pytest.raises(KafkaException, match="coordinator answered the consumer"):
        one_transaction(txn)
    assert next(answers_given, None) is None and txn.metrics.stuck_producers == 1


def test_a_slow_call_that_returns_is_not_given_up(monkeypatch, release):
    """A call blocked while the coordinator moves, returning once it is back: committed on the
    same producer, nothing given up."""

    class Slow(FencingProducer):
        def send_offsets_to_transaction(self, offsets, metadata, timeout):
            release.wait()
            super().send_offsets_to_transaction(offsets, metadata, timeout)

    def answers(partitions, timeout_s):
        release.set()  # the coordinator is back: the call returns (but it did not answer yet)
        return False

    slow, spare = Slow(), FencingProducer()
    txn, _ = stuck_txn(
        monkeypatch, [slow, spare], transaction_timeout_s=60, coordinator_answers=answers
    )
    one_transaction(txn)
    assert txn.producer is slow and slow.commits == 1 and slow.offsets == [{("in", 0): 6}]
    assert txn.metrics.stuck_producers == 0
    assert spare.inits == 0  # made while the call looked stuck, but it fenced nothing


def test_the_producer_that_takes_over_is_made_before_the_give_up(monkeypatch, release):
    """The replacement connects while the coordinator is asked (a producer made at the
    give-up spent up to 1.7 s finding its coordinator); it runs init_transactions, which
    fences the stuck one, only once that one is given up, and a call that returns after all
    leaves it for the next take-over."""
    made = []
    producers = iter([StuckProducer(release), FencingProducer(), FencingProducer()])

    def factory():
        made.append(next(producers))
        return made[-1]

    def answers(partitions, timeout_s):
        assert len(made) == 2 and made[1].inits == 0  # the spare exists, not yet initialized
        return True

    monkeypatch.setattr(commit_module, "STUCK_GRACE_S", 0.0)
    monkeypatch.setattr(commit_module, "STUCK_PROBE_AFTER_S", 0.01)
    monkeypatch.setattr(commit_module, "STUCK_CONFIRM_S", 0.01)
    txn = Transaction(
        factory,
        Rewinds(),
        [],
        WorkerMetrics(),
        transaction_timeout_s=60,
        coordinator_answers=answers,
    )
    with pytest.raises(KafkaException, match="coordinator answered the consumer"):
        one_transaction(txn)
    assert txn.producer is made[1] and made[1].inits == 1 and len(made) == 2
    one_transaction(txn)  # the replay commits on it; no other producer was made
    assert made[1].commits == 1 and len(made) == 2


def test_a_slow_cluster_is_asked_later(monkeypatch):
    """Calls that took long lately (a loaded cluster) delay the question, so that a working
    call that is merely slow does not look stuck; fast calls keep the 2 s delay."""
    now = [0.0]
    took = [1.0]

    class Timed(FencingProducer):
        def send_offsets_to_transaction(self, offsets, metadata, timeout):
            now[0] += took[0]  # the fake clock: how long the call took
            super().send_offsets_to_transaction(offsets, metadata, timeout)

    txn, _ = txn_with([Timed()])
    txn._clock = lambda: now[0]
    assert txn.probe_after_s == commit_module.STUCK_PROBE_AFTER_S
    for _ in range(10):
        one_transaction(txn)
    slow = txn.probe_after_s
    assert slow == pytest.approx(commit_module.STUCK_SLOW_FACTOR * (1 - 0.8**10))
    took[0] = 0.005
    for _ in range(30):
        one_transaction(txn)
    assert txn.probe_after_s == commit_module.STUCK_PROBE_AFTER_S < slow


def test_given_up_producers_still_blocked_are_bounded(monkeypatch, release):
    monkeypatch.setattr(commit_module, "MAX_ABANDONED_PRODUCERS", 1)
    txn, _ = stuck_txn(monkeypatch, [StuckProducer(release) for _ in range(3)])
    with pytest.raises(KafkaException):
        one_transaction(txn)
    with pytest.raises(KafkaUnavailableError, match=r"2 producers given up are still blocked"):
        one_transaction(txn)
    assert not txn.is_open


def test_a_given_up_producer_whose_call_returns_is_released(monkeypatch):
    """Released producers do not count: a rolling restart that gives up one producer per move
    of the group coordinator, each released later, never stops the worker."""
    monkeypatch.setattr(commit_module, "MAX_ABANDONED_PRODUCERS", 1)
    events = [threading.Event() for _ in range(4)]
    txn, _ = stuck_txn(monkeypatch, [StuckProducer(e) for e in events] + [FencingProducer()])
    try:
        for event in events:
            with pytest.raises(KafkaException, match="did not return"):  # never the bound
                one_transaction(txn)
            if event is not events[-1]:
                event.set()  # its call returns (librdkafka's does at a broker state change)
                txn._abandoned[-1][1].join(5)
        assert txn.metrics.stuck_producers == 4
        assert len(txn._abandoned) == 1 and txn._abandoned[0][1].is_alive()  # the 4th
    finally:
        for event in events:
            event.set()


def test_each_bounded_producer_call_tells_the_watchdog():
    """Several bounded calls in a row (a failed commit, then its abort) must not add up to a
    watchdog timeout: each is preceded by a beat."""
    beats = []

    class Failing(FencingProducer):
        def commit_transaction(self, timeout):
            beats.append("commit")
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "slow", txn_requires_abort=True))

        def abort_transaction(self, timeout):
            beats.append("abort")

    txn, _ = txn_with([Failing()])
    txn.on_progress = lambda: beats.append("beat")
    with pytest.raises(KafkaException):
        one_transaction(txn)
    # flush, send_offsets, commit, abort
    assert beats == ["beat", "beat", "beat", "commit", "beat", "abort"]


class FullOnceProducer(FakeProducer):
    """Its queue is full at the second record produced: BufferError once, until polled."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple] = []
        self.full_at = 2
        self.polls = 0

    def produce(self, topic, value, key=None, partition=-1, **kwargs):
        if len(self.records) + 1 == self.full_at and not self.polls:
            raise BufferError("Local: Queue full")
        self.records.append((topic, key, value, partition))
        super().produce()

    def poll(self, timeout=0):
        self.polls += 1
        return 0


class PendingStore:
    """A store with writes pending in partition 3 (the OverlayStore a Transaction commits)."""

    def __init__(self, writes):
        self.writes = writes
        self.applied = None

    def pending(self):
        yield 3, self.writes

    def apply_overlay(self, positions=None):
        self.applied = positions


def test_every_state_write_is_produced_once_even_when_the_queue_is_full():
    producer = FullOnceProducer()
    store = PendingStore({b"a": b"1", b"b": None, b"c": b"3"})
    metrics = WorkerMetrics()
    txn = Transaction(lambda: producer, FakeConsumer(), [("app-state", store)], metrics)
    txn.begin()
    txn.track([Record("in", 0, 5, b"k", b"v")])
    txn.commit()
    assert producer.polls >= 1  # it waited for room once
    assert producer.records == [
        ("app-state", b"a", b"1", 3),
        ("app-state", b"b", None, 3),
        ("app-state", b"c", b"3", 3),
    ]
    assert metrics.records_out == {"app-state": 3}
    assert store.applied is not None and producer.commits == 1
