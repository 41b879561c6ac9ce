"""Quantities parse exactly as Kubernetes parses them.

The tables are Kubernetes' own: TestQuantityParse, TestQuantityParseEmit and
the invalid list in k8s.io/apimachinery pkg/api/resource/quantity_test.go,
each expected value written as (mantissa, exponent) there and here.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podvisor.supervisor.manifest.quantity import (
    QuantityError,
    cpu_millicores,
    memory_bytes,
    parse_quantity,
)

MAX = Decimal(2**63 - 1)


def dec(mantissa: int, exponent: int) -> Decimal:
    return Decimal(mantissa).scaleb(exponent)


# (input, expected value) from TestQuantityParse.
KUBERNETES_PARSE = [
    ("0", dec(0, 0)),
    ("0n", dec(0, 0)),
    ("0u", dec(0, 0)),
    ("0m", dec(0, 0)),
    ("0Ki", dec(0, 0)),
    ("0k", dec(0, 0)),
    ("0Mi", dec(0, 0)),
    ("0M", dec(0, 0)),
    ("0Gi", dec(0, 0)),
    ("0G", dec(0, 0)),
    ("0Ti", dec(0, 0)),
    ("0T", dec(0, 0)),
    ("1", dec(1, 0)),
    ("1Ki", dec(1024, 0)),
    ("8Ki", dec(8 * 1024, 0)),
    ("7Mi", dec(7 * 1024**2, 0)),
    ("6Gi", dec(6 * 1024**3, 0)),
    ("5Ti", dec(5 * 1024**4, 0)),
    ("4Pi", dec(4 * 1024**5, 0)),
    ("3Ei", dec(3 * 1024**6, 0)),
    ("10Ti", dec(10 * 1024**4, 0)),
    ("100Ti", dec(100 * 1024**4, 0)),
    ("5n", dec(5, -9)),
    ("4u", dec(4, -6)),
    ("3m", dec(3, -3)),
    ("9", dec(9, 0)),
    ("8k", dec(8, 3)),
    ("50k", dec(5, 4)),
    ("7M", dec(7, 6)),
    ("6G", dec(6, 9)),
    ("5T", dec(5, 12)),
    ("40T", dec(4, 13)),
    ("300T", dec(3, 14)),
    ("2P", dec(2, 15)),
    ("1E", dec(1, 18)),
    ("1E-3", dec(1, -3)),
    ("1e3", dec(1, 3)),
    ("1E6", dec(1, 6)),
    ("1e9", dec(1, 9)),
    ("1E12", dec(1, 12)),
    ("1e15", dec(1, 15)),
    ("1E18", dec(1, 18)),
    ("1e14", dec(1, 14)),
    ("1e13", dec(1, 13)),
    ("100.035k", dec(100035, 0)),
    ("0.001", dec(1, -3)),
    ("0.0005k", dec(5, -1)),
    ("0.005", dec(5, -3)),
    ("0.05", dec(5, -2)),
    ("0.5", dec(5, -1)),
    ("0.00050k", dec(5, -1)),
    ("0.00500", dec(5, -3)),
    ("0.05000", dec(5, -2)),
    ("0.50000", dec(5, -1)),
    ("0.5e0", dec(5, -1)),
    ("0.5e-1", dec(5, -2)),
    ("0.5e-2", dec(5, -3)),
    ("10.035M", dec(10035, 3)),
    ("1.2e3", dec(12, 2)),
    ("1.3E+6", dec(13, 5)),
    ("1.40e9", dec(14, 8)),
    ("1.53E12", dec(153, 10)),
    ("1.6e15", dec(16, 14)),
    ("1.7E18", dec(17, 17)),
    ("9.01", dec(901, -2)),
    ("8.1k", dec(81, 2)),
    ("7.123456M", dec(7123456, 0)),
    ("6.987654321G", dec(6987654321, 0)),
    ("5.444T", dec(5444, 9)),
    ("40.1T", dec(401, 11)),
    ("300.2T", dec(3002, 11)),
    ("2.5P", dec(25, 14)),
    ("1.01E", dec(101, 16)),
    # Things that saturate or round (up, to whole nanos).
    ("3.001n", dec(4, -9)),
    ("1.1E-9", dec(2, -9)),
    ("0.0000000001", dec(1, -9)),
    ("0.0000000005", dec(1, -9)),
    ("0.00000000050", dec(1, -9)),
    ("0.5e-9", dec(1, -9)),
    ("0.9n", dec(1, -9)),
    ("0.00000012345", dec(124, -9)),
    ("0.00000012354", dec(124, -9)),
    ("9Ei", MAX),
    ("9223372036854775807Ki", MAX),
    ("12E", dec(12, 18)),  # held exactly: small enough for the fast path, never capped
    ("100.035Ki", dec(10243584, -2)),
    ("0.5Mi", dec(int(0.5 * 1024 * 1024), 0)),
    ("0.05Gi", dec(536870912, -1)),
    ("0.025Ti", dec(274877906944, -1)),
    # "Things written by trolls".
    ("0.000000000001Ki", dec(2, -9)),
    (".001", dec(1, -3)),
    (".0001k", dec(100, -3)),
    ("1.", dec(1, 0)),
    ("1.G", dec(1, 9)),
]

# From the `invalid` list of TestQuantityParse, and the empty string.
KUBERNETES_INVALID = [
    "",
    "1.1.M",
    "1+1.0M",
    "0.1mi",
    "0.1am",
    "aoeu",
    ".5i",
    "1i",
    "-3.01i",
    "-3.01e-",
    " 1",
    "1 ",
]


@pytest.mark.parametrize(("text", "expected"), KUBERNETES_PARSE)
def test_kubernetes_parse_table(text: str, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(("text", "expected"), KUBERNETES_PARSE)
def test_kubernetes_parse_table_with_sign(text: str, expected: Decimal) -> None:
    # quantity_test.go runs the whole table again with "-" and "+" in front.
    assert parse_quantity("-" + text) == -expected
    assert parse_quantity("+" + text) == expected


@pytest.mark.parametrize("text", KUBERNETES_INVALID)
def test_kubernetes_invalid_table(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize("text", ["12Q", "1K", "1e", "128MB", "1.5 Gi", "0x10", "1_000", "1e3.5"])
def test_more_invalid(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "millicores"),
    [
        ("500m", 500),
        ("1.5", 1500),
        ("1", 1000),
        ("0.1", 100),
        ("100k", 100_000_000),
        ("1e3", 1_000_000),
        ("0.0001", 1),  # MilliValue rounds up: a tiny request is still a request
        ("1.0001", 1001),
        ("5n", 1),
        ("0", 0),
        ("9Ei", 2**63 - 1),  # saturates instead of overflowing
    ],
)
def test_cpu_millicores_round_up(text: str, millicores: int) -> None:
    assert cpu_millicores(parse_quantity(text)) == millicores


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("128Mi", 128 * 2**20),
        ("1G", 10**9),
        ("500M", 500 * 10**6),
        ("1.5Gi", 3 * 2**29),
        ("1e3", 1000),
        ("100k", 100_000),
        ("0.5", 1),  # Value() rounds up to whole bytes
        ("500m", 1),
        ("129.9", 130),
        ("128974848000m", 128974848),
    ],
)
def test_memory_bytes_round_up(text: str, size: int) -> None:
    assert memory_bytes(parse_quantity(text)) == size


@given(st.integers(min_value=0, max_value=2**62))
def test_integers_are_themselves(n: int) -> None:
    assert parse_quantity(str(n)) == n
    assert memory_bytes(parse_quantity(str(n))) == n


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["Ki", "Mi", "Gi"]))
def test_binary_suffixes_are_powers_of_two(n: int, suffix: str) -> None:
    power = {"Ki": 10, "Mi": 20, "Gi": 30}[suffix]
    assert memory_bytes(parse_quantity(f"{n}{suffix}")) == min(n << power, 2**63 - 1)


@given(st.integers(min_value=0, max_value=10**15))
def test_millicores_round_trip(m: int) -> None:
    assert cpu_millicores(parse_quantity(f"{m}m")) == m
