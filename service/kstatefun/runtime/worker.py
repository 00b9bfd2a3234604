"""The worker: one kstatefun process, one member of the application's consumer group.

It owns a consumer (ingress topics + <app>-invocations, read_committed, group = app id), one
transactional producer (transactional.id = <app>-<instance>), the local state of the
invocations partitions it is assigned, and the loop that ties them together:

    poll a batch → route ingress records / dispatch invocations → commit (runtime/commit.py)

When to commit, and what a failure or a rebalance does to the open transaction, is the
Committer's (runtime/commit.py): the loop tells it what happened. When each assigned partition
may process (it is restored step by step meanwhile) is runtime/assignment.py's; when its ingress
partitions may skip the hop, and when ingress waits for the invocations, runtime/direct.py's.
"""

from __future__ import annotations

import faulthandler
import hashlib
import logging
import signal
import time
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from kstatefun import buildinfo
from kstatefun.config.module import KafkaIngress, ModuleSpec, check_module, serves
from kstatefun.config.settings import Settings
from kstatefun.errors import ConfigError, FencedError, KafkaUnavailableError, StateStoreError
from kstatefun.kafka import clients
from kstatefun.kafka import errors as retry_policy
from kstatefun.kafka.errors import (
    call_with_retry,
    group_protocol_unsupported,
    instance_id_unreleased,
    is_refused,
    kafka_error,
)
from kstatefun.kafka.fetchers import wake_fetchers
from kstatefun.kafka.groups import (
    DEFAULT_SESSION_TIMEOUT_S,
    Rejoin,
    coordinator_answers,
    group_session_timeout_s,
)
from kstatefun.kafka.membership import (
    MembershipError,
    release_predecessor,
    remove_static_members,
    static_member_id,
)
from kstatefun.kafka.partitioner import id_partitioner
from kstatefun.kafka.topics import (
    InternalTopics,
    app_partitioner,
    choose_partitions,
    ensure_internal_topics,
    internal_topic_specs,
    meta_topic_spec,
    require_topics_exist,
)
from kstatefun.model import Address
from kstatefun.observability.http import HealthServer
from kstatefun.observability.metrics import WorkerCollector, WorkerMetrics
from kstatefun.playground import start_playground
from kstatefun.runtime.assignment import Assignment
from kstatefun.runtime.commit import Committer, Transaction, fenced_error
from kstatefun.runtime.deadletters import DeadLetters
from kstatefun.runtime.direct import DirectPath
from kstatefun.runtime.dispatcher import Dispatcher, LocalInvocation
from kstatefun.runtime.local import LocalSends
from kstatefun.runtime.reads import ReadGuard
from kstatefun.runtime.router import IngressRouter, process_records
from kstatefun.runtime.watchdog import Watchdog
from kstatefun.sdk.functions import StatefulFunctions
from kstatefun.state.recovery import Recovery
from kstatefun.state.restore import ChangelogRestorer, watermarks
from kstatefun.state.rocksdb import RocksStore
from kstatefun.state.snapshot import LocalSnapshot
from kstatefun.state.standby import Standby
from kstatefun.state.store import StateStore
from kstatefun.timers.store import TimerStore
from kstatefun.wire.avro import decode_timer_key, decode_timer_value

if TYPE_CHECKING:
    from kstatefun.runtime.remote import RemoteInvoker

log = logging.getLogger(__name__)

# The longest the classic protocols' subscription waits for its topics to be in the
# consumer's metadata (Worker._await_metadata).
METADATA_WAIT_S = 10.0

DEFAULT_WATCHDOG_S = 60.0  # watchdog_timeout_s unset, and the loop's waits are shorter
LAG_SAMPLE_S = 1.0  # how often the loop samples kstatefun_consumer_lag

# Nothing consumed for this long and nothing restoring: the worker is idle, and writes its
# local snapshot's backlog in longer slices (state/snapshot.py IDLE_FLUSH_SLICE_S)
IDLE_S = 0.2


def _start_offsets(
    added: list[TopicPartition], committed: list[TopicPartition], invocations: str
) -> list[TopicPartition]:
    """Where each added partition starts, given to librdkafka explicitly: the committed offset
    that ``_on_assign`` read (retried), else the position ``_position_ingress`` chose, else
    (an invocations partition nothing was committed for) the beginning, as the group
    consumer's auto.offset.reset says. Left at OFFSET_INVALID ("the committed offset"),
    librdkafka's assignment asks the group coordinator again, and a NOT_COORDINATOR answer
    to that OffsetFetch (the coordinator moving) is not retried: the partitions stay
    assigned but are never fetched until they are revoked, and only a consumer error event
    says so (librdkafka 2.16, rdkafka_assignment.c). A partition whose committed offset came
    with an error is left to librdkafka as before."""
    known = {(c.topic, c.partition): c for c in committed}
    start = []
    for tp in added:
        c = known.get((tp.topic, tp.partition))
        failed = c is not None and c.error is not None and c.error.code() != KafkaError.NO_ERROR
        if c is not None and not failed and c.offset >= 0:
            epoch = c.leader_epoch
            start.append(
                TopicPartition(tp.topic, tp.partition, c.offset)
                if epoch is None
                else TopicPartition(tp.topic, tp.partition, c.offset, leader_epoch=epoch)
            )
        elif tp.topic == invocations and c is not None and not failed:
            start.append(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))
        else:
            start.append(tp)  # positioned by _position_ingress, or librdkafka's to look up
    return start


class _Refused(Exception):
    """The group refused this static member's first join: another member still holds its
    instance id (Worker._join_again waits for it)."""

    def __init__(self, err: KafkaError) -> None:
        super().__init__(err.str())
        self.err = err


