"""`podvisor check FILE...`: validate manifests and print the plan `podvisor run` would follow.

For each file: the start order (init containers, sidecars, main containers),
each container's command, environment, ports, limits, probes and hooks with
their effective defaults, podvisor's settings, the fields ignored and why, and
the warnings. `--output json` prints the same as one JSON array, one object
per file. Problems go to standard error; the exit status is 0 when every
file is valid, 2 when one is not.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import shlex
import signal
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from podvisor.supervisor.errors import EXIT_CONFIG, ConfigError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.explain_volumes import (
    config_lines,
    env_json,
    env_lines,
    mount_text,
    volume_lines,
    volumes_json,
)
from podvisor.supervisor.manifest.loader import load
from podvisor.supervisor.manifest.model import (
    Container,
    ContainerKind,
    DnsConfig,
    DnsPolicy,
    EnvVar,
    ExecAction,
    HookHandler,
    HTTPGetAction,
    LoadedPod,
    Pod,
    PodSpec,
    Probe,
    ProbeHandler,
    Resources,
    SecurityContext,
    SleepAction,
    TCPSocketAction,
)
from podvisor.supervisor.manifest.programs import program_warnings

_KINDS = {
    ContainerKind.INIT: "init container: runs to completion before the next one starts",
    ContainerKind.SIDECAR: "sidecar: started in order, kept running, restarted whenever it exits",
    ContainerKind.MAIN: "main container",
}


def main(argv: list[str]) -> int:
    """`podvisor check [--output text|json] FILE...` (argv: the words after `check`)."""
    parser = argparse.ArgumentParser(
        prog="podvisor check",
        description="Validate Pod manifests and explain what `podvisor run` would do.",
    )
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a file (or a directory of them) with ConfigMaps, Secrets and "
        "PersistentVolumeClaims the pod uses; repeatable",
    )
    parser.add_argument(
        "--pod-security",
        choices=("privileged", "baseline", "restricted"),
        metavar="LEVEL",
        help="list each violation of this Pod Security Standard (baseline or restricted) "
        "as the admission controller would, and exit 2 if there is one",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a manifest, or - for stdin")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_CONFIG
    results: list[dict[str, Any]] = []
    failed = False
    for i, name in enumerate(args.files):
        try:
            loaded = load(name, config=args.config, pod_security=args.pod_security)
        except ConfigError as error:
            failed = True
            for problem in error.problems:
                print(problem, file=sys.stderr)
            results.append(_errors_json(name, error))
            continue
        images = image_states(loaded.pod)
        missing = tuple(program_warnings(loaded.pod))
        loaded = dataclasses.replace(loaded, warnings=loaded.warnings + missing)
        if args.output == "json":
            results.append(plan_json(loaded, images))
        else:
            print(("\n" if i else "") + plan_text(loaded, images), end="")
    if args.output == "json":
        print(json.dumps(results, indent=2))
    return EXIT_CONFIG if failed else 0


# --- Text ----------------------------------------------------------------------------


def plan_text(loaded: LoadedPod, images: Mapping[str, ImageLine] | None = None) -> str:
    """The plan, as a person reads it; *images*: each container's image, as the store has it."""
    return "".join(line + "\n" for line in _plan_lines(loaded, images or {}))


# --- Images ------------------------------------------------------------------------------


@frozen
class ImageLine:
    """What the image store says of a container's image (`image_states`)."""

    image: str
    policy: str  # imagePullPolicy, given or Kubernetes' default for the tag
    state: str  # present, would be pulled, missing, invalid
    reason: str
    id: str | None = None
    credential: str | None = None  # where a pull would take its credentials from
    program: tuple[str, ...] | None = None  # what runs, the image's config applied
    as_root: str | None = None  # why runAsNonRoot refuses the image's User, if it does


