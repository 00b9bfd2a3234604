"""Operator commands that read (and write) a running application's own topics.

One module per command group: ``send``, ``state``, ``timers``, ``deadletters``, ``topics``,
``group``. They open their own short-lived Kafka clients, never join the application's consumer
group and never touch its transactional ids, so they are safe to run while workers run;
``group remove`` alone changes the group (it removes named workers that stopped for good).
``reader`` reads a partition to its end correctly; ``values`` turns stored bytes into text.
docs/operations-cli.md describes every command.
"""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``send``, ``state``, ``timers``, ``dead-letters``, ``topics`` and ``group`` to
    ``sub``."""
    from kstatefun.tools import deadletters, group, send, state, timers, topics

    for module in (send, state, timers, deadletters, topics, group):
        module.add_parser(sub)
