"""spec.securityContext.sysctls: set in the pod's own namespaces, never the host's.

The safe set is allowed, other namespaced sysctls only with the pod's
`podvisor.io/allowed-unsafe-sysctls` (the kubelet's --allowed-unsafe-sysctls),
node-level ones never, and none in a namespace the pod shares with the host.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from podvisor.init import protocol, sysctls
from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import load
from podvisor.supervisor.manifest.sysctls import dotted, safe_names
from tests.faults.pods import podvisor_command
from tests.security.conftest import PYTHON, run_pod, sh

PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
SYNCOOKIES = "/proc/sys/net/ipv4/tcp_syncookies"
DROP_SYS_ADMIN = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]
SHM_RMID = "/proc/sys/kernel/shm_rmid_forced"

#: Binds port 80 as uid 4242: only allowed where ip_unprivileged_port_start <= 80.
BIND_80 = (
    f"{PYTHON} -c 'import socket; s = socket.socket(); "
    's.bind(("127.0.0.1", 80)); print("bound", s.getsockname()[1])\' || echo bind-refused'
)


@pytest.mark.needs_root
def test_a_pod_sets_safe_sysctls_in_its_own_namespaces(run_dir: Path) -> None:
    host = (Path(PORT_START).read_text(), Path(SHM_RMID).read_text())
    wanted_shm = "0" if host[1].strip() == "1" else "1"
    ran = run_pod(
        run_dir,
        "sysctl-safe",
        f"""
        securityContext:
          sysctls:
          - {{name: net.ipv4.ip_unprivileged_port_start, value: "80"}}
          - {{name: kernel/shm_rmid_forced, value: "{wanted_shm}"}}
        containers:
        - name: c
          securityContext: {{runAsUser: 4242}}
          command: {sh(f"cat {PORT_START} {SHM_RMID}; {BIND_80}")}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("c") == ["80", wanted_shm, "bound 80"]
    assert (Path(PORT_START).read_text(), Path(SHM_RMID).read_text()) == host


@pytest.mark.needs_root
def test_without_the_sysctl_the_same_bind_is_refused(run_dir: Path) -> None:
    """The check above can fail: port 80 is privileged in a pod that does not lower the start."""
    ran = run_pod(
        run_dir,
        "sysctl-none",
        f"""
        containers:
        - name: c
          securityContext: {{runAsUser: 4242}}
          command: {sh(BIND_80)}
        """,
    )
    assert ran.of("c") == ["bind-refused"], ran


@pytest.mark.needs_root
def test_an_allowed_unsafe_sysctl_is_set(run_dir: Path) -> None:
    host = Path("/proc/sys/net/core/somaxconn").read_text()
    ran = run_pod(
        run_dir,
        "sysctl-unsafe",
        f"""
        securityContext:
          sysctls: [{{name: net.core.somaxconn, value: "777"}}]
        containers:
        - name: c
          command: {sh("cat /proc/sys/net/core/somaxconn")}
        """,
        annotations={"podvisor.io/allowed-unsafe-sysctls": "net.core.*"},
    )
    assert ran.of("c") == ["777"], ran
    assert Path("/proc/sys/net/core/somaxconn").read_text() == host


