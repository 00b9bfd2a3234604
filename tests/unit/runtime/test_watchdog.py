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
