"""Test application: ``test/counter`` never returns (a function stuck for good), for the
watchdog test (tests/e2e/test_watchdog.py)."""

import time

from kstatefun import StatefulFunctions

functions = StatefulFunctions()


@functions.bind("test/counter")
def stuck(context, message):
    while True:  # the watchdog ends the process
        time.sleep(1)
