"""The chaos runner's own bookkeeping (tests/chaos/run.py): why a worker exited, read from its
log, and the output pauses it publishes per fault kind (docs/guarantees.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.chaos.run import ChaosConfig, ChaosReport, EgressWatch, Workers, exit_cause
from tests.chaos.stalls import longest_gap, readable_commits, readable_times


@pytest.mark.parametrize(
    ("lines", "code", "cause"),
    [
        (
            [
                "WARNING retrying after a retriable kafka error call='list_offsets' attempt=1",
                "ERROR stopping: list_offsets still failed after 120 s of retries (9 attempts)",
            ],
            1,
            "retriable",
        ),
        (["ERROR stopping: KafkaError{code=_FATAL}"], 1, "fatal-kafka"),
        (["ERROR this worker's transactional id was fenced: it was taken over"], 3, "fenced"),
        (["ERROR watchdog: the worker loop made no progress for 60 s"], 4, "watchdog"),
        (["Traceback (most recent call last):", '  File "x.py"', "ValueError: x"], 1, "traceback"),
        (["INFO assigned invocations partitions=[0]"], -9, "signal 9"),
        (["INFO assigned invocations partitions=[0]"], 1, "unknown"),
        ([], None, "hung"),
    ],
)
def test_exit_cause_reads_the_last_telling_line_of_the_last_start(
    tmp_path: Path, lines: list[str], code: int | None, cause: str
) -> None:
    log = tmp_path / "worker-w1.log"
    # an earlier start that ended for another reason must not count
    earlier = "==== start 10:00:00 ====\nERROR stopping: x still failed after 120 s\n"
    log.write_text(earlier + "==== start 10:05:00 ====\n" + "".join(f"{x}\n" for x in lines))
    assert exit_cause(log, code) == cause


def test_exit_causes_are_counted_in_the_report() -> None:
    report = ChaosReport(seed=1)
    report.exits = [("w1", 1, "at 10 s", "retriable"), ("w2", 3, "at 20 s", "fenced")]
    lines = report.lines()
    assert "worker exits caused by retriable errors: 1" in lines
    assert "worker exits by cause: fenced=1 retriable=1" in lines
    assert [e[:2] for e in report.bad_exits] == [("w1", 1)]


def test_one_partition_pause_shows_while_others_write() -> None:
    watch = EgressWatch("unused:9092", "egress")
    watch.arrivals = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 12.0]
    watch.by_partition = {0: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 12.0], 1: [1.0, 2.0, 12.0]}
    assert watch.longest_pause(2.5, 13.0) == 6.0
    assert watch.longest_pause(2.5, 13.0, partition=1) == 10.0
    # nothing after the start: the pause lasts until the window's end
    assert watch.longest_pause(2.5, 9.0, partition=1) == 7.0


def test_a_worker_has_started_only_after_its_start_line_of_this_run(tmp_path: Path) -> None:
    workers = Workers("unused:9092", tmp_path / "module.yaml", "egress", ChaosConfig(), tmp_path)
    log = tmp_path / "worker-w1.log"
    log.write_text("==== start 10:00:00 ====\nINFO worker started app=chaos\n")
    assert workers.has_started("w1")
    # restarted, and SIGTERMed before it got as far as its start line
    log.write_text(log.read_text() + "==== start 10:05:00 ====\n")
    assert not workers.has_started("w1")


def _batch(offset: int, pid: int, at_ms: int, control: bool = False) -> str:
    return (
        f"baseOffset: {offset} lastOffset: {offset} count: 1 producerId: {pid} "
        f"producerEpoch: 0 isTransactional: true isControl: {str(control).lower()} "
        f"position: 0 CreateTime: {at_ms} size: 80"
    )


def test_records_are_readable_only_once_every_earlier_transaction_ended() -> None:
    marker = "| offset: {o} CreateTime: {t} keySize: 4 valueSize: 6 endTxnMarker: {kind}"
    dump = "\n".join(
        [
            "Dumping 00000000000000000000.log",
            _batch(0, 1, 1_000),  # producer 1 begins (a worker that then stops)
            _batch(1, 2, 1_100),  # producer 2 begins after it
            _batch(2, 2, 1_200, control=True),
            marker.format(o=2, t=1_200, kind="COMMIT"),  # committed, but held behind producer 1
            _batch(3, 1, 9_000, control=True),
            marker.format(o=3, t=9_000, kind="ABORT"),  # producer 1 aborted: the LSO moves on
            _batch(4, 2, 9_500),
            _batch(5, 2, 9_600, control=True),
            marker.format(o=5, t=9_600, kind="COMMIT"),
        ]
    )
    assert readable_times(dump) == [9.0, 9.6]
    held, after = readable_commits(dump)
    assert (held.marker_at, held.producer, held.held_by) == (1.2, "2", "1")
    assert after.held_by is None


def test_a_pause_names_the_commits_around_it_and_the_transaction_that_held_it() -> None:
    marker = "| offset: {o} CreateTime: {t} keySize: 4 valueSize: 6 endTxnMarker: {kind}"
    dump = "\n".join(
        [
            _batch(0, 2, 1_000),
            _batch(1, 2, 1_200, control=True),
            marker.format(o=1, t=1_200, kind="COMMIT"),  # readable at once
            _batch(2, 1, 1_300),  # producer 1 begins, then gets stuck
            _batch(3, 2, 1_400),
            _batch(4, 2, 1_500, control=True),
            marker.format(o=4, t=1_500, kind="COMMIT"),  # held until producer 1 ends
            _batch(5, 1, 9_000, control=True),
            marker.format(o=5, t=9_000, kind="ABORT"),
        ]
    )
    pause, what = longest_gap(readable_commits(dump), 2.0, 10.0)
    assert pause == pytest.approx(7.8)
    assert what == (
        "00:00:01.200 (producer 2) to 00:00:09.000 (producer 2, marker 00:00:01.500 held by 1 "
        "until then)"
    )
