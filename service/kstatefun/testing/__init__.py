"""``kstatefun.testing``: unit-test functions in memory, without Kafka.

A ``Harness`` runs your ``StatefulFunctions`` (and, optionally, your module.yaml for ingress
routing and declared egresses) with the runtime's semantics: one invocation at a time per
address in arrival order, all-or-nothing effects, dead letters with the runtime's reasons,
delayed messages and state TTL on a virtual clock. Deterministic and fast::

    from kstatefun.testing import Harness
    from examples.greeter import functions

    h = Harness(functions, "config/module.yaml")
    h.send_ingress("greeter-names", "ann", b'{"name": "Ann"}')
    h.run()
    assert h.state("example/counter", "ann") == {"visits": 1}
    assert h.egress("example/greetings")[0].text == "Hello Ann! Nice to meet you."

See docs/testing.md.
"""

from kstatefun.testing.harness import DUPLICATE_CANCELLATION_TOKEN, Harness, HarnessError
from kstatefun.testing.records import DeadLetter, EgressRecord, InvocationRecord, PendingTimer
from kstatefun.testing.timers import VirtualClock

__all__ = [
    "DUPLICATE_CANCELLATION_TOKEN",
    "DeadLetter",
    "EgressRecord",
    "Harness",
    "HarnessError",
    "InvocationRecord",
    "PendingTimer",
    "VirtualClock",
]
