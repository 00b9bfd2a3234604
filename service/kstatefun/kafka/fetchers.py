"""Waking a consumer's fetchers after partitions were resumed: one librdkafka detail that
otherwise stops every partition of a worker for up to a second after each rebalance.

librdkafka (2.16) serves ``resume`` in its main thread and does not wake the broker threads
that fetch. A broker thread with no fetchable partition sleeps until an I/O event, a request
of its own or one second (``rd_kafka_max_block_ms``, not configurable), so a partition resumed
while every other partition that broker leads for this consumer is paused is fetched again
only when that sleep ends. That is the state after every incremental rebalance
(KIP-848 and cooperative): librdkafka pauses *all* assigned partitions for the rebalance
callbacks and resumes them after, so the partitions a worker kept stopped 0.1 to 0.55 s after
each revocation in single runs of the scale-out benchmark's part (``bench/scaleout.py``). A
worker whose partitions are all paused for a restore or a drain waits the same way once they
are resumed (the same mechanism; not measured). confluent-kafka-go issue #630 shows the same
0.55 s after a resume.

A request sent to a broker wakes its thread, which then sees the resumed partitions: one
ListOffsets per leader (``offsets_for_times`` with the "latest" timestamp asks each leader of
the partitions once, in parallel). Its answer is not needed; its timeout bounds the call.
"""

from __future__ import annotations

import logging

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)

WAKE_TIMEOUT_S = 0.25
"""How long waking may block the loop: the request is what wakes a broker thread, so a leader
that does not answer in time (moving) costs this once, not a stall."""


def wake_fetchers(consumer: Consumer) -> None:
    """Send one request to each leader of the partitions assigned to ``consumer``, through its
    own broker connections, so that their fetchers see resumed partitions now (module doc).
    Not for a consumer that is closing (the worker checks): its handles are being destroyed,
    and an error raised in its last rebalance callback escaped ``close``."""
    try:
        assigned = consumer.assignment()
        if assigned:
            ask = [TopicPartition(tp.topic, tp.partition, OFFSET_END) for tp in assigned]
            consumer.offsets_for_times(ask, timeout=WAKE_TIMEOUT_S)
    except KafkaException as e:  # best effort: the fetchers wake on their own within 1 s
        log.debug("waking the fetchers: %s", e)
