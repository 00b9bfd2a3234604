"""``kstatefun topics check``: the application's topics exist with settings that keep its
guarantees, and every problem comes with its fix.

The internal topics and the settings they need come from ``kafka/topics.py``
(``internal_topic_specs``), the same list a worker checks when it starts; unlike the worker,
this command does not stop at the first problem, creates nothing and also checks what a worker
tolerates but should not (a compacted invocations or dead-letters topic).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource

from kstatefun.config.module import load_module
from kstatefun.config.settings import env_var
from kstatefun.errors import KStatefunError
from kstatefun.kafka.topics import (
    DEFAULT_PARTITIONS,
    TopicSpec,
    internal_topic_specs,
    meta_topic_spec,
    playground_topic_specs,
    replication_problems,
)
from kstatefun.tools.common import Tool, common_arguments, print_json

CHECK_HELP = """\
Check the application's topics: <app>-invocations, -changelog and -timers exist with the same
partition count (they are co-partitioned), -changelog and -timers are compacted, nothing that
must keep every record (invocations, dead letters) is compacted, <app>-meta has one partition
and keeps its records, the internal topics are replicated (at least replication_factor
replicas when it is set, more than one on a cluster of several brokers, more than
min.insync.replicas), and, with --module, every ingress topic exists and each playground
egress topic's <app>-playground-<topic> has one partition and is not compacted. Prints each
topic with its problems and their fixes.

