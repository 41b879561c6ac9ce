"""Every field of a Kubernetes Pod, and what podvisor does with it.

One table per Kubernetes object. A field is

* SUPPORTED: read, validated and acted on, meaning what it means in Kubernetes;
* Ignore(reason): it only means something to a cluster (scheduling, image
  pulls, the API server's bookkeeping); accepted and listed by `podvisor
  check` with the reason;
* Refuse(reason): it would change what a process does and podvisor does not
  implement it; the manifest is refused, by field and line, with the reason
  saying what to do instead. Values that ask for what podvisor does anyway
  (`readOnlyRootFilesystem: false`) pass as ignored.

A key in no table is a typo (or a field newer than this list): refused with a
"did you mean". tests/manifest/test_fields.py checks these tables against
Kubernetes' own OpenAPI schema, so no Kubernetes field falls through.
"""

from __future__ import annotations

from typing import Any

from podvisor.supervisor.manifest.nodes import SUPPORTED, Ignore, Refuse, Rule

# --- Reasons shared by several fields ----------------------------------------------

_SCHEDULING = Ignore("scheduling: the pod runs on this machine")
_API_SERVER = Ignore("written by the API server")
_SERVICE_ACCOUNT = Ignore("there is no API server, so no service account token is mounted")


def _is(*harmless: object) -> Any:
    return lambda value: value in harmless


# --- The Pod -------------------------------------------------------------------------

POD: dict[str, Rule] = {
    "apiVersion": SUPPORTED,
    "kind": SUPPORTED,
    "metadata": SUPPORTED,
    "spec": SUPPORTED,
    "status": Ignore("written by the kubelet; `podvisor status` reports the pod's state"),
}

METADATA: dict[str, Rule] = {
    "name": SUPPORTED,
    "namespace": SUPPORTED,
    "labels": SUPPORTED,
    "annotations": SUPPORTED,
    "uid": SUPPORTED,
    "generateName": Ignore("podvisor uses metadata.name and generates no names"),
    "creationTimestamp": _API_SERVER,
    "deletionTimestamp": _API_SERVER,
    "deletionGracePeriodSeconds": _API_SERVER,
    "generation": _API_SERVER,
    "resourceVersion": _API_SERVER,
    "selfLink": _API_SERVER,
    "managedFields": _API_SERVER,
    "finalizers": Ignore("finalizers hold deletion in a cluster; podvisor deletes nothing"),
    "ownerReferences": Ignore("garbage collection of owned objects is a cluster's"),
}

POD_SPEC: dict[str, Rule] = {
    "containers": SUPPORTED,
    "initContainers": SUPPORTED,
    "restartPolicy": SUPPORTED,
    "terminationGracePeriodSeconds": SUPPORTED,
    "activeDeadlineSeconds": SUPPORTED,
    "shareProcessNamespace": SUPPORTED,
    "hostname": SUPPORTED,
    "hostNetwork": SUPPORTED,
    "hostPID": SUPPORTED,
    "hostIPC": SUPPORTED,
    "securityContext": SUPPORTED,
    "os": SUPPORTED,
    "affinity": _SCHEDULING,
    "nodeName": _SCHEDULING,
    "nodeSelector": _SCHEDULING,
    "tolerations": _SCHEDULING,
    "topologySpreadConstraints": _SCHEDULING,
    "schedulerName": _SCHEDULING,
    "schedulingGates": _SCHEDULING,
    "schedulingGroup": _SCHEDULING,
    "priority": _SCHEDULING,
    "priorityClassName": _SCHEDULING,
    "preemptionPolicy": _SCHEDULING,
    "evictionResponders": Ignore("evictions are requested through a cluster's API"),
    "readinessGates": Ignore(
        "readiness gates are conditions set by cluster controllers; "
        "the pod is ready when its containers are"
    ),
    "serviceAccount": _SERVICE_ACCOUNT,
    "serviceAccountName": SUPPORTED,  # for fieldRef spec.serviceAccountName; no token
    "automountServiceAccountToken": _SERVICE_ACCOUNT,
    "imagePullSecrets": SUPPORTED,
    "enableServiceLinks": Ignore(
        "there are no Services on one machine, so no service variables to add"
    ),
    "dnsPolicy": SUPPORTED,
    "subdomain": Ignore("names in cluster DNS; there is no cluster DNS"),
    "runtimeClassName": Ignore("podvisor is the runtime"),
    "overhead": Ignore("set by a cluster's RuntimeClass admission controller"),
    "dnsConfig": SUPPORTED,
    "hostAliases": SUPPORTED,
    "setHostnameAsFQDN": Refuse(
        "podvisor sets the pod's hostname, never an FQDN; remove setHostnameAsFQDN",
        harmless=_is(False),
    ),
    "hostnameOverride": Refuse("use spec.hostname to set the pod's hostname"),
    "hostUsers": Refuse(
        "a user namespace per pod is not implemented (its network namespace, /sys and image "
        "layers would have to be the namespace's); to keep root in the pod from being root "
        "of this machine, run the containers as another user (runAsUser, runAsNonRoot: true, "
        "capabilities: {drop: [ALL]}), or start podvisor as a user other than root, which "
        "puts the whole pod in a user namespace whose root is that user; remove hostUsers",
        harmless=_is(True),
    ),
    "resources": Refuse("pod-level resources are not implemented; set resources per container"),
    "resourceClaims": Refuse("dynamic resource allocation needs a cluster's drivers"),
    "ephemeralContainers": Refuse(
        "ephemeral containers are added to a running pod by `kubectl debug`, "
        "not written in a manifest"
    ),
    "volumes": SUPPORTED,
}

