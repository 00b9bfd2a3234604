"""py-spy profile of a kstatefun worker during W1, summarised as self and inclusive shares."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.contenders import Kstatefun
from bench.kafkautil import Reader, keyed_events, produce
from bench.workloads import Env

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def profile_w1(env: Env, k: Kstatefun, seconds: int, rate_guess: int, keys: int) -> dict:
    """Run W1 on a backlog that outlasts two recordings of the worker: ``py-spy record -p PID
    -d seconds -f raw`` (on-CPU samples: where the Python time goes), then the same with
    ``--idle`` (wall-clock samples: also where the worker waits, e.g. on the broker)."""
    spy = py_spy()
    if spy is None:
        return {"error": "py-spy not found (pip install -e '.[bench]')"}
    t = env.topics(k, "prof")
    events = keyed_events(int(rate_guess * (2 * seconds + 8)), keys)
    produce(env.bootstrap, t.ingress, events, env.shape.partitioner)
    reader = Reader(env.bootstrap, t.egress)
    proc = k.spawn("w1", t, "w0", env.run_dir, env.partitions)
    out: dict[str, Any] = {}
    try:
        if not reader.wait_for(1, 120, proc.alive):
            return {"error": f"worker produced nothing; {proc.log_tail(800)}"}
        for view, flags in (("cpu", []), ("wall", ["--idle"])):
            raw = env.run_dir / f"profile-kstatefun-w1-{view}.txt"
            before = len(reader)
            started = time.monotonic()
            cmd = [spy, "record", "-p", str(proc.pid), "-d", str(seconds), "-f", "raw"]
            run = subprocess.run(
                [*cmd, *flags, "-o", str(raw)], capture_output=True, text=True, timeout=seconds + 60
            )
            elapsed = time.monotonic() - started
            if run.returncode != 0 or not raw.exists():
                out[view] = {"error": f"py-spy failed: {(run.stdout + run.stderr)[-600:]}"}
                continue
            summary = summarise(raw.read_text())
            summary.update(
                command=f"py-spy record -p PID -d {seconds} -f raw {' '.join(flags)}".strip(),
                raw_file=str(raw),
                events_per_s_while_profiled=round((len(reader) - before) / elapsed),
                backlog_lasted=len(reader) < len(events),
            )
            out[view] = summary
    finally:
        proc.stop()
        reader.close()
    return out


def _short(path: str) -> str:
    for marker in ("site-packages/", "service/", "/bench/", "lib/python3."):
        i = path.find(marker)
        if i >= 0:
            rest = path[i + len(marker) :]
            return ("bench/" + rest) if marker == "/bench/" else rest
    return path


def _frame(text: str, with_line: bool) -> str:
    m = _FRAME.match(text.strip())
    if m is None:
        return text.strip()
    where = _short(m.group("file"))
    if with_line and m.group("line"):
        where += f":{m.group('line')}"
    return f"{m.group('func')} ({where})"


def summarise(raw: str, top: int = 25) -> dict[str, Any]:
    """Top frames by self samples (the leaf: where the time is spent, with line) and by
    inclusive samples (anywhere on the stack), as shares of all samples. The watchdog's
    thread, which only sleeps, is left out (it would be half of the wall-clock samples)."""
    self_t: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or "runtime/watchdog.py" in stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_t[_frame(frames[-1], True)] += n
        for f in {_frame(f, False) for f in frames}:
            incl[f] += n
    if not total:
        return {"samples": 0}

    def share(c: Counter) -> list[list[Any]]:
        return [[f, round(100 * n / total, 1)] for f, n in c.most_common(top)]

    return {"samples": total, "self_pct": share(self_t), "inclusive_pct": share(incl)}
