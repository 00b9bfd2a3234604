"""StateFun's playground ingress and egress on Kafka, with an application written against them
and the real StateFun Python SDK (tests/remote/sdk_playground_app.py): greetings POSTed to the
HTTP ingress come back from the HTTP egress exactly once, across a kill -9 of the worker."""

import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from kstatefun.devkafka.broker import free_ports
from tests.e2e.test_remote import read_committed_dead_letters
from tests.harness import App
from tests.remote import sdk_env

pytestmark = pytest.mark.kafka

APP_SCRIPT = Path(__file__).resolve().parent.parent / "remote" / "sdk_playground_app.py"

MODULE = """\
kind: io.statefun.endpoints.v2/http
spec:
  functions: greeter.fns/*
  urlPathTemplate: {url}
  transport:
    type: io.statefun.transports.v1/async
---
kind: io.statefun.playground.v1/ingress
spec:
  port: {ingress_port}
---
kind: io.statefun.playground.v1/egress
spec:
  port: {egress_port}
  topics:
    - greetings
"""

NAMES = [f"name{i}" for i in range(6)]


@pytest.fixture(scope="module")
def sdk_app():
    with sdk_env.sdk_app_server(APP_SCRIPT) as server:
        yield server


@pytest.fixture
def app(kafka_bootstrap, tmp_path, unique_name, sdk_app):
    ingress_port, egress_port = free_ports(2)
    module = tmp_path / "module.yaml"
    module.write_text(
        MODULE.format(
            url=sdk_app.url("statefun"), ingress_port=ingress_port, egress_port=egress_port
        )
    )
    application = App(kafka_bootstrap, unique_name("app"), "", "", module)
    application.ingress_url = f"http://127.0.0.1:{ingress_port}"
    application.egress_url = f"http://127.0.0.1:{egress_port}"
    yield application
    application.stop_all()


def request(url, data=None, method="GET", content_type=None):
    """(status, body) of one HTTP request."""
    req = urllib.request.Request(url, data=data, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_listening(url, app, timeout=120):
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, app.all_logs()
            assert all(p.poll() is None for p in app.workers.values()), app.all_logs()
            time.sleep(0.2)


def greet(app, name):
    status, body = request(
        f"{app.ingress_url}/greeter.fns/person/{name}",
        f'{{"name": "{name}"}}'.encode(),
        "PUT",
        "application/vnd.greeter.types/GreetRequest",
    )
    assert status == 200, (body, app.all_logs())


def read_greetings(app, count, timeout=120):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, (got, app.all_logs())
        status, body = request(f"{app.egress_url}/greetings?wait=2")
        if status == 200:
            got.append(body.decode())
        else:
            assert status == 404, body
    return got


def test_greetings_posted_to_the_ingress_come_back_from_the_egress_exactly_once(app):
    app.start_worker("w1")
    wait_listening(app.ingress_url, app)
    for name in NAMES:
        greet(app, name)
    first = read_greetings(app, len(NAMES))
    app.kill_worker("w1")  # kill -9: the egress resumes at the committed offset

    app.start_worker("w1")
    wait_listening(app.ingress_url, app)
    for _ in range(2):
        for name in NAMES:
            greet(app, name)
    rest = read_greetings(app, 2 * len(NAMES))
    # nothing more comes: each greeting was handed out once
    assert request(f"{app.egress_url}/greetings?wait=3")[0] == 404
    got = Counter(first + rest)
    assert got == Counter(f"{n}:{v}" for n in NAMES for v in (1, 2, 3)), app.all_logs()


def test_playground_errors_are_plain(app):
    app.start_worker("w1")
    wait_listening(app.egress_url, app)
    wait_listening(app.ingress_url, app)
    status, body = request(f"{app.ingress_url}/other/nobody/x", b"{}", "POST")
    assert status == 404 and b"other/nobody" in body
    status, body = request(f"{app.ingress_url}/greeter.fns/person", b"{}", "POST")
    assert status == 400 and b"/namespace/type/id" in body
    status, body = request(f"{app.egress_url}/unknown")
    assert status == 405 and b"/greetings" in body
    assert request(f"{app.egress_url}/greetings")[0] == 404
    # a record for a topic the egress does not list is a dead letter, named in it
    greet(app, "lost1")
    deadline = time.monotonic() + 120
    while not (letters := read_committed_dead_letters(app)):
        assert time.monotonic() < deadline, app.all_logs()
    assert [(d["reason"], d["target_type"]) for d in letters] == [
        ("unknown-egress", "greeter.fns/greeter")
    ]
    assert "nowhere" in letters[0]["message"]


def test_a_playground_port_in_use_is_a_plain_error(app):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(app.ingress_url.rsplit(":", 1)[1])))
        busy.listen()
        assert app.start_worker("w1").wait(120) == 2, app.all_logs()
    log = app.log("w1")
    assert "io.statefun.playground.v1/ingress: cannot listen on 127.0.0.1:" in log, log
    assert "spec.port" in log and "Traceback" not in log
