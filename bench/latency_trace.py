"""Where an event's latency goes, per stage, in the latency part's setting.

    .venv/bin/python -m bench.latency_trace --rate 5000 --seconds 10 --rounds 2
    .venv/bin/python -m bench.latency_trace --kstatefun-also main=/tmp/main

One local broker; per round, each contender (the bare loop without the hop, kstatefun, and
any ``--kstatefun-also`` checkout or ``--variant``) runs the latency part's workload
(bench/workloads.py ``latency``: a worker on an empty ingress, a warm-up, then fresh keys at
the rate), alternating the order every round. Each worker runs under a tracer (``--wrap``,
below) that replaces confluent-kafka's Consumer and Producer classes by subclasses that
stamp, in wall-clock time, every input record the worker's consumer returns and every call of
the transaction protocol. Joined with the benchmark's own times, every event's latency splits
into:

- ``consumed``: the benchmark's produce() call → the worker's consumer handed it out;
- ``written``: → the worker produced its output (the egress record's CreateTime);
- ``committed``: → the commit_transaction that covered it returned;
- ``visible``: → the benchmark's read_committed reader received it.

Per commit cycle it also gives the records per commit and how long the loop spent in each
call: polling, begin_transaction (kstatefun: after its settle pause), send_offsets,
commit_transaction, and the rest (Python work between the calls). docs/performance.md has
the figures.
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import json
import os
import re
import runpy
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TRACE_DIR_ENV = "BENCH_TRACE_DIR"

# --- the tracer, inside the worker process --------------------------------------------------------


def _is_group_consumer(conf: dict[str, Any]) -> bool:
    """The worker's group consumer (kstatefun's or the bare loop's), not a restore consumer."""
    return "partition.assignment.strategy" in conf or conf.get("group.protocol") == "consumer"


