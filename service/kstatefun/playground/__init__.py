"""StateFun's playground ingress and egress (``io.statefun.playground.v1/*``) on Kafka.

The HTTP ingress turns each request to ``/{namespace}/{type}/{id}`` into an invocation record on
``<app>-invocations``, written by an idempotent producer before it answers 200: from there it is
an input like any other (exactly-once processing, replayed after a crash). Functions send
``io.statefun.playground/EgressRecord`` values to the egress ``io.statefun.playground/egress``;
the worker writes them in its transactions to ``<app>-playground-<topic>``, and the HTTP egress
hands out the committed ones (``read_committed``) one ``GET /{topic}`` at a time.
"""

from kstatefun.playground.egress import EgressServer, egress_record
from kstatefun.playground.ingress import IngressServer
from kstatefun.playground.servers import Playground, start_playground

__all__ = ["EgressServer", "IngressServer", "Playground", "egress_record", "start_playground"]