def image_states(pod: Pod) -> dict[str, ImageLine]:
    """Each container with an `image`: present in the store, would be pulled, or missing."""
    from podvisor.supervisor.errors import ImageError
    from podvisor.supervisor.images.reference import PullPolicy
    from podvisor.supervisor.images.store import WOULD_PULL, ImageStore

    store = ImageStore()
    found = {}
    for c in pod.spec.all_containers:
        if not c.image:
            continue
        policy = PullPolicy(c.image_pull_policy) if c.image_pull_policy else None
        try:
            a = store.state(c.image, policy)
        except ImageError as error:
            found[c.name] = ImageLine(c.image, str(policy or ""), "invalid", str(error))
            continue
        image_id = a.image.id if a.image else None
        credential = _credential(c.image, pod) if a.state == WOULD_PULL else None
        program = as_root = None
        if a.image is not None:
            from podvisor.supervisor.pod import image_config

            program = image_config.program(c, a.image.config, {})
            sc = c.security_context
            if sc.run_as_non_root and sc.run_as_user is None:
                as_root = image_config.runs_as_root(a.image.config)
        found[c.name] = ImageLine(
            c.image, str(a.policy), str(a.state), a.reason, image_id, credential, program, as_root
        )
    return found


def _credential(image: str, pod: Pod) -> str | None:
    """Where a pull of *image* would find its credentials: an imagePullSecret, an auth file."""
    from podvisor.supervisor.errors import ImageError
    from podvisor.supervisor.images.reference import parse
    from podvisor.supervisor.images.registry import find_credential

    try:
        found = find_credential(parse(image), pod.pull_secrets())
    except ImageError as error:
        return f"none: {error}"
    return found.source if found is not None else None


def _root_lines(pod: Pod, c: Container, line: ImageLine | None) -> Iterator[str]:
    """Which root the container runs on and why; its image as the store has it."""
    from podvisor.supervisor.manifest.rootfs import RootMode, root_choice

    choice = root_choice(pod, c)
    if choice.mode is RootMode.HOST:
        yield f"    root: the host's file system (host mode: {choice.why})"
    else:
        yield f"    root: its image's, an overlay entered with pivot_root ({choice.why})"
    if line is None:
        return
    policy = f" (imagePullPolicy {line.policy})" if line.policy else ""
    unused = ", not used in host mode" if choice.mode is RootMode.HOST else ""
    yield f"    image: {line.image}{policy}: {line.state}: {line.reason}{unused}"
    if line.credential:
        yield f"      credentials: {line.credential}"
    if choice.mode is RootMode.IMAGE and line.program is not None and not c.command:
        how = "Entrypoint and args" if c.args else "Entrypoint and Cmd"
        yield f"    runs: {shlex.join(line.program)} (the image's {how})"
    if choice.mode is RootMode.IMAGE and line.as_root is not None:
        yield (
            "    refused at its start (CreateContainerConfigError): container has runAsNonRoot "
            f"and {line.as_root}: set runAsUser"
        )


def _plan_lines(loaded: LoadedPod, images: Mapping[str, ImageLine]) -> Iterator[str]:
    pod = loaded.pod
    spec = pod.spec
    yield f"{pod.source}: pod {pod.name} (namespace {pod.namespace})"
    if loaded.workload is not None:
        yield f"  {loaded.workload.summary()}"
    yield f"  restartPolicy: {spec.restart_policy}"
    yield f"  terminationGracePeriodSeconds: {spec.termination_grace_period_seconds}"
    if spec.active_deadline_seconds is not None:
        yield f"  activeDeadlineSeconds: {spec.active_deadline_seconds}"
    if spec.backoff_limit is not None:
        yield f"  backoffLimit: {spec.backoff_limit} (restarts of failed containers in all)"
    yield from _pod_settings(pod)
    yield "  start order:"
    everyone = spec.all_containers
    for n, c in enumerate(everyone, 1):
        yield f"    {n}. {c.kind:<8} {c.name}{_gate(c) if n < len(everyone) else ''}"
    yield from config_lines(pod)
    yield from volume_lines(loaded)
    for c in spec.all_containers:
        yield ""
        yield from _container_lines(c, pod)
        yield from _root_lines(pod, c, images.get(c.name))
    if loaded.ignored or loaded.others:
        yield ""
        yield "  ignored (accepted, no effect here):"
        for ignored in loaded.others + loaded.ignored:
            yield f"    line {ignored.line}: {ignored.path}: {ignored.reason}"
    if loaded.warnings:
        yield ""
        yield "  warnings:"
        for warning in loaded.warnings:
            yield f"    {warning}"


