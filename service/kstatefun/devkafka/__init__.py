"""A local single-node Kafka broker for development and tests (``kstatefun dev-kafka``).

The broker is Apache Kafka run from its Maven Central jars with the JDK on PATH; no Docker.
"""

from kstatefun.devkafka.broker import LocalKafka
from kstatefun.devkafka.foreground import run_foreground
from kstatefun.devkafka.security import SaslSslConfig

__all__ = ["LocalKafka", "SaslSslConfig", "run_foreground"]
