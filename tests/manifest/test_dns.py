"""spec.hostAliases, spec.dnsPolicy and spec.dnsConfig: read, and refused as the API server does."""

from __future__ import annotations

import pytest

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import load
from podvisor.supervisor.manifest.model import DnsConfig, DnsPolicy, HostAlias
from tests.manifest.test_rules import pod_yaml


def problems(spec: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", pod_yaml(spec=spec))
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def test_host_aliases_and_dns_config_are_read() -> None:
    spec = """\
hostAliases:
- {ip: 10.1.2.3, hostnames: [db, db.local]}
- {ip: "fe80::1", hostnames: [router]}
dnsPolicy: None
dnsConfig:
  nameservers: [1.1.1.1, "2606:4700:4700::1111"]
  searches: [svc.example, example.]
  options: [{name: ndots, value: "2"}, {name: edns0}]
"""
    pod = load("pod.yaml", pod_yaml(spec=spec)).pod
    assert pod.spec.host_aliases == (
        HostAlias("10.1.2.3", ("db", "db.local")),
        HostAlias("fe80::1", ("router",)),
    )
    assert pod.spec.dns_policy is DnsPolicy.NONE
    assert pod.spec.dns_config == DnsConfig(
        ("1.1.1.1", "2606:4700:4700::1111"),
        ("svc.example", "example."),
        (("ndots", "2"), ("edns0", None)),
    )
    assert pod.spec.own_name_files


def test_the_defaults_ask_for_nothing() -> None:
    spec = load("pod.yaml", pod_yaml()).pod.spec
    assert (spec.host_aliases, spec.dns_policy, spec.dns_config) == (
        (),
        DnsPolicy.CLUSTER_FIRST,
        DnsConfig(),
    )
    assert not spec.own_name_files


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (
            "hostAliases: [{ip: 10.0.0.300, hostnames: [db]}]",
            "spec.hostAliases[0].ip: '10.0.0.300' is not an IPv4 or IPv6 address",
        ),
        (
            "hostAliases: [{hostnames: [db]}]",
            "spec.hostAliases[0].ip: required: the address the host names stand for",
        ),
        ("hostAliases: [{ip: 10.0.0.1, hostnames: []}]", "list at least one host name"),
        ("hostAliases: [{ip: 10.0.0.1, hostnames: [Db_1]}]", "'Db_1' is not a valid host name"),
        ("dnsPolicy: ClusterLast", "'ClusterLast' is not one of ClusterFirst"),
        ("dnsPolicy: None", "spec.dnsConfig: required with dnsPolicy: None"),
        (
            "dnsPolicy: None\ndnsConfig: {searches: [a.b]}",
            "spec.dnsConfig.nameservers: required with dnsPolicy: None",
        ),
        (
            "dnsConfig: {nameservers: [1.1.1.1, 1.0.0.1, 8.8.8.8, 8.8.4.4]}",
            "spec.dnsConfig.nameservers: at most 3 nameservers",
        ),
        ("dnsConfig: {nameservers: [localhost]}", "'localhost' is not an IPv4 or IPv6 address"),
        ("dnsConfig: {searches: ['-bad']}", "'-bad' is not a valid host name"),
        ("dnsConfig: {options: [{value: '1'}]}", "spec.dnsConfig.options[0].name: required"),
        (
            'dnsConfig: {options: [{name: ndots, value: "1\\nnameserver 6.6.6.6"}]}',
            "spec.dnsConfig.options[0].value: '1\\nnameserver 6.6.6.6': a resolver option's",
        ),
        ("dnsConfig: {nameserver: [1.1.1.1]}", "did you mean 'nameservers'?"),
    ],
)
def test_what_the_api_server_refuses_is_refused_by_field(spec: str, said: str) -> None:
    found = problems(spec)
    assert any(said in line for line in found), found
