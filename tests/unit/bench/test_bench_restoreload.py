"""The restore-under-load part's bookkeeping (bench/restoreload.py): ids that all land in the
big partition, and the survivor's restore of it read from its log."""

from types import SimpleNamespace

import pytest
from bench.restoreload import BIG, _wait_restored, ids_in

from kstatefun.kafka.partitioner import id_partitioner


def test_ids_in_one_partition():
    ids = ids_in(BIG, 6, 50)
    partition_of = id_partitioner(6, "crc32")
    assert len(set(ids)) == 50 and {partition_of(i) for i in ids} == {BIG}


def test_the_restore_of_the_big_partition_is_read_from_the_log_past_the_mark():
    line = (
        "2026-12-06 01:00:00,000 INFO kstatefun.state.restore app=a instance=r2 restored "
        "topic=a-changelog partitions={} records={} seconds={} rate=1/s\n"
    )
    old = line.format("0,3", 9, "0.10")  # before the mark: the first start's restore
    log = old + line.format("4,5", 0, "0.01") + line.format("0,1,2", 5000000, "21.50")
    proc = SimpleNamespace(log_text=lambda: log, alive=lambda: True, log_tail=lambda n: "")
    assert _wait_restored(proc, len(old), 1.0) == {"records": 5000000, "seconds": 21.5}
    done = SimpleNamespace(log_text=lambda: old, alive=lambda: False, log_tail=lambda n: "")
    with pytest.raises(RuntimeError, match="survivor stopped"):
        _wait_restored(done, len(old), 1.0)
