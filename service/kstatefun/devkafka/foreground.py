"""``kstatefun dev-kafka``: run a local broker in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from kstatefun.devkafka.broker import LocalKafka
from kstatefun.devkafka.cluster import LocalKafkaCluster

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9092


class _StopRequested(Exception):
    """SIGTERM or SIGINT arrived while the broker was still starting."""


def run_foreground(data_dir: Path | None, port: int = DEFAULT_PORT, brokers: int = 1) -> int:
    """Run a broker (``brokers`` > 1: a cluster of that many nodes, on ``port``, ``port`` + 1,
    ...) until SIGTERM or SIGINT; return the process exit code.

    Prints exactly one line to stdout, ``bootstrap.servers=127.0.0.1:PORT[,...]``, once clients
    can connect (to every node of a cluster); everything else goes to logging and to the
    broker's log file. Without ``data_dir`` the broker lives in a temporary directory that is
    removed afterwards. Returns 0 after a signal-initiated clean stop, 1 when the broker (a node)
    dies on its own. Raises DevKafkaError when the broker cannot be started. Must be called from
    the main thread (it installs signal handlers).
    """
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if starting:
            raise _StopRequested

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    temp_dir = None
    if data_dir is None:
        temp_dir = Path(tempfile.mkdtemp(prefix="kstatefun-dev-kafka-"))
        data_dir = temp_dir
    broker: LocalKafka | LocalKafkaCluster | None = None
    try:
        if brokers == 1:
            broker = LocalKafka(data_dir, port)
        else:
            ports = [port + i if port else 0 for i in range(brokers)]
            broker = LocalKafkaCluster(data_dir, brokers, ports)
        bootstrap_servers = broker.start()
        starting = False
        if stop.is_set():  # the signal landed between start() returning and the flag flip
            return 0
        try:
            print(f"bootstrap.servers={bootstrap_servers}", flush=True)
        except BrokenPipeError:
            logger.warning("stdout is closed; the broker keeps running until signalled")
        logger.info(
            "kafka broker ready bootstrap_servers=%s log=%s (SIGTERM or Ctrl-C stops it)",
            bootstrap_servers,
            broker.log_file,
        )
        while not stop.wait(0.5):
            if not broker.running:
                logger.error(
                    "kafka broker exited unexpectedly data_dir=%s; last lines of its logs:\n%s",
                    broker.data_dir,
                    broker.log_tail(),
                )
                return 1
        logger.info("stopping kafka broker bootstrap_servers=%s", bootstrap_servers)
        return 0
    except _StopRequested:
        logger.info("interrupted while the kafka broker was starting")
        return 0
    finally:
        starting = False
        if broker is not None:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def add_brokers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="1 (default): a single broker; 3 or more: a KRaft cluster of that many nodes with "
        "replication factor 3 and min.insync.replicas 2 for every topic, on --port, --port + 1, "
        "... (0: free ports)",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m kstatefun.devkafka [--data-dir DIR] [--port N] [--brokers N]``."""
    from kstatefun.errors import DevKafkaError

    parser = argparse.ArgumentParser(
        prog="python -m kstatefun.devkafka",
        description="Run a single-node Kafka broker on 127.0.0.1 for development.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the broker's data here (default: a temporary directory, removed on exit)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="client port, 0 picks a free one"
    )
    add_brokers_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return run_foreground(args.data_dir, args.port, args.brokers)
    except DevKafkaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
