"""Big state: issue 16's measured goals, kstatefun alone, on one local broker.

    python -m bench.bigstate --keys 20000000 --standby-keys 5000000   # the goals' sizes
    python -m bench.bigstate --keys 2000000 --standby-keys 500000     # a reduced run

Also the ``bigstate`` part of ``python -m bench.run`` (sizes in bench/run.py, FULL and QUICK).
The state is seeded, not computed: the changelog is written directly in kstatefun's record
format (bench/workloads.py ``seeded_app``: the application's partitioner recorded first, the
project's own encoders and id → partition rule), ids of 48 characters so that a row (changelog
key and value) is 98 bytes. Parts:

- *load*: one worker (state_store rocksdb, a state_dir, static membership) restores ``--keys``
  states; its restore rate and peak RSS (VmHWM); then W1 on it, ``--w1-events`` events over ids
  drawn at random from the whole state;
- *restart*: kill -9 of that worker and a new one with the same instance id and state_dir:
  time from its start to the output of an event produced before it, and its peak RSS;
- *w1*: the memory and the rocksdb store under W1 on one application of ``--w1-state-keys``
  states (the memory store holds it all), alternating, ``--w1-rounds`` rounds; each round a
  fresh worker, timed from producing the burst (once restored) to its last output;
- *standby*: bench/standby.py's takeover with and without a copy, ``--standby-keys`` in the
  killed worker's partitions (``--timers`` pending delayed messages beside them).

Indicative only: one machine, shared, one broker.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from collections.abc import Container
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import report
from bench.contenders import Kstatefun, Proc, Topics
from bench.kafkautil import Reader, produce
from bench.standby import log_time, run_mode
from bench.workloads import Env, Shape, seeded_app

PAD = "-" + "0123456789abcdef" * 2  # ids of 48 characters: rows of 98 bytes
RESTORED_CHANGELOG = r"restored topic={topic} partitions=\S+ records=(\d+) seconds=([\d.]+)"
ALL_RESTORED = r"still_restoring=\[\]"  # every assigned partition restored (runtime/assignment.py)
FIRST_RESTORED = r"^(\S+ \S+) INFO .*restored invocations partitions="  # processing can begin


@dataclass(frozen=True)
class BigConfig:
    keys: int = 2_000_000  # states of the load and restart parts
    partitions: int = 8
    w1_events: int = 100_000  # per W1 burst
    w1_state_keys: int = 1_000_000  # states under the memory/rocksdb comparison
    w1_rounds: int = 2  # each store once per round, the order reversed every other round
    standby_keys: int = 500_000  # states in the killed worker's partitions (half of them all)
    timers: int = 0  # pending delayed messages in the killed worker's partitions
    timeout_s: float = 900.0  # per wait (a restore of --keys included)


def big_id(i: int) -> str:
    return f"user-{i:010d}{PAD}"


def memory(proc: Proc) -> dict[str, int]:
    """The worker's resident set now and its peak (VmRSS, VmHWM), in MB."""
    if not proc.alive():  # its log says why, not a missing /proc entry
        raise RuntimeError(f"the worker exited {proc.popen.poll()}; {proc.log_tail(1500)}")
    fields = {}
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(rest.split()[0]) / 1024)
    return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


def restored_records(log: str, app: str) -> dict[str, Any]:
    found = re.findall(RESTORED_CHANGELOG.format(topic=re.escape(f"{app}-changelog")), log)
    records, seconds = sum(int(r) for r, _ in found), sum(float(s) for _, s in found)
    out: dict[str, Any] = {"records": records, "seconds": round(seconds, 2)}
    if records and seconds:
        out["rate"] = round(records / seconds)
    return out


