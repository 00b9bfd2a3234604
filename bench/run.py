"""kstatefun benchmark: the limit, the peers and kstatefun side by side, in one run.

    .venv/bin/python -m bench.run --quick     # make bench-quick, under 3 minutes
    .venv/bin/python -m bench.run             # make bench, under 20 minutes

One local broker (LocalKafka) per run. Each contender gets the same pre-produced input on
fresh topics. Writes bench/results/<timestamp>.json, prints a table and draws
bench/results/<timestamp>.png. docs/performance.md explains the method.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench import report
from bench.contenders import Kstatefun, build
from bench.kafkautil import create_topics, keyed_events, produce
from bench.profile import profile_w1
from bench.remote import w3
from bench.workloads import (
    Env,
    bare_restore,
    latency,
    restart,
    scale,
    throughput,
    txn_floor,
)

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Config:
    name: str
    partitions: int = 4
    # W1 and W2 read the same pre-produced input topic (each contender in a group of its own)
    input_events: int = 400_000
    input_keys: int = 10_000
    throughput_cap_s: float = 15.0
    latency_rates: tuple[int, ...] = (1000, 5000)
    latency_seconds: float = 15.0
    latency_keys: int = 500
    scale_events: int = 200_000
    scale_contenders: tuple[str, ...] = ("bare-hop", "quix", "kstatefun")
    warmup_events: int = 200
    restart_keys: int = 1_000_000
    restart_state_dir: bool = True
    peer_defaults: bool = True  # also W1 with each peer's own default commit interval
    profile_seconds: int = 10
    phase_timeout: float = 90.0
    restart_timeout: float = 300.0
    settle_s: float = 1.0
    w3_direct_s: float = 8.0  # the SDK endpoint called directly, per variant


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
    restart_state_dir=False,
    peer_defaults=False,
    profile_seconds=3,
    phase_timeout=20.0,
    restart_timeout=120.0,
    settle_s=0.5,
    w3_direct_s=2.0,
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
    parser.add_argument("--quick", action="store_true", help="small sizes, under 3 minutes")
    parser.add_argument(
        "--only",
        default="bare,quix,faust,kstatefun",
        help="comma-separated contenders: bare,quix,faust,kstatefun",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to skip: w1,latency,w2,w3,scale,restart,profile",
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
        "restart": {},
        "profile": {},
    }
    from kstatefun.devkafka import LocalKafka

    with tempfile.TemporaryDirectory(prefix="kstatefun-bench-") as tmp:
        kafka = LocalKafka(Path(tmp) / "kafka")
        log("starting the local broker")
        bootstrap = kafka.start()
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            env = Env(bootstrap, admin, run_dir, stamp.lower(), cfg.partitions, log)
            log("preparing contenders (peer virtualenvs are cached after the first run)")
            contenders = build(
                bootstrap, run_dir, set(args.only.split(",")), defaults_too=cfg.peer_defaults
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
    for scratch in ("quix-state", "faust-data", "state"):  # RocksDB, tables, snapshots
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
    if not {"w1", "w2", "w3"} <= skip:
        ingress = f"bench-input-{env.run_id}"
        create_topics(env.admin, [ingress], cfg.partitions)
        seconds = produce(env.bootstrap, ingress, events)
        log(f"pre-produced {len(events):,} events over {cfg.input_keys:,} keys in {seconds:.1f}s")
        results["run"]["input"] = {"topic": ingress, "events": len(events), "keys": cfg.input_keys}
    for workload in ("w1", "w2"):
        if workload in skip:
            continue
        for c in contenders:
            if workload not in c.workloads:
                continue
            log(f"{workload.upper()} throughput: {c.name}")
            r = _guard(
                results,
                workload,
                c.name,
                log,
                throughput,
                env,
                c,
                workload,
                ingress,
                len(events),
                sent,
                cfg,
            )
            if r is not None:
                results[workload][c.name] = r
                log(f"  {report.brief(r)}")
        if workload == "w1" and "latency" not in skip:
            for c in contenders:
                if "latency" not in c.workloads:
                    continue
                log(f"W1 latency: {c.name}")
                rate = (results["w1"].get(c.name) or {}).get("events_per_s")
                r = _guard(results, "latency", c.name, log, latency, env, c, cfg, rate)
                if r is not None:
                    results["latency"][c.name] = r
                    log(f"  {report.brief_latency(r)}")
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
    if k is not None and "restart" not in skip:
        variants = [(False, False)]
        if cfg.restart_state_dir:
            variants += [(True, False), (True, True)]
        for state_dir, static in variants:
            name = "kstatefun" + (" --state-dir" if state_dir else "")
            name += " --static-membership" if static else ""
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
            )
            if r is None:
                continue
            results["restart"][name] = r
            log(f"  {report.brief_restart(r)}")
            if not state_dir:
                log("restart: bare restore of the same changelog (the limit)")
                results["restart"]["bare restore"] = bare_restore(env, r["app"])
                log(f"  {results['restart']['bare restore']}")
    if k is not None and "profile" not in skip:
        log(f"profile: py-spy on a kstatefun worker during W1 (2 x {cfg.profile_seconds}s)")
        rate = (results["w1"].get("kstatefun") or {}).get("events_per_s") or 20_000
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


if __name__ == "__main__":
    sys.exit(main())
