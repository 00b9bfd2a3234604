"""Restore: rebuild a partition's store from its changelog partition.

Done is decided by the consumer's *position* reaching the end offset sampled at the start.
Comparing the last record's offset with ``high watermark - 1`` would hang whenever a
transaction marker is the last entry in the log; the position moves past markers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)


class ChangelogRestorer:
    def __init__(
        self,
        consumer_factory: Callable[[], Consumer],
        topic: str,
        timeout_s: float = 240.0,
        batch: int = 10_000,
    ) -> None:
        self._factory = consumer_factory
        self._consumer: Consumer | None = None
        self._topic = topic
        self._timeout_s = timeout_s
        self._batch = batch
        self.last_rate = 0.0  # records/s of the last restore, for logs and benchmarks

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def restore(self, stores: dict[int, dict[bytes, bytes]]) -> int:
        """Fill each ``stores[p]`` from changelog partition p; returns the records read."""
        if not stores:
            return 0
        if self._consumer is None:
            self._consumer = self._factory()
        consumer = self._consumer
        ends: dict[int, int] = {}
        for p in stores:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self._topic, p), timeout=30, cached=False
            )
            if high > low:
                ends[p] = high
        if not ends:
            return 0
        started = time.monotonic()
        consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in ends])
        total = sum(ends.values())
        read = 0
        last_log = started
        try:
            while ends:
                for msg in consumer.consume(self._batch, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.fatal():
                            raise KafkaException(err)
                        continue
                    store = stores[msg.partition()]
                    value = msg.value()
                    if value is None:
                        store.pop(msg.key(), None)
                    else:
                        store[msg.key()] = value
                    read += 1
                done = [
                    tp.partition
                    for tp in consumer.position([TopicPartition(self._topic, p) for p in ends])
                    if tp.offset >= ends[tp.partition]
                ]
                if done:
                    consumer.incremental_unassign([TopicPartition(self._topic, p) for p in done])
                    for p in done:
                        del ends[p]
                now = time.monotonic()
                if now - started > self._timeout_s:
                    raise TimeoutError(
                        f"restoring {self._topic} partitions {sorted(ends)} took longer than "
                        f"{self._timeout_s:.0f}s; is the broker healthy?"
                    )
                if now - last_log >= 1.0 and ends:
                    last_log = now
                    rate = read / (now - started)
                    log.info(
                        "restoring topic=%s partitions=%s records=%d of about %d rate=%.0f/s",
                        self._topic, _plist(ends), read, total, rate,
                    )
        finally:
            consumer.unassign()
        elapsed = max(time.monotonic() - started, 1e-9)
        self.last_rate = read / elapsed
        log.info(
            "restored topic=%s partitions=%s records=%d seconds=%.2f rate=%.0f/s",
            self._topic, _plist(stores), read, elapsed, self.last_rate,
        )
        return read


def _plist(partitions: Iterable[int]) -> str:
    return ",".join(map(str, sorted(partitions)))
