"""W3: W1's counter written with the real StateFun Python SDK, as a StateFun user would, served
over HTTP (tests/remote/sdk_serving.py). Runs in the SDK's own virtualenv
(tests/remote/sdk_env.py), never in kstatefun's:

    BENCH_EGRESS_TOPIC=out python bench/apps/sdk_count.py --port 0   # prints "LISTENING <port>"

``bench/counter`` keeps a count in SDK state and sends "<key>:<count>" as a Kafka egress
message (egress ``bench/out``, topic ``$BENCH_EGRESS_TOPIC``) for every invocation; the
event's bytes are not decoded (as in bench/apps/count.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# the shared SDK server lives with the remote tests; this script runs by path in another venv
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "remote"))

from sdk_serving import serve  # noqa: E402
from statefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message  # noqa: E402

EGRESS_TOPIC = os.environ.get("BENCH_EGRESS_TOPIC", "bench-out")

functions = StatefulFunctions()


@functions.bind(typename="bench/counter", specs=[ValueSpec(name="count", type=IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    key = context.address.id
    context.send_egress(
        kafka_egress_message(
            typename="bench/out", topic=EGRESS_TOPIC, key=key, value=f"{key}:{count}"
        )
    )


if __name__ == "__main__":
    serve(functions)
