"""Kubernetes' conversions, the limit plans of each version, and the file parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from podvisor.supervisor.cgroups.cgroupfs import parse_flat
from podvisor.supervisor.cgroups.limits import (
    Limits,
    LimitWrite,
    cpu_quota_us,
    cpu_shares,
    cpu_weight,
    plan_limits,
    shares_from_weight,
)
from podvisor.supervisor.cgroups.stats import (
    DeviceIo,
    flat_values,
    parse_blkio,
    parse_int,
    parse_io_stat,
    parse_pressure,
    working_set,
)
from podvisor.supervisor.errors import CgroupError

SAMPLES = Path(__file__).parent / "samples"
V1 = dict.fromkeys(("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio"), 1)
V2 = dict.fromkeys(("cpu", "cpuset", "io", "memory", "pids"), 2)


# --- Kubernetes' conversions -------------------------------------------------------


@pytest.mark.parametrize(
    ("millicores", "shares"),
    [(0, 2), (1, 2), (2, 2), (100, 102), (250, 256), (1000, 1024), (10**6, 262_144)],
)
def test_cpu_shares_as_the_kubelet(millicores: int, shares: int) -> None:
    assert cpu_shares(millicores) == shares


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (3, 2), (102, 17), (256, 35), (1024, 100), (2048, 174), (262_144, 10_000)],
)
def test_cpu_weight_as_runc_and_crun_convert_shares(shares: int, weight: int) -> None:
    assert cpu_weight(shares) == weight


def test_cpu_weight_never_falls_as_shares_grow() -> None:
    weights = [cpu_weight(shares) for shares in range(2, 262_145)]
    assert weights == sorted(weights)
    assert set(weights) == set(range(1, 10_001))  # every weight is some shares'


@pytest.mark.parametrize(("weight", "shares"), [(1, 2), (17, 102), (100, 1024), (10_000, 262_144)])
def test_shares_from_weight_gives_back_the_shares_asked_for(weight: int, shares: int) -> None:
    assert shares_from_weight(weight) == shares


def test_shares_from_weight_is_the_last_share_of_each_weight() -> None:
    for weight in range(1, 10_001):
        shares = shares_from_weight(weight)
        assert cpu_weight(shares) == weight
        assert shares == 262_144 or cpu_weight(shares + 1) > weight


@pytest.mark.parametrize(
    ("millicores", "quota"), [(1, 1000), (10, 1000), (200, 20_000), (1500, 150_000)]
)
def test_cpu_quota_as_the_kubelet(millicores: int, quota: int) -> None:
    assert cpu_quota_us(millicores) == quota


ALL = Limits(
    memory_bytes=64 << 20,
    cpu_limit_millicores=200,
    cpu_request_millicores=100,
    pids_max=10,
    cpuset="0-1",
)


#: Every container on v2, limit or not: no swap (NoSwap), and an OOM kill takes all of it.
NO_SWAP_ONE_OOM_V2 = [
    LimitWrite("memory", "memory.swap.max", "0", if_present=True),
    LimitWrite("memory", "memory.oom.group", "1", if_present=True),
]
LEAST_V1 = LimitWrite("cpu", "cpu.shares", "2")
LEAST_V2 = LimitWrite("cpu", "cpu.weight", "1")


def test_plan_on_v1_sets_the_period_before_the_quota() -> None:
    assert plan_limits(ALL, V1) == [
        LimitWrite("memory", "memory.limit_in_bytes", str(64 << 20)),
        LimitWrite("memory", "memory.memsw.limit_in_bytes", str(64 << 20), if_present=True),
        LimitWrite("cpu", "cpu.cfs_period_us", "100000"),
        LimitWrite("cpu", "cpu.cfs_quota_us", "20000"),
        LimitWrite("cpu", "cpu.shares", "102"),
        LimitWrite("pids", "pids.max", "10"),
        LimitWrite("cpuset", "cpuset.cpus", "0-1"),
    ]


def test_plan_on_v2() -> None:
    assert plan_limits(ALL, V2) == [
        LimitWrite("memory", "memory.max", str(64 << 20)),
        *NO_SWAP_ONE_OOM_V2,
        LimitWrite("cpu", "cpu.max", "20000 100000"),
        LimitWrite("cpu", "cpu.weight", "17"),
        LimitWrite("pids", "pids.max", "10"),
        LimitWrite("cpuset", "cpuset.cpus", "0-1"),
    ]


def test_no_limits_write_nothing_without_controllers_and_a_zero_cpu_limit_is_none() -> None:
    assert plan_limits(Limits(), {}) == []
    assert plan_limits(Limits(cpu_limit_millicores=0), {}) == []
    assert plan_limits(Limits(cpu_request_millicores=0), V2) == [*NO_SWAP_ONE_OOM_V2, LEAST_V2]


def test_no_cpu_request_is_the_least_weight_as_the_kubelet_gives_besteffort() -> None:
    assert plan_limits(Limits(), V1) == [LEAST_V1]
    assert plan_limits(Limits(), V2) == [*NO_SWAP_ONE_OOM_V2, LEAST_V2]
    assert plan_limits(Limits(cpu_request_millicores=1), V1) == [LEAST_V1]
    # A limit alone: its shares (the manifest has made it the request already).
    assert plan_limits(Limits(cpu_limit_millicores=500), V1)[-1] == LimitWrite(
        "cpu", "cpu.shares", "512"
    )
    assert plan_limits(Limits(cpu_limit_millicores=500), V2)[-1] == LimitWrite(
        "cpu", "cpu.weight", str(cpu_weight(512))
    )
    # No cpu controller: nothing is weighed, and no request means nothing is refused.
    assert plan_limits(Limits(), {"memory": 1, "pids": 1}) == []


def test_swap_is_held_to_the_memory_limit_on_v1_and_off_on_v2() -> None:
    assert plan_limits(Limits(memory_bytes=1 << 30), {"memory": 1}) == [
        LimitWrite("memory", "memory.limit_in_bytes", str(1 << 30)),
        LimitWrite("memory", "memory.memsw.limit_in_bytes", str(1 << 30), if_present=True),
    ]
    assert plan_limits(Limits(memory_bytes=1 << 30), {"memory": 2}) == [
        LimitWrite("memory", "memory.max", str(1 << 30)),
        *NO_SWAP_ONE_OOM_V2,
    ]
    assert plan_limits(Limits(), {"memory": 2}) == NO_SWAP_ONE_OOM_V2
    assert plan_limits(Limits(), {"memory": 1}) == []  # v1 memsw without a limit: unlimited


def test_a_limit_the_host_cannot_apply_names_every_missing_controller() -> None:
    with pytest.raises(CgroupError) as raised:
        plan_limits(ALL, {"cpu": 2, "memory": 2})
    message = str(raised.value)
    assert "'pids'" in message
    assert "'cpuset'" in message
    assert "'memory'" not in message
    assert "Delegate=yes" in message
    assert "remove the limit" in message


# --- Parsers -----------------------------------------------------------------------


def test_parse_flat_and_int() -> None:
    assert parse_flat("user 11\nsystem 39\n") == {"user": 11, "system": 39}
    assert parse_flat("nr_periods 3\nweird line here\n") == {"nr_periods": 3}
    assert parse_flat(None) == {}
    assert parse_int("max\n") is None
    assert parse_int("-1\n") is None  # v1 cfs_quota_us: no quota
    assert parse_int("9223372036854771712\n") is None  # v1 memory: no limit
    assert parse_int("67108864\n") == 64 << 20
    assert parse_int(None) is None


@pytest.mark.parametrize("sample", ["v2/files/memory.stat", "hybrid/files/memory/memory.stat"])
def test_flat_values_reads_the_keys_asked_for_as_parse_flat_does(sample: str) -> None:
    text = (SAMPLES / sample).read_text()
    everything = parse_flat(text)
    first, last = next(iter(everything)), list(everything)[-1]
    # "file" must not match the line of "inactive_file" or "file_mapped"
    keys = (first, "file", "inactive_file", "file_mapped", "total_rss", last, "no_such_key")
    assert flat_values(text, *keys) == {k: everything[k] for k in keys if k in everything}


def test_flat_values_skips_what_parse_flat_skips() -> None:
    assert flat_values("nr_periods 3\nweird line here\nlast 7", "weird", "nr_periods", "last") == {
        "nr_periods": 3,
        "last": 7,
    }
    assert flat_values(None, "any") == flat_values("", "any") == {}


def test_parse_pressure_v2_sample() -> None:
    pressure = parse_pressure((SAMPLES / "v2/files/memory.pressure").read_text())
    assert pressure is not None
    assert pressure.some is not None
    assert pressure.full is not None
    assert pressure.some.avg60 == 0.25
    assert pressure.some.total_seconds == 0.181234
    assert pressure.full.avg300 == 0.04
    assert pressure.full.total_seconds == 0.150001
    assert parse_pressure(None) is None
    old = parse_pressure("some avg10=1.00 avg60=0.50 avg300=0.10 total=5\n")
    assert old is not None
    assert old.full is None


def test_parse_io_stat_v2_sample() -> None:
    devices = parse_io_stat((SAMPLES / "v2/files/io.stat").read_text())
    assert devices == (
        DeviceIo(253, 0, read_bytes=1048576, write_bytes=65536, read_ops=12, write_ops=1),
        DeviceIo(259, 0, read_bytes=4096, write_bytes=0, read_ops=1, write_ops=0),
    )
    assert parse_io_stat("") == ()


def test_parse_blkio_v1_sample() -> None:
    blkio = SAMPLES / "v1/files/blkio"
    devices = parse_blkio(
        (blkio / "blkio.throttle.io_service_bytes_recursive").read_text(),
        (blkio / "blkio.throttle.io_serviced_recursive").read_text(),
    )
    assert devices == (
        DeviceIo(254, 0, read_bytes=4096, write_bytes=65536, read_ops=1, write_ops=1),
    )
    empty = (SAMPLES / "hybrid/files/blkio/blkio.throttle.io_service_bytes_recursive").read_text()
    assert parse_blkio(empty, empty) == ()


def test_working_set_is_usage_less_inactive_file_never_below_zero() -> None:
    assert working_set(100, 30) == 70
    assert working_set(100, 130) == 0
    assert working_set(100, None) == 100
    assert working_set(None, 5) is None
