"""The output pauses of a kept chaos run, per fault kind, from the COMMIT markers its topics hold.

    python -m tests.chaos.stalls --work-dir DIR --runner-output FILE [--start 2026-12-05T09:33:42.8]

The runner measures pauses with a live egress reader (tests/chaos/run.py, EgressWatch), which
dies with it. This reads the same from the data instead: a transaction becomes visible to
read_committed readers of a partition when its COMMIT marker is written there, and the marker's
batch timestamp is that moment. It dumps one node's replicas of the egress topic and of the
changelog with Kafka's own ``kafka.tools.DumpLogSegments`` (the cluster may be stopped) and,
for each fault of the runner's output, finds the longest gap between markers from the fault's
start to the next fault's: of all egress partitions together (what the runner reports), of the
egress partition that paused longest, and of the changelog partition that paused longest. A
changelog partition is written by its owner alone, so the last shows one worker's pause, which
the egress (every worker writes every egress partition) hides.

The fault times in the runner's output are seconds since its start; ``--start`` is that start
in UTC; the runner prints it on its first line (``started=...``), older runs need ``--start``.
"""

from __future__ import annotations

import argparse
import bisect
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kstatefun.devkafka.jars import ensure_runtime
from tests.chaos.run import APP_ID, longest_pause

FAULT_LINE = re.compile(r"\[\s*([\d.]+)s\] fault (\w+)")
CREATE_TIME = re.compile(r"CreateTime: (\d+)")
START_LINE = re.compile(r"input=(\d+)s .*started=(\S+)")


