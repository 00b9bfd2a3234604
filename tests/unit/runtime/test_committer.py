"""The commit policy (runtime/commit.py, Committer): when the loop's transaction commits, and
what waiting for its remote calls does."""

import time

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kstatefun.runtime.commit import Committer


class FakeTxn:
    transaction_timeout_s = 10.0
    longest_call_s = 35.0

    def __init__(self):
        self.is_open = True
        self.opened_at = time.monotonic()
        self.fence_offsets = {}
        self.calls = []
        self.fail_commit = False

    def commit(self):
        self.calls.append("commit")
        if self.fail_commit:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit timed out"))
        self.is_open = False

    def abort(self, rewind=True):
        self.calls.append(("abort", rewind))
        self.is_open = False


class FakeRemote:
    def __init__(self, idle=True, finishes=True):
        self.idle = idle
        self.finishes = finishes
        self.waited = []

    def wait_idle(self, timeout_s=None):
        self.waited.append(timeout_s)
        if not self.finishes:
            raise TimeoutError("remote requests still in flight")
        self.idle = True

    def settled(self):
        pass

    def too_slow(self):
        return 1


def test_commits_when_the_poll_drained_what_was_available_not_after_a_full_batch():
    txn = FakeTxn()
    committer = Committer(txn, None, commit_interval_s=60.0, max_batch_records=100)
    committer.after_batch(100)  # a full batch: more is waiting, keep the transaction open
    assert txn.calls == []
    committer.after_batch(3)
    assert txn.calls == ["commit"]


def test_a_due_transaction_commits_even_after_a_full_batch():
    txn = FakeTxn()
    txn.opened_at -= 1.0
    Committer(txn, None, commit_interval_s=0.5, max_batch_records=100).after_batch(100)
    assert txn.calls == ["commit"]


def test_remote_calls_in_flight_hold_the_commit_back_until_due_then_it_waits_for_them():
    txn, remote = FakeTxn(), FakeRemote(idle=False)
    committer = Committer(txn, remote, commit_interval_s=60.0, max_batch_records=100)
    committer.after_batch(0)
    assert txn.calls == [] and remote.waited == []
    txn.opened_at -= 61.0
    committer.after_batch(0)
    assert txn.calls == ["commit"] and len(remote.waited) == 1


def test_remote_calls_slower_than_half_the_transaction_timeout_abort_and_rewind():
    txn, remote = FakeTxn(), FakeRemote(idle=False, finishes=False)
    txn.opened_at -= 61.0
    Committer(txn, remote, commit_interval_s=60.0, max_batch_records=100).after_batch(0)
    assert txn.calls == [("abort", True)]
    assert remote.waited[0] <= txn.transaction_timeout_s / 2


def test_a_failed_commit_on_revoke_rewinds_the_partitions_kept_and_forgets_the_revoked():
    txn = FakeTxn()
    txn.fail_commit = True
    txn.fence_offsets = {("t", 0): 5, ("t", 1): 7}
    Committer(txn, None, 60.0, 100).on_revoke([TopicPartition("t", 0)])
    # the kept partition's records are read again here; the revoked one's by its next owner
    assert txn.calls == ["commit", ("abort", True)] and txn.fence_offsets == {("t", 1): 7}


def test_only_a_clean_stop_commits_the_open_transaction():
    clean, failed = FakeTxn(), FakeTxn()
    Committer(clean, FakeRemote(), 60.0, 100).final(clean=True)
    Committer(failed, FakeRemote(), 60.0, 100).final(clean=False)
    assert clean.calls == ["commit"] and failed.calls == [("abort", False)]


class EpochTxn(FakeTxn):
    """A transaction whose consumer reports ``epoch`` (the heartbeat's answer changes it)."""

    def __init__(self):
        super().__init__()
        self.is_open = False
        self.epoch = 2

    def member_epoch(self):
        return self.epoch


def test_after_a_kip848_revocation_the_next_commit_waits_for_the_new_member_epoch():
    txn = EpochTxn()
    committer = Committer(txn, None, 0.1, 100, epoch_bumps_after_revoke=True)
    committer.on_revoke([TopicPartition("in", 2)])
    txn.is_open = True  # the kept partitions are consumed again at once
    txn.opened_at -= 1.0  # even a due transaction waits: its offsets carry the old epoch
    assert committer.after_batch(5) is False
    assert committer.after_batch(0) is False
    assert txn.calls == []
    txn.epoch = 3  # the heartbeat acknowledging the revocation was answered
    assert committer.after_batch(0) is True
    assert txn.calls == ["commit"]


def test_the_wait_for_the_new_member_epoch_is_bounded(monkeypatch):
    import kstatefun.runtime.commit as commit

    monkeypatch.setattr(commit, "EPOCH_WAIT_S", 0.05)
    txn = EpochTxn()
    committer = Committer(txn, None, 0.1, 100, epoch_bumps_after_revoke=True)
    committer.on_revoke([TopicPartition("in", 2)])
    txn.is_open = True
    assert committer.after_batch(1) is False
    time.sleep(0.06)
    assert committer.after_batch(1) is True  # the epoch never moved: commit anyway


def test_classic_protocols_and_empty_revocations_do_not_wait_for_an_epoch():
    for bumps, revoked in ((False, [TopicPartition("in", 2)]), (True, [])):
        txn = EpochTxn()
        committer = Committer(txn, None, 0.1, 100, epoch_bumps_after_revoke=bumps)
        committer.on_revoke(revoked)
        txn.is_open = True
        assert committer.after_batch(1) is True
