"""The pure parts: /etc files, request checks, mode choice, address pool records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.manifest.model import DnsConfig, DnsPolicy, HostAlias
from podvisor.supervisor.network import NetworkMode, NetworkRequest, create, nat, records
from podvisor.supervisor.network.etcfiles import (
    apply_dns_config,
    nameservers_left_out,
    render_host_mode_hosts,
    render_hosts,
    render_resolv_conf,
    without_nameservers,
)
from podvisor.supervisor.network.ipam import AddressPool
from podvisor.supervisor.network.records import Owner
from tests.network.helpers import REPO

STUB = "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
UPSTREAMS = "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n"


def test_hosts_maps_the_hostname_to_the_pod_ip_after_localhost() -> None:
    hosts = render_hosts("web", "10.231.0.2")
    assert hosts.splitlines()[1] == "127.0.0.1\tlocalhost"
    assert "::1\tlocalhost ip6-localhost ip6-loopback" in hosts
    assert hosts.endswith("10.231.0.2\tweb\n")


def test_host_mode_hosts_is_the_hosts_file_plus_a_missing_hostname() -> None:
    host = "127.0.0.1 localhost\n127.0.1.1 vm\n"
    assert render_host_mode_hosts(host, "web", "192.0.2.2") == host + "192.0.2.2\tweb\n"
    assert render_host_mode_hosts(host, "vm", "192.0.2.2") == host


def test_resolv_conf_replaces_the_loopback_stub_by_the_upstreams() -> None:
    resolv = render_resolv_conf(STUB, UPSTREAMS)
    assert resolv.unreachable == []
    assert resolv.text == (
        "# This is /run/systemd/resolve/stub-resolv.conf\n"
        "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
        "options edns0 trust-ad\nsearch lan\n"
    )


def test_resolv_conf_without_upstreams_is_kept_and_flagged() -> None:
    resolv = render_resolv_conf(STUB, None)
    assert resolv.text == STUB
    assert resolv.unreachable == ["127.0.0.53"]


def test_resolv_conf_with_real_nameservers_is_copied() -> None:
    text = "nameserver 192.0.2.53\n"
    assert render_resolv_conf(text, UPSTREAMS).text == text


ALIASES = (HostAlias("10.1.2.3", ("db", "db.local")), HostAlias("fe80::1", ("router",)))


def test_host_aliases_follow_the_pods_own_lines_as_the_kubelet_writes_them() -> None:
    tail = "\n# Entries added by HostAliases.\n10.1.2.3\tdb\tdb.local\nfe80::1\trouter\n"
    assert render_hosts("web", "10.231.0.2", ALIASES).endswith("10.231.0.2\tweb\n" + tail)
    host = "127.0.0.1 localhost\n"
    assert render_host_mode_hosts(host, "web", "192.0.2.2", ALIASES) == (
        host + "192.0.2.2\tweb\n" + tail
    )
    assert render_hosts("web", "10.231.0.2") == render_hosts("web", "10.231.0.2", ())


def test_dns_config_is_merged_into_the_hosts_resolv_conf() -> None:
    host = "# the host's\nnameserver 192.0.2.53\nsearch lan\noptions ndots:1 edns0\n"
    config = DnsConfig(
        nameservers=("192.0.2.53", "1.1.1.1"),
        searches=("svc.example", "lan"),
        options=(("ndots", "5"), ("rotate", None)),
    )
    assert apply_dns_config(host, DnsPolicy.CLUSTER_FIRST, config) == (
        "# the host's\nnameserver 192.0.2.53\nnameserver 1.1.1.1\n"
        "search lan svc.example\noptions ndots:5 edns0 rotate\n"
    )
    # Nothing asked, nothing changed; at most three nameservers, as resolv.conf reads.
    assert apply_dns_config(host, DnsPolicy.DEFAULT, DnsConfig()) == host
    many = DnsConfig(nameservers=("1.1.1.1", "1.0.0.1", "8.8.8.8"))
    assert apply_dns_config(host, DnsPolicy.DEFAULT, many).count("nameserver") == 3
    assert nameservers_left_out(host, DnsPolicy.DEFAULT, many) == ["8.8.8.8"]  # said at start
    assert nameservers_left_out(host, DnsPolicy.NONE, many) == []


def test_dns_policy_none_is_dns_config_alone() -> None:
    config = DnsConfig(nameservers=("1.1.1.1",), searches=("example",))
    assert apply_dns_config(STUB, DnsPolicy.NONE, config) == (
        "nameserver 1.1.1.1\nsearch example\n"
    )


def test_unreachable_loopback_servers_can_be_dropped() -> None:
    assert without_nameservers(STUB, ["127.0.0.53"]) == (
        "# This is /run/systemd/resolve/stub-resolv.conf\noptions edns0 trust-ad\nsearch lan\n"
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pod_name", "Web/../x", "DNS-1123 subdomain"),
        ("hostname", "web\n10.0.0.1 evil", "not a valid host name"),
        ("hostname", "x" * 64, "at most 63"),
        ("bridge", "a-much-too-long-name", "not a valid interface name"),
    ],
)
def test_bad_names_are_refused(field: str, value: str, message: str) -> None:
    fields = {"pod_name": "web", "pod_uid": "u", "hostname": "web", field: value}
    with pytest.raises(NetworkError, match=message):
        NetworkRequest(**fields).check_names()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subnet", "message"), [("10.231.0.0/31", "too small"), ("10.231.0.1/24", "not an IPv4")]
)
def test_bad_subnets_are_refused(subnet: str, message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        NetworkRequest("web", "u", "web", subnet=subnet).checked_subnet()


ALL_CAPS = "CapEff:\t000001ffffffffff\n"


def test_default_mode_falls_back_to_host_with_the_reason() -> None:
    no_caps = "Name:\tx\nCapEff:\t0000000000000000\n"
    reason = create.bridge_unavailable_reason(no_caps)
    assert reason is not None
    assert "CAP_NET_ADMIN" in reason
    assert create.bridge_unavailable_reason(ALL_CAPS) is None


def test_explicit_bridge_without_privileges_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(create, "bridge_unavailable_reason", lambda: "no CAP_NET_ADMIN")
    assert create.choose_mode(None) == (
        NetworkMode.HOST,
        ["network: the pod uses the host's network: no CAP_NET_ADMIN"],
    )
    with pytest.raises(NetworkError, match="no CAP_NET_ADMIN"):
        create.choose_mode(NetworkMode.BRIDGE)
    assert create.choose_mode(NetworkMode.LOOPBACK) == (NetworkMode.LOOPBACK, [])


def test_a_missing_nft_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PATH with an nft that is not executable, then one with a real one.
    (tmp_path / "nft").write_text("#!/bin/sh\necho '{\"nftables\": []}'\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not nat.nft_available()
    assert "apt-get install nftables" in (create.bridge_unavailable_reason(ALL_CAPS) or "")
    with pytest.raises(NetworkError, match=r"needs the nft program.*apt-get install nftables"):
        nat.disable_masquerade("pvbr-gone")
    (tmp_path / "nft").chmod(0o755)
    assert nat.nft_available()
    assert create.bridge_unavailable_reason(ALL_CAPS) is None


def test_remove_tree_removes_a_tree_but_not_what_its_symlinks_point_to(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_text("not ours")
    tree = tmp_path / "pod" / "etc"
    (tree / "deeper").mkdir(parents=True)
    (tree / "hosts").write_text("127.0.0.1 localhost\n")
    (tree / "deeper" / "x").write_text("x")
    (tree / "link-to-dir").symlink_to(kept)
    (tree / "link-to-file").symlink_to(kept / "file")
    records.remove_tree(tmp_path / "pod")
    assert not (tmp_path / "pod").exists()
    assert (kept / "file").read_text() == "not ours"
    records.remove_tree(tmp_path / "pod")  # gone already: nothing to do, no error
    records.remove_tree(kept / "file")  # not a directory: left alone, as rmtree would
    assert (kept / "file").exists()


def test_a_stale_allocation_is_reclaimed_and_release_needs_the_owner(tmp_path: Path) -> None:
    pool = AddressPool(IPv4Network("10.231.5.0/29"), tmp_path)
    dead = Owner(2**22 + 1, 1)  # above pid_max's default: never alive
    me = Owner.current()
    two, three = IPv4Address("10.231.5.2"), IPv4Address("10.231.5.3")
    assert pool.allocate(dead, "old") == two
    assert pool.allocate(me, "a") == two  # taken over from the dead owner
    assert pool.allocate(dead, "older") == three
    assert pool.reclaim_stale() == [three]
    assert not pool.release(two, dead)
    assert [(a.address, a.pod) for a in pool.live()] == [(two, "a")]
    assert pool.release(two, me)
    pool.remove_if_empty()
    assert not pool.dir.exists()


def test_an_owner_in_another_pid_namespace_is_judged_by_its_lock(tmp_path: Path) -> None:
    """Its pid means nothing here; the flock it holds while it lives does."""
    here = Owner.current()
    assert here.pidns == os.stat("/proc/self/ns/pid").st_ino
    assert Owner.from_json(here.to_json()) == here
    assert Owner.from_json({"pid": 5, "start": 7}) == Owner(5, 7)  # a record of before
    assert not Owner(2**22 + 1, 1, pidns=here.pidns).alive()
    # An owner of another namespace that never took a lock (or whose file is gone): dead.
    assert not Owner(2**22 + 1, 1, pidns=here.pidns + 1).alive()
    # A podvisor in a child PID namespace (its own /proc) sees this process by its lock,
    # and a dead one's lock no more once it has died.
    record = tmp_path / "owner.json"
    judge = (
        "import json, sys; from podvisor.supervisor.network.records import Owner; "
        "print(Owner.from_json(json.load(open(sys.argv[1]))).alive())"
    )
    in_a_child_namespace = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable]

    def judged(owner: Owner) -> str:
        record.write_text(json.dumps(owner.to_json()))
        seen = subprocess.run(
            [*in_a_child_namespace, "-c", judge, str(record)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return seen.stdout.strip()

    assert judged(here) == "True"
    take = "from podvisor.supervisor.network.records import Owner; import json; "
    take += "print(json.dumps(Owner.current().to_json()), flush=True)"
    gone = subprocess.run([sys.executable, "-c", take], capture_output=True, text=True, check=True)
    dead = Owner.from_json(json.loads(gone.stdout))
    assert not dead.lock_path.exists()  # it removed its lock as it exited
    assert judged(dead) == "False"
    # SIGKILLed, it removes nothing: the kernel drops its lock all the same.
    holder = subprocess.Popen(
        [sys.executable, "-c", take + "; import time; time.sleep(600)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        killed = Owner.from_json(json.loads(holder.stdout.readline()))
        assert judged(killed) == "True"
    finally:
        holder.kill()
        holder.communicate()
    assert killed.lock_path.exists()
    assert judged(killed) == "False"
    assert not killed.lock_path.exists()  # the judge removed the dead owner's file


def test_a_full_pool_is_a_clear_error(tmp_path: Path) -> None:
    pool = AddressPool(IPv4Network("10.231.5.0/30"), tmp_path)  # gateway .1, one pod: .2
    pool.allocate(Owner.current(), "a")
    with pytest.raises(NetworkError, match=r"no free address left in 10\.231\.5\.0/30"):
        pool.allocate(Owner.current(), "b")


def test_concurrent_supervisors_get_distinct_addresses(tmp_path: Path) -> None:
    allocate = """
import sys
from ipaddress import IPv4Network
from pathlib import Path
from podvisor.supervisor.network.ipam import AddressPool
from podvisor.supervisor.network.records import Owner
pool = AddressPool(IPv4Network("10.231.6.0/24"), Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()  # go
print(pool.allocate(Owner.current(), "p"), flush=True)
sys.stdin.readline()  # stay alive (owning the address) until told to end
"""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", allocate, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={"PYTHONPATH": str(REPO)},
        )
        for _ in range(6)
    ]
    try:
        for c in children:
            assert c.stdout is not None
            assert c.stdout.readline() == "ready\n"
        for c in children:  # all at once, as close as a test can make it
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        addresses = [c.stdout.readline().strip() for c in children if c.stdout]
        assert sorted(addresses) == [f"10.231.6.{i}" for i in range(2, 8)]
    finally:
        for c in children:
            c.kill()
            c.wait()
            for stream in (c.stdin, c.stdout):
                if stream:
                    stream.close()
