"""W3: W1 (count per key) with the function served by the real StateFun Python SDK over HTTP
(bench/apps/sdk_count.py) through one kstatefun worker, against what the same SDK endpoint
sustains when called directly (bench/httpload.py). docs/performance.md explains the method.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

from bench.contenders import Kstatefun, Topics
from bench.httpload import direct_load
from bench.workloads import Env, throughput

SDK_APP = Path(__file__).resolve().parent / "apps" / "sdk_count.py"
EVENT_TYPE = "bench/Event"
EVENT_VALUE = b'{"seq":0}'  # what the pre-produced input carries (bench/kafkautil.py)

_METRIC = re.compile(
    r"^(kstatefun_remote_in_flight|kstatefun_invocations_total|"
    r"kstatefun_remote_call_latency_seconds_count)\{[^}]*\} ([0-9.eE+-]+)$",
    re.M,
)


def counter_bodies(requests: int, batch: int) -> list[bytes]:
    """``requests`` ToFunction bodies for ``bench/counter``, each with ``batch`` invocations
    and the state ``count`` present, as the worker sends them: one address per body."""
    from kstatefun.model import Address, TypedValue
    from kstatefun.remote import encode_batch
    from kstatefun.wire.protobuf import encode_int_wrapper

    event = TypedValue(EVENT_TYPE, EVENT_VALUE)
    return [
        encode_batch(
            Address("bench/counter", f"d{i}"),
            [("count", "io.statefun.types/int", encode_int_wrapper(i + 1))],
            [(None, event)] * batch,
        )
        for i in range(requests)
    ]


def direct(url: str, seconds: float, concurrency: int, batch: int = 1) -> dict:
    """The SDK endpoint called directly, ``concurrency`` requests of ``batch`` invocations
    always in flight, from this process."""
    rps, cpu_us = asyncio.run(direct_load(url, counter_bodies(concurrency, batch), seconds))
    return {
        "concurrency": concurrency,
        "batch": batch,
        "seconds": seconds,
        "requests_per_s": round(rps),
        "invocations_per_s": round(rps * batch),
        "client_cpu_us_per_request": round(cpu_us),
    }


class MetricsSampler:
    """Scrapes a worker's /metrics every ``interval`` s in a thread: requests in flight,
    invocations and remote calls, for the batch size and in-flight count of a W3 run."""

    def __init__(self, port: int, interval: float = 0.25, timeout: float = 600.0) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.samples: list[tuple[float, float, float, float]] = []  # t, in flight, inv, calls
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(interval, timeout), name="w3-metrics", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._stop.wait(interval) and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=1) as resp:
                    text = resp.read().decode()
            except OSError:
                continue  # not listening yet, or gone
            values = dict.fromkeys(("in", "inv", "calls"), 0.0)
            for name, value in _METRIC.findall(text):
                key = {"kstatefun_remote_in_flight": "in", "kstatefun_invocations_total": "inv"}
                values[key.get(name, "calls")] += float(value)
            self.samples.append((time.monotonic(), values["in"], values["inv"], values["calls"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def summary(self) -> dict:
        """Over the busy window (from the first sample with invocations to the first one with
        all of them): the mean requests in flight and the mean invocations per request."""
        s = self.samples
        if not s or s[-1][2] == 0:
            return {"error": f"no metrics scraped from {self.url}"}
        final = s[-1][2]
        first = next(i for i, x in enumerate(s) if x[2] > 0)
        last = next(i for i, x in enumerate(s) if x[2] >= final)
        window = s[max(0, first - 1) : last + 1]
        busy = [x[1] for x in window]
        calls = window[-1][3] - window[0][3]
        invocations = window[-1][2] - window[0][2]
        return {
            "samples": len(window),
            "in_flight_mean": round(sum(busy) / len(busy), 1),
            "in_flight_max": int(max(busy)),
            "invocations": int(final),
            "calls": int(s[-1][3]),
            "batch_mean": round(invocations / calls, 2) if calls else None,
        }


def sdk_description(python: Path) -> str:
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import google.protobuf as p, aiohttp as a; from importlib.metadata import version;"
            "from google.protobuf.internal import api_implementation as i;"
            "print(version('apache-flink-statefun'), p.__version__, i.Type(), a.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        sdk, pb, impl, aio = probe.stdout.split()
    except ValueError:
        return "apache-flink-statefun (version unknown)"
    return (
        f"apache-flink-statefun {sdk} (protobuf {pb}, {impl} implementation), aiohttp {aio}; "
        "one server process (tests/remote/sdk_serving.py)"
    )


def w3(env: Env, k: Kstatefun, cfg: Any, ingress: str, events: int, sent: Counter) -> dict:
    """W3 through a kstatefun worker on the pre-produced ``ingress`` (timed and validated as
    W1), then the same SDK server called directly at the worker's mean in-flight count, one
    invocation per request (the endpoint's direct capacity) and batched like the worker."""
    from tests.remote import sdk_env

    python = sdk_env.ensure_sdk_venv()
    c = Kstatefun(
        "kstatefun-sdk",
        "kstatefun + StateFun SDK over HTTP",
        k.guarantee,
        k.version,
        ["the W1 counter in bench/apps/sdk_count.py, served by the StateFun Python SDK"],
        workloads=("w3",),
    )
    c.bootstrap = k.bootstrap
    port = sdk_env.free_port()
    c.worker_args = ("--metrics-port", str(port))
    egress = Topics.fresh(c.name, "w3", env.run_id).egress
    out: dict[str, Any] = {"endpoint": sdk_description(python)}
    with (
        mock.patch.dict("os.environ", {"BENCH_EGRESS_TOPIC": egress}),
        sdk_env.sdk_server(python, script=SDK_APP) as server,
    ):
        c.endpoint_url = server.url()
        sampler = MetricsSampler(port)
        try:
            out["kstatefun"] = throughput(env, c, "w3", ingress, events, sent, cfg)
        finally:
            sampler.close()
        worker = out["worker"] = sampler.summary()
        in_flight = max(1, round(worker.get("in_flight_mean") or 64))
        env.log(f"  {worker}; direct at {in_flight} in flight")
        out["direct"] = direct(server.url(), cfg.w3_direct_s, in_flight)
        batch = round(worker.get("batch_mean") or 1)
        if batch > 1:
            out["direct_batched"] = direct(server.url(), cfg.w3_direct_s, in_flight, batch)
    rate = out["kstatefun"].get("events_per_s")
    for key, d in (("ratio", "direct"), ("ratio_batched", "direct_batched")):
        base = (out.get(d) or {}).get("invocations_per_s")
        if rate and base:
            out[key] = round(rate / base, 2)
    return out
