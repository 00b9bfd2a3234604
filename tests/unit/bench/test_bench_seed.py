"""The benchmark's seeded state is what a worker would have written: the records decode with
the runtime's own decoders, and each lies in the partition the application's partitioner gives
its id (a seed in the wrong partition would be state no worker ever reads)."""

from __future__ import annotations

import time

from bench.bigstate import big_id
from bench.workloads import counter_states, pending_timers

from kstatefun.kafka.partitioner import partition_for_id
from kstatefun.sdk.types import IntType
from kstatefun.wire.avro import (
    decode_changelog_key,
    decode_changelog_value,
    decode_timer_key,
    timer_due,
)


def test_counter_states_decode_as_count_one_in_the_ids_partition() -> None:
    for partitioner in ("crc32", "murmur2"):
        records = list(counter_states(8, 50, big_id, partitioner))
        assert len(records) == 50
        for i, (key, value, partition) in enumerate(records):
            assert decode_changelog_key(key) == ("bench/counter", big_id(i), "count")
            decoded = decode_changelog_value(value)
            assert decoded.typename == IntType.typename and decoded.expire_at_ms is None
            assert IntType.deserialize(decoded.value) == 1
            assert partition == partition_for_id(big_id(i), 8, partitioner)
        assert len({p for _, _, p in records}) > 1


def test_big_ids_make_rows_of_about_100_bytes() -> None:
    ((key, value, _),) = counter_states(8, 1, big_id, "crc32")
    assert len(key) + len(value) == 98


def test_pending_timers_lie_in_their_senders_partition_due_later() -> None:
    now_ms = int(time.time() * 1000)
    for i, (key, value, partition) in enumerate(pending_timers(4, 20, "user-{}".format, "crc32")):
        assert decode_timer_key(key) == ("bench/counter", f"user-{i}", "bench", False)
        assert timer_due(value) > now_ms + 3_600_000
        assert partition == partition_for_id(f"user-{i}", 4, "crc32")