The expected partition count is --partitions (KSTATEFUN_PARTITIONS) when given, else that of
<app>-invocations. Exit code 0 when all is well, 1 when a problem was found.
"""

# What a worker tolerates but a check should not: these topics must keep every record.
_NOT_COMPACTED = {
    "invocations": "compaction keeps only the last message per target id: messages not yet "
    "processed would be lost",
    "dead-letters": "compaction drops older dead letters with the same key, and a compacted "
    "topic refuses dead letters of records without a key",
}

# How to fix a single-partition topic created with more partitions.
_RECREATE_FIX = "delete {} (it only buffers records for HTTP clients); a worker creates it again"
_REPARTITION_FIX = {
    "meta": "stop the workers, read the partitioner from {} (kstatefun uses its first record), "
    "recreate the topic with 1 partition and write that record again",
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("topics", help="check the application's topics (check)")
    commands = group.add_subparsers(dest="topics_command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "check",
        parents=[common_arguments()],
        help="check that the topics exist with the right settings",
        description=CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--module", type=Path, help="module.yaml, to check its ingress topics")
    p.add_argument(
        "--partitions", type=int, help="expected partition count (env KSTATEFUN_PARTITIONS)"
    )
    p.set_defaults(handler=run_check)


@dataclass(slots=True)
class TopicReport:
    topic: str
    role: str  # invocations | changelog | timers | dead-letters | ingress <id>
    partitions: int | None = None  # None: the topic does not exist
    config: dict[str, str] = field(default_factory=dict)
    replicas: int | None = None  # the fewest replicas of any of its partitions
    problems: list[tuple[str, str]] = field(default_factory=list)  # (problem, fix)

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "role": self.role,
            "exists": self.partitions is not None,
            "partitions": self.partitions,
            "replication_factor": self.replicas,
            "config": self.config,
            "problems": [{"problem": p, "fix": f} for p, f in self.problems],
        }


@dataclass(frozen=True, slots=True)
class _Expected:
    """The partition count the internal topics should have, and who says so."""

    partitions: int | None
    source: str  # --partitions, KSTATEFUN_PARTITIONS or <app>-invocations
    explicit: bool  # given by the user rather than read from <app>-invocations


def run_check(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args, module=args.module, partitions=args.partitions)
    s = tool.settings
    md = tool.metadata()
    names = tool.topics
    counts = {
        name: len(t.partitions)
        for name, t in md.topics.items()
        if t.error is None and name.startswith(f"{s.app_id}-")
    }
    explicit = s.partitions is not None
    if explicit:
        expected: int | None = s.partitions
        source = "--partitions" if args.partitions is not None else env_var("partitions")
    else:
        expected = counts.get(names.invocations)
        source = names.invocations
    # the count only matters once known (compared, or shown in the fix for a missing topic)
    specs = internal_topic_specs(names, expected or DEFAULT_PARTITIONS, s.replication_factor)
    want = _Expected(expected, source, explicit)
    checks = [(spec, want) for spec in specs]
    module = load_module(s.module) if s.module is not None else None
    # topics with a fixed count of their own, not co-partitioned, and why the count matters
    alone = _Expected(None, "", False)
    single = {names.meta: "its first record is the application's partitioner"}
    checks.append((meta_topic_spec(names, s.replication_factor), alone))
    if module is not None and module.playground_egress is not None:
        for spec in playground_topic_specs(names, module.playground_egress.topics):
            single[spec.name] = "it hands records out in one order and remembers one offset"
            checks.append((spec, alone))
    configs = _configs(tool, [spec.name for spec, _ in checks if spec.name in counts])
    reports = []
    for spec, wanted in checks:
        report = _check_internal(
            tool, spec, counts.get(spec.name), configs.get(spec.name, {}), wanted
        )
        if report.partitions is not None:
            _check_replication(tool, report, md)
            if wanted is alone and report.partitions != spec.partitions:
                report.problems.append(
                    (
                        f"has {report.partitions} partitions but needs {spec.partitions}: "
                        f"{single[spec.name]}",
                        _REPARTITION_FIX.get(report.role, _RECREATE_FIX).format(spec.name),
                    )
                )
        reports.append(report)
    if module is not None:
        for ingress in module.ingresses:
            for t in ingress.topics:
                reports.append(_check_ingress(tool, md, t.topic, ingress.id))
    problems = sum(len(r.problems) for r in reports)
    if tool.json:
        print_json(
            {
                "app_id": s.app_id,
                "bootstrap_servers": s.bootstrap_servers,
                "partitions": expected,
                "partitions_from": source if expected is not None else None,
                "ingress_checked": s.module is not None,
                "ok": problems == 0,
                "topics": [r.to_json() for r in reports],
            }
        )
        return 1 if problems else 0
    p_text = f"P={expected}, from {source}" if expected is not None else "P unknown"
    print(f"topics of {tool.where} ({p_text})")
    width = max(len(r.topic) for r in reports)
    role_width = max(len(r.role) for r in reports)
    for r in reports:
        status = "FAIL" if r.problems else "ok"
        if r.partitions is None:
            detail = "missing"
        else:
            detail = f"{r.partitions} partition{'s' if r.partitions != 1 else ' '}"
            if r.replicas is not None:
                detail += f"  replicas={r.replicas}"
            for key in ("min.insync.replicas", "cleanup.policy"):
                if key in r.config:
                    detail += f"  {key}={r.config[key]}"
        print(f"  {status:<4}  {r.topic:<{width}}  {r.role:<{role_width}}  {detail}")
        for problem, fix in r.problems:
            print(f"        problem: {problem}")
            print(f"        fix:     {fix}")
    if s.module is None:
        print("ingress topics not checked: pass --module (KSTATEFUN_MODULE)")
    print(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "all good")
    return 1 if problems else 0


def _configs(tool: Tool, topics: list[str]) -> dict[str, dict[str, str]]:
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
    out: dict[str, dict[str, str]] = {}
    try:
        futures = tool.admin().describe_configs(resources, request_timeout=tool.timeout)
        for resource, future in futures.items():
            entries = future.result()
            out[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
    except KafkaException as e:
        raise KStatefunError(f"cannot read the configuration of {', '.join(topics)}: {e}") from e
    return out


def _check_internal(
    tool: Tool,
    spec: TopicSpec,
    partitions: int | None,
    config: dict[str, str],
    want: _Expected,
) -> TopicReport:
    role = spec.name[len(tool.settings.app_id) + 1 :]
    shown: dict[str, str] = {
        k: config[k]
        for k in ("cleanup.policy", "min.compaction.lag.ms", "min.insync.replicas")
        if k in config
    }
    report = TopicReport(spec.name, role, partitions, shown)
    bootstrap = tool.settings.bootstrap_servers
    expected, source = want.partitions, want.source
    if partitions is None:
        # a co-partitioned topic gets P; a topic of its own (no source) its fixed count
        fixed = spec.partitions is None or not source
        count = spec.create_partitions if fixed else (expected or "P")
        create = " ".join(f"--config {k}={v}" for k, v in spec.config.items())
        report.problems.append(
            (
                "does not exist",
                "start a worker (kstatefun run creates its internal topics), or create it: "
                f"kafka-topics.sh --bootstrap-server {bootstrap} --create --topic {spec.name} "
                f"--partitions {count} {create}",
            )
        )
        return report
    if spec.partitions is not None and expected is not None and partitions != expected:
        if want.explicit:
            problem = (
                f"has {partitions} partitions but {source} says {expected}: the workers would "
                "refuse to start"
            )
            fix = (
                f"run the workers with --partitions {partitions} if that is what the topics were "
                "created with; otherwise use a new --app-id (partition counts cannot change "
                "once state is written)"
            )
        else:
            problem = (
                f"has {partitions} partitions but {source} has {expected}: invocations, changelog "
                "and timers must be co-partitioned"
            )
            fix = (
                "delete and recreate the internal topics with one partition count before any "
                "worker has run, or use a new --app-id (adding partitions moves ids to other "
                "partitions and strands their state)"
            )
        report.problems.append((problem, fix))
    policy = config.get("cleanup.policy")
    for key in spec.must_match:
        needed = spec.config[key]
        if config.get(key) != needed:
            report.problems.append(
                (
                    f"has {key}={config.get(key)} but needs {key}={needed} ({spec.why})",
                    f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type "
                    f"topics --entity-name {spec.name} --add-config {key}={needed}",
                )
            )
    if role in _NOT_COMPACTED and policy is not None and "compact" in policy:
        report.problems.append(
            (
                f"has cleanup.policy={policy}: {_NOT_COMPACTED[role]}",
                f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
                f"--entity-name {spec.name} --add-config cleanup.policy=delete",
            )
        )
    return report


def _check_replication(tool: Tool, report: TopicReport, md: Any) -> None:
    partitions = md.topics[report.topic].partitions.values()
    report.replicas = min(len(p.replicas) for p in partitions)
    isr = report.config.get("min.insync.replicas")
    wanted = tool.settings.replication_factor
    for problem, why in replication_problems(
        report.replicas, int(isr) if isr else None, len(md.brokers), wanted
    ):
        target = wanted or min(3, len(md.brokers))
        report.problems.append(
            (
                f"{problem}: {why}",
                "add replicas with kafka-reassign-partitions.sh (a reassignment that lists "
                f"{target} brokers for every partition of {report.topic}), and keep "
                "min.insync.replicas below the replica count (e.g. 2 of 3): kafka-configs.sh "
                f"--bootstrap-server {tool.settings.bootstrap_servers} --alter --entity-type "
                f"topics --entity-name {report.topic} --add-config min.insync.replicas=2",
            )
        )


def _check_ingress(tool: Tool, md: Any, topic: str, ingress_id: str) -> TopicReport:
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        report = TopicReport(topic, f"ingress {ingress_id}")
        report.problems.append(
            (
                f"ingress topic of {ingress_id} does not exist; workers refuse to start",
                f"create it: kafka-topics.sh --bootstrap-server {tool.settings.bootstrap_servers}"
                f" --create --topic {topic} --partitions N (kstatefun never creates user topics)",
            )
        )
        return report
    return TopicReport(topic, f"ingress {ingress_id}", len(t.partitions))