def _gate(c: Container) -> str:
    """What the next container in the start order waits for."""
    if c.kind is ContainerKind.INIT:
        return "  (the next waits for it to exit 0)"
    # As the kubelet's start of a container returns only after its postStart hook.
    hook = "its postStart hook, then " if c.lifecycle.post_start is not None else ""
    fd = c.settings.notification_fd
    if c.kind is ContainerKind.SIDECAR and c.startup_probe is not None and fd is not None:
        return f"  (the next waits for {hook}its startupProbe or its readiness line on fd {fd})"
    if c.kind is ContainerKind.SIDECAR and c.startup_probe is not None:
        return f"  (the next waits for {hook}its startupProbe)"
    if c.kind is ContainerKind.SIDECAR and fd is not None:
        return f"  (the next waits for {hook}its readiness line on fd {fd}: notification-fd)"
    if hook or c.kind is ContainerKind.MAIN:
        return "  (the next waits for its postStart hook)" if hook else ""
    return "  (the next starts right after it)"


def _dns_lines(spec: PodSpec) -> Iterator[str]:
    dns = spec.dns_config
    if spec.dns_policy is DnsPolicy.NONE:
        yield "  /etc/resolv.conf: dnsConfig alone (dnsPolicy: None)"
    elif dns != DnsConfig():
        yield "  /etc/resolv.conf: the host's, with dnsConfig added"
    if dns.nameservers:
        yield f"    nameservers: {', '.join(dns.nameservers)}"
    if dns.searches:
        yield f"    search: {' '.join(dns.searches)}"
    if dns.options:
        words = (name if value is None else f"{name}:{value}" for name, value in dns.options)
        yield f"    options: {' '.join(words)}"


def _pod_settings(pod: Pod) -> Iterator[str]:
    s = pod.settings
    spec = pod.spec
    namespaces = [n for n, shared in (("PID", spec.host_pid), ("IPC", spec.host_ipc)) if shared]
    yield f"  network: {s.network or 'default'}" + (f", subnet {s.subnet}" if s.subnet else "")
    if namespaces:
        yield f"  host namespaces shared: {', '.join(namespaces)}"
    if spec.share_process_namespace:
        yield "  shareProcessNamespace: containers see each other's processes"
    node = " (the node's: hostNetwork)" if spec.host_network else ""
    yield f"  hostname: {pod.hostname}{node}"
    if spec.sysctls:
        shown = ", ".join(f"{name}={value}" for name, value in spec.sysctls)
        yield f"  sysctls (in the pod's own namespaces): {shown}"
    if s.pod_security:
        yield f"  Pod Security Standard: {s.pod_security} (enforced, and met)"
    for alias in spec.host_aliases:
        yield f"  /etc/hosts: {alias.ip} {' '.join(alias.hostnames)}"
    yield from _dns_lines(spec)
    yield (
        f"  restart back-off: {s.backoff_initial_seconds:g}s doubling to "
        f"{s.backoff_max_seconds:g}s, reset after {s.backoff_reset_seconds:g}s running"
    )
    yield f"  metrics: {_metrics_line(s.metrics_address)}"


def _metrics_line(annotated: str | None) -> str:
    """Where `run` serves the pod's metrics, unless its --metrics-address says otherwise."""
    if annotated is None:
        # Here, not at the top: the endpoint's module brings anyio, which check needs not.
        from podvisor.supervisor.metrics.server import host_address

        return (
            f"http://{host_address()}/metrics, the host's endpoint, shared with the "
            "host's other pods (podvisor.io/metrics-address gives the pod its own)"
        )
    if annotated.lower() in ("off", "none"):
        return "none (podvisor.io/metrics-address: off)"
    where = f"port {annotated[1:]} of every interface" if annotated.startswith(":") else None
    return f"{where or f'http://{annotated}/metrics'}, the pod's own (podvisor.io/metrics-address)"


