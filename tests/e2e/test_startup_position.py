"""StateFun's ingress startupPosition decides where an ingress partition without committed
offsets starts: specific-offsets, date and latest, each on its own ingress."""

import json
import re
import time

import pytest
from confluent_kafka import Producer

from tests.harness import App, read_committed

pytestmark = pytest.mark.kafka

MODULE = """\
kind: io.statefun.kafka.v1/ingress
spec:
  id: test/specific
  startupPosition:
    type: specific-offsets
    offsets:
      - {specific}/0: 3
  topics:
    - {{topic: {specific}, valueType: test/Event, targets: [test/counter]}}
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: test/date
  startupPosition:
    type: date
    date: 2020-01-01 00:00:00.000 +0000
  topics:
    - {{topic: {dated}, valueType: test/Event, targets: [test/counter]}}
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: test/latest
  startupPosition:
    type: latest
  topics:
    - {{topic: {latest}, valueType: test/Event, targets: [test/counter]}}
---
kind: io.statefun.kafka.v1/egress
spec:
  id: test/out
---
kind: io.kstatefun.v1/embedded
spec:
  functions: [tests.apps.counting:functions]
"""


def event(seq):
    return json.dumps({"seq": seq}).encode()


def test_specific_offsets_date_and_latest(kafka_bootstrap, tmp_path, unique_name, create_topic):
    specific, dated, latest, egress = (
        create_topic(unique_name(p)) for p in ("specific", "dated", "latest", "out")
    )
    module = tmp_path / "module.yaml"
    module.write_text(MODULE.format(specific=specific, dated=dated, latest=latest))
    app = App(kafka_bootstrap, unique_name("app"), specific, egress, module)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for seq in range(6):  # offsets 0..5; processing starts at 3
        producer.produce(specific, event(seq), f"s{seq}".encode())
    old = int(time.mktime((2001, 1, 1, 0, 0, 0, 0, 0, 0)) * 1000)
    for seq in range(10, 13):  # before the date: skipped
        producer.produce(dated, event(seq), f"d{seq}".encode(), timestamp=old)
    for seq in range(13, 16):  # after it: processed
        producer.produce(dated, event(seq), f"d{seq}".encode())
    for seq in range(20, 23):  # before the worker starts: skipped under latest
        producer.produce(latest, event(seq), f"l{seq}".encode())
    assert producer.flush(30) == 0

    app.start_worker("w1")
    try:
        # "latest" resolves when the worker first fetches: probe until a probe comes through
        probes = 0
        while probes < 60:
            producer.produce(latest, event(100 + probes), b"probe")
            producer.flush(10)
            probes += 1
            if any(
                k == "probe"
                for k, _ in read_committed(kafka_bootstrap, egress, 1, timeout=1, settle=0)
            ):
                break
        for seq in range(23, 26):
            producer.produce(latest, event(seq), f"l{seq}".encode())
        assert producer.flush(30) == 0
        records = read_committed(kafka_bootstrap, egress, 10)
    finally:
        app.stop_all()
    seqs = sorted(int(value.split(":")[2]) for key, value in records if key != "probe")
    assert seqs == [3, 4, 5, 13, 14, 15, 23, 24, 25], app.all_logs()
    # the records before the start are said to be skipped (the three, and the probes that came
    # before the assignment), on the latest topic only
    said = re.search(rf"topic={latest} partitions=\[0\] skipped_records=(\d+)", app.log("w1"))
    assert said is not None and 3 <= int(said[1]) <= 3 + probes, app.all_logs()
    assert f"topic={specific} partitions" not in app.log("w1")