HOST_ALIAS: dict[str, Rule] = {"ip": SUPPORTED, "hostnames": SUPPORTED}

POD_DNS_CONFIG: dict[str, Rule] = {
    "nameservers": SUPPORTED,
    "searches": SUPPORTED,
    "options": SUPPORTED,
}

POD_DNS_CONFIG_OPTION: dict[str, Rule] = {"name": SUPPORTED, "value": SUPPORTED}

POD_SECURITY_CONTEXT: dict[str, Rule] = {
    "runAsUser": SUPPORTED,
    "runAsGroup": SUPPORTED,
    "runAsNonRoot": SUPPORTED,
    "seccompProfile": SUPPORTED,
    "appArmorProfile": SUPPORTED,  # refused or ignored as this host allows: manifest.lsm
    "seLinuxOptions": SUPPORTED,
    "windowsOptions": SUPPORTED,
    "fsGroup": SUPPORTED,
    "fsGroupChangePolicy": SUPPORTED,  # a claim's walk, skipped with OnRootMismatch
    "seLinuxChangePolicy": Ignore("podvisor sets no SELinux labels, so relabels no volume"),
    "supplementalGroups": SUPPORTED,
    "supplementalGroupsPolicy": SUPPORTED,
    "sysctls": SUPPORTED,
}

SYSCTL: dict[str, Rule] = {"name": SUPPORTED, "value": SUPPORTED}

POD_OS: dict[str, Rule] = {"name": SUPPORTED}

# --- Containers ------------------------------------------------------------------------

CONTAINER: dict[str, Rule] = {
    "name": SUPPORTED,
    "command": SUPPORTED,
    "args": SUPPORTED,
    "env": SUPPORTED,
    "workingDir": SUPPORTED,
    "ports": SUPPORTED,
    "resources": SUPPORTED,
    "livenessProbe": SUPPORTED,
    "readinessProbe": SUPPORTED,
    "startupProbe": SUPPORTED,
    "lifecycle": SUPPORTED,
    "securityContext": SUPPORTED,
    "stdin": SUPPORTED,
    "tty": SUPPORTED,
    "image": SUPPORTED,
    "restartPolicy": SUPPORTED,
    "imagePullPolicy": SUPPORTED,
    "terminationMessagePath": SUPPORTED,
    "terminationMessagePolicy": SUPPORTED,
    "resizePolicy": Ignore("in-place resize is a cluster's API; edit the manifest and restart"),
    "stdinOnce": SUPPORTED,
    "envFrom": SUPPORTED,
    "volumeMounts": SUPPORTED,
    "volumeDevices": Refuse("podvisor maps no devices; use the device's path on the host"),
    "restartPolicyRules": Refuse(
        "per-container restart rules are not implemented; use spec.restartPolicy"
    ),
}

