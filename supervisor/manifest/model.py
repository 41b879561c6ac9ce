"""The pod podvisor runs: the supported subset of a Kubernetes Pod, typed.

Everything here is a frozen dataclass built by `podvisor.supervisor.manifest.load`;
nothing in this module reads files or validates. Defaults are Kubernetes'
defaults, already applied: a `Probe` built from `livenessProbe: {exec: ...}`
carries `period_seconds=10`, a `ContainerPort` carries `protocol="TCP"`, a
`Resources` whose manifest gave only limits carries requests equal to them.
Attribute names are the manifest's field names in snake_case; sizes are in
whole bytes and CPU in whole millicores, rounded as Kubernetes rounds them.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import field
from enum import StrEnum

from podvisor.supervisor.frozen import frozen


class RestartPolicy(StrEnum):
    """`spec.restartPolicy`, and `restartPolicy` of a sidecar (only `Always` there)."""

    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class ContainerKind(StrEnum):
    """Where a container sits in the start order."""

    INIT = "init"  # spec.initContainers without restartPolicy: run to completion, in order
    SIDECAR = "sidecar"  # spec.initContainers with restartPolicy: Always: started, kept running
    MAIN = "main"  # spec.containers


# --- Handlers: what a probe or a hook does --------------------------------------


@frozen
class ExecAction:
    """Run a command in the container's namespaces; exit status 0 is success."""

    command: tuple[str, ...]


@frozen
class HTTPGetAction:
    """GET scheme://host:port/path; a status in [200, 400) is success.

    `port` is a number, or the name of one of the container's ports (the
    loader has checked that the name exists). `host` None means the pod's IP.
    """

    path: str
    port: int | str
    host: str | None = None
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()


@frozen
class TCPSocketAction:
    """Open a TCP connection to host:port; connecting is success."""

    port: int | str
    host: str | None = None


@frozen
class GRPCAction:
    """The gRPC health-checking protocol. Refused by the loader for now; kept for the model."""

    port: int
    service: str | None = None


@frozen
class SleepAction:
    """Sleep, as a lifecycle hook (`preStop: {sleep: {seconds: 5}}`)."""

    seconds: int


ProbeHandler = ExecAction | HTTPGetAction | TCPSocketAction | GRPCAction
HookHandler = ExecAction | HTTPGetAction | SleepAction


@frozen
class Probe:
    """A liveness, readiness or startup probe, with Kubernetes' defaults applied."""

    handler: ProbeHandler
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    # Liveness and startup probes only: the grace period used when this probe
    # kills the container; None means the pod's terminationGracePeriodSeconds.
    termination_grace_period_seconds: int | None = None


@frozen
class Lifecycle:
    """postStart and preStop hooks."""

    post_start: HookHandler | None = None
    pre_stop: HookHandler | None = None


# --- Container -----------------------------------------------------------------------


@frozen
class ContainerPort:
    """One entry of `ports`. With hostNetwork, host_port defaults to container_port."""

    container_port: int
    name: str | None = None
    host_port: int | None = None
    protocol: str = "TCP"


@frozen
class Resources:
    """Requests and limits. A request left out but limited defaults to the limit."""

    cpu_request_millicores: int | None = None
    cpu_limit_millicores: int | None = None
    memory_request_bytes: int | None = None
    memory_limit_bytes: int | None = None


@frozen
class EnvVar:
    """One `env` entry: a literal value, or `valueFrom.fieldRef.fieldPath`.

    `value` is as written, $(VAR) references unexpanded: `resolve_env` expands
    them as the kubelet does. `field_path` is one of metadata.name,
    metadata.namespace, metadata.uid, metadata.labels['k'],
    metadata.annotations['k'], status.podIP, status.podIPs.
    """

    name: str
    value: str | None = None
    field_path: str | None = None


@frozen
class SecurityContext:
    """The container's securityContext, merged over the pod's (container wins)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    allow_privilege_escalation: bool | None = None
    privileged: bool = False
    # Capability names as Kubernetes writes them: without CAP_, upper case; "ALL" allowed.
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ()
    # Pod-level only in Kubernetes; every container carries the pod's.
    supplemental_groups: tuple[int, ...] = ()
    supplemental_groups_policy: str = "Merge"  # or "Strict"
    fs_group: int | None = None
    read_only_root_filesystem: bool = False
    # "RuntimeDefault", "Localhost" or "Unconfined"; "" when unset (then RuntimeDefault,
    # or Unconfined for a privileged container).
    seccomp_type: str = ""
    seccomp_localhost: str | None = None  # the profile file, with Localhost
    # The compiled filter: a classic BPF program in base64, "" for none (see manifest.seccomp).
    seccomp_filter: str = ""


@frozen
class ContainerSettings:
    """podvisor's own per-container settings, from `podvisor.io/` annotations."""

    pids_limit: int | None = None
    cpuset: str | None = None
    watchdog_usec: int | None = None
    notification_fd: int | None = None
    stop_signal: int = int(signal.SIGTERM)


