"""The pod's /etc/hostname, /etc/hosts and /etc/resolv.conf.

podvisor writes them under /run/podvisor/pods/<pod>-<id>/etc/ and the pod's
init bind-mounts each over its /etc counterpart in the pod's mount namespace,
as Docker's init layer does; the host's own files are only ever read.

* hosts: the usual localhost and IPv6 lines, then the pod's hostname: to the
  pod's IP in bridge mode, to 127.0.0.1 in loopback mode (the pod has no
  other address). In host mode the host's own hosts file is copied, as the
  kubelet does for hostNetwork pods, plus the pod's hostname if it is not
  there yet.
* resolv.conf: the host's. A nameserver on a loopback address (the
  systemd-resolved stub 127.0.0.53, a local dnsmasq on 127.0.0.1) answers
  only in the host's namespace, so outside host mode it is replaced by the
  real upstreams systemd-resolved lists in /run/systemd/resolve/resolv.conf.
  Without those it is kept, and bridge mode warns that names will not
  resolve.

* spec.hostAliases are appended to hosts as the kubelet does, under
  "# Entries added by HostAliases."; spec.dnsConfig is merged into
  resolv.conf (`apply_dns_config`), or is all of it with dnsPolicy None.

The render functions are pure; only `write_etc_files` touches the disk.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import DnsConfig, DnsPolicy, HostAlias

HOST_HOSTS = Path("/etc/hosts")
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
#: systemd-resolved's list of the upstream servers its 127.0.0.53 stub asks.
RESOLVED_UPSTREAMS = Path("/run/systemd/resolve/resolv.conf")

_LOCALHOST_LINES = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def render_hostname(hostname: str) -> str:
    return f"{hostname}\n"


def render_hosts(hostname: str, address: str, aliases: Sequence[HostAlias] = ()) -> str:
    """A fresh hosts file: localhost, then *hostname* at *address*, then the *aliases*."""
    text = f"# podvisor-managed hosts file.\n{_LOCALHOST_LINES}{address}\t{hostname}\n"
    return text + render_aliases(aliases)


def render_host_mode_hosts(
    host_hosts: str, hostname: str, address: str, aliases: Sequence[HostAlias] = ()
) -> str:
    """The host's hosts file, plus *hostname* at *address* unless it already resolves,
    then the *aliases*."""
    names = {name for line in host_hosts.splitlines() for name in _names_in(line)}
    text = host_hosts if not host_hosts or host_hosts.endswith("\n") else host_hosts + "\n"
    if hostname not in names:
        text += f"{address}\t{hostname}\n"
    return text + render_aliases(aliases)


def render_aliases(aliases: Sequence[HostAlias]) -> str:
    """spec.hostAliases as the kubelet appends them to a pod's hosts file."""
    if not aliases:
        return ""
    lines = "".join(a.ip + "\t" + "\t".join(a.hostnames) + "\n" for a in aliases)
    return "\n# Entries added by HostAliases.\n" + lines


def _names_in(hosts_line: str) -> list[str]:
    fields = hosts_line.split("#", 1)[0].split()
    return fields[1:]


@frozen
class ResolvConf:
    text: str
    #: A loopback nameserver was kept because no upstream was found.
    unreachable: list[str]


def render_resolv_conf(host_text: str, upstream_text: str | None) -> ResolvConf:
    """The host's resolv.conf with loopback nameservers replaced by *upstream_text*'s.

    *upstream_text* is systemd-resolved's upstream list, or None without it.
    """
    loopback = [ns for ns in _nameservers(host_text) if _is_loopback(ns)]
    if not loopback:
        return ResolvConf(host_text, [])
    upstreams = [ns for ns in _nameservers(upstream_text or "") if not _is_loopback(ns)]
    if not upstreams:
        return ResolvConf(host_text, loopback)
    lines: list[str] = []
    for line in host_text.splitlines():
        server = _nameserver_of(line)
        if server is not None and _is_loopback(server):
            lines += [f"nameserver {ns}" for ns in upstreams]  # where the first one was
            upstreams = []
            continue
        lines.append(line)
    return ResolvConf("\n".join(lines) + "\n", [])


def apply_dns_config(text: str, policy: DnsPolicy, config: DnsConfig) -> str:
    """The pod's resolv.conf from *text* (the host's) and spec.dnsPolicy/dnsConfig.

    As the kubelet does it: with dnsPolicy None the file is dnsConfig alone;
    otherwise dnsConfig's nameservers and search domains follow the host's
    (duplicates dropped; at most 3 nameservers, which is all a resolver
    reads) and its options replace the host's of the same name.
    """
    if policy is DnsPolicy.NONE:
        servers: list[str] = []
        searches: list[str] = []
        options: dict[str, str | None] = {}
        other: list[str] = []
    else:
        servers, searches, options, other = _parse_resolv_conf(text)
        if not (config.nameservers or config.searches or config.options):
            return text
    servers = list(dict.fromkeys([*servers, *config.nameservers]))[:3]
    searches = list(dict.fromkeys([*searches, *config.searches]))
    options = {**options, **dict(config.options)}
    lines = [*other, *(f"nameserver {ns}" for ns in servers)]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        words = (name if value is None else f"{name}:{value}" for name, value in options.items())
        lines.append("options " + " ".join(words))
    return "\n".join(lines) + "\n"


def nameservers_left_out(text: str, policy: DnsPolicy, config: DnsConfig) -> list[str]:
    """The nameservers `apply_dns_config` leaves out of *text* + *config* (only 3 fit)."""
    host = [] if policy is DnsPolicy.NONE else _nameservers(text)
    return list(dict.fromkeys([*host, *config.nameservers]))[3:]


def without_nameservers(text: str, dropped: Sequence[str]) -> str:
    """*text* less the nameserver lines of *dropped*."""

    lines = (line for line in text.splitlines() if _nameserver_of(line) not in dropped)
    return "\n".join(lines) + "\n"


def _parse_resolv_conf(text: str) -> tuple[list[str], list[str], dict[str, str | None], list[str]]:
    """(nameservers, search domains, options, every other line) of a resolv.conf."""
    servers: list[str] = []
    searches: list[str] = []
    options: dict[str, str | None] = {}
    other: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if (server := _nameserver_of(line)) is not None:
            servers.append(server)
        elif fields[:1] in (["search"], ["domain"]):
            searches = fields[1:]  # the last search or domain line wins, as in the resolver
        elif fields[:1] == ["options"]:
            for word in fields[1:]:
                name, colon, value = word.partition(":")
                options[name] = value if colon else None
        else:
            other.append(line)
    return servers, searches, options, other


def _nameservers(text: str) -> list[str]:
    return [ns for line in text.splitlines() if (ns := _nameserver_of(line)) is not None]


def _nameserver_of(line: str) -> str | None:
    """The server a ``nameserver`` line names; None for any other line."""
    fields = line.split()
    return fields[1] if len(fields) > 1 and fields[0] == "nameserver" else None


def _is_loopback(server: str) -> bool:
    try:
        return ipaddress.ip_address(server.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def write_etc_files(directory: Path, files: dict[str, str]) -> dict[str, str]:
    """Write each /etc file's text under *directory*; target in the pod -> file written."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    written = {}
    for target, text in files.items():
        path = directory / Path(target).name
        path.write_text(text)
        path.chmod(0o644)
        written[target] = str(path)
    return written


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
