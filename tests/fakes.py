"""Stand-ins for a consumed Kafka record and the worker's transaction, for the tests that run
the router, the dispatcher, the remote invoker or the commit protocol without Kafka."""

from __future__ import annotations


class Record:
    """A consumed record, as confluent_kafka.Message quacks."""

    def __init__(self, topic, partition, offset, key, value, headers=None):
        self._t, self._p, self._o = topic, partition, offset
        self._k, self._v, self._h = key, value, headers

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def key(self):
        return self._k

    def value(self):
        return self._v

    def headers(self):
        return self._h

    def error(self):
        return None


class Txn:
    """Records what would be produced into the open transaction."""

    def __init__(self):
        self.produced = []

    def produce(self, topic, value, key=None, partition=None, headers=None, on_delivery=None):
        self.produced.append((topic, key, value, partition, headers))

    def of(self, topic):
        return [p for p in self.produced if p[0] == topic]