@frozen
class Container:
    """One container of the pod: a program from the host file system, supervised."""

    name: str
    kind: ContainerKind
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    working_dir: str | None = None
    ports: tuple[ContainerPort, ...] = ()
    resources: Resources = field(default_factory=Resources)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    security_context: SecurityContext = field(default_factory=SecurityContext)
    stdin: bool = False
    tty: bool = False
    image: str | None = None  # looked up by `podvisor check`; `podvisor run` does not use it yet
    image_pull_policy: str | None = None  # Always, IfNotPresent, Never; None: the tag's default
    restart_policy: RestartPolicy | None = None  # ALWAYS for sidecars, else None
    settings: ContainerSettings = field(default_factory=ContainerSettings)

    @property
    def argv(self) -> tuple[str, ...]:
        """command + args, $(VAR) references unexpanded (see `expand_argv`)."""
        return self.command + self.args


# --- Pod ---------------------------------------------------------------------------------


@frozen
class PodSettings:
    """podvisor's own pod-wide settings, from `podvisor.io/` annotations."""

    metrics_address: str | None = None  # "HOST:PORT" or "off"; None: the default
    # "host" | "loopback" | "bridge"; None: podvisor's default. "host" whenever
    # spec.hostNetwork is true (a contradicting annotation is refused).
    network: str | None = None
    subnet: str | None = None  # CIDR for the bridge network
    backoff_initial_seconds: float = 10.0
    backoff_max_seconds: float = 300.0
    backoff_reset_seconds: float = 600.0
    pids_limit: int | None = None  # default for containers without their own
    log_max_size: int = 10 * 1024 * 1024  # containerLogMaxSize
    log_max_files: int = 5  # containerLogMaxFiles


class DnsPolicy(StrEnum):
    """`spec.dnsPolicy`: with no cluster DNS, all but None give the host's resolv.conf."""

    CLUSTER_FIRST = "ClusterFirst"
    CLUSTER_FIRST_WITH_HOST_NET = "ClusterFirstWithHostNet"
    DEFAULT = "Default"
    NONE = "None"  # the pod's resolv.conf is spec.dnsConfig alone


@frozen
class DnsConfig:
    """`spec.dnsConfig`: added to the pod's resolv.conf (all of it with dnsPolicy None)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()  # (name, value or None)


@frozen
class HostAlias:
    """`spec.hostAliases[i]`: more names for an address, in the pod's /etc/hosts."""

    ip: str
    hostnames: tuple[str, ...]


@frozen
class PodSpec:
    """The pod's spec, with Kubernetes' defaults applied."""

    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    termination_grace_period_seconds: int = 30
    active_deadline_seconds: int | None = None
    share_process_namespace: bool = False
    hostname: str | None = None  # None: the pod's name, as in Kubernetes
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    host_aliases: tuple[HostAlias, ...] = ()
    dns_policy: DnsPolicy = DnsPolicy.CLUSTER_FIRST
    dns_config: DnsConfig = field(default_factory=DnsConfig)

    @property
    def own_name_files(self) -> bool:
        """Whether hostAliases, dnsPolicy or dnsConfig ask for /etc files of the pod's own."""
        return bool(
            self.host_aliases or self.dns_policy is DnsPolicy.NONE or self.dns_config != DnsConfig()
        )

    @property
    def all_containers(self) -> tuple[Container, ...]:
        """Every container in start order: initContainers (sidecars among them), then containers."""
        return self.init_containers + self.containers


@frozen
class Pod:
    """A loaded, validated pod."""

    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: PodSpec
    settings: PodSettings = field(default_factory=PodSettings)
    source: str = ""  # the file it came from, "<stdin>" for standard input

    @property
    def hostname(self) -> str:
        """spec.hostname, or the pod's name cut to a DNS label as the kubelet does."""
        return self.spec.hostname or self.name[:63].rstrip("-.")

    def container(self, name: str) -> Container:
        """The container called `name`; KeyError when there is none."""
        for c in self.spec.all_containers:
            if c.name == name:
                return c
        raise KeyError(name)


@frozen
class Ignored:
    """A field podvisor accepted and does not act on, and why."""

    path: str
    line: int
    reason: str


@frozen
class LoadedPod:
    """What `manifest.load` returns: the pod, the fields it ignored, and the warnings to show."""

    pod: Pod
    ignored: tuple[Ignored, ...] = ()
    warnings: tuple[str, ...] = ()
