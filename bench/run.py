"""kstatefun benchmark: the limit, the peers and kstatefun side by side, in one run.

    .venv/bin/python -m bench.run --quick     # make bench-quick: small sizes
    .venv/bin/python -m bench.run             # make bench: about 25 minutes on 2 cores

(docs/performance.md, "Running it", gives the times measured).

One local broker (LocalKafka) per run. Each contender gets the same pre-produced input on
fresh topics; W1 and W2 run in rounds, W1 on each input shape. Writes
bench/results/<timestamp>.json, prints a table and draws bench/results/<timestamp>.png.
docs/performance.md explains the method.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench import bigstate, report
from bench.bigstate import BigConfig
from bench.contenders import Kstatefun, build
from bench.kafkautil import create_topics, keyed_events, produce
from bench.profile import profile_w1
from bench.remote import w3
from bench.restoreload import restore_under_load
from bench.scaleout import scaleout
from bench.workloads import (
    Env,
    Shape,
    bare_restore,
    latency,
    restart,
    scale,
    throughput,
    txn_floor,
)
from kstatefun.kafka.topics import DEFAULT_PARTITIONS

RESULTS = Path(__file__).resolve().parent / "results"

# the count of a new kstatefun app without ingress topics (partitions is unset by default:
# a new app takes its ingress topics' count)
KSTATEFUN_PARTITIONS: int = DEFAULT_PARTITIONS

# The input's shapes. The first is what a Python producer writes at confluent-kafka's defaults
# (librdkafka's consistent_random: CRC32 of the key) onto a partition count other than
# kstatefun's; the second is the shape kstatefun routes best: Java's murmur2 onto kstatefun's
# default partition count. Every part but W1 uses the first.
SHAPES = (
    Shape(
        "crc32-p6",
        "confluent-kafka's default partitioner (CRC32), 6 partitions",
        6,
        "consistent_random",
    ),
    Shape(
        "murmur2-p8",
        f"murmur2 (Java's partitioner), {KSTATEFUN_PARTITIONS} partitions = kstatefun's default",
        KSTATEFUN_PARTITIONS,
        "murmur2_random",
    ),
)

SHAPES_HELP = ", ".join(s.name for s in SHAPES)


@dataclass(frozen=True)
class Config:
    name: str
    # W1 and W2 run in rounds: every contender once per round, the order reversed every other
    # round, on the same pre-produced input (one topic per shape, a consumer group per run)
    rounds: int = 2
    w1_shapes: tuple[str, ...] = tuple(s.name for s in SHAPES)
    input_events: int = 400_000
    input_keys: int = 10_000
    throughput_cap_s: float = 15.0
    latency_rates: tuple[int, ...] = (1000, 5000)
    latency_seconds: float = 15.0
    latency_keys: int = 500
    scale_events: int = 200_000
    scale_contenders: tuple[str, ...] = ("bare-hop", "kstreams", "quix", "kstatefun")
    warmup_events: int = 200
    restart_keys: int = 1_000_000
    restart_variants: bool = True  # also without static membership, and without a state dir
    peer_100ms: bool = True  # also each peer at 100 ms commits (W1; Quix Streams: latency too)
    profile_seconds: int = 10
    phase_timeout: float = 90.0
    restart_timeout: float = 300.0
    settle_s: float = 1.0
    w3_direct_s: float = 8.0  # the SDK endpoint called directly, per variant
    # scale-out under load (bench/scaleout.py): two workers at this rate, a third joins after
    # the lead and leaves one window later; once per rebalance protocol
    scaleout_rate: int = 5000
    scaleout_lead_s: float = 8.0
    scaleout_window_s: float = 12.0
    scaleout_protocols: tuple[str, ...] = ("cooperative", "eager", "consumer")
    # restore under load (bench/restoreload.py): a partition of this many states moves to a
    # worker serving at scaleout_rate; the load runs scaleout_lead_s plus this long
    restore_keys: int = 5_000_000
    restore_window_s: float = 40.0
    # the big state part (bench/bigstate.py), reduced: the goals' sizes run alone, see there
    big: BigConfig = BigConfig()


FULL = Config("full")
QUICK = Config(
    "quick",
    input_events=100_000,
    input_keys=5_000,
    throughput_cap_s=4.0,
    latency_seconds=2.0,
    scale_events=40_000,
    scale_contenders=("kstatefun",),
    restart_keys=50_000,
    restart_variants=False,
    peer_100ms=False,
    profile_seconds=3,
    phase_timeout=90.0,  # Kafka Streams took up to 45 s to its first output on a busy machine
    restart_timeout=120.0,
    settle_s=0.5,
    w3_direct_s=2.0,
    scaleout_lead_s=4.0,
    scaleout_window_s=8.0,
    scaleout_protocols=("cooperative",),
    restore_keys=100_000,
    restore_window_s=8.0,
    big=BigConfig(
        keys=200_000, w1_events=20_000, w1_state_keys=100_000, w1_rounds=1, standby_keys=50_000
    ),
)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    info["load_avg_start"] = list(os.getloadavg())
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer parts")
    parser.add_argument(
        "--contenders",
        "--only",
        dest="only",
        default="bare,kstreams,quix,faust,kstatefun,kstatefun-compiled",
        help="comma-separated contenders: bare,kstreams,quix,faust,kstatefun,kstatefun-compiled "
        "(all by default)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help=(
            "comma-separated parts to skip: "
            "w1,latency,w2,w3,scale,scaleout,restoreload,restart,profile,bigstate"
        ),
    )
    parser.add_argument(
        "--kstatefun-also",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also run the kstatefun of another checkout at PATH as contender kstatefun-NAME "
        "(e.g. main=/tmp/main, from `git archive main`): an A/B in the same run",
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds of W1 and W2 (default: 2, in full and quick runs)"
    )
    parser.add_argument(
        "--w1-shapes",
        help=f"comma-separated input shapes for W1: {SHAPES_HELP} (all by default; every "
        "other part runs on the first)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only print the table and redraw the chart"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        results = json.loads(args.render.read_text())
        print(report.table(results))
        print()
        print(report.markdown(results))
        report.chart(results, args.render.with_suffix(".png"))
        print(f"\nchart: {args.render.with_suffix('.png')}")
        return 0
    cfg = QUICK if args.quick else FULL
    if args.rounds is not None:
        cfg = replace(cfg, rounds=args.rounds)
    if args.w1_shapes is not None:
        names = tuple(filter(None, args.w1_shapes.split(",")))
        unknown = set(names) - {s.name for s in SHAPES}
        if unknown:
            parser.error(f"unknown shape(s) {', '.join(sorted(unknown))}: use {SHAPES_HELP}")
        cfg = replace(cfg, w1_shapes=names)
    skip = set(filter(None, args.skip.split(",")))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.out / f"{stamp}-logs"
    run_dir.mkdir()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    results: dict[str, Any] = {
        "run": {
            "mode": cfg.name,
            "started_utc": stamp,
            "config": asdict(cfg),
            "machine": machine(),
            "broker": "Apache Kafka 4.1.1, single node KRaft (kstatefun.devkafka.LocalKafka)",
            "logs": str(run_dir),
        },
        "contenders": {},
        "w1": {},
        "latency": {},
        "w2": {},
        "w3": {},
        "floor": {},
        "scale": {},
        "scaleout": {},
        "restoreload": {},
        "restart": {},
        "profile": {},
        "bigstate": {},
    }
    from kstatefun.devkafka import LocalKafka

    with tempfile.TemporaryDirectory(prefix="kstatefun-bench-") as tmp:
        kafka = LocalKafka(Path(tmp) / "kafka")
        log("starting the local broker")
        bootstrap = kafka.start()
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            env = Env(bootstrap, admin, run_dir, stamp.lower(), SHAPES[0], log)
            results["run"]["shapes"] = [asdict(shape) for shape in SHAPES]
            log("preparing contenders (peer runtimes are cached after the first run)")
            also = {n: Path(p) for n, _, p in (a.partition("=") for a in args.kstatefun_also)}
            contenders = build(
                bootstrap,
                run_dir,
                set(args.only.split(",")),
                commit_100ms_too=cfg.peer_100ms,
                also=also,
            )
            for c in contenders:
                results["contenders"][c.name] = {
                    "label": c.label,
                    "guarantee": c.guarantee,
                    "version": c.version,
                    "notes": c.notes,
                    **({"error": c.error} if c.error else {}),
                }
            runnable = [c for c in contenders if c.error is None]
            _run_all(env, cfg, runnable, results, skip, log)
        finally:
            kafka.stop()
    # RocksDB, tables, snapshots
    for scratch in ("quix-state", "faust-data", "kstreams-state", "state"):
        shutil.rmtree(run_dir / scratch, ignore_errors=True)
    results["run"]["wall_s"] = round(time.monotonic() - started, 1)
    results["run"]["machine"]["load_avg_end"] = list(os.getloadavg())
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(report.table(results))
    png = args.out / f"{stamp}.png"
    try:
        report.chart(results, png)
        print(f"\nchart: {png}")
    except ImportError as e:
        print(f"\nno chart ({e}): install the bench extra, pip install -e '.[bench]'")
    print(f"results: {path}\nlogs: {run_dir}\nwall time: {results['run']['wall_s']} s")
    return 0


def summarize(rounds: list[dict]) -> dict:
    """One contender's rounds of one workload and shape: the median rate and the spread, an
    exactly-once verdict over all rounds, and the rounds themselves."""
    rates = [r["events_per_s"] for r in rounds if r.get("events_per_s")]
    out: dict[str, Any] = {"rounds": rounds}
    if rates:
        median = statistics.median(rates)
        out.update(
            events_per_s=round(median) if median >= 10 else round(median, 2),
            min=min(rates),
            max=max(rates),
        )
    errors = [r["error"] for r in rounds if r.get("error")]
    if errors and not rates:
        out["error"] = errors[0]
    elif errors:
        out["round_errors"] = errors
    checks = [r["validation"] for r in rounds if "validation" in r]
    if checks:
        out["validation"] = {
            "exactly_once": all(v["exactly_once"] for v in checks),
            **{
                key: sum(v.get(key, 0) for v in checks)
                for key in ("lost", "duplicated", "wrong_count", "unexpected", "malformed")
            },
        }
    done = [r for r in rounds if "complete" in r]
    if done:
        out["complete"] = all(r["complete"] for r in done)
        out["outputs"] = round(statistics.median(r["outputs"] for r in done))
        out["measured_s"] = max(r["measured_s"] for r in done)
        out["startup_s"] = statistics.median(r["startup_s"] for r in done)
    notes = [r["note"] for r in rounds if r.get("note")]
    if notes:
        out["note"] = notes[0]
    return out


def _guard(results: dict, section: str, name: str, log: Any, fn: Any, *a: Any) -> Any:
    """Run one measurement; a failure is recorded in its place and the run goes on."""
    try:
        return fn(*a)
    except Exception as e:  # a contender that breaks must not take the others with it
        log(f"  {name}: {type(e).__name__}: {e}")
        results[section][name] = {"error": f"{type(e).__name__}: {e}"}
        return None


def _run_all(env: Env, cfg: Config, contenders: list, results: dict, skip: set, log: Any) -> None:
    log("transaction floor: back-to-back one-record transactions")
    results["floor"] = _guard(results, "floor", "txn", log, txn_floor, env) or {}
    log(f"  {results['floor']}")
    events = keyed_events(cfg.input_events, cfg.input_keys)
    sent = Counter(k for k, _ in events)
    k = next((c for c in contenders if isinstance(c, Kstatefun)), None)
    shapes = {s.name: s for s in SHAPES}
    inputs: dict[str, str] = {}  # shape name → its pre-produced input topic
    if not {"w1", "w2", "w3"} <= skip:
        results["run"]["input"] = {"events": len(events), "keys": cfg.input_keys, "topics": {}}
        for name in dict.fromkeys((SHAPES[0].name, *cfg.w1_shapes)):
            shape = shapes[name]
            inputs[name] = f"bench-input-{name}-{env.run_id}"
            create_topics(env.admin, [inputs[name]], shape.partitions)
            seconds = produce(env.bootstrap, inputs[name], events, shape.partitioner)
            results["run"]["input"]["topics"][name] = inputs[name]
            log(
                f"pre-produced {len(events):,} events over {cfg.input_keys:,} keys as {name} "
                f"({shape.label}) in {seconds:.1f}s"
            )
    plan = [
        (workload, shapes[name])
        for workload, names in (("w1", cfg.w1_shapes), ("w2", (SHAPES[0].name,)))
        if workload not in skip
        for name in names
    ]
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for rnd in range(cfg.rounds):
        order = contenders if rnd % 2 == 0 else contenders[::-1]
        for workload, shape in plan:
            shaped = replace(env, shape=shape)
            for c in order:
                if workload not in c.workloads or (rnd and not c.every_round):
                    continue
                log(f"round {rnd + 1}/{cfg.rounds} {workload.upper()} {shape.name}: {c.name}")
                try:
                    r = throughput(
                        shaped,
                        c,
                        workload,
                        inputs[shape.name],
                        len(events),
                        sent,
                        cfg,
                        f"-{shape.name}-r{rnd + 1}",
                    )
                except Exception as e:  # a contender that breaks must not take the others with it
                    r = {"error": f"{type(e).__name__}: {e}"}
                runs.setdefault((workload, shape.name, c.name), []).append(r)
                log(f"  {report.brief(r)}")
    for (workload, shape_name, name), rounds in runs.items():
        results[workload].setdefault(shape_name, {})[name] = summarize(rounds)
    default = SHAPES[0].name
    if "latency" not in skip:
        for c in contenders:
            if "latency" not in c.workloads:
                continue
            log(f"W1 latency: {c.name}")
            rate = ((results["w1"].get(default) or {}).get(c.name) or {}).get("events_per_s")
            r = _guard(results, "latency", c.name, log, latency, env, c, cfg, rate)
            if r is not None:
                results["latency"][c.name] = r
                log(f"  {report.brief_latency(r)}")
    ingress = inputs.get(default, "")
    if k is not None and "w3" not in skip:
        log("W3: W1 with the counter served by the StateFun SDK over HTTP, then the SDK direct")
        r = _guard(results, "w3", "error", log, w3, env, k, cfg, ingress, len(events), sent)
        results["w3"] = r if r is not None else results["w3"]["error"]  # {"error": ...}
        log(f"  {report.brief_w3(results['w3'])}")
    if "scale" not in skip:
        for c in contenders:
            if c.name not in cfg.scale_contenders:
                continue
            per: dict[str, Any] = {}
            for workers in (1, 2):
                log(f"scale: {c.name} with {workers} worker(s)")
                r = _guard(
                    results,
                    "scale",
                    c.name,
                    log,
                    scale,
                    env,
                    c,
                    workers,
                    events[: cfg.scale_events],
                    cfg,
                )
                if r is None:
                    break
                per[str(workers)] = r
                log(f"  {report.brief(r)}")
            if per:
                results["scale"][c.name] = per
    if k is not None and "scaleout" not in skip:
        for protocol in cfg.scaleout_protocols:
            rate = cfg.scaleout_rate
            log(f"scale-out: 2 workers at {rate}/s, a third joins and leaves ({protocol})")
            r = _guard(results, "scaleout", protocol, log, scaleout, env, k, cfg, protocol)
            if r is not None:
                results["scaleout"][protocol] = r
                log(f"  {report.brief_scaleout(r)}")
    if k is not None and "restoreload" not in skip:
        keys, rate = cfg.restore_keys, cfg.scaleout_rate
        log(f"restore under load: a partition of {keys:,} states moves at {rate}/s")
        r = _guard(results, "restoreload", "kstatefun", log, restore_under_load, env, k, cfg)
        if r is not None:
            results["restoreload"]["kstatefun"] = r
            log(f"  {report.brief_restoreload(r)}")
    if k is not None and "restart" not in skip:
        # the defaults of a named worker (a state dir, static membership), killed while its
        # snapshot still catches up with its first restore and once it has; then without each
        variants = [(True, True, False), (True, True, True)]
        if cfg.restart_variants:
            variants += [(True, False, False), (False, False, False)]
        for state_dir, static, caught_up in variants:
            name = "kstatefun" + ("" if static else " --no-static-membership")
            name += "" if state_dir else " --state-dir none"
            name += ", snapshot caught up" if caught_up else ""
            log(f"restart: {name}, {cfg.restart_keys:,} keys")
            r = _guard(
                results,
                "restart",
                name,
                log,
                restart,
                env,
                k,
                cfg.restart_keys,
                cfg,
                state_dir,
                static,
                caught_up,
            )
            if r is None:
                continue
            results["restart"][name] = r
            log(f"  {report.brief_restart(r)}")
            if "bare restore" not in results["restart"]:
                log("restart: bare restore of the same changelog (the limit)")
                results["restart"]["bare restore"] = bare_restore(env, r["app"])
                log(f"  {results['restart']['bare restore']}")
    if k is not None and "profile" not in skip:
        log(f"profile: py-spy on a kstatefun worker during W1 (2 x {cfg.profile_seconds}s)")
        w1 = (results["w1"].get(SHAPES[0].name) or {}).get("kstatefun") or {}
        rate = w1.get("events_per_s") or 20_000
        r = _guard(
            results,
            "profile",
            "kstatefun",
            log,
            profile_w1,
            env,
            k,
            cfg.profile_seconds,
            rate,
            cfg.input_keys,
        )
        if r is not None:
            results["profile"]["kstatefun"] = r
    if k is not None and "bigstate" not in skip:
        log(f"big state: {cfg.big}")
        results["bigstate"] = bigstate.run(env, k, cfg.big)


if __name__ == "__main__":
    sys.exit(main())
