"""What a worker imports before it can start: every start and restart waits for it."""

import subprocess
import sys


def test_a_worker_without_remote_functions_does_not_import_the_http_client():
    # aiohttp was a third of the worker's import time; only module.yaml endpoints need it
    probe = "import sys, kstatefun.cli, kstatefun.runtime.worker; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
