"""Test application whose import takes long: it creates the file ``$TEST_IMPORT_MARKER`` and
then sleeps ``$TEST_IMPORT_SLEEP_S`` seconds, a worker still starting (tests/integration)."""

import os
import time
from pathlib import Path

from tests.apps.counting import functions  # noqa: F401 - what the worker then serves

Path(os.environ["TEST_IMPORT_MARKER"]).touch()
time.sleep(float(os.environ.get("TEST_IMPORT_SLEEP_S", "30")))
