"""The commit protocol's offsets: what each transaction sends with the group's metadata."""

from tests.fakes import Record

from kstatefun.observability.metrics import WorkerMetrics
from kstatefun.runtime.commit import Transaction


class FakeProducer:
    def __init__(self) -> None:
        self.offsets: list[dict[tuple[str, int], int]] = []
        self.commits = 0

    def init_transactions(self, timeout):
        pass

    def begin_transaction(self):
        pass

    def produce(self, *args, **kwargs):
        pass

    def poll(self, timeout=0):
        return 0

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        assert metadata == "generation-7"
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
