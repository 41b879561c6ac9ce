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
from collections.abc import Callable, Mapping
from dataclasses import field
from enum import StrEnum
from typing import Any

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
    # Local ephemeral storage: the writable layer and the logs (`pod.storage`).
    ephemeral_storage_limit_bytes: int | None = None


@frozen
class EnvVar:
    """One variable: an `env` entry, or one key of an `envFrom` source.

    `value` is as written, $(VAR) references unexpanded: `resolve_env` expands
    them as the kubelet does. `field_path` is one of metadata.name,
    metadata.namespace, metadata.uid, metadata.labels['k'],
    metadata.annotations['k'], status.podIP(s), status.hostIP(s), spec.nodeName,
    spec.serviceAccountName: filled in when the container starts.

    A value from a ConfigMap, a Secret or a resourceFieldRef is resolved by the
    loader: `source` says where it came from (`configMapKeyRef app/LEVEL`), and
    such a value is never expanded. `secret` marks a Secret's value, which
    `podvisor check` never shows.
    """

    name: str
    value: str | None = None
    field_path: str | None = None
    source: str | None = None
    secret: bool = False
    resource_field_ref: ResourceFieldRef | None = None  # computed when the container starts

    def __repr__(self) -> str:  # a Secret's value never reaches a traceback or a log
        value = "<secret>" if self.secret else repr(self.value)
        return (
            f"EnvVar(name={self.name!r}, value={value}, field_path={self.field_path!r}, "
            f"source={self.source!r}, resource_field_ref={self.resource_field_ref!r})"
        )


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
    # "Always" or "OnRootMismatch": whether a claim's files are walked at every start.
    fs_group_change_policy: str = "Always"
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
    # Whether lifecycle.stopSignal or the annotation gave it: if not, an image's StopSignal does.
    stop_signal_given: bool = False
    # "host" or "image" from `podvisor.io/rootfs.CONTAINER`; None: the pod's, else the
    # rule of `manifest.rootfs.root_choice`.
    rootfs: str | None = None


@frozen
class Container:
    """One container of the pod: a program on its image's root or the host's files, supervised."""

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
    stdin_once: bool = False  # stdin closes when the first attach leaves
    image: str | None = None  # its root (see `manifest.rootfs.root_choice`)
    image_pull_policy: str | None = None  # Always, IfNotPresent, Never; None: the tag's default
    # Where the program may leave why it ended (on its image only), and the log's
    # last lines when it leaves nothing and fails (FallbackToLogsOnError).
    termination_message_path: str = "/dev/termination-log"
    termination_message_policy: str = "File"
    restart_policy: RestartPolicy | None = None  # ALWAYS for sidecars, else None
    settings: ContainerSettings = field(default_factory=ContainerSettings)
    volume_mounts: tuple[VolumeMount, ...] = ()  # each names one of spec.volumes

    @property
    def argv(self) -> tuple[str, ...]:
        """command + args, $(VAR) references unexpanded (see `expand_argv`)."""
        return self.command + self.args


# --- Volumes -----------------------------------------------------------------------------
#
# Read and checked as the API server checks them; nothing here says how a
# volume is mounted. Modes are permission bits (0 to 0o777); a mode of None
# takes the volume's defaultMode. Paths of items are relative, without "..".


@frozen
class KeyToPath:
    """One of `items`: the ConfigMap's or Secret's `key`, as the file `path`."""

    key: str
    path: str
    mode: int | None = None


@frozen
class ResourceFieldRef:
    """`resourceFieldRef`: a container's request or limit, in units of `divisor`."""

    container_name: str
    resource: str  # limits.cpu, requests.memory, ...
    divisor: str = "1"


@frozen
class DownwardAPIFile:
    """One file of a downwardAPI volume: a pod field or a container's resource."""

    path: str
    field_path: str | None = None
    resource_field_ref: ResourceFieldRef | None = None
    mode: int | None = None


@frozen
class EmptyDirVolume:
    """A fresh directory for the pod's life; medium "Memory" is a tmpfs."""

    medium: str = ""  # "" (the disk) or "Memory"
    size_limit_bytes: int | None = None


