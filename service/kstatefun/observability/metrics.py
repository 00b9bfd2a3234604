"""Worker metrics: plain counters on the hot path, turned into Prometheus metrics only when
scraped (a custom collector), so an invocation pays a dict update, not a registry lookup.

Writers are the worker's main loop only; the HTTP thread reads snapshots (dict copies are
atomic under the GIL).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip((*LATENCY_BOUNDS, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


def _zero() -> int:
    return 0


def _none() -> dict[int, str]:
    return {}


@dataclass
class WorkerMetrics:
    invocations: dict[str, int] = field(default_factory=dict)
    invocation_latency: dict[str, Histogram] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)  # (function, reason)
    dead_letters: dict[str, int] = field(default_factory=dict)
    records_in: dict[str, int] = field(default_factory=dict)
    records_out: dict[str, int] = field(default_factory=dict)
    # ingress records dispatched in the transaction that consumed them, and those that took
    # the hop through <app>-invocations (runtime/router.py)
    ingress_direct: int = 0
    ingress_routed: int = 0
    # messages between functions of one partition run in their sender's transaction
    # (runtime/local.py); the others are counted in records_out of <app>-invocations
    messages_local: int = 0
    commits: int = 0
    aborts: int = 0
    epoch_bumps: int = 0  # producers recreated after the coordinator bumped their epoch
    stuck_producers: int = 0  # producers given up as stuck in a call (runtime/commit.py)
    revoked_partitions: int = 0  # consumer partitions given up in rebalances (all topics)
    commit_latency: Histogram = field(default_factory=Histogram)
    restore_read: dict[tuple[str, int], int] = field(default_factory=dict)
    restore_total: dict[tuple[str, int], int] = field(default_factory=dict)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    standby_lag: dict[tuple[str, int], int] = field(default_factory=dict)  # state/standby.py
    remote_call_latency: Histogram = field(default_factory=Histogram)
    remote_retries: int = 0
    remote_failures: int = 0
    pending_timers: Callable[[], int] = _zero
    remote_in_flight: Callable[[], int] = _zero
    # invocations partition -> its state (runtime/assignment.py)
    partition_states: Callable[[], dict[int, str]] = _none

    def latency(self, function: str) -> Histogram:
        h = self.invocation_latency.get(function)
        if h is None:
            h = self.invocation_latency[function] = Histogram()
        return h


class WorkerCollector:
    """prometheus_client collector over one WorkerMetrics."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        app_id: str,
        instance_id: str,
        version: str = "unknown",
        build: str = "pure",
    ) -> None:
        self._m = metrics
        self._labels = {"app": app_id, "instance": instance_id}
        self._build = (version, build)  # kstatefun_build_info (kstatefun/buildinfo.py)

    def describe(self) -> list[Metric]:
        return []  # no fixed set to pre-register; collect() is cheap

    def collect(self) -> Iterator[Metric]:
        m, base = self._m, self._labels
        keys = list(base)

        def counter(name: str, doc: str, extra: list[str], items: list[tuple]) -> Metric:  # type: ignore[type-arg]
            c = CounterMetricFamily(name, doc, labels=keys + extra)
            for *labels, value in items:
                c.add_metric([*base.values(), *labels], value)
            return c

        def gauge(name: str, doc: str, extra: list[str], items: list[tuple]) -> Metric:  # type: ignore[type-arg]
            g = GaugeMetricFamily(name, doc, labels=keys + extra)
            for *labels, value in items:
                g.add_metric([*base.values(), *labels], value)
            return g

        yield gauge(
            "kstatefun_build_info",
            "1, labelled with kstatefun's version and build: compiled (the hot path's modules "
            "compiled with mypyc) or pure (Python)",
            ["version", "build"],
            [(*self._build, 1)],
        )
        yield counter(
            "kstatefun_invocations",
            "Invocations completed, by function type",
            ["function"],
            list(dict(m.invocations).items()),
        )
        yield counter(
            "kstatefun_invocation_failures",
            "Invocations that became dead letters, by function type and reason",
            ["function", "reason"],
            [(f, r, v) for (f, r), v in dict(m.failures).items()],
        )
        h = HistogramMetricFamily(
            "kstatefun_invocation_latency_seconds",
            "Time spent in the function, by function type",
            labels=[*keys, "function"],
        )
        for function, hist in dict(m.invocation_latency).items():
            h.add_metric([*base.values(), function], hist.buckets(), hist.sum)
        yield h
        yield counter(
            "kstatefun_dead_letters",
            "Records written to <app>-dead-letters, by reason",
            ["reason"],
            list(dict(m.dead_letters).items()),
        )
        yield counter(
            "kstatefun_records_in",
            "Records consumed, by topic",
            ["topic"],
            list(dict(m.records_in).items()),
        )
        yield counter(
            "kstatefun_ingress_records",
            "Ingress records routed to invocations, by path: direct (dispatched at once) or "
            "routed (through <app>-invocations)",
            ["path"],
            [("direct", m.ingress_direct), ("routed", m.ingress_routed)],
        )
        yield counter(
            "kstatefun_messages_local",
            "Messages between functions of one partition invoked in their sender's "
            "transaction, without the hop through <app>-invocations",
            [],
            [(m.messages_local,)],
        )
        yield counter(
            "kstatefun_records_out",
            "Records produced in transactions, by topic",
            ["topic"],
            list(dict(m.records_out).items()),
        )
        yield counter(
            "kstatefun_transactions_committed",
            "Kafka transactions committed",
            [],
            [(m.commits,)],
        )
        yield counter(
            "kstatefun_transactions_aborted", "Kafka transactions aborted", [], [(m.aborts,)]
        )
        yield counter(
            "kstatefun_producer_epoch_bumps",
            "Producers recreated after the transaction coordinator bumped their epoch",
            [],
            [(m.epoch_bumps,)],
        )
        yield counter(
            "kstatefun_partitions_revoked",
            "Consumer partitions (ingress and invocations) this worker gave up in rebalances",
            [],
            [(m.revoked_partitions,)],
        )
        yield counter(
            "kstatefun_producer_stuck",
            "Producers given up because send_offsets_to_transaction outlived the transaction",
            [],
            [(m.stuck_producers,)],
        )
        c = HistogramMetricFamily(
            "kstatefun_commit_latency_seconds", "Duration of a commit", labels=keys
        )
        c.add_metric(list(base.values()), m.commit_latency.buckets(), m.commit_latency.sum)
        yield c
        yield gauge(
            "kstatefun_restore_records",
            "Records read by the current or last restore",
            ["topic", "partition"],
            [(t, str(p), v) for (t, p), v in dict(m.restore_read).items()],
        )
        yield gauge(
            "kstatefun_restore_target_records",
            "Records to read to finish the current or last restore",
            ["topic", "partition"],
            [(t, str(p), v) for (t, p), v in dict(m.restore_total).items()],
        )
        yield gauge(
            "kstatefun_consumer_lag",
            "Records behind the end, per consumed partition",
            ["topic", "partition"],
            [(t, str(p), v) for (t, p), v in dict(m.lag).items()],
        )
        yield gauge(
            "kstatefun_standby_lag",
            "Records a standby copy is behind the end of its changelog partition",
            ["topic", "partition"],
            [(t, str(p), v) for (t, p), v in dict(m.standby_lag).items()],
        )
        r = HistogramMetricFamily(
            "kstatefun_remote_call_latency_seconds",
            "Duration of a remote function call, retries included",
            labels=keys,
        )
        r.add_metric(
            list(base.values()), m.remote_call_latency.buckets(), m.remote_call_latency.sum
        )
        yield r
        yield counter(
            "kstatefun_remote_retries",
            "Remote function call attempts beyond the first",
            [],
            [(m.remote_retries,)],
        )
        yield counter(
            "kstatefun_remote_failures",
            "Remote function calls that failed past their budget or permanently",
            [],
            [(m.remote_failures,)],
        )
        yield gauge(
            "kstatefun_pending_timers", "Delayed messages waiting", [], [(m.pending_timers(),)]
        )
        yield gauge(
            "kstatefun_partition_state",
            "1 per assigned invocations partition, labelled with its state "
            "(restoring, catching-up, live, revoking)",
            ["partition", "state"],
            [(str(p), state, 1) for p, state in sorted(m.partition_states().items())],
        )
        yield gauge(
            "kstatefun_remote_in_flight",
            "Remote function requests in flight",
            [],
            [(m.remote_in_flight(),)],
        )