def _dump(partition_dir: Path, *options: str) -> str:
    """Kafka's ``DumpLogSegments`` of one partition's segments ("" when it has none)."""
    runtime = ensure_runtime()
    segments = sorted(str(f) for f in partition_dir.glob("*.log"))
    if not segments:
        return ""
    return subprocess.run(
        [
            runtime.java,
            "-cp",
            str(runtime.lib_dir / "*"),
            "kafka.tools.DumpLogSegments",
            *options,
            "--files",
            ",".join(segments),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def last_record_time(partition_dirs: list[Path]) -> float | None:
    """When the newest batch of these partitions was created (s since the epoch): for the
    ingress, when the input really ended."""
    times = [int(t) / 1000 for d in partition_dirs for t in CREATE_TIME.findall(_dump(d))]
    return max(times, default=None)


@dataclass(frozen=True, slots=True)
class Readable:
    """One committed transaction of a partition: when its records became readable to
    read_committed readers (s since the epoch), when its COMMIT marker was written, its
    producer id, and the producer whose transaction held it back (the last of those begun
    before it to end, when that was after its own marker; else None)."""

    at: float
    marker_at: float
    producer: str
    held_by: str | None = None


def commit_times(partition_dir: Path) -> list[float]:
    """When the records of each committed transaction in one partition became readable to
    read_committed readers (s since the epoch, sorted): not before its COMMIT marker, nor
    before every transaction that began earlier in the partition ended (committed or
    aborted), since the last stable offset holds readers behind the oldest open one (a
    stopped worker's open transaction holds back everyone's output there until it is
    aborted)."""
    return [r.at for r in partition_commits(partition_dir)]


def partition_commits(partition_dir: Path) -> list[Readable]:
    """readable_commits() of one partition's replica."""
    dump = _dump(partition_dir, "--print-data-log")
    return readable_commits(dump) if dump else []


def readable_times(dump: str) -> list[float]:
    """commit_times() of one partition's ``DumpLogSegments --print-data-log`` output."""
    return [r.at for r in readable_commits(dump)]


def readable_commits(dump: str) -> list[Readable]:
    """Every committed transaction of one partition's ``DumpLogSegments --print-data-log``
    output, sorted by when it became readable (commit_times())."""
    open_txns: dict[str, tuple[int, int]] = {}  # producer id: (first offset, last offset)
    ended: list[tuple[int, float, str]] = []  # (first offset, end time, producer) of each
    commits: list[tuple[int, float, str]] = []  # (last record offset, marker time, producer)
    control: tuple[str, float] | None = None  # the control batch being read: producer, time
    for line in dump.splitlines():
        if line.startswith("baseOffset:"):
            control = None
            fields = dict(re.findall(r"(\w+): (\S+)", line))
            if fields.get("isTransactional") != "true":
                continue
            pid = fields["producerId"]
            if fields.get("isControl") == "true":
                control = (pid, int(fields["CreateTime"]) / 1000)
            else:
                first = open_txns.get(pid, (int(fields["baseOffset"]), 0))[0]
                open_txns[pid] = (first, int(fields["lastOffset"]))
        elif control is not None and "endTxnMarker:" in line:
            pid, at = control
            control = None
            if pid not in open_txns:
                continue
            first, last = open_txns.pop(pid)
            ended.append((first, at, pid))
            if "endTxnMarker: COMMIT" in line:
                commits.append((last, at, pid))
    ended.sort()
    firsts = [f for f, _, _ in ended]
    # latest[i]: the latest end of the transactions ended[: i + 1], and whose it was
    latest: list[tuple[float, str]] = []
    for _, at, pid in ended:
        latest.append(max((at, pid), latest[-1]) if latest else (at, pid))
    readable = []
    for last, at, pid in commits:
        i = bisect.bisect_right(firsts, last) - 1  # every transaction begun at or before last
        if i >= 0 and latest[i][0] > at:
            readable.append(Readable(latest[i][0], at, pid, latest[i][1]))
        else:
            readable.append(Readable(at, at, pid))
    return sorted(readable, key=lambda r: r.at)


def longest_gap(commits: list[Readable], start: float, end: float) -> tuple[float, str]:
    """The longest pause of ``commits`` around a fault (longest_pause()), and what bounds it:
    the wall clock (UTC) of the commits before and after it, their producers, and the
    producer whose open transaction held the second back."""
    times = [r.at for r in commits]
    pause = longest_pause(times, start, end)
    i = bisect.bisect_right(times, start)
    for j in range(max(i - 1, 0), bisect.bisect_right(times, end)):
        after = commits[j + 1] if j + 1 < len(commits) else None
        if after is not None and abs(after.at - commits[j].at - pause) < 1e-6:
            held = f" held by {after.held_by} until then" if after.held_by else ""
            return pause, (
                f"{_clock(commits[j].at)} (producer {commits[j].producer}) to "
                f"{_clock(after.at)} (producer {after.producer}, marker "
                f"{_clock(after.marker_at)}{held})"
            )
    return pause, "no commit ended it within the window"


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.stalls", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="the kept run's --work-dir")
    parser.add_argument("--runner-output", type=Path, required=True, help="what the run printed")
    parser.add_argument("--start", default=None, help="the run's start, UTC (ISO 8601)")
    parser.add_argument("--node", type=int, default=1, help="whose replicas to read (default 1)")
    parser.add_argument(
        "--detail",
        action="store_true",
        help="also name, per fault, the worst partitions and the commits around their pause",
    )
    args = parser.parse_args(argv)
    text = args.runner_output.read_text("utf-8", "replace")
    head = START_LINE.search(text)
    start_text = args.start or (head.group(2) if head else None)
    input_s = re.search(r"input=(\d+)s", text)
    if start_text is None or input_s is None:
        parser.error("the runner output names no start (started=...): pass --start")
    t0 = datetime.fromisoformat(start_text).replace(tzinfo=UTC).timestamp()
    faults = [(m.group(2), t0 + float(m.group(1))) for m in FAULT_LINE.finditer(text)]
    logs = args.work_dir / "kafka" / f"node-{args.node}" / "kafka-logs"
    topics: dict[str, dict[int, list[Readable]]] = {}
    for topic in ("chaos-out", f"{APP_ID}-changelog"):
        topics[topic] = {
            int(d.name.rsplit("-", 1)[1]): partition_commits(d)
            for d in sorted(logs.glob(f"{topic}-[0-9]*"))
        }
    commits = topics
    egress = {p: [r.at for r in c] for p, c in topics["chaos-out"].items()}
    changelog = {p: [r.at for r in c] for p, c in topics[f"{APP_ID}-changelog"].items()}
    merged = sorted(t for times in egress.values() for t in times)
    # the last window ends with the last input record (the ingress's newest batch: the
    # runner's "input done" line came after the input's final flush, which waits for a downed
    # node), else when the input was planned to; a fault after that is not measured (no output
    # was due)
    input_end = last_record_time(sorted(logs.glob("chaos-in-[0-9]*"))) or t0 + float(
        input_s.group(1)
    )
    for kind, start in faults:
        if start >= input_end:
            print(
                f"fault {kind} at {start - t0:.1f} s came after the input's last record "
                f"({input_end - t0:.1f} s): not measured"
            )
    faults = [(kind, start) for kind, start in faults if start < input_end]
    ends = [t for _, t in faults[1:]] + [input_end]
    worst: dict[str, list[float]] = {}
    print("fault start (s)  kind         all output  worst egress partition  worst changelog")
    for (kind, start), end in zip(faults, ends, strict=True):
        row = [
            longest_pause(merged, start, end),
            max(longest_pause(t, start, end) for t in egress.values()),
            max(longest_pause(t, start, end) for t in changelog.values()),
        ]
        worst[kind] = [max(a, b) for a, b in zip(worst.get(kind, row), row, strict=True)]
        print(f"{start - t0:15.1f}  {kind:11}  {row[0]:8.1f} s  {row[1]:20.1f} s  {row[2]:13.1f} s")
        if args.detail:
            for topic, by_partition in commits.items():
                gaps = {p: longest_gap(c, start, end) for p, c in by_partition.items()}
                p = max(gaps, key=lambda q: gaps[q][0])
                print(f"    {topic} partition {p}: {gaps[p][0]:.1f} s, {gaps[p][1]}")
    print("longest per kind (all output / worst egress partition / worst changelog partition):")
    for kind, (a, b, c) in sorted(worst.items()):
        print(f"  {kind}: {a:.1f} s / {b:.1f} s / {c:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