@frozen
class HostPathVolume:
    """A path of the host. `type` is Kubernetes' check before mounting ("" checks nothing)."""

    path: str
    type: str = ""  # DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, ...


@frozen
class PersistentVolumeClaimVolume:
    """A PersistentVolumeClaim of the same file (or --config), by name."""

    claim_name: str
    read_only: bool = False


@frozen
class ConfigMapVolume:
    """A ConfigMap's keys as files; every key, or `items`."""

    name: str
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = 0o644
    optional: bool = False


@frozen
class SecretVolume:
    """A Secret's keys as files; every key, or `items`."""

    secret_name: str
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = 0o644
    optional: bool = False


@frozen
class DownwardAPIVolume:
    """Pod fields and container resources as files."""

    items: tuple[DownwardAPIFile, ...] = ()
    default_mode: int = 0o644


@frozen
class ConfigMapProjection:
    name: str
    items: tuple[KeyToPath, ...] = ()
    optional: bool = False


@frozen
class SecretProjection:
    name: str
    items: tuple[KeyToPath, ...] = ()
    optional: bool = False


@frozen
class DownwardAPIProjection:
    items: tuple[DownwardAPIFile, ...] = ()


Projection = ConfigMapProjection | SecretProjection | DownwardAPIProjection


@frozen
class ProjectedVolume:
    """Several ConfigMaps, Secrets and downwardAPI files in one directory."""

    sources: tuple[Projection, ...] = ()
    default_mode: int = 0o644


@frozen
class ImageVolume:
    """An OCI image's file system, read-only."""

    reference: str
    pull_policy: str | None = None  # None: the tag's default


VolumeSource = (
    EmptyDirVolume
    | HostPathVolume
    | PersistentVolumeClaimVolume
    | ConfigMapVolume
    | SecretVolume
    | DownwardAPIVolume
    | ProjectedVolume
    | ImageVolume
)


@frozen
class Volume:
    """One of `spec.volumes`."""

    name: str
    source: VolumeSource


@frozen
class VolumeMount:
    """One of a container's `volumeMounts`."""

    name: str  # the volume's
    mount_path: str  # absolute
    read_only: bool = False
    sub_path: str = ""  # relative, without ".."
    sub_path_expr: str = ""  # sub_path with $(VAR) from the container's env
    mount_propagation: str = "None"  # None, HostToContainer or Bidirectional
    recursive_read_only: str = "Disabled"  # Disabled, IfPossible or Enabled


# --- Configuration beside the pod ----------------------------------------------------------


@frozen
class ConfigMap:
    """A ConfigMap of the same file or of --config."""

    name: str
    data: Mapping[str, str] = field(default_factory=dict)
    binary_data: Mapping[str, bytes] = field(default_factory=dict)


