"""bench/hotpath.py drives the worker's real record path: every event gives one egress record
and each key written in a batch one changelog record (a dead letter or a skipped step would
change the count)."""

from bench.apps.chain import rekey
from bench.hotpath import records, run_once, worker_parts


def test_the_hot_path_benchmark_produces_what_the_worker_would():
    batches = records(events=200, keys=50, partitions=6)
    assert sum(len(b) for b in batches) == 200
    # each batch is one partition's, and one partition's keys never appear in another
    assert all(len({m.partition() for m in b}) == 1 for b in batches)
    _, _, produced = run_once(batches, 6)
    assert produced == 200 + 50  # egress per event + changelog per key (one batch each)


def test_the_w2_same_mode_runs_every_message_in_the_senders_transaction_as_the_worker_does():
    batches = records(events=200, keys=50, partitions=6)
    _, _, produced = run_once(batches, 6, "w2-same")
    # egress per event (B ran: else none), no message through <app>-invocations (A and B
    # share the id, so the partition: runtime/local.py), changelog per key and function
    assert produced == 200 + 50 + 50


def test_routed_records_come_back_in_partition_order_with_their_offsets():
    from bench.hotpath import INVOCATIONS, consumed

    offsets = [0, 5]
    routed = [(1, b"a", b"1"), (0, b"b", b"2"), (1, b"c", b"3")]
    out = consumed(routed, offsets)
    got = [[(m.topic(), m.partition(), m.offset(), m.key(), m.value()) for m in b] for b in out]
    assert got == [
        [(INVOCATIONS, 1, 5, b"a", b"1"), (INVOCATIONS, 1, 6, b"c", b"3")],
        [(INVOCATIONS, 0, 0, b"b", b"2")],
    ]
    assert offsets == [1, 7]


def test_the_w2_hop_mode_routes_each_message_whose_rekeyed_target_is_in_another_partition():
    batches = records(events=200, keys=50, partitions=6)
    _, router, _, _ = worker_parts(6, "w2-hop")
    ids = [m.key().decode() for b in batches for m in b]
    hops = sum(router._partition_of(rekey(i)) != router._partition_of(i) for i in ids)
    assert 0 < hops < 200
    _, _, produced = run_once(batches, 6, "w2-hop")
    # egress per event (B ran after the hop), one record per message (with local messages off
    # every message takes the hop), changelog per key and function (each of B's ids hears
    # from one A only)
    assert produced == 200 + 200 + 50 + 50


def test_the_w2_mode_runs_messages_to_other_owned_partitions_in_the_senders_transaction():
    batches = records(events=200, keys=50, partitions=6)
    _, _, produced = run_once(batches, 6, "w2")
    # egress per event, no message through <app>-invocations (every partition is owned),
    # changelog per key and function
    assert produced == 200 + 50 + 50