@pytest.mark.needs_root
def test_without_a_network_namespace_of_its_own_the_pod_does_not_start(run_dir: Path) -> None:
    """Without CAP_SYS_ADMIN the pod uses the host's network: its init refuses the sysctl."""
    path = run_dir / "unprivileged.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: sysctl-unprivileged}}
            spec:
              restartPolicy: Never
              securityContext:
                sysctls: [{{name: net.ipv4.tcp_syncookies, value: "{_other(SYNCOOKIES)}"}}]
              containers:
              - name: c
                command: [sh, -c, "echo started"]
            """)
    )
    host = Path(SYNCOOKIES).read_text()
    done = subprocess.run(
        [*DROP_SYS_ADMIN, *podvisor_command(), "run", "--metrics-address", "off", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PODVISOR_RUN_DIR": str(run_dir)},
    )  # fmt: skip
    assert done.returncode != 0
    assert "started" not in done.stdout
    assert (
        "sysctl net.ipv4.tcp_syncookies: the pod has no network namespace of its own, "
        "so it would be this machine's"
    ) in done.stderr
    assert Path(SYNCOOKIES).read_text() == host


def _other(path: str) -> str:
    """A value unlike the host's, so that a write to the host's would show."""
    return "0" if Path(path).read_text().strip() != "0" else "1"


# --- Refusals, each at its line ------------------------------------------------------------


def problems(spec: str, annotations: str = "") -> list[str]:
    meta = f"  annotations:\n{textwrap.indent(annotations, '    ')}\n" if annotations else ""
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n"
        + meta
        + "spec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip(), "  ")
        + "\n  containers:\n  - name: web\n    command: [sleep, infinity]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    return [str(p) for p in caught.value.problems]


def test_an_unsafe_sysctl_is_refused_with_how_to_allow_it() -> None:
    found = problems(
        """
        securityContext:
          sysctls:
          - {name: kernel.shm_rmid_forced, value: "1"}
          - {name: net.core.somaxconn, value: "1024"}
        """
    )
    assert found == [
        (
            "pod.yaml:9:14: spec.securityContext.sysctls[1].name: forbidden sysctl: "
            "'net.core.somaxconn' not allowlisted: it is namespaced but outside the kubelet's "
            "safe set; allow it for this pod with the annotation "
            "podvisor.io/allowed-unsafe-sysctls: 'net.core.somaxconn' (as the kubelet's "
            "--allowed-unsafe-sysctls allows it on a node)"
        )
    ]


def test_a_node_level_sysctl_is_refused_even_when_allowed() -> None:
    found = problems(
        """
        securityContext:
          sysctls: [{name: vm.swappiness, value: "1"}]
        """,
        annotations='podvisor.io/allowed-unsafe-sysctls: "vm.*"',
    )
    assert len(found) == 2
    assert found[0].startswith("pod.yaml:6:41: metadata.annotations[podvisor.io/allowed-unsafe")
    assert "the sysctls 'vm.*' are not known to be namespaced" in found[0]
    assert found[1].startswith("pod.yaml:9:22: spec.securityContext.sysctls[0].name: ")
    assert "forbidden sysctl: 'vm.swappiness' not allowlisted: no namespace holds it" in found[1]


@pytest.mark.parametrize(
    ("spec", "annotation", "message"),
    [
        (
            "hostNetwork: true",
            "",
            "'net.ipv4.tcp_syncookies': may not be specified when 'hostNetwork' is true",
        ),
        (
            "",
            "podvisor.io/network: host",
            "'net.ipv4.tcp_syncookies': may not be specified with podvisor.io/network: host",
        ),
        (
            "hostIPC: true",
            "",
            "'kernel.shm_rmid_forced': may not be specified when 'hostIPC' is true",
        ),
    ],
)
def test_a_sysctl_of_a_namespace_shared_with_the_host_is_refused(
    spec: str, annotation: str, message: str
) -> None:
    found = problems(
        f"""
        {spec}
        securityContext:
          sysctls:
          - {{name: net.ipv4.tcp_syncookies, value: "1"}}
          - {{name: kernel.shm_rmid_forced, value: "1"}}
        """,
        annotations=annotation,
    )
    assert len(found) == 1, found
    assert message in found[0]


def test_names_are_checked_as_the_api_server_checks_them() -> None:
    found = problems(
        """
        securityContext:
          sysctls:
          - {name: net/ipv4/tcp_syncookies, value: "1"}
          - {name: net.ipv4.tcp_syncookies, value: "0"}
          - {name: "Net.IPv4", value: "0"}
          - {name: kernel.shm_rmid_forced}
        """
    )
    assert [p.split(": ", 2)[1:] for p in found] == [
        ["spec.securityContext.sysctls[1].name", "duplicate value 'net.ipv4.tcp_syncookies'"],
        [
            "spec.securityContext.sysctls[2].name",
            "'Net.IPv4': must have at most 253 characters and match sysctl naming rules",
        ],
        [
            "spec.securityContext.sysctls[3].value",
            'required: the value to write, as a string (e.g. "1")',
        ],
    ]


def test_the_slash_form_names_a_dot_inside_a_word() -> None:
    assert dotted("net/ipv4/conf/eth0.100/rp_filter") == "net.ipv4.conf.eth0/100.rp_filter"
    assert dotted("net.ipv4.tcp_syncookies") == "net.ipv4.tcp_syncookies"
    assert sysctls.path_of("net.ipv4.conf.eth0/100.rp_filter") == (
        "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
    )


def test_the_safe_set_follows_the_kernel_as_the_kubelets_does() -> None:
    assert "net.ipv4.tcp_keepalive_time" not in safe_names("4.4.0-generic")
    assert "net.ipv4.ip_local_reserved_ports" in safe_names("4.4.0-generic")
    assert "net.ipv4.tcp_rmem" in safe_names("6.1.0-18-amd64")


@pytest.mark.parametrize(
    ("unshare", "netns", "name"),
    [
        ((), None, "net.ipv4.tcp_syncookies"),  # the host's network namespace
        (("mnt", "pid"), "/run/netns/x", "kernel.shm_rmid_forced"),  # the host's IPC one
        (("mnt", "ipc"), "/run/netns/x", "vm.swappiness"),  # no namespace's at all
    ],
)
def test_the_init_never_writes_a_sysctl_of_the_hosts(
    unshare: tuple[str, ...], netns: str | None, name: str
) -> None:
    plan = protocol.Plan(unshare=unshare, netns=netns, sysctls=((name, "1"),))
    with pytest.raises(OSError, match=f"sysctl {name}: .* so it would be this machine's"):
        sysctls.apply(plan)