class Worker:
    standby: Standby | None = None  # standby_replicas (state/standby.py), set by _start
    _rejoin: Rejoin | None = None  # set while the group refuses this static member
    # this process's member id in the group when it was last assigned partitions (KIP-848):
    # None while it has never been a member
    _member_id: str | None = None

    def __init__(
        self, settings: Settings, module: ModuleSpec, functions: StatefulFunctions
    ) -> None:
        self.settings = settings
        self.module = module
        self.functions = functions
        self.topics = InternalTopics(settings.app_id)
        self.metrics = WorkerMetrics()
        self._health: HealthServer | None = None
        self._stopping = False
        check_module(module, settings, functions.typenames())

    @property
    def _incremental(self) -> bool:
        """Cooperative rebalancing: the callbacks name the partitions that move, not all."""
        return self.settings.rebalance_protocol != "eager"

    @property
    def _instance(self) -> str:
        """This worker's group.instance.id as a static member (and its transactional id)."""
        return f"{self.settings.app_id}-{self.settings.instance_id}"

    @property
    def _client_config(self) -> dict[str, Any]:
        """How a client of this worker connects (bootstrap servers, security)."""
        s = self.settings
        return clients.base_config(s.bootstrap_servers, s.kafka_properties)

    @property
    def _static_member(self) -> str:
        """This worker as its fatal group errors name it."""
        s = self.settings
        return f"group member {s.app_id}-{s.instance_id} (static membership)"

    def _serves(self, typename: str) -> bool:
        """Whether a function of type ``typename`` is registered or served by an endpoint."""
        return serves(self.module, self.functions.typenames(), typename)

    def stop(self) -> None:
        """Ask the loop to finish the open transaction and leave the group (signal-safe)."""
        self._stopping = True

    # --- set-up -------------------------------------------------------------------------------

    def _start(self) -> None:
        """Reach the cluster, check the topics, build the runtime, subscribe."""
        s = self.settings
        self.build = buildinfo.build()  # the start log and kstatefun_build_info say it
        if self.build == "partly compiled":
            log.warning(
                "only some of the hot path's modules are compiled (%s of %s): the install is "
                'broken; reinstall kstatefun (docs/performance.md, "The compiled build")',
                ",".join(buildinfo.compiled_modules()),
                ",".join(buildinfo.MODULES),
            )
        retry_policy.POLICY.timeout_s = s.kafka_retry_timeout_s
        self._snapshot: LocalSnapshot | None = None
        if s.state_dir is not None and s.state_store == "memory":
            self._snapshot = LocalSnapshot(s.state_path("sqlite"))
            log.info("local state snapshot path=%s", self._snapshot.path)
            # read while this worker connects and joins its group: a restart's longest step
            self._snapshot.prefetch()
        try:
            admin = self._connect()
            ingress_counts, partitions_from, partitioner_from = self._prepare_topics(admin)
        except KafkaException as e:
            raise ConfigError(
                f"cannot use Kafka at {s.bootstrap_servers}: {e.args[0] if e.args else e}. "
                "Check --bootstrap-servers and the security settings (security_protocol, "
                "sasl_*, ssl_*); librdkafka's log lines above name the cause"
            ) from e
        self._admin = admin
        self._known_topics: set[str] = set()
        self._make_clients()
        remote = self._make_pipeline(admin, ingress_counts)
        self._make_assignment()
        if remote is not None:
            self.txn.on_abort.append(remote.abort)
            self.metrics.remote_in_flight = remote.in_flight
        if s.metrics_port:
            self._start_health(admin)
        self._init_loop_state()
        self.txn.on_abort.append(self.direct.redrain)
        if s.static_membership and s.rebalance_protocol == "consumer":
            # the producer's init_transactions (_make_clients) fenced the predecessor: a
            # killed one no longer holds the instance id either (KIP-848 would refuse the
            # join until its session ended; the classic protocols replace it themselves)
            release_predecessor(admin, self._client_config, s.app_id, self._instance)
        self._subscribe()
        self._log_started(partitions_from, partitioner_from)

    def _init_loop_state(self) -> None:
        """The loop's bookkeeping: the direct path's drains and holds (runtime/direct.py, empty
        until the first assignment), when records last came, each ingress topic's spec."""
        self.direct = DirectPath(
            self.consumer, self.topics.invocations, self.router, self.assignment, self.local
        )
        self._consumed_at = 0.0  # when the loop last read records (IDLE_S)
        # what the rebalance callbacks of the current read made stale (runtime/reads.py)
        self.reads = ReadGuard()
        self.txn.on_rewind = self.reads.restarted
        self._ingress_by_topic: dict[str, KafkaIngress] = {
            t.topic: i for i in self.module.ingresses for t in i.topics
        }

    def _log_started(self, partitions_from: str, partitioner_from: str) -> None:
        s = self.settings
        log.info(
            "worker started app=%s instance=%s transactional_id=%s partitions=%d "
            "partitions_from=%r partitioner=%s partitioner_from=%r functions=%s "
            "static_membership=%s state_dir=%s version=%s build=%s",
            s.app_id,
            s.instance_id,
            self._instance,
            self.partitions,
            partitions_from,
            self.partitioner,
            partitioner_from,
            ",".join(self.functions.typenames()),
            str(s.static_membership).lower(),
            s.state_dir or "none",
            buildinfo.version(),
            self.build,
        )

    def _subscribe(self) -> None:
        topics = [*self.router.topics, self.topics.invocations]
        if self.settings.rebalance_protocol != "consumer":
            self._await_metadata(topics)
        self.consumer.subscribe(
            topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _await_metadata(self, topics: list[str]) -> None:
        """The classic protocols assign the partitions of the topics the group leader's
        metadata holds, and librdkafka refreshes a subscription's metadata seldom: an
        invocations topic this worker has just created was assigned 20 s late in the
        benchmark's cooperative scale-out (its ingress records took the hop meanwhile). So
        ask this consumer for each topic first, which puts it in its metadata, at most
        METADATA_WAIT_S in all. KIP-848 assigns on the broker: not needed there."""
        deadline = time.monotonic() + METADATA_WAIT_S
        for topic in topics:
            while True:
                try:
                    found = self.consumer.list_topics(topic, timeout=5).topics.get(topic)
                except KafkaException:
                    found = None
                if found is not None and found.error is None and found.partitions:
                    break
                if time.monotonic() >= deadline:
                    log.info("topic=%s not in this consumer's metadata yet: subscribing", topic)
                    return
                time.sleep(0.2)

    def _connect(self) -> AdminClient:
        """The admin client, once the cluster answered: a cluster that is restarting is waited
        for (kafka_retry_timeout_s); one that refuses this worker's credentials is reported at
        once."""
        s = self.settings
        refused: list[KafkaError] = []  # the cluster answered and said no: never retried

        def on_error(err: KafkaError) -> None:
            if is_refused(err):
                refused.append(err)

        admin_config: dict[str, Any] = {
            **clients.base_config(s.bootstrap_servers, s.kafka_properties)
        }
        admin_config["error_cb"] = on_error
        admin = AdminClient(admin_config)

        def first_contact() -> None:
            try:
                # a short wait per try: a refusal shows in error_cb within seconds, while the
                # request itself would wait out its whole timeout
                require_topics_exist(admin, self._ingress_topics(), "ingress", timeout=5.0)
            except KafkaException:
                admin.poll(0)  # serves error_cb
                if refused:
                    raise KafkaException(refused[0]) from None
                raise

        call_with_retry(first_contact, f"reaching the cluster at {s.bootstrap_servers}")
        return admin

    def _ingress_topics(self) -> list[str]:
        return [t.topic for i in self.module.ingresses for t in i.topics]

    def _prepare_topics(self, admin: AdminClient) -> tuple[dict[str, int], str, str]:
        """Choose P and the partitioner (kafka/topics.py), create or check the internal topics;
        returns the ingress topics' partition counts and where P and the partitioner came
        from."""
        s = self.settings
        extra = s.kafka_properties
        ingress_topics = self._ingress_topics()
        self.partitions, partitions_from = choose_partitions(
            admin, self.topics, s.partitions, ingress_topics
        )
        self.partitioner, partitioner_from, ingress_counts = call_with_retry(
            partial(
                app_partitioner,
                admin,
                self.topics,
                s.partitioner,
                lambda: Consumer(clients.restore_consumer_config(s.bootstrap_servers, extra)),
                lambda: Producer(clients.idempotent_producer_config(s.bootstrap_servers, extra)),
                s.replication_factor,
                30.0,
                ingress_topics,
            ),
            "recording the application's partitioner",
        )
        self.partition_of = id_partitioner(self.partitions, self.partitioner)
        specs = internal_topic_specs(
            self.topics, self.partitions, s.replication_factor, s.min_insync_replicas
        ) + [meta_topic_spec(self.topics, s.replication_factor)]
        call_with_retry(
            partial(ensure_internal_topics, admin, specs, 30.0, s.replication_factor),
            "creating and checking the internal topics",
        )
        return ingress_counts, partitions_from, partitioner_from

    def _make_clients(self) -> None:
        """The local stores, the group consumer and the transaction."""
        s = self.settings
        extra = s.kafka_properties
        self.store = StateStore(self._snapshot)  # state_store rocksdb: _open_disk, at assignment
        self.timers = TimerStore()
        consumer_config = clients.group_consumer_config(
            s.bootstrap_servers, s.app_id, extra, s.rebalance_protocol
        )
        if s.static_membership:  # KIP-345: a restarted worker rejoins without a rebalance
            consumer_config["group.instance.id"] = self._instance
        # the group's description and the brokers' logs name the worker (unless set otherwise)
        consumer_config.setdefault("client.id", self._instance)
        # the same config each time: a consumer the group refused is replaced (_join_again)
        self._new_consumer = partial(Consumer, consumer_config)
        self.consumer = self._new_consumer()
        # kstatefun_consumer_lag, sampled by the loop (_sample_lag) only when it is exported
        self._lag_due = 0.0 if s.metrics_port else float("inf")
        self._lag_start: dict[tuple[str, int], int] = {}  # committed offsets (_sample_lag)
        transactional_id = self._instance
        self.txn = Transaction(
            lambda: Producer(
                clients.transactional_producer_config(
                    s.bootstrap_servers, transactional_id, s.transaction_timeout_ms, extra
                )
            ),
            self.consumer,
            [(self.topics.changelog, self.store), (self.topics.timers, self.timers)],
            self.metrics,
            transaction_timeout_s=s.transaction_timeout_ms / 1000,
            coordinator_answers=partial(coordinator_answers, self.consumer),
        )
        self.dead_letters = DeadLetters(self.topics.dead_letters, self.txn, self.metrics)

    def _make_pipeline(
        self, admin: AdminClient, ingress_counts: dict[str, int]
    ) -> RemoteInvoker | None:
        """The dispatcher (with its remote invoker, if endpoints serve functions), the ingress
        router and the committer; returns the remote invoker."""
        s = self.settings
        self.playground = start_playground(
            admin, s, self.module, self.topics, self.partition_of, self._serves
        )

        def remote_invoker(host: Dispatcher) -> RemoteInvoker:
            # imported only for remote functions: aiohttp is a third of the worker's imports,
            # which a restart waits for
            from kstatefun.runtime.remote import RemoteInvoker

            return RemoteInvoker(
                self.module,
                host,
                target_s=min(1.0, s.transaction_timeout_ms / 5000),
                transaction_timeout_ms=s.transaction_timeout_ms,
            )

        self.local = LocalSends(set())  # its owned partitions: the router's too (local.py)
        self.dispatcher = Dispatcher(
            self.functions,
            self.store,
            self.txn,
            self.dead_letters,
            self.topics.invocations,
            self.partition_of,
            {e.id: e for e in self.module.egresses},
            self._topic_exists,
            self.timers,
            self.metrics,
            remote_invoker if self.module.endpoints else None,
            None if self.playground is None else self.playground.egress_record,
            self.local if s.local_messages else None,
        )
        remote = cast("RemoteInvoker | None", self.dispatcher.remote)  # remote_invoker's
        self.remote = remote
        self.router = IngressRouter(
            self.module.ingresses,
            self.topics.invocations,
            self.partitions,
            self.partitioner,
            self.txn,
            self.dead_letters,
            self.metrics,
            ingress_counts,
            self.dispatcher.invoke,
            self.local.owned,
        )
        self.committer = Committer(
            self.txn,
            remote,
            s.commit_interval_ms / 1000,
            s.max_batch_records,
            epoch_bumps_after_revoke=s.rebalance_protocol == "consumer",
        )
        return remote

    def _make_assignment(self) -> None:
        """The restorers, the partition lifecycle (runtime/assignment.py) and the watchdog."""
        s = self.settings
        extra = s.kafka_properties
        restore_consumer = lambda: Consumer(  # noqa: E731
            clients.restore_consumer_config(s.bootstrap_servers, extra)
        )
        # asks where partitions end: their high watermarks, past a transaction another
        # process left open (kafka/clients.py, end_offsets_consumer_config)
        ends_consumer = lambda: Consumer(  # noqa: E731
            clients.end_offsets_consumer_config(s.bootstrap_servers, extra)
        )
        # Partitions' offsets asked while the group consumer is in a rebalance callback: not
        # through that consumer, because the metadata refresh of a retry (list_topics) would
        # clear confluent-kafka's per-handle call state, and the next callback of the same
        # poll (an error during a failover) would then abort the process (CallState_get:
        # Assertion `cs != NULL' failed, seen in a 3-broker chaos run). The direct path's
        # drain then waits for what another owner committed after such a transaction too.
        self._offsets = ends_consumer()
        self.watchdog = self._make_watchdog()
        beat = self.watchdog.beat if self.watchdog is not None else None
        if beat is not None:  # bounded waits between two rounds of the loop are progress
            self.txn.on_progress = beat
            retry_policy.POLICY.on_retry = beat
        self.restorer = ChangelogRestorer(
            restore_consumer,
            self.topics.changelog,
            self.metrics,
            on_progress=beat,
            ends_factory=ends_consumer,
        )
        self.timer_restorer = ChangelogRestorer(
            restore_consumer,
            self.topics.timers,
            self.metrics,
            on_progress=beat,
            ends_factory=ends_consumer,
        )
        self.standby = (
            Standby(
                self.partitions,
                lambda: Consumer(clients.standby_consumer_config(s.bootstrap_servers, extra)),
                self.topics.changelog,
                self.metrics,
            )
            if s.standby_replicas
            else None
        )
        self.assignment = Assignment(
            self.consumer,
            self.topics.invocations,
            [
                Recovery(self.store, self.restorer, self.store.snapshot),
                Recovery(self.timers, self.timer_restorer),
            ],
            self._restored,
        )
        self.metrics.pending_timers = self.timers.pending_count
        self.metrics.partition_states = self.assignment.state_names

    def _make_watchdog(self) -> Watchdog | None:
        """The watchdog (runtime/watchdog.py), unless watchdog_timeout_s is 0. By default it
        waits 60 s, or twice the longest bounded wait the loop makes between two beats if that
        is longer: it must not end a worker that is merely waiting out a failover, and must
        end a stuck one well before anyone gives up on its partitions."""
        timeout_s = self.settings.watchdog_timeout_s
        if timeout_s == 0:
            return None
        # a commit's longest call, or the wait for remote calls (half the transaction timeout)
        longest_s = self.committer.longest_wait_s
        if timeout_s is None:
            return Watchdog(max(DEFAULT_WATCHDOG_S, 2 * longest_s))
        if timeout_s <= longest_s:
            log.warning(
                "watchdog_timeout_s=%d is not longer than the longest bounded wait of the loop "
                "(%.0f s, from transaction_timeout_ms): the watchdog may end a worker that is "
                "only waiting out a failover",
                timeout_s,
                longest_s,
            )
        return Watchdog(timeout_s)

    def _start_health(self, admin: AdminClient) -> None:
        s = self.settings
        registry = CollectorRegistry()
        registry.register(
            WorkerCollector(self.metrics, s.app_id, s.instance_id, buildinfo.version(), self.build)
        )

        def broker_ok() -> bool:
            return bool(admin.list_topics(timeout=2).brokers)

        self._health = HealthServer(
            s.metrics_host,
            s.metrics_port,
            registry,
            broker_ok,
            lambda: self.assignment.ready,
            self.assignment.summary,
        )
        self._health.start()

    def _sample_lag(self) -> None:
        """kstatefun_consumer_lag: per assigned partition, the records between the consumer's
        position and the partition's end (the high watermark as the last fetch response gave
        it: no request). librdkafka's own consumer_lag needs offsets committed through the
        consumer, and kstatefun commits them through the transaction. A partition nothing was
        consumed from since its assignment has no position yet: its committed offset stands in
        (asked once per assignment)."""
        self._lag_due = time.monotonic() + LAG_SAMPLE_S
        consumer = self.consumer
        lag = {}
        try:
            positions = consumer.position(consumer.assignment())
            start = self._lag_start
            if set(start) - {(tp.topic, tp.partition) for tp in positions}:
                start.clear()  # another assignment: committed offsets may have moved
            unknown = [
                tp for tp in positions if tp.offset < 0 and (tp.topic, tp.partition) not in start
            ]
            if unknown:
                for tp in unknown:  # asked once, even if the broker does not answer now
                    start[(tp.topic, tp.partition)] = -1
                for c in consumer.committed(unknown, timeout=2):
                    start[(c.topic, c.partition)] = c.offset
            for tp in positions:
                key = (tp.topic, tp.partition)
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                offset = tp.offset if tp.offset >= 0 else start.get(key, -1)
                if high == 0:
                    lag[key] = 0  # empty partition
                elif high > 0 and offset >= 0:
                    lag[key] = max(0, high - offset)
        except KafkaException as e:  # e.g. a rebalance under way: try again next time
            log.debug("consumer lag not sampled: %s", e)
            return
        self.metrics.lag = lag

    def _topic_exists(self, topic: str) -> bool:
        if topic in self._known_topics:
            return True
        md = self._admin.list_topics(topic=topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None:
            self._known_topics.add(topic)
            return True
        return False

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until ``stop()``; returns the process exit code."""
        # `kill -USR1 <pid>` prints every thread's stack to stderr, even while the main thread
        # is inside a librdkafka call (where no Python signal handler can run)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        self._start()
        clean = False
        watchdog = self.watchdog
        if watchdog is not None:
            watchdog.start()
        try:
            while not self._stopping:
                if watchdog is not None:
                    watchdog.beat()
                self._step()
            clean = True
        except FencedError as e:
            log.error("%s", e)
            return 3
        except (KafkaException, KafkaUnavailableError) as e:
            log.error("stopping: %s", kafka_error(e) or e)
            return 1
        except StateStoreError as e:
            log.error("stopping: %s", e)
            return 5
        finally:
            # After an unexpected error the open transaction may cover records that were
            # consumed but not processed: only a clean stop may commit it.
            self._shutdown(commit=clean)
        return 0

    def _step(self) -> None:
        """One round of the loop: the work beside the records, then one batch of records."""
        wait_s = self._housekeep()
        if wait_s is None:
            return
        if self.direct.wake_due:  # before a read that may wait for what was resumed
            self._wake_fetchers(self.consumer)
        try:
            batch = self._read(wait_s)
        except _Refused as refused:
            self._join_again(refused.err)
            return
        if batch:
            self._consumed_at = time.monotonic()
            if not self._process(batch):
                return
        if self.committer.after_batch(len(batch)):
            self.direct.balance()
            if self.direct.local.blocked:
                self.direct.resolve_blocked(self._offsets)

    def _housekeep(self) -> float | None:
        """Sample the lag, advance restores and standby copies, fire due timers, check
        drains and holds, write the snapshot when due, apply completed remote calls; returns
        how long the next read may wait, or None when applying remote results failed (the
        round ends there)."""
        if time.monotonic() >= self._lag_due:
            self._sample_lag()
        assignment = self.assignment
        records_flow = time.monotonic() - self._consumed_at <= IDLE_S
        if assignment.restoring:
            # one batch per round, a small one while records flow: the others go on meanwhile
            assignment.step(busy=records_flow)
        wait_s = self._fire_due()
        if assignment.restoring:
            wait_s = 0.0  # the restore step waited already
        if self.standby is not None and self.standby.step():
            wait_s = 0.0  # a standby copy is behind: do not idle
        direct = self.direct
        if direct.draining:
            direct.check_drained()
        if direct.local.floors:
            direct.check_floors(self._offsets, self.txn.fence_offsets)
        if direct.held:
            direct.balance()  # also without commits: nothing may hold ingress for good
        waited = direct.check_unpaired() if direct.unpaired else []
        if waited:
            try:
                self.consumer.resume(waited)
            except KafkaException as e:  # no longer assigned: the next assignment starts over
                log.info("not resuming ingress that waited for invocations partitions: %s", e)
        snapshot = self.store.snapshot
        if snapshot is not None:
            idle = not assignment.restoring and not records_flow
            if snapshot.flush_if_due(idle):
                wait_s = 0.0  # a restore's rows still to write, a slice per round: do not idle
        remote = self.remote
        if remote is not None and not remote.idle:
            try:
                remote.poll()  # apply completed remote calls to the open transaction
            except KafkaException as e:
                self.committer.failed(e, "applying remote results")
                return None
            wait_s = 0.0
        return wait_s

    def _read(self, wait_s: float) -> list:  # type: ignore[type-arg]
        """The next batch: waits up to ``wait_s`` for a first record when no transaction is
        open, never while one is; nothing while remote calls are saturated."""
        remote = self.remote
        limit = self.settings.max_batch_records
        if remote is not None:  # a transaction consumes at most its budget (runtime/remote.py)
            limit = min(limit, remote.room)
        if remote is not None and remote.saturated:
            remote.wait(0.05)  # back-pressure: consume nothing until calls complete
            return []
        reads = self.reads
        reads.start()
        if self.txn.is_open:
            batch = self.consumer.consume(limit, timeout=0)
            if not batch and remote is not None and not remote.idle:
                remote.wait(0.01)
        else:
            first = self.consumer.poll(wait_s)
            batch = [] if first is None else [first]
            if first is not None and limit > 1:
                batch += self.consumer.consume(limit - 1, timeout=0)
        if batch:
            batch = reads.fresh(self.consumer, self._without_errors(batch))
            if self.assignment.restoring:
                batch = self.assignment.unheld(batch)
        return batch

    def _process(self, batch: list) -> bool:  # type: ignore[type-arg]
        """Route or dispatch every record of ``batch`` in the open transaction; False when
        that failed (the transaction was aborted and rewound)."""
        txn = self.txn
        try:
            txn.begin()
            txn.track(batch)
            process_records(
                batch,
                self.topics.invocations,
                self.dispatcher.dispatch,
                self.router.route,
                self.metrics.records_in,
            )
        except KafkaException as e:
            self.committer.failed(e, "processing")
            return False
        return True

    def _fire_due(self) -> float:
        """Deliver due delayed messages and delete expired state into the open transaction;
        returns how long the loop may wait for input before something else falls due."""
        if not self.assignment.assigned:
            return 0.2  # a partition's next owner may fire or expire the same entries
        if self.assignment.starting:
            return 0.0  # kept partitions not yet checked against their topics (assignment.py)
        now_ms = int(time.time() * 1000)
        txn = self.txn
        try:
            for _partition, key, value in self.timers.pop_due(now_ms):
                txn.begin()
                sender_type, sender_id, _, _ = decode_timer_key(key)
                t = decode_timer_value(value)
                # unique per firing (a token can be reused once fired), same on a replay
                origin = "t" + hashlib.blake2b(key + value, digest_size=8).hexdigest()
                target_id = t.target_id.encode()
                at = self.partition_of(t.target_id)
                source = LocalInvocation(self.topics.timers, at, -1, target_id, value, origin, at)
                target = Address(t.target_type, t.target_id)
                self.router.fire(
                    source, target, Address(sender_type, sender_id), t.typename, t.value
                )
            if self.store.expire_due(now_ms):
                txn.begin()
        except KafkaException as e:
            self.committer.failed(e, "firing timers")
        deadlines = [d for d in (self.timers.next_due(), self.store.next_expiry()) if d is not None]
        if not deadlines:
            return 0.2
        return min(0.2, max(0.0, (min(deadlines) - now_ms) / 1000))

    def _without_errors(self, batch: list) -> list:  # type: ignore[type-arg]
        good = []
        for msg in batch:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif retry_policy.is_fatal(err):
                raise self._group_fatal(err)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
        return good

    def _group_fatal(self, err: KafkaError) -> Exception:
        """What a fatal error of the group consumer means for this worker: a broker without
        the KIP-848 protocol (exit 2), a static member whose instance id another member took
        (exit 3), or one the group refused because another member holds it: waited out
        (``_Refused``, ``_join_again``) while nothing is assigned, else exit 3."""
        s = self.settings
        member = self._static_member
        if s.rebalance_protocol == "consumer" and group_protocol_unsupported(err):
            return ConfigError(
                f"the Kafka cluster at {s.bootstrap_servers} does not take rebalance_protocol "
                "consumer (KIP-848; Kafka 4.0 or newer, with consumer in the brokers' "
                "group.coordinator.rebalance.protocols): set rebalance_protocol "
                "(KSTATEFUN_REBALANCE_PROTOCOL) to cooperative or eager for every worker of "
                f"the application ({err.str()})"
            )
        if instance_id_unreleased(err):
            # KIP-848 refuses the joining member, not the one in the group (classic: the
            # reverse): a member that was refused its join again was replaced by a newcomer
            holder = self._took_our_place()
            if holder is not None:
                return fenced_error(
                    member,
                    err,
                    f"another worker with the same --instance-id took its place in the group "
                    f"(member {holder}) and fenced its transactions",
                )
            # while nothing is assigned, nothing depends on the consumer: replace it
            if not self.assignment.assigned and not self.txn.is_open:
                return _Refused(err)
            return fenced_error(
                member,
                err,
                "another member still holds its instance id: a worker with the same "
                "--instance-id is running, or the last one stopped without leaving the group "
                "(kill -9, a crash) and the group releases it when its session times out (the "
                "group's consumer.session.timeout.ms, docs/operations.md); start it again then",
            )
        if s.static_membership:  # classic: a newer static member with the same instance id
            return fenced_error(member, err)
        return KafkaException(err)

    def _took_our_place(self) -> str | None:
        """The member id of another member holding this worker's instance id when the group
        refused this worker after it had been a member: a worker with the same instance id
        started since, fenced this one's producer (its init_transactions) and released this
        one's membership (kafka/membership.py), so this one must stop, though with nothing to
        process it never learns it from its producer. None when this worker never was a member
        (a restart refused until its killed predecessor is released: waited out), when the
        holder is this worker's own earlier membership, or when the group cannot be read."""
        ours = self._member_id
        if ours is None:
            return None
        try:
            holder = static_member_id(self._admin, self.settings.app_id, self._instance, 10.0)
        except Exception as e:  # noqa: BLE001 - unknown: treated as a refusal to wait out
            log.info("could not read who holds instance_id=%s: %s", self.settings.instance_id, e)
            return None
        return holder if holder is not None and holder != ours else None

    def _join_again(self, err: KafkaError) -> None:
        """The group refused this static member (``err``, fatal to the consumer): another member
        still holds its instance id, a predecessor killed without leaving until the group's
        session times out. Replace the consumer with a new one, wait, and join again, until
        that ends (docs/operations.md, "Named workers"); past it, stop (FencedError, exit 3)."""
        s = self.settings
        member = self._static_member
        rejoin = self._rejoin
        if rejoin is None:
            known_s = group_session_timeout_s(self._admin, s.app_id)
            rejoin = self._rejoin = Rejoin(known_s or DEFAULT_SESSION_TIMEOUT_S)
            log.warning(
                "the group refused %s: another member still holds instance_id=%s, most likely "
                "a worker with it that was killed or crashed without leaving the group, which "
                "the group releases when its session times out; joining again every %.0f s "
                "until then session_timeout_s=%.0f%s give_up_after_s=%.0f",
                member,
                s.instance_id,
                rejoin.retry_s,
                rejoin.session_timeout_s,
                "" if known_s else " (not told by the cluster: Kafka's default)",
                rejoin.give_up_after_s,
            )
        # fatal: the consumer never joins again; close it and take a new one
        old, self.consumer = self.consumer, self._new_consumer()
        self.txn.use_consumer(self.consumer, partial(coordinator_answers, self.consumer))
        self.assignment.use_consumer(self.consumer)
        self.direct.use_consumer(self.consumer)
        try:
            old.close()
        except (KafkaException, RuntimeError) as e:
            log.info("closing the refused consumer: %s", e)
        beat = self.watchdog.beat if self.watchdog is not None else lambda: None
        if not rejoin.wait(lambda: self._stopping, beat):
            raise fenced_error(
                member,
                err,
                f"the group still refused it {rejoin.waited_s:.0f} s after the first refusal "
                f"({rejoin.refusals} tries, {rejoin.sessions} session timeouts of "
                f"{rejoin.session_timeout_s:.0f} s, by when a killed member is released): "
                "another running worker holds its instance id; stop it",
            )
        if not self._stopping:
            self._subscribe()

    def _shutdown(self, commit: bool) -> None:
        """Finish (clean stop) or abort the open transaction, leave the group, release
        everything. Each step runs even if an earlier one fails (e.g. a fenced producer), so
        the exit code stays the one ``run`` chose."""
        self._stopping = True  # also after an error: the rebalance callbacks of close see it
        txn = self.txn
        steps = [
            partial(self.committer.final, commit),
            self.consumer.close,  # leaves the group; on_revoke finds no open transaction
            *([self._leave_for_good] if commit and self._leaves_for_good else []),
            *([self._health.stop] if self._health is not None else []),
            *([self.playground.close] if self.playground is not None else []),
            self.restorer.close,
            self.timer_restorer.close,
            *([self.standby.close] if self.standby is not None else []),
            self._offsets.close,
            self.dispatcher.close,
            *([self.remote.close] if self.remote is not None else []),
            *([self.store.snapshot.close] if self.store.snapshot is not None else []),
            *([self.store.disk.close] if self.store.disk is not None else []),
            lambda: txn.producer.flush(10),
            *([self.watchdog.stop] if self.watchdog is not None else []),
        ]
        for step in steps:
            if self.watchdog is not None:
                self.watchdog.beat()  # each step is bounded; a stuck one still ends the process
            try:
                step()
            except Exception as e:  # noqa: BLE001 - keep releasing the rest
                log.warning("shutdown step failed: %s", e)
        log.info(
            "worker stopped commits=%d aborts=%d records_in=%d ingress_direct=%d "
            "ingress_routed=%d messages_local=%d invocations=%d dead_letters=%s",
            self.metrics.commits,
            self.metrics.aborts,
            sum(self.metrics.records_in.values()),
            self.metrics.ingress_direct,
            self.metrics.ingress_routed,
            self.metrics.messages_local,
            self.dispatcher.invocations,
            self.dead_letters.counts,
        )

    # --- rebalancing --------------------------------------------------------------------------

    @property
    def _leaves_for_good(self) -> bool:
        s = self.settings
        return s.leave_group_on_stop and s.static_membership

    def _leave_for_good(self) -> None:
        """After a clean stop with leave_group_on_stop: remove this static member, which
        librdkafka's close left in the group for a restart (epoch -2), so that its partitions
        move now rather than when its session ends."""
        try:
            outcome = remove_static_members(
                self._client_config, self.settings.app_id, [self._instance]
            )
        except MembershipError as e:
            outcome = {self._instance: str(e)}
        error = outcome.get(self._instance, "not in the answer")
        if error is None:
            log.info("left the group for good (leave_group_on_stop) instance=%s", self._instance)
        else:
            log.warning(
                "could not leave the group for good (leave_group_on_stop): its partitions move "
                "when its session times out instance=%s error=%s",
                self._instance,
                error,
            )

    def _restored(self, p: int, ingress: list[TopicPartition]) -> None:
        """Assignment's callback: invocations partition ``p`` processes again (DirectPath)."""
        self.direct.restored(p, ingress)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Give ``partitions`` up (cooperative: only those that move; eager: all) once the
        open transaction has committed; the others keep processing."""
        inv = self.topics.invocations
        log.info(
            "revoked invocations partitions=%s ingress_partitions=%d",
            sorted(tp.partition for tp in partitions if tp.topic == inv),
            sum(1 for tp in partitions if tp.topic != inv),
        )
        self.metrics.revoked_partitions += len(partitions)
        self.assignment.revoke(partitions)
        self.committer.on_revoke(partitions)
        self.reads.revoked(partitions)  # after the commit, whose failure rewinds the others
        resume = self.assignment.revoked(partitions)
        # kept ingress partitions whose invocations partition left take the hop from now on
        resume += [TopicPartition(t, p) for t, p in self.direct.forget(partitions)]
        if resume:
            consumer.resume(resume)
        if self.standby is not None and self.assignment.assigned:
            # the partitions given up are copied from now on (all of them: at the next
            # assignment, which says which are owned)
            owned = set(self.assignment.states)
            self.standby.on_assignment(owned, self.store.disk, self._incremental)
        if self._incremental and not self._stopping:
            # librdkafka paused every assigned partition for this callback and resumes those
            # kept once they are unassigned (which it would do after this callback)
            consumer.incremental_unassign(partitions)
            self._wake_fetchers(consumer)

    def _wake_fetchers(self, consumer: Consumer) -> None:
        """Partitions were resumed: make the consumer fetch them now (kafka/fetchers.py);
        not once the worker stops (its consumer's close calls ``_on_revoke``)."""
        self.direct.wake_due = False
        if not self._stopping:
            wake_fetchers(consumer)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("partitions lost (session timed out?); dropping local state")
        self.reads.revoked(partitions)
        self.assignment.revoke()
        self.direct.lost()
        self.committer.on_lost()
        self.assignment.revoked()
        for p in self.store.partitions():
            self.store.drop_partition(p)
        for p in self.timers.partitions():
            self.timers.drop_partition(p)

    def _open_disk(self) -> None:
        """Open the rocksdb store's database (state/rocksdb.py) at the first assignment: by
        then this worker's init_transactions and group join have fenced a predecessor with the
        same instance id that still runs, which releases the database's lock as it stops."""
        s = self.settings
        assert s.state_dir is not None  # settings.py checks it
        self.store.disk = RocksStore(s.state_path("rocksdb"), s.app_id, self.partitions)
        log.info("local state store rocksdb path=%s", self.store.disk.path)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take ``partitions`` (cooperative: those added; eager: all): their invocations
        partitions start restoring (runtime/assignment.py), paused until the loop has
        restored them; the other partitions are consumed at once."""
        if self._rejoin is not None:
            log.info(
                "the group admitted instance_id=%s after %d refusals waited_s=%.1f",
                self.settings.instance_id,
                self._rejoin.refusals,
                self._rejoin.waited_s,
            )
            self._rejoin = None
        self._member_id = consumer.memberid() or self._member_id
        if self.settings.state_store == "rocksdb" and self.store.disk is None:
            self._open_disk()
        # what routed records the open transaction holds must be in the ends sampled below
        self.committer.commit_open("on assign")
        kept = consumer.assignment()
        invocations = self.topics.invocations
        owned = {tp.partition for tp in [*kept, *partitions] if tp.topic == invocations}
        if self.standby is not None:  # first: copies of owned partitions stop being written
            self.standby.on_assignment(owned, self.store.disk, self._incremental)
        committed = (
            call_with_retry(
                lambda: consumer.committed(
                    [TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=30
                ),
                "reading the committed offsets of the assigned partitions",
            )
            if partitions
            else []
        )
        self.committer.assigned(committed)
        self._position_ingress([tp for tp in partitions if tp.topic != invocations], committed)
        plan = self.direct.plan(self._offsets, partitions, kept)
        pause = self.assignment.assign(partitions, [*kept, *partitions])
        self.direct.assigned(plan, self.assignment.paused(), pause)
        # Under KIP-848 an assignment without invocations partitions means the coordinator
        # lags behind a new topic, so the ingress partitions wait for them (DirectPath.pair);
        # a classic assignor means it (cooperative-sticky does not pair the two topics).
        unpaused: list[TopicPartition] = []
        if self.settings.rebalance_protocol == "consumer":
            unpaused = self.direct.pair(partitions, [*kept, *partitions], self.partitions, pause)
        start = _start_offsets(partitions, committed, invocations)
        self.reads.assigned(start)
        if self._incremental:
            consumer.incremental_assign(start)
        else:
            consumer.assign(start)
        if pause:
            consumer.pause(pause)
        if unpaused:
            consumer.resume(unpaused)
        self._wake_fetchers(consumer)  # librdkafka paused what was kept for this callback
        log.info(
            "assigned invocations partitions=%s (restoring them) kept=%s",
            sorted({tp.partition for tp in partitions if tp.topic == invocations}),
            sorted({tp.partition for tp in kept if tp.topic == invocations}),
        )

    def _position_ingress(
        self, partitions: list[TopicPartition], committed: list[TopicPartition]
    ) -> None:
        """Where an ingress partition without a committed offset starts (startupPosition)."""
        have = {(tp.topic, tp.partition) for tp in committed if tp.offset >= 0}
        at_end: dict[str, list[int]] = {}
        for tp in partitions:
            if (tp.topic, tp.partition) in have:
                continue
            ingress = self._ingress_by_topic[tp.topic]
            pos = ingress.startup_position
            kind = pos.kind
            if kind == "specific-offsets":
                offset = pos.offsets.get((tp.topic, tp.partition))
                if offset is not None:
                    tp.offset = offset
                    continue
                kind = "group-offsets"
            if kind == "date":
                found = call_with_retry(
                    partial(
                        self.consumer.offsets_for_times,
                        [TopicPartition(tp.topic, tp.partition, pos.date_ms)],
                        timeout=30,
                    ),
                    f"finding the startup date's offset in {tp.topic} partition {tp.partition}",
                )[0]
                tp.offset = found.offset if found.offset >= 0 else OFFSET_END
                continue
            if kind == "group-offsets":
                kind = ingress.auto_offset_reset
            tp.offset = OFFSET_BEGINNING if kind == "earliest" else OFFSET_END
            if tp.offset == OFFSET_END:
                at_end.setdefault(tp.topic, []).append(tp.partition)
        self._log_skipped(at_end)

    def _log_skipped(self, at_end: dict[str, list[int]]) -> None:
        """Say per topic how many existing records starting at the end leaves unread."""
        for topic, partitions in at_end.items():
            skipped = 0
            for p in partitions:
                low, high = watermarks(self._offsets, TopicPartition(topic, p))
                skipped += max(0, high - low)
            log.info(
                "ingress starts at the end topic=%s partitions=%s skipped_records=%d "
                "(startupPosition latest, or autoOffsetResetPosition latest; use earliest to "
                "read them)",
                topic,
                sorted(partitions),
                skipped,
            )
