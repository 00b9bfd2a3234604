"""The scale-out part's bookkeeping (bench/scaleout.py): who owns what from the workers' logs,
which event is which, and the latency per rebalance window split by moved partitions."""

from datetime import datetime
from types import SimpleNamespace

from bench.scaleout import _latencies, _window, first_callback, owners


def test_owners_replay_each_workers_callbacks():
    logs = {
        "s1": "assigned invocations partitions=[0, 1, 2, 3] (restoring them) kept=[]\n"
        "revoked invocations partitions=[2, 3] ingress_partitions=2\n",
        "s2": "assigned invocations partitions=[] (restoring them) kept=[]\n"
        "assigned invocations partitions=[2, 3] (restoring them) kept=[]\n",
    }
    procs = {name: SimpleNamespace(log_text=lambda text=text: text) for name, text in logs.items()}
    assert owners(procs) == {0: "s1", 1: "s1", 2: "s2", 3: "s2"}


def test_latency_per_window_splits_moved_from_unmoved_partitions():
    sent = [0.0, 0.1, 1.0, 1.1]  # two keys, two events each
    records = [(0.5, b"S0", b"S0:1", 0), (0.2, b"S1", b"S1:1", 0)]
    records += [(3.0, b"S0", b"S0:2", 0), (1.2, b"S1", b"S1:2", 0)]
    lat = _latencies(records, sent, keys=2)
    assert {j: round(v, 3) for j, v in lat.items()} == {0: 0.5, 1: 0.1, 2: 2.0, 3: 0.1}
    partition = [5, 7, 5, 7]  # key S0 in partition 5, which moved; S1 in 7
    w = _window(lat, sent, partition, 1.0, 2.0, {5})
    assert w["moved"] == {"events": 1, "p99_ms": 2000.0, "max_ms": 2000.0}
    assert w["unmoved"]["events"] == 1 and w["unmoved"]["max_ms"] == 100.0


def test_the_join_splits_where_the_first_callback_after_the_start_was_logged() -> None:
    def at(stamp: str) -> float:
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()

    logs = {
        "s1": "2026-12-06 18:54:26,641 INFO kstatefun.runtime.worker app=a instance=s1 "
        "revoked invocations partitions=[0, 1, 2] ingress_partitions=3\n"
        "2026-12-06 18:54:38,194 INFO kstatefun.runtime.worker app=a instance=s1 "
        "revoked invocations partitions=[2] ingress_partitions=1\n",
        "s2": "2026-12-06 18:54:37,754 INFO kstatefun.runtime.worker app=a instance=s2 worker "
        "started\n2026-12-06 18:54:38,681 INFO kstatefun.runtime.worker app=a instance=s2 "
        "revoked invocations partitions=[4, 5] ingress_partitions=2\n",
        "s3": "2026-12-06 18:54:38,846 INFO kstatefun.runtime.worker app=a instance=s3 "
        "assigned invocations partitions=[4, 5] (restoring them) kept=[]\n",
    }
    procs = {name: SimpleNamespace(log_text=lambda text=text: text) for name, text in logs.items()}
    assert first_callback(procs, at("2026-12-06 18:54:36,207")) == at("2026-12-06 18:54:38,194")
    assert first_callback(procs, at("2026-12-06 18:54:39,000")) is None