CONTAINER_PORT: dict[str, Rule] = {
    "containerPort": SUPPORTED,
    "name": SUPPORTED,
    "hostPort": SUPPORTED,
    "protocol": SUPPORTED,
    "hostIP": Refuse("a hostPort is published on every address of the host; remove hostIP"),
}

RESOURCES: dict[str, Rule] = {
    "requests": SUPPORTED,
    "limits": SUPPORTED,
    "claims": Refuse("dynamic resource allocation needs a cluster's drivers"),
}

ENV_VAR: dict[str, Rule] = {"name": SUPPORTED, "value": SUPPORTED, "valueFrom": SUPPORTED}

ENV_VAR_SOURCE: dict[str, Rule] = {
    "fieldRef": SUPPORTED,
    "secretKeyRef": SUPPORTED,
    "configMapKeyRef": SUPPORTED,
    "resourceFieldRef": SUPPORTED,
    "fileKeyRef": Refuse("env files are not implemented; write the variable under value"),
}

FIELD_REF: dict[str, Rule] = {"fieldPath": SUPPORTED, "apiVersion": SUPPORTED}

SECURITY_CONTEXT: dict[str, Rule] = {
    "runAsUser": SUPPORTED,
    "runAsGroup": SUPPORTED,
    "runAsNonRoot": SUPPORTED,
    "allowPrivilegeEscalation": SUPPORTED,
    "privileged": SUPPORTED,
    "capabilities": SUPPORTED,
    "readOnlyRootFilesystem": SUPPORTED,
    "procMount": Refuse(
        "only Default (the runtimes' masked and read-only /proc paths) is implemented; "
        'Unmasked needs hostUsers: false in Kubernetes ("`hostUsers` must be false to use '
        '`Unmasked`"), which podvisor does not implement: remove procMount',
        harmless=_is("Default"),
    ),
    "seccompProfile": SUPPORTED,
    "appArmorProfile": SUPPORTED,  # refused or ignored as this host allows: manifest.lsm
    "seLinuxOptions": SUPPORTED,
    "windowsOptions": SUPPORTED,
}

CAPABILITIES: dict[str, Rule] = {"add": SUPPORTED, "drop": SUPPORTED}

SECCOMP_PROFILE: dict[str, Rule] = {"type": SUPPORTED, "localhostProfile": SUPPORTED}

APP_ARMOR_PROFILE: dict[str, Rule] = {"type": SUPPORTED, "localhostProfile": SUPPORTED}

SELINUX_OPTIONS: dict[str, Rule] = {
    "user": SUPPORTED,
    "role": SUPPORTED,
    "type": SUPPORTED,
    "level": SUPPORTED,
}

WINDOWS_OPTIONS: dict[str, Rule] = {
    "gmsaCredentialSpecName": SUPPORTED,
    "gmsaCredentialSpec": SUPPORTED,
    "runAsUserName": SUPPORTED,
    "hostProcess": SUPPORTED,
}

# --- Probes and hooks ----------------------------------------------------------------------

PROBE: dict[str, Rule] = {
    "exec": SUPPORTED,
    "httpGet": SUPPORTED,
    "tcpSocket": SUPPORTED,
    "grpc": SUPPORTED,  # read, then refused with what to use instead
    "initialDelaySeconds": SUPPORTED,
    "periodSeconds": SUPPORTED,
    "timeoutSeconds": SUPPORTED,
    "successThreshold": SUPPORTED,
    "failureThreshold": SUPPORTED,
    "terminationGracePeriodSeconds": SUPPORTED,
}

EXEC: dict[str, Rule] = {"command": SUPPORTED}

#: Handler fields written one level too high (`livenessProbe: {command: [...]}`).
MISPLACED_IN_HANDLER = {
    "command": "exec (exec: {command: [...]})",
    "path": "httpGet",
    "port": "httpGet or tcpSocket",
    "httpHeaders": "httpGet",
    "seconds": "sleep (sleep: {seconds: N})",
}

HTTP_GET: dict[str, Rule] = {
    "path": SUPPORTED,
    "port": SUPPORTED,
    "host": SUPPORTED,
    "scheme": SUPPORTED,
    "httpHeaders": SUPPORTED,
    "protocol": Refuse("podvisor's HTTP probes speak HTTP/1.1 only; remove protocol"),
}