class Big:
    """One run of the parts on one broker (``env``), with kstatefun's contender ``k``."""

    def __init__(self, env: Env, k: Kstatefun, cfg: BigConfig) -> None:
        shape = Shape(f"crc32-p{cfg.partitions}", "CRC32", cfg.partitions, "consistent_random")
        self.env = replace(env, shape=shape)  # ingress on the app's partitions: the direct path
        self.k = k
        self.cfg = cfg

    def spawn(self, t: Topics, store: str, state_dir: Path | None, instance: str = "w0") -> Proc:
        extra = ("--partitions", str(self.cfg.partitions), "--static-membership")
        extra += ("--state-dir", str(state_dir)) if state_dir else ()
        return self.k.spawn(
            "w1",
            t,
            instance,
            self.env.run_dir,
            self.cfg.partitions,
            extra,
            {"KSTATEFUN_STATE_STORE": store},
        )

    def log_size(self, t: Topics, instance: str = "w0") -> int:
        """Where the next worker's lines begin in its log (Proc appends)."""
        path = self.env.run_dir / f"{t.app}-{instance}.log"
        return path.stat().st_size if path.exists() else 0

    def seed(self, tag: str, keys: int) -> Topics:
        t = self.env.topics(self.k, tag)
        seconds = seeded_app(
            self.env.bootstrap, self.env.admin, t.app, self.cfg.partitions, keys, big_id
        )
        self.env.log(f"  seeded {keys:,} states into {t.app}-changelog in {seconds:.1f}s")
        return t

    def events(self, keys: int, seed: int) -> list[tuple[bytes, bytes]]:
        """``w1_events`` events over ids drawn at random from the ``keys`` seeded states (ids 0
        and 1 are left for the probes, whose output must be "<id>:2")."""
        rng = random.Random(seed)
        return [
            (big_id(rng.randrange(2, keys)).encode(), b'{"seq":0}')
            for _ in range(self.cfg.w1_events)
        ]

    def timed(self, reader: Reader, before: int, proc: Proc, since: float) -> dict:
        """The rate of the ``w1_events`` outputs after ``before`` in ``reader``, from
        ``since`` (monotonic) to the last of them."""
        n = self.cfg.w1_events
        done = reader.wait_for(before + n, self.cfg.timeout_s, proc.alive)
        out = reader.records[before : before + n]
        values = [v for _, _, v, _ in out]
        return {
            "complete": done,
            "outputs": len(out),
            "events_per_s": round(len(out) / (out[-1][0] - since)) if out else None,
            "duplicated": len(values) - len(set(values)),
        }

    def probe(self, t: Topics, reader: Reader, i: int) -> tuple[str, int]:
        """Produce one event for seeded id ``i``; returns its expected output and where in
        ``reader`` it will be."""
        before = len(reader)
        produce(
            self.env.bootstrap, t.ingress, [(big_id(i).encode(), b'{"seq":0}')], "consistent_random"
        )
        return f"{big_id(i)}:2", before

    def load_and_restart(self) -> dict:
        cfg, log = self.cfg, self.env.log
        t = self.seed("big", cfg.keys)
        state_dir = self.env.run_dir / "state" / "big"
        reader = Reader(self.env.bootstrap, t.egress)
        out: dict[str, Any] = {"keys": cfg.keys, "partitions": cfg.partitions}
        proc = self.spawn(t, "rocksdb", state_dir)
        try:
            text = proc.wait_log(ALL_RESTORED, 0, cfg.timeout_s)
            restored_s = time.monotonic() - proc.started
            out["load"] = {
                "restored_after_s": round(restored_s, 2),
                "restore": restored_records(text, t.app),
                **memory(proc),
            }
            log(f"  load: {out['load']}")
            expected, at = self.probe(t, reader, 0)
            if not reader.wait_for(at + 1, cfg.timeout_s, proc.alive):
                raise RuntimeError(f"no output after the load; {proc.log_tail(1500)}")
            assert reader.records[at][2] == expected.encode(), (reader.records[at], expected)
            # produced while the worker runs (the driver produces faster than it consumes)
            before, started = len(reader), time.monotonic()
            produce(self.env.bootstrap, t.ingress, self.events(cfg.keys, 0), "consistent_random")
            w1 = self.timed(reader, before, proc, started)
            out["w1_rocksdb_full_state"] = {**w1, **memory(proc)}
            log(f"  W1 over the whole state on rocksdb: {out['w1_rocksdb_full_state']}")
            time.sleep(1.0)
            size = proc.log.stat().st_size
            proc.kill()  # kill -9
            expected, at = self.probe(t, reader, 1)
            proc = self.spawn(t, "rocksdb", state_dir)
            ok = reader.wait_for(at + 1, cfg.timeout_s, proc.alive)
            restart: dict[str, Any] = {
                "to_next_output_s": round(reader.records[at][0] - proc.started, 2) if ok else None,
                "output_ok": ok and reader.records[at][2] == expected.encode(),
            }
            text = proc.log.read_bytes()[size:].decode(errors="replace")
            restart["replayed"] = restored_records(text, t.app)
            restart.update(memory(proc))
            out["restart"] = restart
            out["state_dir_mb"] = round(
                sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file()) / 2**20
            )
            log(f"  restart after kill -9: {restart}")
        finally:
            proc.stop()
            reader.close()
        return out

    def w1_stores(self) -> dict:
        """W1 on the memory and the rocksdb store, alternating, on one application."""
        cfg, log = self.cfg, self.env.log
        t = self.seed("bigw1", cfg.w1_state_keys)
        state_dir = self.env.run_dir / "state" / "bigw1"
        reader = Reader(self.env.bootstrap, t.egress)
        rounds: dict[str, list[dict]] = {"memory": [], "rocksdb": []}
        try:
            for rnd in range(cfg.w1_rounds):
                order = ("memory", "rocksdb") if rnd % 2 == 0 else ("rocksdb", "memory")
                for store in order:
                    # the same events for both stores in a round, produced before the worker
                    # starts, timed from its first restored partition (where it can begin)
                    events = self.events(cfg.w1_state_keys, 1 + rnd)
                    log_size = self.log_size(t)
                    produce(self.env.bootstrap, t.ingress, events, "consistent_random")
                    before = len(reader)
                    proc = self.spawn(t, store, state_dir if store == "rocksdb" else None)
                    try:  # every round's worker appends to one log: read this round's part
                        text = proc.wait_log(ALL_RESTORED, log_size, cfg.timeout_s)
                        first = re.search(FIRST_RESTORED, text, re.M)
                        assert first is not None, text[-1500:]
                        since = log_time(first.group(1)) - (time.time() - time.monotonic())
                        r = self.timed(reader, before, proc, since)
                        r.update(restore=restored_records(text, t.app), **memory(proc))
                    finally:
                        proc.stop()
                    rounds[store].append(r)
                    log(f"  W1 round {rnd + 1} {store}: {r}")
        finally:
            reader.close()
        out: dict[str, Any] = {"state_keys": cfg.w1_state_keys, "events": cfg.w1_events}
        for store, rs in rounds.items():
            rates = [r["events_per_s"] for r in rs if r.get("events_per_s")]
            out[store] = {
                "events_per_s": round(statistics.median(rates)) if rates else None,
                "rounds": rs,
            }
        if out["memory"]["events_per_s"] and out["rocksdb"]["events_per_s"]:
            out["rocksdb_to_memory"] = round(
                out["rocksdb"]["events_per_s"] / out["memory"]["events_per_s"], 3
            )
        return out

    def standby(self) -> dict:
        modes = [
            run_mode(
                self.env.bootstrap,
                self.env.run_dir,
                2 * self.cfg.standby_keys,
                replicas,
                self.cfg.timers,
            )
            for replicas in (1, 0)
        ]
        with_copy, without = modes
        self.env.log(f"  takeover: {with_copy} / {without}")
        return {"standby_replicas_1": with_copy, "standby_replicas_0": without}


