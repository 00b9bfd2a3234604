"""One exception hierarchy for everything kstatefun raises on purpose.

Every message names the input at fault (module.yaml document and field, topic/partition/offset,
address) and says what to do about it.
"""


class KStatefunError(Exception):
    """Base of every error kstatefun raises deliberately."""


class ConfigError(KStatefunError):
    """Invalid settings, module.yaml or function registration; raised before any processing."""


class TopicError(ConfigError):
    """An internal topic is missing or exists with settings that break a guarantee."""


class DecodeError(KStatefunError):
    """A value could not be decoded as the type it claims to be."""


class FunctionError(KStatefunError):
    """A user function broke the SDK contract (unknown state name, wrong value type, ...)."""


class UnknownFunctionError(KStatefunError):
    """An invocation targets a function type no module registers."""


class FencedError(KStatefunError):
    """Another process took over this worker's transactional id; this one must stop."""


class StateStoreError(KStatefunError):
    """The local state store failed (full disk, I/O error); the worker must stop."""


class KafkaUnavailableError(KStatefunError):
    """A Kafka call kept failing with retriable errors past its deadline (kafka/errors.py)."""


class DevKafkaError(KStatefunError):
    """The local development broker could not be set up or started."""