HTTP_HEADER: dict[str, Rule] = {"name": SUPPORTED, "value": SUPPORTED}

TCP_SOCKET: dict[str, Rule] = {"port": SUPPORTED, "host": SUPPORTED}

GRPC: dict[str, Rule] = {"port": SUPPORTED, "service": SUPPORTED, "mode": SUPPORTED}

LIFECYCLE: dict[str, Rule] = {"postStart": SUPPORTED, "preStop": SUPPORTED, "stopSignal": SUPPORTED}

LIFECYCLE_HANDLER: dict[str, Rule] = {
    "exec": SUPPORTED,
    "httpGet": SUPPORTED,
    "sleep": SUPPORTED,
    "tcpSocket": Refuse(
        "Kubernetes keeps tcpSocket in hooks for compatibility only and never runs it; "
        "use exec, httpGet or sleep"
    ),
}

SLEEP: dict[str, Rule] = {"seconds": SUPPORTED}

# --- Environment from ConfigMaps, Secrets and resources -------------------------------------

CONFIG_MAP_KEY_SELECTOR: dict[str, Rule] = {
    "name": SUPPORTED,
    "key": SUPPORTED,
    "optional": SUPPORTED,
}

SECRET_KEY_SELECTOR: dict[str, Rule] = {"name": SUPPORTED, "key": SUPPORTED, "optional": SUPPORTED}

RESOURCE_FIELD_SELECTOR: dict[str, Rule] = {
    "containerName": SUPPORTED,
    "resource": SUPPORTED,
    "divisor": SUPPORTED,
}

ENV_FROM_SOURCE: dict[str, Rule] = {
    "prefix": SUPPORTED,
    "configMapRef": SUPPORTED,
    "secretRef": SUPPORTED,
}

CONFIG_MAP_ENV_SOURCE: dict[str, Rule] = {"name": SUPPORTED, "optional": SUPPORTED}

SECRET_ENV_SOURCE: dict[str, Rule] = {"name": SUPPORTED, "optional": SUPPORTED}

# --- Volumes ----------------------------------------------------------------------------------


def _network_disk(what: str) -> Refuse:
    return Refuse(
        f"podvisor attaches no {what}: mount it on the host and use a hostPath volume "
        "of its mount point"
    )


_PROVISIONED = Refuse(
    "volumes provisioned by a cluster's storage drivers do not exist on one machine: "
    "use an emptyDir, a hostPath, or a persistentVolumeClaim of the same file"
)

VOLUME: dict[str, Rule] = {
    "name": SUPPORTED,
    "emptyDir": SUPPORTED,
    "hostPath": SUPPORTED,
    "persistentVolumeClaim": SUPPORTED,
    "configMap": SUPPORTED,
    "secret": SUPPORTED,
    "downwardAPI": SUPPORTED,
    "projected": SUPPORTED,
    "image": SUPPORTED,
    "nfs": _network_disk("NFS export"),
    "iscsi": _network_disk("iSCSI disk"),
    "fc": _network_disk("Fibre Channel disk"),
    "rbd": _network_disk("Ceph RBD image"),
    "cephfs": _network_disk("CephFS"),
    "glusterfs": _network_disk("GlusterFS volume"),
    "quobyte": _network_disk("Quobyte volume"),
    "storageos": _network_disk("StorageOS volume"),
    "scaleIO": _network_disk("ScaleIO volume"),
    "portworxVolume": _network_disk("Portworx volume"),
    "flocker": _network_disk("Flocker dataset"),
    "awsElasticBlockStore": _network_disk("cloud disk (EBS)"),
    "gcePersistentDisk": _network_disk("cloud disk (GCE PD)"),
    "azureDisk": _network_disk("cloud disk (Azure Disk)"),
    "azureFile": _network_disk("Azure File share"),
    "cinder": _network_disk("cloud disk (Cinder)"),
    "vsphereVolume": _network_disk("vSphere disk"),
    "photonPersistentDisk": _network_disk("Photon disk"),
    "csi": Refuse(
        "CSI drivers run in a cluster: mount the storage on the host and use a hostPath volume"
    ),
    "flexVolume": Refuse(
        "FlexVolume drivers run on a cluster's nodes: mount the storage on the host and "
        "use a hostPath volume"
    ),
    "ephemeral": _PROVISIONED,
    "gitRepo": Refuse(
        "gitRepo is deprecated in Kubernetes: clone the repository in an init container "
        "into an emptyDir"
    ),
}

