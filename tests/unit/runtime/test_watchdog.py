"""The watchdog ends the process only when the loop has stopped beating for timeout_s."""

import logging

from kstatefun.runtime.watchdog import EXIT_STUCK, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_exits_with_code_4_and_says_where_only_when_stuck(caplog):
    clock, exits = Clock(), []
    dog = Watchdog(30, exit=exits.append, clock=clock)
    clock.now += 29
    assert dog.check() and exits == []
    dog.beat()
    clock.now += 29  # 58 s since start, 29 since the last beat
    assert dog.check() and exits == []
    clock.now += 2
    with caplog.at_level(logging.CRITICAL, logger="kstatefun.runtime.watchdog"):
        assert not dog.check()
    assert exits == [EXIT_STUCK]
    assert "no progress for 31 s" in caplog.text
    assert "test_exits_with_code_4_and_says_where_only_when_stuck" in caplog.text  # the stack


def test_a_worker_s_watchdog_outwaits_its_longest_bounded_wait(caplog):
    from types import SimpleNamespace

    from kstatefun.config.settings import Settings
    from kstatefun.runtime.commit import Committer
    from kstatefun.runtime.worker import Worker

    def committer(transaction_timeout_s: float) -> Committer:
        txn = SimpleNamespace(longest_call_s=30.0, transaction_timeout_s=transaction_timeout_s)
        return Committer(txn, None, 1.0, 1)

    w = Worker.__new__(Worker)
    w.settings = SimpleNamespace(watchdog_timeout_s=Settings().watchdog_timeout_s)
    w.committer = committer(10.0)
    assert w._make_watchdog().timeout_s == 60  # by default twice a commit's longest call
    w.committer = committer(300.0)  # remote calls may be waited for 150 s
    assert w._make_watchdog().timeout_s == 300
    w.settings.watchdog_timeout_s = 20  # as set, but said to be risky
    with caplog.at_level(logging.WARNING, logger="kstatefun.runtime.worker"):
        assert w._make_watchdog().timeout_s == 20
    assert "watchdog_timeout_s=20 is not longer than the longest bounded wait" in caplog.text
    w.settings.watchdog_timeout_s = 0
    assert w._make_watchdog() is None
