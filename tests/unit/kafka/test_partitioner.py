import logging
import zlib

import pytest

from kstatefun.kafka.partitioner import (
    PLACEMENT_SAMPLE,
    id_partitioner,
    murmur2,
    partition_for_id,
    partition_for_key,
    placement_agrees,
)
from kstatefun.runtime.router import PlacementCheck

# Known values of Java's org.apache.kafka.common.utils.Utils.murmur2 (Kafka's own UtilsTest).
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_java(data, expected):
    assert murmur2(data) == expected


# CRC-32 (IEEE, reflected, as librdkafka's rd_crc32): the standard check value and
# a key whose CRC has the top bit set, where a sign or a 0x7fffffff mask would move it
CRC32_VECTORS = {b"123456789": 0xCBF43926, b"a": 0xE8B7BE43, b"": 0}


@pytest.mark.parametrize(("data", "expected"), CRC32_VECTORS.items())
def test_crc32_partition_is_the_unsigned_crc_mod_p(data, expected):
    assert partition_for_key(data, 7, "crc32") == expected % 7
    assert partition_for_key(data, 1000, "crc32") == expected % 1000


def test_crc32_is_not_masked():
    key = b"a"  # CRC 0xE8B7BE43 has the top bit set
    assert partition_for_key(key, 10, "crc32") == 0xE8B7BE43 % 10 != (0xE8B7BE43 & 0x7FFFFFFF) % 10


@pytest.mark.parametrize("partitioner", ["crc32", "murmur2"])
def test_partition_is_positive_and_id_based(partitioner):
    of = id_partitioner(7, partitioner)
    for i in range(1000):
        p = partition_for_id(f"user-{i}", 7, partitioner)
        assert 0 <= p < 7
        assert p == partition_for_key(f"user-{i}".encode(), 7, partitioner) == of(f"user-{i}")


def test_the_two_partitioners_place_ids_differently():
    ids = [f"user-{i}" for i in range(200)]
    crc = [partition_for_id(i, 6, "crc32") for i in ids]
    assert crc == [zlib.crc32(i.encode()) % 6 for i in ids]
    assert crc != [partition_for_id(i, 6, "murmur2") for i in ids]


def test_an_unknown_partitioner_is_refused():
    with pytest.raises(ValueError, match="unknown partitioner 'fnv1a'"):
        id_partitioner(4, "fnv1a")


def _sample(check: PlacementCheck, partitioner: str) -> bool:
    done = False
    for i in range(PLACEMENT_SAMPLE):
        key = f"k{i}".encode()
        done = check.add(key, partition_for_key(key, check.count, partitioner))
    return done


def test_placement_tells_the_producers_partitioner():
    for partitioner in ("crc32", "murmur2"):
        check = PlacementCheck("in", 6, 6, partitioner)
        assert _sample(check, partitioner)
        assert check.observed() == partitioner
    key = b"k1"
    assert placement_agrees(key, partition_for_key(key, 6, "crc32"), 6)[0]


def test_placement_of_another_partitioner_warns_naming_the_setting(caplog):
    check = PlacementCheck("in", 6, 6, "murmur2")
    with caplog.at_level(logging.WARNING):
        assert _sample(check, "crc32")
    (record,) = caplog.records
    assert "ingress topic=in is partitioned with crc32" in record.getMessage()
    assert "KSTATEFUN_PARTITIONER" in record.getMessage()
    assert f"{PLACEMENT_SAMPLE} sit where crc32 puts their key" in record.getMessage()


def test_placement_that_agrees_is_silent_and_a_count_mismatch_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert _sample(PlacementCheck("in", 6, 6, "crc32"), "crc32")
        assert not caplog.records
        assert _sample(PlacementCheck("in", 6, 8, "crc32"), "crc32")
    (record,) = caplog.records
    assert "has 6 partitions but the application's internal topics have 8" in record.getMessage()


def test_random_placement_warns_that_it_is_neither(caplog):
    check = PlacementCheck("in", 6, 6, "crc32")
    with caplog.at_level(logging.WARNING):
        for i in range(PLACEMENT_SAMPLE):
            check.add(f"k{i}".encode(), i % 6)
    assert "is not partitioned by key with crc32 or murmur2" in caplog.records[0].getMessage()