_FILE_OWNERS = Refuse(
    "owners per file are an alpha feature podvisor does not implement: the files belong "
    "to root, with fsGroup as their group"
)

EMPTY_DIR: dict[str, Rule] = {
    "medium": SUPPORTED,
    "sizeLimit": SUPPORTED,
    "mode": Refuse(
        "the directory's mode is an alpha feature podvisor does not implement: it is 0777, "
        "as Kubernetes makes it; set the mode from the program or an init container"
    ),
}

HOST_PATH: dict[str, Rule] = {"path": SUPPORTED, "type": SUPPORTED}

PVC_SOURCE: dict[str, Rule] = {"claimName": SUPPORTED, "readOnly": SUPPORTED}

CONFIG_MAP_VOLUME: dict[str, Rule] = {
    "name": SUPPORTED,
    "items": SUPPORTED,
    "defaultMode": SUPPORTED,
    "optional": SUPPORTED,
    "defaultUser": _FILE_OWNERS,
}

SECRET_VOLUME: dict[str, Rule] = {
    "secretName": SUPPORTED,
    "items": SUPPORTED,
    "defaultMode": SUPPORTED,
    "optional": SUPPORTED,
    "defaultUser": _FILE_OWNERS,
}

KEY_TO_PATH: dict[str, Rule] = {
    "key": SUPPORTED,
    "path": SUPPORTED,
    "mode": SUPPORTED,
    "user": _FILE_OWNERS,
}

DOWNWARD_API_VOLUME: dict[str, Rule] = {
    "items": SUPPORTED,
    "defaultMode": SUPPORTED,
    "defaultUser": _FILE_OWNERS,
}

DOWNWARD_API_FILE: dict[str, Rule] = {
    "path": SUPPORTED,
    "fieldRef": SUPPORTED,
    "resourceFieldRef": SUPPORTED,
    "mode": SUPPORTED,
    "user": _FILE_OWNERS,
}

PROJECTED_VOLUME: dict[str, Rule] = {
    "sources": SUPPORTED,
    "defaultMode": SUPPORTED,
    "defaultUser": _FILE_OWNERS,
}

_NO_API_SERVER_FILES = (
    "there is no API server to issue it: write what the program needs in a Secret "
    "of the same file and project that"
)

VOLUME_PROJECTION: dict[str, Rule] = {
    "configMap": SUPPORTED,
    "secret": SUPPORTED,
    "downwardAPI": SUPPORTED,
    "serviceAccountToken": Refuse(f"a service account token: {_NO_API_SERVER_FILES}"),
    "clusterTrustBundle": Refuse(f"a cluster trust bundle: {_NO_API_SERVER_FILES}"),
    "podCertificate": Refuse(f"a pod certificate: {_NO_API_SERVER_FILES}"),
}

CONFIG_MAP_PROJECTION: dict[str, Rule] = {
    "name": SUPPORTED,
    "items": SUPPORTED,
    "optional": SUPPORTED,
}

SECRET_PROJECTION: dict[str, Rule] = {"name": SUPPORTED, "items": SUPPORTED, "optional": SUPPORTED}

DOWNWARD_API_PROJECTION: dict[str, Rule] = {"items": SUPPORTED}

IMAGE_VOLUME: dict[str, Rule] = {"reference": SUPPORTED, "pullPolicy": SUPPORTED}

VOLUME_MOUNT: dict[str, Rule] = {
    "name": SUPPORTED,
    "mountPath": SUPPORTED,
    "readOnly": SUPPORTED,
    "subPath": SUPPORTED,
    "subPathExpr": SUPPORTED,
    "mountPropagation": SUPPORTED,
    "recursiveReadOnly": SUPPORTED,
    "bindMountOptions": Refuse(
        "bind mount options are an alpha feature podvisor does not implement; remove them"
    ),
}

LOCAL_OBJECT_REFERENCE: dict[str, Rule] = {"name": SUPPORTED}
