"""Which Kafka errors a worker waits out and which end it: the one place for that decision.

During a broker failover (a leader or transaction coordinator moving, a broker restarting)
librdkafka reports errors that clear by themselves once the cluster settles, some of them only
after the client refreshes its metadata (a stale ``_UNKNOWN_PARTITION`` does not clear on its
own). :func:`call_with_retry` backs off, refreshes and retries those, until a deadline whose
error names the setting that extends it. Anything else is raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from kstatefun.errors import KafkaUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Not all of these say retriable() in librdkafka: the local ones describe a client whose view of
# the cluster is stale (a broker handle torn down while its node restarted, a partition missing
# from cached metadata) and clear once the metadata is refreshed.
_RETRIABLE_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.KAFKA_STORAGE_ERROR,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.UNSTABLE_OFFSET_COMMIT,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._WAIT_COORD,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._DESTROY_BROKER,
        KafkaError._RESOLVE,
    }
)

# Errors by which a cluster refuses a client's security settings: the cluster answered and said
# no, so retrying cannot help (the worker reports them at start instead of waiting).
_REFUSED_CODES = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    }
)

# A group consumer's fatal error carries its cause only in its text: librdkafka folds every
# one into _FATAL, "Fatal error: <the cause's description>: ...". These are the descriptions.
_PROTOCOL_UNSUPPORTED = (
    "Broker: API version not supported",  # UNSUPPORTED_VERSION
    "Local: Required feature not supported by broker",  # _UNSUPPORTED_FEATURE
)
_INSTANCE_ID_UNRELEASED = "Broker: The instance ID is still used by another member"


def is_fatal(err: KafkaError) -> bool:
    """A fatal error; a consumer's message error may carry _FATAL without the fatal flag."""
    return err.fatal() or err.code() == KafkaError._FATAL


def group_protocol_unsupported(err: KafkaError) -> bool:
    """True for the fatal error of a KIP-848 group consumer whose broker does not take the
    consumer group protocol (older than Kafka 4.0, or the protocol turned off there)."""
    return is_fatal(err) and any(cause in err.str() for cause in _PROTOCOL_UNSUPPORTED)


def instance_id_unreleased(err: KafkaError) -> bool:
    """True for the fatal error of a KIP-848 static member that joined while another member
    still holds its group.instance.id (UNRELEASED_INSTANCE_ID): a running worker with the same
    instance id, or one that stopped without leaving, until the group's session timeout."""
    return is_fatal(err) and _INSTANCE_ID_UNRELEASED in err.str()


RETRY_SETTING = "kafka_retry_timeout_s"
"""The setting (config/settings.py) that bounds how long a retriable error is waited out."""


@dataclass(slots=True)
class RetryPolicy:
    """How retriable errors are waited out: exponential back-off from ``backoff_s`` up to
    ``max_backoff_s``, for at most ``timeout_s`` per call."""

    timeout_s: float = 120.0
    backoff_s: float = 0.2
    max_backoff_s: float = 2.0
    # called before each back-off: the worker's watchdog beat (a retry loop is bounded by
    # timeout_s on its own, so it must not look stuck)
    on_retry: Callable[[], object] | None = None


POLICY = RetryPolicy()
"""The process's policy; a worker sets ``timeout_s`` from :data:`RETRY_SETTING` at start."""


def kafka_error(e: BaseException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, else None."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0]
    return None


def is_retriable(e: BaseException) -> bool:
    """True for an error that clears once the cluster settles: retry the call (after a
    metadata refresh). False for everything else, including any fatal error."""
    err = kafka_error(e)
    if err is None or err.fatal():
        return False
    return err.retriable() or err.code() in _RETRIABLE_CODES


def is_refused(err: KafkaError) -> bool:
    """True for an error by which the cluster refuses this client's credentials or security
    settings (authentication, TLS, authorization): never retried."""
    return err.code() in _REFUSED_CODES


def call_with_retry(
    call: Callable[[], T],
    what: str,
    refresh: Callable[[], object] | None = None,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``call()``, retried while it raises a retriable error, for at most the policy's
    ``timeout_s`` (default: :data:`POLICY`).

    Between attempts: ``refresh()`` (e.g. ``consumer.list_topics(topic)``, which replaces the
    client's cached metadata; its own errors are ignored), then an exponential back-off.
    Raises the first non-retriable error as is, and KafkaUnavailableError (naming ``what``,
    the last error and :data:`RETRY_SETTING`) once the deadline has passed.
    """
    p = policy or POLICY
    timeout_s = p.timeout_s
    deadline = clock() + timeout_s
    delay = p.backoff_s
    attempt = 0
    while True:
        try:
            return call()
        except KafkaException as e:
            if not is_retriable(e):
                raise
            attempt += 1
            if clock() + delay > deadline:
                raise KafkaUnavailableError(
                    f"{what} still failed after {timeout_s:.0f} s of retries ({attempt} "
                    f"attempts), last error: {kafka_error(e)}. The cluster did not recover in "
                    f"time: check the brokers, or raise {RETRY_SETTING} "
                    f"(KSTATEFUN_{RETRY_SETTING.upper()}) if failovers take longer here"
                ) from e
            log.warning(
                "retrying after a retriable kafka error call=%r attempt=%d error=%s",
                what,
                attempt,
                kafka_error(e),
            )
            if p.on_retry is not None:
                p.on_retry()
            if refresh is not None:
                try:
                    refresh()
                except KafkaException as refresh_error:
                    log.info("metadata refresh failed: %s", refresh_error)
            sleep(delay)
            delay = min(delay * 2, p.max_backoff_s)


def watermark_offsets(consumer: Any, tp: Any, timeout: float = 10.0) -> tuple[int, int]:
    """A partition's low and high watermark from the broker, retried while leadership settles
    (a just-created topic, a broker restart), refreshing the topic's metadata in between."""
    return call_with_retry(
        lambda: consumer.get_watermark_offsets(tp, timeout=timeout, cached=False),
        f"reading the offsets of {tp.topic} partition {tp.partition}",
        lambda: consumer.list_topics(tp.topic, timeout=5),
    )
