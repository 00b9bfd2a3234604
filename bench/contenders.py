"""The contenders: how each one is started for a workload, as a process of its own.

Every contender reads the same kind of input (key = "<k>", value = a few bytes), keeps a count
per key in exactly-once state and writes "<key>:<count>" to the egress topic, so one reader
and one validation serve them all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench import venvs
from bench.kafkautil import create_topics

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"


@dataclass
class Topics:
    """One contender's fresh topics (and group / app id) for one workload."""

    app: str
    ingress: str
    egress: str
    internal: str
    changelog: str

    @classmethod
    def fresh(cls, contender: str, workload: str, run_id: str) -> Topics:
        app = f"{contender}-{workload}-{run_id}"
        return cls(app, f"{app}-in", f"{app}-out", f"{app}-int", f"{app}-cl")


class Proc:
    """A contender process with its log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("ab")
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code (None if killed)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self._out.close()
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)
        self._out.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_tail(self, chars: int = 1500) -> str:
        return self.log_text()[-chars:]

    def wait_log(self, pattern: str, since: int, timeout: float) -> str:
        """The log from byte ``since`` once ``pattern`` is in it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log.read_bytes()[since:].decode(errors="replace")
            if re.search(pattern, text):
                return text
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"no {pattern!r} in the worker's log; {text[-1500:]}")
            time.sleep(0.1)


@dataclass
class Contender:
    name: str
    label: str
    guarantee: str
    version: str = ""
    notes: list[str] = field(default_factory=list)
    workloads: tuple[str, ...] = ("w1", "latency", "w2", "scale")
    every_round: bool = True  # False: W1 and W2 in the first round only
    error: str | None = None
    # arguments between the interpreter and the contender's module or script: e.g. the
    # tracer of bench/latency_trace.py
    wrapper: tuple[str, ...] = ()

    def prepare(self, admin: AdminClient, t: Topics, workload: str, partitions: int) -> None:
        """Create the topics this contender needs besides ingress and egress."""

    def spawn(
        self, workload: str, t: Topics, instance: str, run_dir: Path, partitions: int
    ) -> Proc:
        raise NotImplementedError

    def group(self, t: Topics) -> str:
        return t.app


