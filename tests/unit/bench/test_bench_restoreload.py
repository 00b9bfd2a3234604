"""The restore-under-load part's bookkeeping (bench/restoreload.py): ids that all land in the
big partition, and the survivor's restore of it read from its log."""

import pytest
from bench.contenders import Proc
from bench.restoreload import BIG, _wait_restored, ids_in

from kstatefun.kafka.partitioner import id_partitioner


class _Proc:
    """A process that is only its log (no process to start): Proc's wait_log on it."""

    wait_log = Proc.wait_log

    def __init__(self, log, alive):
        self.log, self._alive = log, alive

    def alive(self):
        return self._alive


def test_ids_in_one_partition():
    ids = ids_in(BIG, 6, 50)
    partition_of = id_partitioner(6, "crc32")
    assert len(set(ids)) == 50 and {partition_of(i) for i in ids} == {BIG}


LINE = (
    "2026-12-06 01:00:00,000 INFO kstatefun.state.restore app=a instance=r2 restored "
    "topic=a-changelog partitions={} records={} seconds={} rate=1/s\n"
)


def test_the_restore_of_the_big_partition_is_read_from_the_log_past_the_mark(tmp_path):
    log = tmp_path / "r2.log"
    old = LINE.format("0,3", 9, "0.10")  # before the mark: the first start's restore
    log.write_text(old + LINE.format("10,5", 0, "0.01") + LINE.format("1,0,2", 5000000, "21.50"))
    proc = _Proc(log, True)
    assert _wait_restored(proc, len(old), 1.0) == {"records": 5000000, "seconds": 21.5}


def test_a_survivor_that_stopped_before_the_restore_is_an_error(tmp_path):
    log = tmp_path / "r2.log"
    log.write_text(LINE.format("10", 9, "0.10"))  # partition 10, not 0
    proc = _Proc(log, False)
    with pytest.raises(RuntimeError, match="worker's log"):
        _wait_restored(proc, 0, 1.0)
