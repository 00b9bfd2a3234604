"""``kstatefun`` command line: ``run`` a worker, ``dev-kafka`` a local broker, and the
operator commands that read a running application's topics (``send``, ``state``, ``timers``,
``dead-letters``, ``topics``; see docs/operations-cli.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from kstatefun.errors import KStatefunError

log = logging.getLogger("kstatefun")


def _run(args: argparse.Namespace) -> int:
    from kstatefun.config.module import load_module
    from kstatefun.config.settings import load_settings
    from kstatefun.observability.logs import configure_logging
    from kstatefun.runtime.worker import Worker
    from kstatefun.sdk.functions import load_functions

    settings = load_settings(
        module=args.module,
        functions=args.functions,
        bootstrap_servers=args.bootstrap_servers,
        app_id=args.app_id,
        instance_id=args.instance_id,
        static_membership=args.static_membership,
        state_dir=args.state_dir,
        partitions=args.partitions,
        commit_interval_ms=args.commit_interval_ms,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        log_format=args.log_format,
    )
    configure_logging(
        settings.log_level, settings.log_format, settings.app_id, settings.instance_id
    )
    if settings.module is None:
        raise KStatefunError("no module.yaml given: pass --module PATH or set KSTATEFUN_MODULE")
    module = load_module(settings.module)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # so 'examples.greeter:functions' imports
    functions = load_functions(dict.fromkeys([*module.embedded, *settings.functions]))
    worker = Worker(settings, module, functions)

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal=%s: finishing the open transaction and leaving the group", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return worker.run()


def _dev_kafka(args: argparse.Namespace) -> int:
    from kstatefun.devkafka import run_foreground

    return run_foreground(args.data_dir, args.port, args.brokers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kstatefun", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a worker of an application")
    run.add_argument("--module", type=Path, help="module.yaml (env KSTATEFUN_MODULE)")
    run.add_argument(
        "--functions",
        action="append",
        help="embedded functions as package.module:attribute, repeatable (env KSTATEFUN_FUNCTIONS)",
    )
    run.add_argument("--bootstrap-servers", help="HOST:PORT (env KSTATEFUN_BOOTSTRAP_SERVERS)")
    run.add_argument("--app-id", help="names the group and internal topics (env KSTATEFUN_APP_ID)")
    run.add_argument("--instance-id", help="stable per worker (env KSTATEFUN_INSTANCE_ID)")
    run.add_argument(
        "--static-membership",
        action="store_true",
        default=None,
        help="join the group as a static member named by the instance id: a restarted worker "
        "gets its partitions back without a rebalance (env KSTATEFUN_STATIC_MEMBERSHIP)",
    )
    run.add_argument(
        "--state-dir", type=Path, help="local state directory (env KSTATEFUN_STATE_DIR)"
    )
    run.add_argument(
        "--partitions", type=int, help="internal topic partitions (env KSTATEFUN_PARTITIONS)"
    )
    run.add_argument("--commit-interval-ms", type=int, help="env KSTATEFUN_COMMIT_INTERVAL_MS")
    run.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics, /healthz, /readyz; 0 disables (env KSTATEFUN_METRICS_PORT)",
    )
    run.add_argument(
        "--metrics-host", help="bind address, default 127.0.0.1 (env KSTATEFUN_METRICS_HOST)"
    )
    run.add_argument(
        "--log-format", choices=["text", "json"], help="env KSTATEFUN_LOG_FORMAT (default text)"
    )
    run.set_defaults(handler=_run)

    dev = sub.add_parser("dev-kafka", help="run a local Kafka broker or cluster (KRaft)")
    dev.add_argument("--data-dir", type=Path, default=None, help="default: a temporary directory")
    dev.add_argument("--port", type=int, default=9092)
    from kstatefun.devkafka.foreground import add_brokers_argument

    add_brokers_argument(dev)
    dev.set_defaults(handler=_dev_kafka)

    from kstatefun.tools import add_parsers

    add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return int(args.handler(args))
    except KStatefunError as e:
        print(f"kstatefun: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `kstatefun dead-letters tail --json | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