def _container_lines(c: Container, pod: Pod) -> Iterator[str]:
    yield f"  container {c.name} ({_KINDS[c.kind]})"
    yield from _command(c.argv)
    if c.working_dir:
        yield f"    workingDir: {c.working_dir}"
    for line in env_lines(c, pod):
        yield f"    env: {line}"
    for m in c.volume_mounts:
        yield f"    mount: {m.mount_path} <- {mount_text(m, pod)}"
    for port in c.ports:
        host = f" (hostPort {port.host_port})" if port.host_port else ""
        name = f" {port.name}" if port.name else ""
        yield f"    port{name}: {port.container_port}/{port.protocol}{host}"
    yield f"    resources: {_resources(c.resources)}"
    if c.resources.ephemeral_storage_limit_bytes is not None:
        yield f"    ephemeral-storage: {_local_storage(c, pod)}"
    grace = pod.spec.termination_grace_period_seconds
    ports = {p.name: p.container_port for p in c.ports if p.name}
    for which, probe in (
        ("startupProbe", c.startup_probe),
        ("readinessProbe", c.readiness_probe),
        ("livenessProbe", c.liveness_probe),
    ):
        if probe is not None:
            yield f"    {which}: {_probe(probe, which, grace, ports)}"
    for which, hook in (("postStart", c.lifecycle.post_start), ("preStop", c.lifecycle.pre_stop)):
        if hook is not None:
            yield f"    {which}: {_handler(hook, ports)}"
    yield f"    stop: {_stop(c, grace)}"
    yield from _host_message(c, pod)
    yield from _container_extras(c, pod)


def _host_message(c: Container, pod: Pod) -> Iterator[str]:
    """On the host's files, whether the termination message is read (`host_message_target`)."""
    from podvisor.supervisor.manifest.rootfs import on_image
    from podvisor.supervisor.pod.rootfs import host_message_target

    if on_image(pod, c):
        return
    path = c.termination_message_path
    if host_message_target(pod, c):
        yield f"    termination message: read from a file of its own, bound over {path}"
    else:
        yield (
            f"    termination message: not read: {path} is no file on this machine to bind "
            "a file of the container's own over, and podvisor makes none on the host"
        )


def _stop(c: Container, grace: int) -> str:
    """How the container is stopped: the kubelet's killContainer, with its 2 s minimum."""
    from podvisor.supervisor.lifecycle import MINIMUM_GRACE_SECONDS

    sig, least = _signal_name(c.settings.stop_signal), f"{MINIMUM_GRACE_SECONDS:g}s"
    if c.lifecycle.pre_stop is not None and grace > 0:
        return (
            f"preStop, then {sig}; SIGKILL {grace}s after the stop began, "
            f"{least} after {sig} at the earliest"
        )
    if grace < MINIMUM_GRACE_SECONDS:
        skipped = "; no time for preStop" if c.lifecycle.pre_stop is not None else ""
        return (
            f"{sig}, then SIGKILL after {least} (the kubelet's minimum, above "
            f"terminationGracePeriodSeconds {grace}{skipped})"
        )
    return f"{sig}, then SIGKILL after {grace}s"


def _command(argv: tuple[str, ...]) -> Iterator[str]:
    """The command on one line; a multi-line argument (a script) below it, indented."""
    if not argv:
        yield "    command: the image's (its Entrypoint and Cmd)"
        return
    script = next((a for a in argv if "\n" in a), None)
    if script is None:
        yield f"    command: {shlex.join(argv)}"
        return
    words = [shlex.quote(a) if a is not script else "<script below>" for a in argv]
    yield f"    command: {' '.join(words)}"
    for line in script.rstrip("\n").splitlines():
        yield f"      | {line}"


def _container_extras(c: Container, pod: Pod) -> Iterator[str]:
    s = c.settings
    extras = {
        "pids limit": s.pids_limit,
        "cpuset": s.cpuset,
        "watchdog": f"{s.watchdog_usec}us" if s.watchdog_usec else None,
        "readiness fd": s.notification_fd,
    }
    for name, value in extras.items():
        if value is not None:
            yield f"    {name}: {value}"
    from podvisor.supervisor.manifest.rootfs import on_image

    yield from _security_lines(c.security_context, on_image=on_image(pod, c))
    if c.tty:
        yield "    tty: a terminal of its own for stdin, stdout and stderr (its output: stdout)"
    if c.stdin:
        once = ", closed when the first attach leaves (stdinOnce)" if c.stdin_once else ""
        yield f"    stdin: open, written by `podvisor attach -i`{once}"


