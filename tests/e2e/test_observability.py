"""Metrics, health and readiness over HTTP against a running worker, and JSON logs."""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from kstatefun import buildinfo
from tests.harness import keyed_events, make_app, produce_events, read_committed

pytestmark = pytest.mark.kafka


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sample(text, name, **labels):
    """The value of one Prometheus sample, or None."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_health_ready_and_json_logs(kafka_bootstrap, tmp_path, unique_name, create_topic):
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    events, _ = keyed_events(keys=4, per_key=5)
    events.append((None, b'{"seq": -1}'))  # one dead letter
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1", "--metrics-port", str(port), "--log-format", "json")
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                status, _ = get(base + "/readyz")
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, app.all_logs()
        assert get(base + "/healthz") == (200, '{"status": "ok"}')
        read_committed(app.bootstrap, app.egress, 20, settle=0.5)
        status, text = get(base + "/metrics")
        assert status == 200
        labels = {"app": app.app_id, "instance": "w1"}
        assert sample(text, "kstatefun_invocations_total", function="test/counter", **labels) == 20
        assert sample(text, "kstatefun_invocations_total", function="test/sink", **labels) == 20
        assert sample(text, "kstatefun_dead_letters_total", reason="null-key", **labels) == 1
        assert sample(text, "kstatefun_records_in_total", topic=app.ingress, **labels) == 21
        assert sample(text, "kstatefun_records_out_total", topic=app.egress, **labels) == 20
        assert sample(text, "kstatefun_transactions_committed_total", **labels) >= 1
        build = {"version": buildinfo.version(), "build": buildinfo.build()}
        assert sample(text, "kstatefun_build_info", **build, **labels) == 1
        assert (
            sample(
                text,
                "kstatefun_invocation_latency_seconds_count",
                function="test/counter",
                **labels,
            )
            == 20
        )
        assert sample(text, "kstatefun_pending_timers", **labels) == 0
        # nothing was waiting in the new application's invocations: every partition is live
        for p in range(app.partitions):
            assert sample(text, "kstatefun_partition_state", partition=p, state="live") == 1
        status, body = get(base + "/readyz")
        assert (status, json.loads(body)) == (
            200,
            {"status": "ready", "partitions": {"live": list(range(app.partitions))}},
        )
        assert get(base + "/nope")[0] == 404
        assert app.stop_worker("w1") == 0
    finally:
        app.stop_all()
    lines = [line for line in app.log("w1").splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records and all(r["app"] == app.app_id and r["instance"] == "w1" for r in records)
    assert any("worker stopped" in r["message"] for r in records)
    assert any(r["level"] == "WARNING" and "dead letter" in r["message"] for r in records)


def samples(text, name):
    """Every sample of ``name`` as {(topic, partition): value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = dict(
                part.split("=", 1) for part in line[len(name) + 1 : line.index("}")].split(",")
            )
            key = (labels["topic"].strip('"'), int(labels["partition"].strip('"')))
            out[key] = float(line.rsplit(" ", 1)[1])
    return out


def test_consumer_lag_is_sampled_while_a_backlog_drains_and_reaches_zero(
    kafka_bootstrap, tmp_path, unique_name, create_topic
):
    """A backlog of 4,000 events at 2 ms each (8 s of work at least): kstatefun_consumer_lag
    shows it on the ingress partitions while it drains, and reads 0 on every consumed
    partition (ingress and <app>-invocations) once it has drained."""
    app = make_app(kafka_bootstrap, tmp_path, unique_name, create_topic)
    port = free_port()
    events, _ = keyed_events(keys=8, per_key=500)
    events = [(k, json.dumps({**json.loads(v), "sleep_ms": 2}).encode()) for k, v in events]
    produce_events(app.bootstrap, app.ingress, events)
    app.start_worker("w1", "--metrics-port", str(port))
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                status, text = get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                continue
            lag = samples(text, "kstatefun_consumer_lag")
            seen.append(lag)
            drained = sample(text, "kstatefun_records_out_total", topic=app.egress) == len(events)
            ingress = {k: v for k, v in lag.items() if k[0] == app.ingress}
            # every record goes direct: the empty invocations partitions show up in the lag
            # once a fetch response has told the consumer their end
            invocations = f"{app.app_id}-invocations" in {t for t, _ in lag}
            if drained and len(ingress) == 4 and invocations and not any(lag.values()):
                break
        out = read_committed(app.bootstrap, app.egress, len(events), settle=0)
    finally:
        app.stop_all()
    assert len(out) == len(events), app.all_logs()
    assert any(v > 0 for lag in seen for (t, _), v in lag.items() if t == app.ingress), seen
    final = seen[-1]
    assert len([k for k in final if k[0] == app.ingress]) == 4, seen[-3:]
    assert f"{app.app_id}-invocations" in {t for t, _ in final}, seen[-3:]
    assert not any(final.values()), seen[-3:]
