"""The downward API in env, in running pods: what a container reads is what Kubernetes gives.

On one machine the node is this machine: `spec.nodeName` is its name,
`status.hostIP(s)` its primary address. `status.podIP(s)` is the address
the pod's own interface holds (the host's with hostNetwork, as in
Kubernetes), and `resourceFieldRef` counts in units of its divisor, rounded
up, a limit left out being this machine's capacity.
"""

from __future__ import annotations

import json
import os

import pytest

from podvisor.supervisor.manifest.expansion import host_ip
from tests.supervisor.conftest import run_pod

pytestmark = pytest.mark.anyio

# Each variable on a line of its own, then the pod's global IPv4 addresses as
# its interfaces hold them.
SHOW = json.dumps(
    "env | grep -E '^(NODE|ACCOUNT|HOST_IP|HOST_IPS|POD_IP|POD_IPS)=' | sort; "
    "ip -4 -o addr show scope global | awk '{print \"ADDRESS=\" $4}'"
)
ENV = """\
            env:
            - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
            - {name: ACCOUNT, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
            - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
            - {name: HOST_IPS, valueFrom: {fieldRef: {fieldPath: status.hostIPs}}}
            - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
            - {name: POD_IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
"""


def _values(lines: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition("=")
        found.setdefault(name, []).append(value)
    return found


async def test_pod_fields_in_a_pod_of_its_own_network() -> None:
    result = await run_pod(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: downward-bridge, annotations: {{podvisor.io/network: bridge}}}}
        spec:
          restartPolicy: Never
          serviceAccountName: builder
          containers:
          - name: main
            command: [sh, -c, {SHOW}]
{ENV}""")
    assert result.status == 0, result.stderr
    values = _values(result.lines("main"))
    [address] = values["ADDRESS"]  # the pod's one interface beside lo
    assert values["POD_IP"] == [address.split("/")[0]]
    assert values["POD_IPS"] == values["POD_IP"]
    assert values["POD_IP"] != [host_ip()]
    assert values["HOST_IP"] == values["HOST_IPS"] == [host_ip()]
    assert values["NODE"] == [os.uname().nodename]
    assert values["ACCOUNT"] == ["builder"]


async def test_pod_fields_with_host_network_are_the_hosts() -> None:
    result = await run_pod(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: downward-host}}
        spec:
          restartPolicy: Never
          hostNetwork: true
          containers:
          - name: main
            command: [sh, -c, {SHOW}]
{ENV}""")
    assert result.status == 0, result.stderr
    values = _values(result.lines("main"))
    assert values["POD_IP"] == values["POD_IPS"] == values["HOST_IP"] == [host_ip()]
    assert values["ACCOUNT"] == ["default"]


async def test_resource_field_refs_in_a_running_pod() -> None:
    result = await run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: downward-resources}
        spec:
          restartPolicy: Never
          initContainers:
          - name: setup
            command: ["true"]
            resources: {requests: {cpu: 100m, memory: 10Mi}, limits: {cpu: 1, memory: 32Mi}}
          containers:
          - name: main
            command: [sh, -c, 'env | grep -E "^R_" | sort']
            resources: {requests: {cpu: 250m}, limits: {memory: 100M}}
            env:
            - {name: R_CPU_REQUEST, valueFrom: {resourceFieldRef: {resource: requests.cpu}}}
            - name: R_CPU_REQUEST_M
              valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}
            - name: R_CPU_LIMIT_M
              valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}
            - name: R_MEMORY_LIMIT_MI
              valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
            - name: R_MEMORY_REQUEST
              valueFrom: {resourceFieldRef: {resource: requests.memory}}
            - name: R_SETUP_MEMORY_KI
              valueFrom:
                resourceFieldRef: {containerName: setup, resource: limits.memory, divisor: 1Ki}
            - name: R_SETUP_CPU_REQUEST_M
              valueFrom:
                resourceFieldRef: {containerName: setup, resource: requests.cpu, divisor: 1m}
    """)
    assert result.status == 0, result.stderr
    values = dict(line.split("=", 1) for line in result.lines("main"))
    assert values == {
        "R_CPU_REQUEST": "1",  # 250m in whole cores, rounded up
        "R_CPU_REQUEST_M": "250",
        "R_CPU_LIMIT_M": str((os.cpu_count() or 1) * 1000),  # no limit: the machine's CPUs
        "R_MEMORY_LIMIT_MI": "96",  # 100M is 95.4Mi, rounded up
        "R_MEMORY_REQUEST": str(100 * 10**6),  # a request left out is its limit
        "R_SETUP_MEMORY_KI": str(32 * 1024),
        "R_SETUP_CPU_REQUEST_M": "100",
    }
