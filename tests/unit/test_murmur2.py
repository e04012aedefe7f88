"""Our test-side murmur2 equals Java's ``Utils.murmur2`` (vectors from Kafka's own UtilsTest)."""

import pytest

from tests.kafka_reading import java_partition, murmur2


@pytest.mark.parametrize(("key", "expected"), [
    ("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829), ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ("abc", 479470107),
])
def test_java_vectors(key, expected):
    assert murmur2(key.encode()) == expected


def test_partition_is_positive_modulo():
    assert java_partition(b"foobar", 6) == (-790332482 & 0x7FFFFFFF) % 6
