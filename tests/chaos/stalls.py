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


def commit_times(partition_dir: Path) -> list[float]:
    """When the records of each committed transaction in one partition became readable to
    read_committed readers (s since the epoch, sorted): not before its COMMIT marker, nor
    before every transaction that began earlier in the partition ended (committed or
    aborted), since the last stable offset holds readers behind the oldest open one (a
    stopped worker's open transaction holds back everyone's output there until it is
    aborted)."""
    dump = _dump(partition_dir, "--print-data-log")
    return readable_times(dump) if dump else []


def readable_times(dump: str) -> list[float]:
    """commit_times() of one partition's ``DumpLogSegments --print-data-log`` output."""
    open_txns: dict[str, tuple[int, int]] = {}  # producer id: (first offset, last offset)
    ended: list[tuple[int, float]] = []  # (first offset, end time) of every transaction
    commits: list[tuple[int, float]] = []  # (last record offset, marker time) of commits
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
            ended.append((first, at))
            if "endTxnMarker: COMMIT" in line:
                commits.append((last, at))
    ended.sort()
    firsts = [f for f, _ in ended]
    latest: list[float] = []  # latest[i]: the latest end of the transactions ended[: i + 1]
    for _, at in ended:
        latest.append(max(at, latest[-1] if latest else at))
    readable = []
    for last, at in commits:
        i = bisect.bisect_right(firsts, last) - 1  # every transaction begun at or before last
        readable.append(max(at, latest[i]) if i >= 0 else at)
    return sorted(readable)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.stalls", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="the kept run's --work-dir")
    parser.add_argument("--runner-output", type=Path, required=True, help="what the run printed")
    parser.add_argument("--start", default=None, help="the run's start, UTC (ISO 8601)")
    parser.add_argument("--node", type=int, default=1, help="whose replicas to read (default 1)")
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
    topics: dict[str, dict[int, list[float]]] = {}
    for topic in ("chaos-out", f"{APP_ID}-changelog"):
        topics[topic] = {
            int(d.name.rsplit("-", 1)[1]): commit_times(d)
            for d in sorted(logs.glob(f"{topic}-[0-9]*"))
        }
    egress, changelog = topics["chaos-out"], topics[f"{APP_ID}-changelog"]
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
    print("longest per kind (all output / worst egress partition / worst changelog partition):")
    for kind, (a, b, c) in sorted(worst.items()):
        print(f"  {kind}: {a:.1f} s / {b:.1f} s / {c:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
