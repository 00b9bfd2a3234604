"""Whether a consumer group's coordinator answers, asked with a real request to it: what the
worker checks to tell a producer stuck in ``send_offsets_to_transaction`` from a coordinator
still moving."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)


class OffsetsClient(Protocol):
    def committed(
        self, partitions: list[TopicPartition], timeout: float = ...
    ) -> list[TopicPartition]: ...


def coordinator_answers(
    consumer: OffsetsClient, partitions: Sequence[TopicPartition], timeout_s: float
) -> bool:
    """True when the group's coordinator answered, within ``timeout_s``, the committed offset of
    the first of ``partitions`` asked by the group's own ``consumer`` (an OffsetFetch request):
    it has loaded the group and serves its offsets, so a transactional offset commit for it
    would be answered too.

    The answer must come from the coordinator itself. Metadata did not do: the surviving brokers
    name a killed broker as the leader of the group's ``__consumer_offsets`` partition until the
    controller fences it (``broker.session.timeout.ms``), and a check that believed them gave
    producers up seconds before the coordinator moved (chaos seed 1205). librdkafka sends the
    request to the coordinator the consumer found (it looks it up again when a heartbeat fails)
    and retries a coordinator that is loading or not the coordinator until the timeout.

    Not an answer (False): no reply in time (the coordinator is down, frozen or moving), or
    the partition's offset is unstable, a transactional commit to it pending (librdkafka asks
    for stable offsets under read_committed and retries an unstable one until the timeout, then
    reports it on the partition): a producer's request then reached the coordinator, so its
    call is not stuck looking for it. The worker then waits as if the coordinator were still
    moving.
    """
    ask = [TopicPartition(tp.topic, tp.partition) for tp in partitions[:1]]
    if not ask:
        return False
    try:
        answer = consumer.committed(ask, timeout=timeout_s)
    except KafkaException as e:
        log.info("the group coordinator did not answer timeout_s=%.1f error=%s", timeout_s, e)
        return False
    for tp in answer:
        if tp.error is not None and tp.error.code() != KafkaError.NO_ERROR:
            log.info(
                "the group coordinator answered with an error topic=%s partition=%d error=%s",
                tp.topic,
                tp.partition,
                tp.error,
            )
            return False
    return True
