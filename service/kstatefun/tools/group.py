"""``kstatefun group members`` and ``kstatefun group remove``: the application's consumer group
as its workers are in it, and removing named workers that stopped for good.

A named worker is a static member (docs/operations.md, "Named workers"): when it stops, even
cleanly, the group keeps it and its partitions until its session times out, waiting for a
restart. ``remove`` ends that wait for a worker that will not come back (scaled in, or killed
and gone), with the request ``leave_group_on_stop`` sends at a clean stop
(``kafka/membership.py``). ``members`` reads the group only.
"""

from __future__ import annotations

import argparse
from typing import Any

from kstatefun.errors import KStatefunError
from kstatefun.kafka import clients
from kstatefun.kafka.membership import MembershipError, remove_static_members
from kstatefun.tools.common import Tool, common_arguments, print_json, table

REMOVE_HELP = """\
Remove named workers (static members) from the application's consumer group at once, so that
their partitions move to the other workers now rather than when their sessions time out. For
workers stopped for good (scaled in, or killed and not coming back): a worker still running is
told by its next heartbeat that it left, gives its partitions up and joins again. Give each
worker's --instance-id (the group knows it as <app-id>-<instance-id>). Exit code 0 when every
one was removed, 1 when one was not a member (already gone, or never named so).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("group", help="the application's consumer group (members, remove)")
    commands = group.add_subparsers(dest="group_command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "members",
        parents=[common_arguments()],
        help="list the group's members and their partitions",
        description="List the members of the application's consumer group: instance id "
        "(static members), member id, client id (a worker's is <app-id>-<instance-id>), "
        "client host and assigned partitions per topic.",
    )
    p.set_defaults(handler=run_members)
    p = commands.add_parser(
        "remove",
        parents=[common_arguments()],
        help="remove stopped named workers from the group at once",
        description=REMOVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--instance-id",
        action="append",
        required=True,
        dest="instance_ids",
        metavar="ID",
        help="a worker's instance id (repeat for several)",
    )
    p.set_defaults(handler=run_remove)


def _instance(app_id: str, group_instance_id: str | None) -> str | None:
    """A worker's instance id from its group.instance.id (``<app-id>-<instance-id>``)."""
    if group_instance_id is None:
        return None
    prefix = f"{app_id}-"
    return group_instance_id[len(prefix) :] if group_instance_id.startswith(prefix) else None


def run_members(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    app = tool.settings.app_id
    try:
        future = tool.admin().describe_consumer_groups([app], request_timeout=tool.timeout)[app]
        description = future.result(tool.timeout)
    except Exception as e:  # noqa: BLE001 - KafkaException and timeouts alike
        raise KStatefunError(f"cannot describe the group of {tool.where}: {e}") from e
    members: list[dict[str, Any]] = []
    for m in description.members:
        partitions: dict[str, list[int]] = {}
        for tp in m.assignment.topic_partitions if m.assignment else []:
            partitions.setdefault(tp.topic, []).append(tp.partition)
        members.append(
            {
                "instance_id": _instance(app, m.group_instance_id),
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "partitions": {t: sorted(ps) for t, ps in sorted(partitions.items())},
            }
        )
    if tool.json:
        print_json({"group": app, "state": str(description.state), "members": members})
        return 0
    print(f"group {app}: {description.state}, {len(members)} member(s)")
    rows = [
        [
            m["instance_id"] or "(dynamic)",
            m["member_id"],
            m["client_id"],
            m["host"],
            "; ".join(f"{t} {ps}" for t, ps in m["partitions"].items()) or "-",
        ]
        for m in members
    ]
    if rows:
        print(table(["instance id", "member id", "client id", "host", "partitions"], rows))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    tool = Tool.from_args(args)
    app = tool.settings.app_id
    ids = {f"{app}-{i}": i for i in args.instance_ids}
    try:
        s = tool.settings
        conf = clients.base_config(s.bootstrap_servers, s.kafka_properties)
        outcome = remove_static_members(conf, app, ids, timeout_s=tool.timeout)
    except MembershipError as e:
        raise KStatefunError(f"cannot remove members of the group of {tool.where}: {e}") from e
    result = {ids[k]: error for k, error in outcome.items() if k in ids}
    if tool.json:
        print_json({"group": app, "removed": {i: e is None for i, e in result.items()}})
    else:
        for instance, error in result.items():
            print(f"{instance}: " + ("removed" if error is None else f"not removed ({error})"))
    return 0 if result and all(e is None for e in result.values()) else 1
