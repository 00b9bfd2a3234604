"""bench/hotpath.py drives the worker's real record path: every event gives one egress record
and each key written in a batch one changelog record (a dead letter or a skipped step would
change the count)."""

from bench.hotpath import records, run_once


def test_the_hot_path_benchmark_produces_what_the_worker_would():
    batches = records(events=200, keys=50, partitions=6)
    assert sum(len(b) for b in batches) == 200
    # each batch is one partition's, and one partition's keys never appear in another
    assert all(len({m.partition() for m in b}) == 1 for b in batches)
    _, _, produced = run_once(batches, 6)
    assert produced == 200 + 50  # egress per event + changelog per key (one batch each)
