import pytest

from kstatefun.kafka.partitioner import murmur2, partition_for_id, partition_for_key

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


def test_partition_is_positive_and_id_based():
    for i in range(1000):
        p = partition_for_id(f"user-{i}", 7)
        assert 0 <= p < 7
        assert p == partition_for_key(f"user-{i}".encode(), 7)
