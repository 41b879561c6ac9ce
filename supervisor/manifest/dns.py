"""`spec.hostAliases`, `spec.dnsPolicy` and `spec.dnsConfig`: the pod's name files.

Checked as the API server checks them (ValidateHostAliases, validateDNSPolicy,
validatePodDNSConfig): an alias needs an IP address and host names; with
dnsPolicy None, dnsConfig must name at least one nameserver; at most 3
nameservers, 32 search domains of at most 2048 characters together. The
network code writes them into the pod's /etc/hosts and /etc/resolv.conf
(`podvisor.supervisor.network.etcfiles`).
"""

from __future__ import annotations

import ipaddress

from podvisor.supervisor.manifest import fields, names
from podvisor.supervisor.manifest.model import DnsConfig, DnsPolicy, HostAlias
from podvisor.supervisor.manifest.nodes import Fields, fields_of

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARACTERS = 2048


def host_aliases(spec: Fields) -> tuple[HostAlias, ...]:
    found = []
    for item, path in spec.items("hostAliases"):
        f = fields_of(spec.report, item, path, fields.HOST_ALIAS)
        if f is None:
            continue
        ip = None
        if f.require("ip", "the address the host names stand for"):
            ip = _address(f, "ip", f.string("ip"))
        hostnames = f.strings("hostnames")
        if "hostnames" in f and not hostnames:
            f.error("hostnames", "list at least one host name")
        bad = [problem for name in hostnames if (problem := names.dns1123_subdomain(name))]
        for problem in bad:
            f.error("hostnames", problem)
        if ip is not None and hostnames and not bad:
            found.append(HostAlias(ip, hostnames))
    return tuple(found)


def dns_policy(spec: Fields) -> DnsPolicy:
    return spec.choice("dnsPolicy", DnsPolicy, DnsPolicy.CLUSTER_FIRST)


def dns_config(spec: Fields, policy: DnsPolicy) -> DnsConfig:
    f = spec.mapping("dnsConfig", fields.POD_DNS_CONFIG)
    if f is None:
        if policy is DnsPolicy.NONE:
            spec.error("dnsConfig", "required with dnsPolicy: None (at least one nameserver)")
        return DnsConfig()
    servers = f.strings("nameservers")
    nameservers = tuple(a for text in servers if (a := _address(f, "nameservers", text)))
    if len(servers) > MAX_NAMESERVERS:
        f.error("nameservers", f"at most {MAX_NAMESERVERS} nameservers (resolv.conf reads no more)")
    if policy is DnsPolicy.NONE and not servers:
        f.error("nameservers", "required with dnsPolicy: None: at least one nameserver")
    searches = f.strings("searches")
    for search in searches:
        if problem := names.dns1123_subdomain(search.removesuffix(".")):
            f.error("searches", problem)
    if len(searches) > MAX_SEARCHES:
        f.error("searches", f"at most {MAX_SEARCHES} search domains")
    if len(" ".join(searches)) > MAX_SEARCH_CHARACTERS:
        f.error("searches", f"at most {MAX_SEARCH_CHARACTERS} characters of search domains")
    return DnsConfig(nameservers, searches, _options(f))


def _options(f: Fields) -> tuple[tuple[str, str | None], ...]:
    found = []
    for item, path in f.items("options"):
        option = fields_of(f.report, item, path, fields.POD_DNS_CONFIG_OPTION)
        if option is None or not option.require("name", "the resolver option, e.g. ndots"):
            continue
        name = option.string("name")
        value = option.string("value")
        if name is not None and (not name or _has_space(name)):
            option.error("name", f"{name!r} is not a resolver option name (e.g. ndots)")
        elif value is not None and _has_space(value):
            option.error("value", f"{value!r}: a resolver option's value has no spaces")
        elif name is not None:
            found.append((name, value))
    return tuple(found)


def _has_space(text: str) -> bool:
    """Whether *text* would break a resolv.conf line (a space, a tab, a newline)."""
    return any(c.isspace() for c in text)


def _address(f: Fields, key: str, text: str | None) -> str | None:
    """*text* as an IP address; None, reported at *key*, when it is not one."""
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        f.error(key, f"{text!r} is not an IPv4 or IPv6 address")
        return None