def _security_lines(sc: SecurityContext, *, on_image: bool) -> Iterator[str]:
    """What the container's process will hold, as the init applies it."""
    from podvisor.supervisor.manifest.capabilities import (
        CAPABILITY_BITS,
        DEFAULT_CAPABILITIES,
        capability_set,
        mask,
    )

    user = {
        "runAsUser": sc.run_as_user,
        "runAsGroup": sc.run_as_group,
        # As the manifest writes it (YAML's true), not as Python prints it.
        "runAsNonRoot": None if sc.run_as_non_root is None else str(sc.run_as_non_root).lower(),
        "supplementalGroups": ",".join(map(str, sc.supplemental_groups)) or None,
        "fsGroup": sc.fs_group,
    }
    for name, value in user.items():
        if value is not None:
            yield f"    {name}: {value}"
    caps = capability_set(sc)
    if sc.privileged:
        # On the host's files /dev is the host's anyway; an image's root gets its devices.
        devices = ", the host's devices in /dev" if on_image else ""
        given = "every capability, nothing masked, /sys and the cgroups writable"
        yield f"    privileged: {given}{devices}"
    elif caps == mask(DEFAULT_CAPABILITIES):
        yield "    capabilities: the runtime default (14)"
    else:
        held = [n for n, bit in CAPABILITY_BITS.items() if caps >> bit & 1]
        yield f"    capabilities: {','.join(held) or 'none'}"
    if sc.allow_privilege_escalation is False:
        yield "    no_new_privs: set (allowPrivilegeEscalation: false)"
    size = len(base64.b64decode(sc.seccomp_filter)) // 8
    shown = sc.seccomp_type or "Unconfined"
    if sc.seccomp_localhost:
        shown += f" {sc.seccomp_localhost}"
    yield f"    seccomp: {shown}" + (f" ({size} BPF instructions)" if size else "")
    if sc.read_only_root_filesystem and on_image:
        yield "    readOnlyRootFilesystem: the root read-only; volumes, /dev and /dev/shm not"
    elif sc.read_only_root_filesystem:
        yield "    readOnlyRootFilesystem: every mount read-only but /dev, /proc and /sys"


def _resources(r: Resources) -> str:
    parts = []
    if r.cpu_request_millicores is not None or r.cpu_limit_millicores is not None:
        parts.append(
            f"cpu request {_cpu(r.cpu_request_millicores)}, limit {_cpu(r.cpu_limit_millicores)}"
        )
    else:  # the kubelet's shares for no request: 2, the least there is
        parts.append("no cpu request: the least CPU weight, as Kubernetes gives BestEffort")
    if r.memory_request_bytes is not None or r.memory_limit_bytes is not None:
        parts.append(
            f"memory request {_bytes(r.memory_request_bytes)}, limit {_bytes(r.memory_limit_bytes)}"
        )
    return "; ".join(parts)


def _local_storage(c: Container, pod: Pod) -> str:
    """What the container's ephemeral-storage limit covers, as the supervisor measures it."""
    from podvisor.supervisor.manifest.model import ContainerKind
    from podvisor.supervisor.manifest.rootfs import on_image

    limit = c.resources.ephemeral_storage_limit_bytes or 0
    if on_image(pod, c):
        what = "its writable layer and its log files"
    else:
        what = "its log files only, as on the host's files it has no writable layer of its own"
    total = _bytes(pod.spec.ephemeral_storage_limit_bytes)
    if c.kind is not ContainerKind.MAIN:
        return f"limit {_bytes(limit)}, counted in the pod's total of {total} only: {what}"
    return f"limit {_bytes(limit)} on {what}; the pod's total {total}: evicted past either"


def _cpu(millicores: int | None) -> str:
    if millicores is None:
        return "none"
    return f"{millicores // 1000}" if millicores % 1000 == 0 else f"{millicores}m"


def _bytes(count: int | None) -> str:
    if count is None:
        return "none"
    for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count >= size and count % size == 0:
            return f"{count // size}{suffix}"
    return f"{count} bytes"