class Kstatefun(Contender):
    """kstatefun workers at their default settings: ``partitions`` is ignored (the internal
    topics get kstatefun's default count); a part that needs a given count passes
    ``--partitions`` in ``extra``."""

    bootstrap: str = ""
    endpoint_url: str = ""  # W3: the StateFun SDK endpoint that serves bench/*
    worker_args: tuple[str, ...] = ()  # extra `kstatefun run` arguments for every spawn
    source: str = ""  # another checkout's service/ directory: its kstatefun runs (A/B)
    worker_env: dict[str, str] = {}  # noqa: RUF012 - more environment for every spawn

    def module(self, workload: str, ingress: str) -> str:
        """The worker's module.yaml: W1 and W2 embed their functions, W3 calls the SDK."""
        if workload == "w3":
            return INGRESS_EGRESS.format(ingress=ingress, target="bench/counter") + (
                ENDPOINT.format(url=self.endpoint_url)
            )
        app_module, target = {
            "w1": ("bench.apps.count", "bench/counter"),
            "w2": ("bench.apps.chain", "bench/a"),
        }[workload]
        return INGRESS_EGRESS.format(ingress=ingress, target=target) + EMBEDDED.format(
            functions=app_module
        )

    def spawn(
        self,
        workload: str,
        t: Topics,
        instance: str,
        run_dir: Path,
        partitions: int,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Proc:
        """``env``: more environment, e.g. settings (KSTATEFUN_*) for this worker."""
        module = run_dir / f"{t.app}.yaml"
        module.write_text(self.module(workload, t.ingress))
        return Proc(
            [
                sys.executable,
                *self.wrapper,
                "-m",
                "kstatefun.cli",
                "run",
                "--module",
                str(module),
                "--bootstrap-servers",
                self.bootstrap,
                "--app-id",
                t.app,
                "--instance-id",
                instance,
                *self.worker_args,
                *extra,
            ],
            run_dir / f"{t.app}-{instance}.log",
            {
                "BENCH_EGRESS_TOPIC": t.egress,
                # a named worker's default state dir: in the run's scratch space, not $HOME
                "XDG_STATE_HOME": str(run_dir / "state"),
                **({"PYTHONPATH": self.source} if self.source else {}),
                **self.worker_env,
                **(env or {}),
            },
        )


INGRESS_EGRESS = """\
kind: io.statefun.kafka.v1/ingress
spec:
  id: bench/in
  startupPosition:
    type: earliest
  topics:
    - topic: {ingress}
      valueType: bench/Event
      targets:
        - {target}
---
kind: io.statefun.kafka.v1/egress
spec:
  id: bench/out
---
"""

EMBEDDED = """\
kind: io.kstatefun.v1/embedded
spec:
  functions:
    - {functions}:functions
"""

# StateFun's defaults otherwise: maxNumBatchRequests 1000, async transport, call 2 min
ENDPOINT = """\
kind: io.statefun.endpoints.v2/http
spec:
  functions: bench/*
  urlPathTemplate: {url}
"""


class Bare(Contender):
    mode_for: dict[str, str]
    bootstrap: str = ""

    def prepare(self, admin: AdminClient, t: Topics, workload: str, partitions: int) -> None:
        create_topics(admin, [t.internal], partitions, {"cleanup.policy": "delete"})
        create_topics(
            admin,
            [t.changelog],
            partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        )

    def spawn(
        self, workload: str, t: Topics, instance: str, run_dir: Path, partitions: int
    ) -> Proc:
        return Proc(
            [
                sys.executable,
                *self.wrapper,
                str(PEERS / "bare.py"),
                "--mode",
                self.mode_for[workload],
                "--bootstrap",
                self.bootstrap,
                "--group",
                t.app,
                "--instance",
                instance,
                "--ingress",
                t.ingress,
                "--egress",
                t.egress,
                "--internal",
                t.internal,
                "--changelog",
                t.changelog,
            ],
            run_dir / f"{t.app}-{instance}.log",
        )


class _Peer(Contender):
    """A peer framework's app (bench/peers/), run in the peer's own virtualenv."""

    python: Path
    bootstrap: str = ""
    commit_interval: float | None = None  # seconds; None: the framework's default
    script = ""  # in bench/peers/
    scratch = ""  # the app's local storage, one directory per instance under the run's logs
    scratch_flag = ""

    def command(self) -> list[str]:
        return [str(self.python), str(PEERS / self.script)]

    def prepare(self, admin: AdminClient, t: Topics, workload: str, partitions: int) -> None:
        if workload == "w2":
            create_topics(admin, [t.internal], partitions)

    def spawn(
        self, workload: str, t: Topics, instance: str, run_dir: Path, partitions: int
    ) -> Proc:
        scratch = run_dir / self.scratch / f"{t.app}-{instance}"
        scratch.mkdir(parents=True, exist_ok=True)
        return Proc(
            [
                *self.command(),
                "--mode",
                workload,
                "--bootstrap",
                self.bootstrap,
                "--group",
                t.app,
                "--ingress",
                t.ingress,
                "--egress",
                t.egress,
                "--mid",
                t.internal,
                "--partitions",
                str(partitions),
                self.scratch_flag,
                str(scratch),
                *(
                    ["--commit-interval", str(self.commit_interval)]
                    if self.commit_interval is not None
                    else []
                ),
            ],
            run_dir / f"{t.app}-{instance}.log",
        )


class Quix(_Peer):
    script, scratch, scratch_flag = "quix_app.py", "quix-state", "--state-dir"


class Faust(_Peer):
    script, scratch, scratch_flag = "faust_app.py", "faust-data", "--data-dir"


class KStreams(_Peer):
    """The Java Kafka Streams app (bench/peers/kstreams/), built by bench/venvs.py."""

    scratch, scratch_flag = "kstreams-state", "--state-dir"
    java = ""
    classpath = ""

    def prepare(self, admin: AdminClient, t: Topics, workload: str, partitions: int) -> None:
        """W2's repartition topic, named as Kafka Streams names it (``<application.id>-<name>
        -repartition``, the name "mid" in KStreamsBench.java) and configured as it would: made
        by Kafka Streams, it appears after the first rebalance and forces a second one inside
        the timed window, while the other contenders' topics exist before they start. The
        changelog topics stay Kafka Streams' own, as kstatefun's and Quix Streams' do."""
        if workload == "w2":
            create_topics(
                admin,
                [f"{t.app}-mid-repartition"],
                partitions,
                {"cleanup.policy": "delete", "retention.ms": "-1"},
            )

    def command(self) -> list[str]:
        return [
            self.java,
            "-Xmx1g",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            self.classpath,
            venvs.KSTREAMS_MAIN,
        ]


def build(
    bootstrap: str,
    run_dir: Path,
    want: set[str],
    commit_100ms_too: bool = False,
    also: dict[str, Path] | None = None,
) -> list[Contender]:
    """The contenders of this run, in table order; a peer that cannot be installed or built
    stays in the list with ``error`` set. Each Python peer runs at its own default commit
    interval; ``commit_100ms_too`` adds it once more with kstatefun's 100 ms, for W1 (Quix
    Streams: and latency) only. ``also``: more kstatefun contenders, each another checkout
    (name → its root), to compare versions in the same run."""
    import confluent_kafka

    ck_version = confluent_kafka.version()
    if isinstance(ck_version, tuple):  # older confluent-kafka returns (str, int)
        ck_version = ck_version[0]
    ck = f"confluent-kafka {ck_version}, librdkafka {confluent_kafka.libversion()[0]}"
    out: list[Contender] = []
    if "bare" in want:
        for name, label, modes, note in (
            (
                "bare-direct",
                "bare loop, no hop",
                {"w1": "direct"},
                "ingress → count → changelog + egress: the floor of any exactly-once counter",
            ),
            (
                "bare-hop",
                "bare loop, kstatefun's I/O",
                {"w1": "hop", "w2": "chain"},
                "ingress → internal topic → count → changelog + egress, as kstatefun routes",
            ),
        ):
            c = Bare(
                name,
                label,
                "exactly-once (Kafka transactions, read_committed, offsets in the transaction)",
                ck,
                [note, "commit policy and client settings copied from kstatefun"],
                workloads=("w1", "latency", "w2", "scale") if "w2" in modes else ("w1", "latency"),
            )
            c.mode_for = modes
            c.bootstrap = bootstrap
            out.append(c)
    if "kstreams" in want:
        ks = KStreams(
            "kstreams",
            "Kafka Streams 4.1.1",
            "exactly_once_v2",
            notes=[
                "Java, bench/peers/kstreams/: groupByKey().count() (W2: count → repartition() "
                "→ count), RocksDB stores with changelog topics",
                "num.stream.threads=1, commit.interval.ms=100 (its default with exactly-once), "
                "statestore.cache.max.bytes=0 (one output per event)",
            ],
            workloads=("w1", "latency", "w2", "scale"),
        )
        ks.bootstrap, ks.commit_interval = bootstrap, 0.1
        try:
            ks.java, ks.classpath = venvs.ensure_kstreams(run_dir / "build-kstreams.log")
            ks.version = venvs.kstreams_version(ks.java, ks.classpath)
        except Exception as e:  # recorded in the results instead of a number
            ks.error = f"could not build the Kafka Streams app: {e}"
        out.append(ks)
    for peer, cls, label, guarantee, default_interval, notes in (
        (
            "quix",
            Quix,
            "Quix Streams",
            'processing_guarantee="exactly-once"',
            "commit_interval=5 s",
            ["RocksDB state with changelog topics", "fetch.wait.max.ms=10, as kstatefun"],
        ),
        (
            "faust",
            Faust,
            "Faust-streaming",
            'processing_guarantee="exactly_once"',
            "broker_commit_interval=2.8 s",
            ["Table with memory:// store and changelog topic"],
        ),
    ):
        if peer not in want:
            continue
        c = cls(
            peer,
            f"{label} (defaults)",
            guarantee,
            notes=[*notes, f"its default commit interval ({default_interval})"],
            # Faust is far behind the others (2.5 k events/s in W1): once is enough
            every_round=peer != "faust",
        )
        c.bootstrap = bootstrap
        try:
            c.python = venvs.ensure(peer, run_dir / f"venv-{peer}.log")
            c.version = ", ".join(
                f"{dist} {venvs.package_version(c.python, dist)}" for dist in venvs.SHOWN[peer]
            )
        except Exception as e:  # recorded in the results instead of a number
            c.error = f"could not install {venvs.PEERS[peer]}: {e}"
        out.append(c)
        if commit_100ms_too and c.error is None:
            only = ("w1", "latency") if peer == "quix" else ("w1",)  # Faust: W1 is plenty
            d = cls(
                f"{peer}-100ms",
                f"{label}, 100 ms commits",
                guarantee,
                c.version,
                [*notes, f"commit interval 0.1 s, as kstatefun; {' and '.join(only)} only"],
                workloads=only,
                every_round=c.every_round,
            )
            d.bootstrap, d.python, d.commit_interval = bootstrap, c.python, 0.1
            out.append(d)
    if "kstatefun" in want:
        from importlib.metadata import version

        k = Kstatefun(
            "kstatefun",
            "kstatefun",
            "exactly-once (one Kafka transaction per commit)",
            f"kstatefun {version('kstatefun')}, {ck}",
            [
                "workers are `python -m kstatefun.cli run` subprocesses, default settings",
                "service/ byte-compiled beforehand, as pip does for an installed package",
            ],
        )
        k.bootstrap = bootstrap
        byte_compile(ROOT / "service")
        out.append(k)
        # W2 with every message through <app>-invocations: the one worker here owns B's
        # partition, so by default B runs in A's transaction (runtime/local.py), a shape the
        # other contenders cannot take; with N workers only one message in N can. Beside the
        # default W2, not instead of it
        hop = Kstatefun(
            "kstatefun-hop",
            "kstatefun, W2 through the topic",
            k.guarantee,
            k.version,
            [*k.notes, "W2 only: local_messages=false, every message takes the hop"],
            workloads=("w2",),
        )
        hop.bootstrap, hop.worker_env = bootstrap, {"KSTATEFUN_LOCAL_MESSAGES": "false"}
        out.append(hop)
    if "kstatefun-compiled" in want:
        from bench import compiled

        c = Kstatefun(
            "kstatefun-compiled",
            "kstatefun, compiled",
            "exactly-once (one Kafka transaction per commit)",
            f"kstatefun from this tree, built with KSTATEFUN_COMPILE=1 (mypyc), {ck}",
            [
                "the build the container image ships: the hot path's modules compiled "
                "(kstatefun/buildinfo.py), default settings",
            ],
            workloads=("w1", "latency", "w2"),
        )
        c.bootstrap = bootstrap
        try:
            c.source = str(compiled.ensure(run_dir / "build-kstatefun-compiled.log"))
        except Exception as e:  # recorded in the results instead of a number
            c.error = f"could not build kstatefun compiled: {e}"
        out.append(c)
    for name, root in (also or {}).items():
        other = Kstatefun(
            f"kstatefun-{name}",
            f"kstatefun ({name}: {root})",
            "exactly-once (one Kafka transaction per commit)",
            f"kstatefun from {root}, {ck}",
            ["workers run the checkout's service/ (PYTHONPATH), default settings"],
        )
        other.bootstrap = bootstrap
        other.source = str((root / "service").resolve())
        byte_compile(root / "service")
        out.append(other)
    return out


def byte_compile(tree: Path) -> None:
    """Write the bytecode of every module under ``tree``, as pip does when it installs a
    package (the container image, the compiled contender): workers started from a checkout
    then do not compile kstatefun's modules at every start, which they do each time where
    PYTHONDONTWRITEBYTECODE is set (about 0.1 s of CPU per start on the benchmark machine)."""
    import compileall

    compileall.compile_dir(str(tree), quiet=1)