def _install(out: Path) -> None:
    """Replace confluent_kafka.Consumer/Producer with tracing subclasses; write the trace to
    ``out`` at exit. Only ``{"seq":N}`` values (the benchmark's input) are stamped."""
    import confluent_kafka

    consumed: list[tuple[float, str, bytes, int]] = []  # wall time, topic, key, seq
    calls: list[tuple[str, float, float, int]] = []  # name, start, end, records returned
    clock = time.time
    lock = threading.Lock()

    def stamp(batch: list[Any], name: str, started: float) -> None:
        now = clock()
        n = 0
        for msg in batch:
            if msg.error() is not None:
                continue
            value = msg.value()
            if value is not None and value.startswith(b'{"seq":'):
                consumed.append((now, msg.topic(), msg.key(), int(value[7:-1])))
                n += 1
        calls.append((name, started, now, n))

    class TracedConsumer(confluent_kafka.Consumer):  # type: ignore[misc]
        def __init__(self, conf: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(conf, **kwargs)
            self._traced = _is_group_consumer(conf)

        def poll(self, *a: Any, **k: Any) -> Any:
            started = clock()
            msg = super().poll(*a, **k)
            if self._traced:
                stamp([] if msg is None else [msg], "poll", started)
            return msg

        def consume(self, *a: Any, **k: Any) -> Any:
            started = clock()
            batch = super().consume(*a, **k)
            if self._traced:
                stamp(batch, "consume", started)
            return batch

        def pause(self, partitions: list[Any]) -> Any:
            if self._traced:
                calls.append(("pause", clock(), clock(), len(partitions)))
            return super().pause(partitions)

        def resume(self, partitions: list[Any]) -> Any:
            if self._traced:
                calls.append(("resume", clock(), clock(), len(partitions)))
            return super().resume(partitions)

    def timed(name: str) -> Any:
        def call(self: Any, *a: Any, **k: Any) -> Any:
            started = clock()
            try:
                return getattr(super(TracedProducer, self), name)(*a, **k)
            finally:
                if self._traced:
                    with lock:
                        calls.append((name, started, clock(), 0))

        return call

    class TracedProducer(confluent_kafka.Producer):  # type: ignore[misc]
        def __init__(self, conf: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(conf, **kwargs)
            self._traced = "transactional.id" in conf

        begin_transaction = timed("begin_transaction")
        send_offsets_to_transaction = timed("send_offsets_to_transaction")
        commit_transaction = timed("commit_transaction")
        abort_transaction = timed("abort_transaction")

    confluent_kafka.Consumer = TracedConsumer  # type: ignore[misc]
    confluent_kafka.Producer = TracedProducer  # type: ignore[misc]

    def dump() -> None:
        with lock:
            data = {
                "consumed": [
                    (t, topic, key.decode(errors="replace"), s) for t, topic, key, s in consumed
                ],
                "calls": sorted(calls, key=lambda c: c[1]),
            }
        out.write_text(json.dumps(data))

    atexit.register(dump)


def wrap(argv: Sequence[str]) -> None:
    """``--wrap -m MODULE ARGS`` or ``--wrap SCRIPT ARGS``: run it traced; the trace goes to
    ``$BENCH_TRACE_DIR/<pid>.json`` when it exits."""
    _install(Path(os.environ[TRACE_DIR_ENV]) / f"{os.getpid()}.json")
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")


# --- the analysis ---------------------------------------------------------------------------------


def _pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def analyse(trace: dict[str, Any], detail: dict[str, Any], ingress: str) -> dict[str, Any]:
    """Join one worker's trace with the benchmark's per-event times (``detail``: the latency
    part's records of one rate) into the per-stage split and the commit cycle."""
    prefix = detail["prefix"]
    consumed: dict[int, float] = {}
    for t, topic, key, seq in trace["consumed"]:
        if topic == ingress and key.startswith(prefix):
            consumed.setdefault(seq, t)  # the first time: a rewind may hand it out again
    commits = [c for c in trace["calls"] if c[0] == "commit_transaction"]
    commit_ends = [c[2] for c in commits]
    stages: dict[str, list[float]] = {
        k: [] for k in ("consumed", "written", "committed", "visible", "total")
    }
    for j, sent, visible, create_ms in detail["events"]:
        got = consumed.get(j)
        if got is None:
            continue
        written = create_ms / 1000
        i = bisect.bisect_left(commit_ends, written)
        committed = commit_ends[i] if i < len(commit_ends) else None
        stages["consumed"].append(got - sent)
        stages["written"].append(written - got)
        if committed is not None:
            stages["committed"].append(committed - written)
            stages["visible"].append(visible - committed)
        stages["total"].append(visible - sent)
    first, last = detail["window"]
    in_window = [c for c in trace["calls"] if first <= c[1] <= last]
    per: dict[str, list[float]] = {}
    for name, started, ended, _ in in_window:
        per.setdefault(name, []).append(ended - started)
    window_commits = [c for c in commits if first <= c[1] <= last]
    seconds = last - first
    busy = {name: sum(v) / seconds for name, v in per.items()}
    records = [c[3] for c in in_window if c[0] in ("poll", "consume")]
    out: dict[str, Any] = {
        "events": len(stages["total"]),
        **{
            f"{k}_ms": {"p50": _ms(_pct(v, 50)), "p99": _ms(_pct(v, 99))} for k, v in stages.items()
        },
        "commits_per_s": round(len(window_commits) / seconds, 1) if seconds > 0 else None,
        "records_per_commit": round(sum(records) / max(1, len(window_commits)), 1),
        "call_p50_ms": {name: _ms(_pct(v, 50)) for name, v in per.items()},
        "call_p99_ms": {name: _ms(_pct(v, 99)) for name, v in per.items()},
        # share of the wall time the loop spent in each call (the rest: Python between calls)
        "time_share": {name: round(v, 3) for name, v in busy.items()},
    }
    return out


# --- the driver -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--wrap":
        wrap(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.latency_trace", description=__doc__)
    parser.add_argument("--rate", type=int, default=5000, help="events/s (default 5000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate (default 10)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--contenders", default="bare,kstatefun", help="bare,kstatefun")
    parser.add_argument("--kstatefun-also", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VAR=VALUE",
        help="also this tree's kstatefun with one more environment variable, e.g. "
        'lingerzero=KSTATEFUN_KAFKA_PROPERTIES={"linger.ms":"0"}',
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)

    from confluent_kafka.admin import AdminClient

    from bench.contenders import build
    from bench.run import FULL, SHAPES, machine
    from bench.workloads import Env, latency
    from kstatefun.devkafka import LocalKafka

    cfg = replace(FULL, latency_rates=(args.rate,), latency_seconds=args.seconds, settle_s=0.5)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.out / f"trace-{stamp}-logs"
    run_dir.mkdir()
    trace_dir = run_dir / "traces"
    trace_dir.mkdir()
    os.environ[TRACE_DIR_ENV] = str(trace_dir)
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    results: dict[str, Any] = {"machine": machine(), "rate": args.rate, "rounds": {}}
    with tempfile.TemporaryDirectory(prefix="kstatefun-trace-") as tmp:
        kafka = LocalKafka(Path(tmp) / "kafka")
        bootstrap = kafka.start()
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            env = Env(bootstrap, admin, run_dir, stamp.lower(), SHAPES[0], log)
            also = {n: Path(p) for n, _, p in (a.partition("=") for a in args.kstatefun_also)}
            contenders = [
                c
                for c in build(bootstrap, run_dir, set(args.contenders.split(",")), also=also)
                if c.name != "bare-hop" and c.error is None
            ]
            base = next((c for c in contenders if c.name == "kstatefun"), None)
            for spec in args.variant:
                name, _, assignment = spec.partition("=")
                var, _, value = assignment.partition("=")
                if base is None:
                    parser.error("--variant needs the kstatefun contender")
                v = replace(base, name=f"kstatefun-{name}", label=f"kstatefun ({spec})")
                v.bootstrap = bootstrap
                v.worker_env = {var: value}
                contenders.append(v)
            for c in contenders:
                c.wrapper = ("-m", "bench.latency_trace", "--wrap")
            for rnd in range(args.rounds):
                order = contenders if rnd % 2 == 0 else contenders[::-1]
                for c in order:
                    log(f"round {rnd + 1}: {c.name} load={os.getloadavg()[0]:.1f}")
                    detail: dict[str, Any] = {}
                    r = latency(replace(env, run_id=f"{env.run_id}r{rnd}"), c, cfg, None, detail)
                    row = r.get(str(args.rate), {})
                    trace_file = trace_dir / f"{detail.get('pid')}.json"
                    if trace_file.exists() and str(args.rate) in detail:
                        trace = json.loads(trace_file.read_text())
                        row["stages"] = analyse(trace, detail[str(args.rate)], detail["ingress"])
                    worker_log = run_dir / f"{detail['ingress'].removesuffix('-in')}-w0.log"
                    paths = re.findall(
                        r"ingress_direct=(\d+) ingress_routed=(\d+)",
                        worker_log.read_text(errors="replace") if worker_log.exists() else "",
                    )
                    if paths:  # kstatefun's stop line: did the input go direct?
                        row["ingress_direct"], row["ingress_routed"] = map(int, paths[-1])
                    row["load"] = round(os.getloadavg()[0], 1)
                    row["exactly_once"] = r["validation"]["exactly_once"]
                    results["rounds"].setdefault(c.name, []).append(row)
                    log(f"  {_brief(row)}")
        finally:
            kafka.stop()
    results["machine"]["load_avg_end"] = list(os.getloadavg())
    path = args.out / f"trace-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"results: {path}")
    return 0


def _brief(row: dict[str, Any]) -> str:
    s = row.get("stages") or {}
    split = " ".join(
        f"{k}={s.get(f'{k}_ms', {}).get('p50')}"
        for k in ("consumed", "written", "committed", "visible")
    )
    return (
        f"p50={row.get('p50_ms')} p99={row.get('p99_ms')} ms; p50 per stage: {split}; "
        f"commits/s={s.get('commits_per_s')} records/commit={s.get('records_per_commit')} "
        f"direct={row.get('ingress_direct')} routed={row.get('ingress_routed')} "
        f"load={row.get('load')}"
    )


def _table(results: dict[str, Any]) -> str:
    lines = [f"rate {results['rate']}/s: medians over rounds (ms)"]
    head = (
        "contender",
        "p50",
        "p99",
        "consumed",
        "written",
        "committed",
        "visible",
        "commit",
        "offsets",
        "begin",
    )
    lines.append(" | ".join(head))
    for name, rows in results["rounds"].items():

        def med(get: Any, rows: list[dict[str, Any]] = rows) -> str:
            vals = [v for v in (get(r) for r in rows) if v is not None]
            return f"{statistics.median(vals):.1f}" if vals else "-"

        def stage(k: str) -> Any:
            return lambda r: (r.get("stages") or {}).get(f"{k}_ms", {}).get("p50")

        def call(k: str) -> Any:
            return lambda r: (r.get("stages") or {}).get("call_p50_ms", {}).get(k)

        lines.append(
            " | ".join(
                [
                    name,
                    med(lambda r: r.get("p50_ms")),
                    med(lambda r: r.get("p99_ms")),
                    *(med(stage(k)) for k in ("consumed", "written", "committed", "visible")),
                    med(call("commit_transaction")),
                    med(call("send_offsets_to_transaction")),
                    med(call("begin_transaction")),
                ]
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
