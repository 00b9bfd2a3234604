"""The watchdog: ends a worker whose loop has stopped making progress.

A worker stuck for good — inside a librdkafka call that never returns (librdkafka #5511 was
one), or in a function that never returns — keeps its partitions and its open transaction
while doing nothing, and its consumer keeps heart-beating, so the group never moves them.
The watchdog is a daemon thread: when the loop (or a restore in progress) has not called
``beat`` for ``timeout_s``, it logs where the main thread is and ends the process with exit
code 4, so that a supervisor restarts it and the transaction and partitions move on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_STUCK = 4


class Watchdog:
    def __init__(
        self,
        timeout_s: float,
        exit: Callable[[int], object] = os._exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self._exit = exit
        self._clock = clock
        self._last = clock()
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Progress: the loop went round (or a restore read a batch)."""
        self._last = self._clock()

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._watch, name="kstatefun-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """One look: False (after logging and calling ``exit``) when the loop is stuck."""
        stuck_s = self._clock() - self._last
        if stuck_s < self.timeout_s:
            return True
        frame = sys._current_frames().get(self._main or 0)
        where = "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)\n"
        log.critical(
            "watchdog: the worker loop made no progress for %.0f s (watchdog_timeout_s=%s); "
            "exiting with code %d so that it is restarted. The main thread is at:\n%s",
            stuck_s,
            self.timeout_s,
            EXIT_STUCK,
            where.rstrip(),
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit(EXIT_STUCK)
        return False

    def _watch(self) -> None:
        interval = min(1.0, self.timeout_s / 4)
        while not self._stop.wait(interval):
            if not self.check():
                return