def run(env: Env, k: Kstatefun, cfg: BigConfig, skip: Container[str] = ()) -> dict:
    """Every part of the big state run not in ``skip`` (load, w1, standby)."""
    big = Big(env, k, cfg)
    out: dict[str, Any] = {"config": asdict(cfg)}
    for name, part in (
        ("load", big.load_and_restart),
        ("w1", big.w1_stores),
        ("standby", big.standby),
    ):
        if name in skip:
            continue
        env.log(f"big state: {name}")
        try:
            out[name] = part()
        except Exception as e:  # one part that breaks must not take the others with it
            env.log(f"  {name}: {type(e).__name__}: {e}")
            out[name] = {"error": f"{type(e).__name__}: {e}"}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bigstate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = BigConfig()
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: load,w1,standby")
    parser.add_argument("--work-dir", type=Path, help="keep the broker, logs and stores there")
    args = parser.parse_args()
    cfg = BigConfig(**{f: getattr(args, f) for f in asdict(defaults)})
    from confluent_kafka.admin import AdminClient

    from bench.contenders import build
    from kstatefun.devkafka import LocalKafka

    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="kstatefun-bigstate-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with LocalKafka(work / "kafka") as kafka:
            bootstrap = kafka.bootstrap_servers
            (k,) = build(bootstrap, work, {"kstatefun"})
            assert isinstance(k, Kstatefun)
            run_id = time.strftime("%Y%m%dt%H%M%Sz", time.gmtime())
            env = Env(
                bootstrap,
                AdminClient({"bootstrap.servers": bootstrap}),
                work,
                run_id,
                Shape("", "", 1, ""),
                log,
            )
            result = run(env, k, cfg, set(filter(None, args.skip.split(","))))
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=1))
    print("\n".join(report.bigstate_lines(result)))


if __name__ == "__main__":
    main()
