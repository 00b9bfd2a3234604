"""Error classification and the retry policy (kafka/errors.py), one fake per class of error."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from kstatefun.errors import KafkaUnavailableError
from kstatefun.kafka.errors import RetryPolicy, call_with_retry, is_refused, is_retriable


def exc(code, fatal=False, retriable=False):
    return KafkaException(KafkaError(code, "from a fake", fatal=fatal, retriable=retriable))


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


class Flaky:
    """Raises ``errors`` in turn, then returns "ok"; counts the metadata refreshes."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0
        self.refreshes = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    def refresh(self):
        self.refreshes += 1


POLICY = RetryPolicy(timeout_s=10, backoff_s=0.2, max_backoff_s=1.0)


def run(call, clock=None):
    clock = clock or Clock()
    return call_with_retry(
        call, "reading a fake", call.refresh, policy=POLICY, sleep=clock.sleep, clock=clock
    )


@pytest.mark.parametrize(
    "code",
    [
        # seen killing workers during broker takeovers (issue 12), not retriable() in librdkafka
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._DESTROY_BROKER,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    ],
)
def test_takeover_errors_are_retried_after_a_metadata_refresh(code):
    call = Flaky(exc(code), exc(code))
    assert run(call) == "ok"
    assert call.calls == 3 and call.refreshes == 2


def test_an_error_librdkafka_calls_retriable_is_retried():
    call = Flaky(exc(KafkaError.UNKNOWN, retriable=True))
    assert run(call) == "ok"


@pytest.mark.parametrize(
    "error",
    [
        exc(KafkaError._UNKNOWN_PARTITION, fatal=True),  # fatal always wins
        exc(KafkaError.TOPIC_AUTHORIZATION_FAILED),
        exc(KafkaError._INVALID_ARG),
    ],
)
def test_fatal_and_permanent_errors_are_raised_at_once(error):
    call = Flaky(error)
    with pytest.raises(KafkaException) as raised:
        run(call)
    assert raised.value is error and call.calls == 1 and call.refreshes == 0
    assert not is_retriable(error)


def test_other_exceptions_are_not_kafka_errors():
    assert not is_retriable(ValueError("x"))
    assert not is_retriable(KafkaException("no KafkaError inside"))


def test_the_deadline_names_the_call_the_error_and_the_setting():
    clock = Clock()
    call = Flaky(*[exc(KafkaError._UNKNOWN_PARTITION) for _ in range(1000)])
    with pytest.raises(KafkaUnavailableError) as raised:
        run(call, clock)
    message = str(raised.value)
    assert "reading a fake still failed after 10 s" in message
    assert "kafka_retry_timeout_s" in message and "KSTATEFUN_KAFKA_RETRY_TIMEOUT_S" in message
    assert clock.now <= 10
    # exponential back-off, capped
    assert clock.sleeps[:4] == [0.2, 0.4, 0.8, 1.0]


def test_a_failing_refresh_does_not_end_the_retries():
    call = Flaky(exc(KafkaError._UNKNOWN_PARTITION))

    def refresh():
        raise exc(KafkaError._TRANSPORT)

    clock = Clock()
    result = call_with_retry(call, "x", refresh, policy=POLICY, sleep=clock.sleep, clock=clock)
    assert result == "ok"


def test_each_retry_tells_the_watchdog_that_the_worker_is_waiting_not_stuck():
    beats = []
    policy = RetryPolicy(timeout_s=10, backoff_s=0.2, on_retry=lambda: beats.append(1))
    call = Flaky(exc(KafkaError._TRANSPORT), exc(KafkaError._TRANSPORT))
    clock = Clock()
    assert call_with_retry(call, "x", policy=policy, sleep=clock.sleep, clock=clock) == "ok"
    assert len(beats) == 2


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    ],
)
def test_a_refusal_of_the_security_settings_is_neither_retried_nor_waited_for(code):
    err = KafkaError(code, "from a fake")
    assert is_refused(err)
    assert not is_retriable(KafkaException(err))


@pytest.mark.parametrize("code", [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN])
def test_a_cluster_that_does_not_answer_has_not_refused(code):
    assert not is_refused(KafkaError(code, "from a fake"))
