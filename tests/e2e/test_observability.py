"""Metrics, health and readiness over HTTP against a running worker, and JSON logs."""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

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
        assert get(base + "/nope")[0] == 404
        assert app.stop_worker("w1") == 0
    finally:
        app.stop_all()
    lines = [line for line in app.log("w1").splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records and all(r["app"] == app.app_id and r["instance"] == "w1" for r in records)
    assert any("worker stopped" in r["message"] for r in records)
    assert any(r["level"] == "WARNING" and "dead letter" in r["message"] for r in records)
