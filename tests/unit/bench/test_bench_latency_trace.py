"""bench/latency_trace.py: one event's latency split into its stages from a worker's trace."""

from bench.latency_trace import _is_group_consumer, analyse


def test_an_event_is_split_at_consume_write_commit_and_visibility():
    trace = {
        # wall time, topic, key, seq: the first hand-out counts (a rewind hands it out again)
        "consumed": [(10.010, "in", "L5000-3", 7), (10.500, "in", "L5000-3", 7)],
        "calls": [
            ("consume", 10.009, 10.010, 1),
            ("commit_transaction", 10.020, 10.030, 0),  # ends before the output: not its commit
            ("send_offsets_to_transaction", 10.030, 10.034, 0),
            ("commit_transaction", 10.034, 10.040, 0),
        ],
    }
    detail = {
        "prefix": "L5000-",
        "window": (10.0, 10.1),
        # seq, sent, visible, egress CreateTime (ms)
        "events": [(7, 10.000, 10.045, 10_032)],
    }
    out = analyse(trace, detail, "in")
    assert out["events"] == 1
    assert out["consumed_ms"]["p50"] == 10.0
    assert out["written_ms"]["p50"] == 22.0
    assert out["committed_ms"]["p50"] == 8.0
    assert out["visible_ms"]["p50"] == 5.0
    assert out["total_ms"]["p50"] == 45.0
    assert out["call_p50_ms"]["send_offsets_to_transaction"] == 4.0


def test_only_the_group_consumer_is_traced():
    assert _is_group_consumer({"group.id": "app", "partition.assignment.strategy": "range"})
    assert _is_group_consumer({"group.id": "app", "group.protocol": "consumer"})
    assert not _is_group_consumer({"group.id": "kstatefun-restore"})