@frozen
class Secret:
    """A Secret: `data` decoded from base64, `stringData` merged over it."""

    name: str
    type: str = "Opaque"
    data: Mapping[str, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:  # never a value in a traceback or a log
        return f"Secret(name={self.name!r}, type={self.type!r}, keys={sorted(self.data)!r})"


@frozen
class PersistentVolumeClaim:
    """A PersistentVolumeClaim: on one machine, a folder kept under its name."""

    name: str
    storage_request_bytes: int | None = None
    access_modes: tuple[str, ...] = ()


@frozen
class PodConfig:
    """The ConfigMaps, Secrets and claims in the pod's namespace, by name."""

    config_maps: Mapping[str, ConfigMap] = field(default_factory=dict)
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    claims: Mapping[str, PersistentVolumeClaim] = field(default_factory=dict)


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
    rootfs: str | None = None  # "host" or "image" for every container; None: the rule
    # Patterns of namespaced sysctls beyond the safe set the pod may set (dot form).
    allowed_unsafe_sysctls: tuple[str, ...] = ()
    # The Pod Security Standard the pod was held to (the strictest of --pod-security, the
    # annotation and its Namespace's label), and met: it was refused otherwise.
    pod_security: str | None = None


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
    volumes: tuple[Volume, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()  # names of Secrets in PodConfig
    service_account_name: str = "default"  # for fieldRef spec.serviceAccountName only
    # spec.securityContext.sysctls: (name in the dot form, value), for the pod's namespaces.
    sysctls: tuple[tuple[str, str], ...] = ()
    # A Job's backoffLimit: how many times its failed containers are restarted in
    # all before the pod fails (BackoffLimitExceeded); None outside a Job.
    backoff_limit: int | None = None

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

    @property
    def memory_limit_bytes(self) -> int | None:
        """The pod's memory limit as the kubelet reckons it; None unless every container has one."""
        limits = [c.resources.memory_limit_bytes for c in self.all_containers]
        if any(limit is None for limit in limits):
            return None
        return self._peak(lambda r: r.memory_limit_bytes)

    @property
    def ephemeral_storage_limit_bytes(self) -> int | None:
        """The pod's local storage limit as the kubelet's eviction reckons it; None when no
        container has one.

        Unlike memory (a cgroup's limit, set only when every container has one),
        the kubelet sums the limits that are given: a container without one adds
        nothing.
        """
        limits = [c.resources.ephemeral_storage_limit_bytes for c in self.all_containers]
        if all(limit is None for limit in limits):
            return None
        return self._peak(lambda r: r.ephemeral_storage_limit_bytes)

    def _peak(self, limit_of: Callable[[Resources], int | None]) -> int:
        """The most the pod's containers running together may take, each at *limit_of*.

        The main containers and the sidecars run together; an init container
        runs beside the sidecars started before it. The larger of the two peaks.
        """
        sidecars = init_peak = 0
        for c in self.init_containers:
            limit = limit_of(c.resources) or 0
            if c.kind is ContainerKind.SIDECAR:
                sidecars += limit
            else:
                init_peak = max(init_peak, sidecars + limit)
        running = sum(limit_of(c.resources) or 0 for c in self.containers)
        return max(sidecars + running, init_peak)


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
    config: PodConfig = field(default_factory=PodConfig)  # ConfigMaps, Secrets, claims

    def pull_secrets(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        """`spec.imagePullSecrets` as (name, auths) pairs, for `ImageStore.ensure`."""
        import json

        found = []
        for name in self.spec.image_pull_secrets:
            secret = self.config.secrets.get(name)
            raw = secret.data.get(".dockerconfigjson") if secret is not None else None
            if raw is not None:  # the loader has checked it is JSON with auths
                found.append((name, json.loads(raw)["auths"]))
        return tuple(found)

    @property
    def hostname(self) -> str:
        """spec.hostname, or the pod's name cut to a DNS label as the kubelet does.

        A hostNetwork pod has the node's name instead: the kubelet gives its
        sandbox no hostname of its own, so spec.hostname does not apply.
        """
        if self.spec.host_network:
            import socket  # not at the top: a manifest is read before the pod starts

            return socket.gethostname()
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
class Workload:
    """The Deployment, Job, ... whose pod template is the pod, and what podvisor leaves out."""

    kind: str
    name: str
    not_done: tuple[str, ...] = ()  # "replicas: 3 (one pod runs)", "rolling updates", ...

    def summary(self) -> str:
        """One line: what runs, and what does not."""
        line = f"{self.kind} {self.name}: its pod template runs as one pod"
        return line + (f"; not done here: {'; '.join(self.not_done)}" if self.not_done else "")


@frozen
class LoadedPod:
    """What `manifest.load` returns: the pod, the fields it ignored, and the warnings to show.

    `not_yet`: what `podvisor check` accepts and `podvisor run` does not do yet
    (volumes, until they are mounted), each as FILE:LINE:COLUMN: PATH: MESSAGE.
    `others`: the documents beside the pod that podvisor does not use (a Service).
    """

    pod: Pod
    ignored: tuple[Ignored, ...] = ()
    warnings: tuple[str, ...] = ()
    workload: Workload | None = None
    not_yet: tuple[str, ...] = ()
    others: tuple[Ignored, ...] = ()
