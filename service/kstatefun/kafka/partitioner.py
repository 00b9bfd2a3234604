"""The one place that decides which partition an address lives in.

Partition of an address = hash(UTF-8 id) mod P, where the hash is the application's
partitioner (recorded once per application, kafka/topics.py ``record_partitioner``):

- ``crc32``: ``crc32(id) mod P``, unsigned, as librdkafka's default partitioner
  (``consistent_random``) places a keyed record: confluent-kafka (Python), the Go, .NET and C
  clients;
- ``murmur2``: ``(murmur2(id) & 0x7fffffff) mod P``, as the Java client's default partitioner
  (and librdkafka's ``murmur2``/``murmur2_random``) places it.

An ingress producer that keys a record by the id with the same hash onto a topic of P
partitions puts it where its invocations live, so it is dispatched without a hop
(runtime/router.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Final, Literal, get_args
from zlib import crc32

PartitionerName = Literal["crc32", "murmur2"]
PARTITIONERS: Final[tuple[str, ...]] = get_args(PartitionerName)
# what a new application gets when the partitioner setting is unset: what librdkafka's
# producers (Python, Go, .NET, C) do by default, the commonest ingress producers
DEFAULT_PARTITIONER: Final[PartitionerName] = "crc32"
# what an application created before the partitioner was recorded uses
LEGACY_PARTITIONER: Final[PartitionerName] = "murmur2"

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as a signed 32-bit int (Java ``Utils.murmur2``)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - (length & 3)
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rem = length & 3
    if rem == 3:
        h ^= data[end + 2] << 16
    if rem >= 2:
        h ^= data[end + 1] << 8
    if rem >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int, partitioner: str) -> int:
    """Partition of a record key under ``partitioner``."""
    if partitioner == "crc32":
        return crc32(key) % partitions
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=1 << 16)
def _murmur2_partition(id: str, partitions: int) -> int:
    return (murmur2(id.encode()) & 0x7FFFFFFF) % partitions


def partition_for_id(id: str, partitions: int, partitioner: str) -> int:
    """Partition of every address whose id is ``id`` (the function type does not matter)."""
    if partitioner == "crc32":
        return crc32(id.encode()) % partitions
    return _murmur2_partition(id, partitions)


def id_partitioner(partitions: int, partitioner: str) -> Callable[[str], int]:
    """``partition_for_id`` bound to an application's P and partitioner, for the hot path."""
    if partitioner == "crc32":
        return lambda id: crc32(id.encode()) % partitions
    if partitioner == "murmur2":
        return lambda id: _murmur2_partition(id, partitions)
    raise ValueError(f"unknown partitioner {partitioner!r}: use one of {', '.join(PARTITIONERS)}")


def placement_agrees(key: bytes, partition: int, partitions: int) -> tuple[bool, bool]:
    """Whether a record with ``key`` in ``partition`` of a topic of ``partitions`` partitions
    sits where crc32 and where murmur2 would put it: what tells its producer's partitioner."""
    return (
        crc32(key) % partitions == partition,
        (murmur2(key) & 0x7FFFFFFF) % partitions == partition,
    )


# keyed records per ingress topic whose placement tells which partitioner placed them
PLACEMENT_SAMPLE: Final = 200


def placement_verdict(seen: int, crc32_agree: int, murmur2_agree: int, count: int) -> str:
    """Which partitioner placed ``seen`` keyed records on a topic of ``count`` partitions, of
    which ``crc32_agree`` sit where crc32 puts their key and ``murmur2_agree`` where murmur2
    does: ``crc32``, ``murmur2``, ``neither`` (another partitioner, or explicit partitions) or
    ``unknown`` (nothing to tell by: no records, one partition, or both agree throughout)."""
    if count < 2 or seen == 0:
        return "unknown"
    crc, mm = crc32_agree == seen, murmur2_agree == seen
    if crc and not mm:
        return "crc32"
    if mm and not crc:
        return "murmur2"
    return "unknown" if crc else "neither"
