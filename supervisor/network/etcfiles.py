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

The render functions are pure; only `write_etc_files` touches the disk.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

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


def render_hosts(hostname: str, address: str) -> str:
    """A fresh hosts file: localhost, then *hostname* at *address*."""
    return f"# podvisor-managed hosts file.\n{_LOCALHOST_LINES}{address}\t{hostname}\n"


def render_host_mode_hosts(host_hosts: str, hostname: str, address: str) -> str:
    """The host's hosts file, plus *hostname* at *address* unless it already resolves."""
    names = {name for line in host_hosts.splitlines() for name in _names_in(line)}
    text = host_hosts if not host_hosts or host_hosts.endswith("\n") else host_hosts + "\n"
    return text if hostname in names else f"{text}{address}\t{hostname}\n"


def _names_in(hosts_line: str) -> list[str]:
    fields = hosts_line.split("#", 1)[0].split()
    return fields[1:]


@dataclass(frozen=True)
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
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1 and _is_loopback(fields[1]):
            lines += [f"nameserver {ns}" for ns in upstreams]  # where the first one was
            upstreams = []
            continue
        lines.append(line)
    return ResolvConf("\n".join(lines) + "\n", [])


def _nameservers(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[0] == "nameserver":
            found.append(fields[1])
    return found


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
