"""The ``kstatefun`` command line: ``run`` a worker, ``dev-kafka`` a local broker, and the
operator commands that read a running application's topics (``kstatefun/tools``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from kstatefun import buildinfo
from kstatefun.devkafka.jars import (
    KAFKA_VERSION,
    LOG4J_VERSION,
    MIN_JAVA_MAJOR,
    SCALA_VERSION,
    SLF4J_VERSION,
)
from kstatefun.errors import KStatefunError

log = logging.getLogger("kstatefun")


def _stop_before_start(signum: int, frame: object) -> None:
    """SIGTERM or Ctrl-C while the worker is still starting (importing the functions can take
    seconds): nothing is consumed or committed yet, so stopping is a clean stop (exit 0), as
    the exit codes promise, not death by the signal's default action."""
    log.info("signal=%s before the worker started: stopping", signum)
    raise SystemExit(0)


def _run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _stop_before_start)
    signal.signal(signal.SIGINT, _stop_before_start)
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
        leave_group_on_stop=args.leave_group_on_stop,
        state_dir=args.state_dir,
        partitions=args.partitions,
        partitioner=args.partitioner,
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

    def source(ref: str) -> str:
        if ref in settings.functions:
            return "--functions or KSTATEFUN_FUNCTIONS"
        return f"io.kstatefun.v1/embedded in {module.source}"

    functions = load_functions(dict.fromkeys([*module.embedded, *settings.functions]), source)
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


DESCRIPTION = """\
Stateful Functions on Kafka. Commands: run (a worker), dev-kafka (a local broker), and the
operator commands that read a running application's topics: send, state, timers,
dead-letters, topics, group (docs/operations-cli.md)."""

RUN_EPILOG = """\
Every flag also has an environment variable; a flag wins over the variable, the variable over
the default. All settings: config/settings.md.

exit codes:
  0  clean stop after SIGTERM or SIGINT (the open transaction committed)
  2  invalid configuration or input, printed as one 'kstatefun: error: ...' line
  3  another worker took over this worker's transactional id or group membership (a newer
     worker with the same --instance-id), or the group kept refusing its instance id for
     three session timeouts
  4  the watchdog ended a worker that made no progress (watchdog_timeout_s)
  5  the local state store failed (state_store rocksdb: full disk, I/O error)
  1  any other error, with a traceback"""

DEV_KAFKA_DESCRIPTION = f"""\
Run a local single-node Kafka {KAFKA_VERSION} broker (KRaft mode) in the foreground, for
development and tests. It prints bootstrap.servers=127.0.0.1:PORT once clients can connect,
and stops on SIGTERM or Ctrl-C.

Needs Java {MIN_JAVA_MAJOR} or newer (java on PATH) and, on first use, Apache Maven (mvn on
PATH): Maven downloads the broker's jars from Maven Central (kafka_{SCALA_VERSION}
{KAFKA_VERSION} with its dependencies, log4j {LOG4J_VERSION} and slf4j-api {SLF4J_VERSION},
about 45 MB) into ~/.cache/kstatefun/kafka-{KAFKA_VERSION} (or $KSTATEFUN_CACHE_DIR), once.

exit codes: 0 after a signal, 1 when the broker dies on its own, 2 when it cannot start
(no Java 17, no Maven, the port in use)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kstatefun", description=DESCRIPTION)
    # whether the hot path runs compiled: "compiled" or "pure" (docs/performance.md)
    parser.add_argument(
        "--version",
        action="version",
        version=f"kstatefun {buildinfo.version()} (build: {buildinfo.build()})",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a worker of an application",
        description="Run one worker of an application: it joins the application's consumer "
        "group and processes its share of the partitions until SIGTERM or SIGINT.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--module", type=Path, help="the module.yaml to run (env KSTATEFUN_MODULE; required)"
    )
    run.add_argument(
        "--functions",
        action="append",
        metavar="PACKAGE.MODULE:ATTRIBUTE",
        help="a StatefulFunctions object to load besides the module's embedded ones; "
        "repeatable (env KSTATEFUN_FUNCTIONS, comma-separated; default: none)",
    )
    run.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="the Kafka cluster (env KSTATEFUN_BOOTSTRAP_SERVERS; default 127.0.0.1:9092)",
    )
    run.add_argument(
        "--app-id",
        help="names the consumer group and prefixes the internal topics "
        "(env KSTATEFUN_APP_ID; default kstatefun)",
    )
    run.add_argument(
        "--instance-id",
        help="stable and unique per worker; names its transactional id. Given (here or in the "
        "env), it turns static membership and the state directory on by default (env "
        "KSTATEFUN_INSTANCE_ID; default: the host name, with both off)",
    )
    run.add_argument(
        "--static-membership",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="join the group as a static member named by the instance id: a restarted worker "
        "gets its partitions back without a rebalance, and a stopped one keeps them until its "
        "session times out (env KSTATEFUN_STATIC_MEMBERSHIP; default on when --instance-id is "
        "given)",
    )
    run.add_argument(
        "--leave-group-on-stop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a static member that stops cleanly (SIGTERM) leaves the group for good, so its "
        "partitions move to the other workers at once instead of after its session timeout: "
        "for a worker stopped to scale in, not for one about to restart (env "
        "KSTATEFUN_LEAVE_GROUP_ON_STOP; default off)",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        help="keep a local snapshot of the committed state there, for faster restarts; 'none' "
        "restores from the changelog on every start (env KSTATEFUN_STATE_DIR; default when "
        "--instance-id is given: $XDG_STATE_HOME/kstatefun or ~/.local/state/kstatefun, else "
        "none)",
    )
    run.add_argument(
        "--partitions",
        type=int,
        help="partitions of the internal topics, the most workers that share the work (env "
        "KSTATEFUN_PARTITIONS). Default: the count the application's internal topics already "
        "have; for a new application the largest partition count of its ingress topics, so "
        "that ingress records keyed by the target id skip a hop (8 without ingress topics). "
        "A value that differs from existing internal topics is refused",
    )
    run.add_argument(
        "--partitioner",
        choices=["crc32", "murmur2"],
        help="how ids are hashed to partitions, recorded when the application is created "
        "(env KSTATEFUN_PARTITIONER): crc32 as librdkafka's producers (Python, Go, .NET, C) "
        "place keys by default, murmur2 as Java's do. Ingress records placed the same way skip "
        "a hop. Default: the recorded one; for a new application the one that placed the "
        "records already on its ingress topics, else crc32. A value that differs from the "
        "recorded one is refused",
    )
    run.add_argument(
        "--commit-interval-ms",
        type=int,
        help="commit at least this often under load (env KSTATEFUN_COMMIT_INTERVAL_MS; "
        "default 100)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics, /healthz, /readyz on this port (env KSTATEFUN_METRICS_PORT; "
        "default 0: off)",
    )
    run.add_argument(
        "--metrics-host",
        help="the address the metrics port binds (env KSTATEFUN_METRICS_HOST; default 127.0.0.1)",
    )
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines as key=value text or JSON (env KSTATEFUN_LOG_FORMAT; default text)",
    )
    run.set_defaults(handler=_run)

    dev = sub.add_parser(
        "dev-kafka",
        help="run a local Kafka broker or cluster (KRaft; needs Java 17 and Maven)",
        description=DEV_KAFKA_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the broker's data there (default: a temporary directory, removed at exit)",
    )
    dev.add_argument(
        "--port",
        type=int,
        default=9092,
        help="the port to listen on; 0 picks a free one (default 9092)",
    )
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