def _probe(probe: Probe, which: str, pod_grace: int, ports: dict[str, int]) -> str:
    consequence = {
        "startupProbe": "kills and restarts the container",
        "readinessProbe": "marks the container not ready",
        "livenessProbe": "kills and restarts the container",
    }[which]
    grace = probe.termination_grace_period_seconds
    grace_text = f" (grace {grace if grace is not None else pod_grace}s)"
    return (
        f"{_handler(probe.handler, ports)}; first after {probe.initial_delay_seconds}s, "
        f"then every {probe.period_seconds}s, timeout {probe.timeout_seconds}s; "
        f"passes after {_times(probe.success_threshold, 'success')}; "
        f"after {_times(probe.failure_threshold, 'failure')} in a row {consequence}"
        + (grace_text if which != "readinessProbe" else "")
    )


def _times(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "es" if what.endswith("s") else "s")


def _handler(handler: ProbeHandler | HookHandler, ports: dict[str, int]) -> str:
    if isinstance(handler, ExecAction):
        return f"exec {shlex.join(handler.command)}"
    if isinstance(handler, SleepAction):
        return f"sleep {handler.seconds}s"
    port = handler.port
    number = ports.get(port, port) if isinstance(port, str) else port
    named = f" (port {port})" if isinstance(port, str) else ""
    host = getattr(handler, "host", None) or "<pod IP>"
    if isinstance(handler, HTTPGetAction):
        headers = "".join(f" [{k}: {v}]" for k, v in handler.headers)
        return f"GET {handler.scheme.lower()}://{host}:{number}{handler.path}{named}{headers}"
    if isinstance(handler, TCPSocketAction):
        return f"connect tcp {host}:{number}{named}"
    return f"grpc {host}:{number}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- JSON ----------------------------------------------------------------------------------


def plan_json(loaded: LoadedPod, images: Mapping[str, ImageLine] | None = None) -> dict[str, Any]:
    """The plan as JSON-ready data: the pod's model with defaults, ignored fields, warnings."""
    pod = loaded.pod
    images = images or {}
    return {
        "source": pod.source,
        "ok": True,
        "pod": {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
            "labels": dict(pod.labels),
            "annotations": dict(pod.annotations),
        },
        "spec": _json(
            {
                f.name: getattr(pod.spec, f.name)
                for f in _fields(pod.spec, "containers", "init_containers")
            }
        ),
        "settings": _json(pod.settings),
        "start_order": [{"name": c.name, "kind": str(c.kind)} for c in pod.spec.all_containers],
        "containers": [
            _json(c)
            | {"argv": list(c.argv), "root": _root_json(pod, c), "env": env_json(c, pod)}
            | ({"image_state": _json(images[c.name])} if c.name in images else {})
            for c in pod.spec.all_containers
        ],
        "ignored": [_json(i) for i in loaded.ignored],
        "warnings": list(loaded.warnings),
        "workload": _json(loaded.workload),
        "volumes": volumes_json(pod),
        "not_yet": list(loaded.not_yet),
        "others": [_json(i) for i in loaded.others],
        "config": {
            "config_maps": sorted(pod.config.config_maps),
            "secrets": sorted(pod.config.secrets),  # names only, never a value
            "claims": sorted(pod.config.claims),
        },
    }


def _root_json(pod: Pod, c: Container) -> dict[str, str]:
    from podvisor.supervisor.manifest.rootfs import root_choice

    choice = root_choice(pod, c)
    return {"mode": str(choice.mode), "why": choice.why}


def _fields(obj: Any, *leave_out: str) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(obj) if f.name not in leave_out]


def _json(value: Any) -> Any:
    """Dataclasses as dicts (handlers tagged with their type), tuples as lists, enums as str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, EnvVar) and value.secret:  # a Secret's value is never shown
            data["value"] = None
        if isinstance(value, SecurityContext):  # the compiled program: its size says enough
            data["seccomp_filter"] = len(base64.b64decode(value.seccomp_filter)) // 8
        if isinstance(value, ExecAction | HTTPGetAction | TCPSocketAction | SleepAction):
            data = {"type": type(value).__name__} | data
        return data
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _errors_json(name: str, error: ConfigError) -> dict[str, Any]:
    return {
        "source": "<stdin>" if name == "-" else name,
        "ok": False,
        "errors": [
            {"line": p.line, "column": p.column, "path": p.path, "message": p.message}
            for p in error.problems
        ],
    }
