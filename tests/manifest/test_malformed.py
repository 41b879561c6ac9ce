"""Malformed manifests: each gives exactly these messages, at these lines and columns.

One case per mistake a person makes, from a blank file to a typo in an
annotation. Every problem in a manifest is reported at once, in file order,
as `FILE:LINE:COLUMN: PATH: MESSAGE`; nothing loads.
"""

from __future__ import annotations

import pytest

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import load

CASES = [
    pytest.param(
        "",
        [
            "pod.yaml: empty manifest: expected a Pod",
        ],
        id="empty",
    ),
    pytest.param(
        """\
# nothing here
---
""",
        [
            "pod.yaml: empty manifest: expected a Pod",
        ],
        id="only-comments",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
spec: [containers
""",
        [
            "pod.yaml:4:1: not YAML: did not find expected ',' or ']' (while parsing a flow sequence started at line 3)",
        ],
        id="not-yaml",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
 metadata: {}
""",
        [
            "pod.yaml:3:10: not YAML: mapping values are not allowed in this context",
        ],
        id="not-yaml-indent",
    ),
    pytest.param(
        """\
- apiVersion: v1
- kind: Pod
""",
        [
            "pod.yaml:1:1: a Pod manifest is a mapping (apiVersion, kind, metadata, spec), not a list",
        ],
        id="a-list",
    ),
    pytest.param(
        "just some text\n",
        [
            "pod.yaml:1:1: a Pod manifest is a mapping (apiVersion, kind, metadata, spec), not the string 'just some text'",
        ],
        id="a-string",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
---
apiVersion: v1
kind: Pod
""",
        [
            "pod.yaml:5:7: kind: a second pod (the first is at line 1): podvisor runs one pod per manifest; put the other in a file of its own",
        ],
        id="two-documents",
    ),
    pytest.param(
        """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {}
""",
        [
            "pod.yaml:4:1: spec.template: required: the pod template",
        ],
        id="deployment",
    ),
    pytest.param(
        """\
apiVersion: v2
kind: Pod
metadata: {name: web}
""",
        [
            "pod.yaml:1:13: apiVersion: 'v2': a Pod is apiVersion: v1",
        ],
        id="wrong-api-version",
    ),
    pytest.param(
        """\
apiVersion: v1
metadata: {name: web}
""",
        [
            "pod.yaml:1:1: kind: required: write kind: Pod",
        ],
        id="no-kind",
    ),
    pytest.param(
        """\
kind: Pod
metadata: {name: web}
""",
        [
            "pod.yaml:1:1: apiVersion: required: write apiVersion: v1",
        ],
        id="no-api-version",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: pod
""",
        [
            "pod.yaml:2:7: kind: 'pod': podvisor runs a Pod (a Pod is apiVersion: v1, kind: Pod)",
        ],
        id="kind-lowercase",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
spec:
  containers: [{name: a, command: ["true"]}]
""",
        [
            "pod.yaml:1:1: metadata: required: at least metadata.name",
        ],
        id="no-metadata",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  labels: {app: web}
spec:
  containers: [{name: a, command: ["true"]}]
""",
        [
            "pod.yaml:3:1: metadata.name: required: the pod's name (e.g. name: web)",
        ],
        id="no-name",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: My_Pod}
spec:
  containers: [{name: a, command: ["true"]}]
""",
        [
            "pod.yaml:3:18: metadata.name: 'My_Pod' is not a valid name: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit (e.g. 'my-app')",
        ],
        id="bad-pod-name",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
""",
        [
            "pod.yaml:1:1: spec: required: the pod's containers",
        ],
        id="no-spec",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: Never
""",
        [
            "pod.yaml:4:1: spec.containers: required: at least one container",
        ],
        id="no-containers",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers: []
""",
        [
            "pod.yaml:5:3: spec.containers: must list at least one container",
        ],
        id="empty-containers",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - command: ["true"]
""",
        [
            "pod.yaml:6:5: spec.containers[0].name: required: every container has a name",
        ],
        id="container-no-name",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    args: [--port, "80"]
""",
        [
            "pod.yaml:6:5: spec.containers[0].command: required in host mode (it names no image): podvisor runs the program from the host's file system, so give it and its arguments (e.g. command: [python3, -m, http.server]), or name an image that says what to run",
        ],
        id="container-no-command",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: []
""",
        [
            "pod.yaml:6:5: spec.containers[0].command: required in host mode (it names no image): podvisor runs the program from the host's file system, so give it and its arguments (e.g. command: [python3, -m, http.server]), or name an image that says what to run",
        ],
        id="command-empty",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    comand: [python3, -m, http.server]
""",
        [
            "pod.yaml:6:5: spec.containers[0].command: required in host mode (it names no image): podvisor runs the program from the host's file system, so give it and its arguments (e.g. command: [python3, -m, http.server]), or name an image that says what to run",
            "pod.yaml:7:5: spec.containers[0].comand: unknown field; did you mean 'command'?",
        ],
        id="typo-command",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    replicas: 3
""",
        [
            "pod.yaml:8:5: spec.containers[0].replicas: unknown field",
        ],
        id="unknown-field",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, "1"]
    command: [sleep, "2"]
""",
        [
            "pod.yaml:8:5: spec.containers[0].command: duplicate key (first at line 7)",
        ],
        id="duplicate-key",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - name: web
    command: ["true"]
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:9:11: spec.containers[0].name: 'web' is taken (line 6): names are unique across containers and initContainers",
        ],
        id="duplicate-container",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
    env:
    - name: PORT
      value: 8080
""",
        [
            "pod.yaml:10:14: spec.containers[0].env[0].value: must be a string, not the number 8080: quote it, '8080'",
        ],
        id="env-number",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, -m, http.server]
    args: [8080]
""",
        [
            "pod.yaml:8:12: spec.containers[0].args[0]: must be a string, not the number 8080: quote it, '8080'",
        ],
        id="args-number",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, -m, http.server]
    ports:
    - containerPort: 80800
""",
        [
            "pod.yaml:9:22: spec.containers[0].ports[0].containerPort: must be between 1 and 65535, not 80800",
        ],
        id="port-range",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, -m, http.server]
    ports:
    - containerPort: "8080"
""",
        [
            "pod.yaml:9:22: spec.containers[0].ports[0].containerPort: must be an integer, not the string '8080': remove the quotes",
        ],
        id="port-quoted",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, -m, http.server]
    resources:
      limits:
        memory: 12Q
""",
        [
            "pod.yaml:10:17: spec.containers[0].resources.limits.memory: '12Q' is not a quantity (examples: 128Mi, 1G, 500M)",
        ],
        id="memory-not-quantity",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, -m, http.server]
    resources:
      requests: {cpu: -500m}
""",
        [
            "pod.yaml:9:23: spec.containers[0].resources.requests.cpu: '-500m' must not be negative",
        ],
        id="cpu-negative",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, -m, http.server]
    resources:
      requests: {memory: 1Gi}
      limits: {memory: 512Mi}
""",
        [
            "pod.yaml:9:26: spec.containers[0].resources.requests.memory: must be at most the memory limit (512Mi)",
        ],
        id="request-over-limit",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, -m, http.server]
    resources:
      limits: {memmory: 1Gi}
""",
        [
            "pod.yaml:9:16: spec.containers[0].resources.limits.memmory: unknown resource; did you mean 'memory'?",
        ],
        id="resource-typo",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, train.py]
    resources:
      limits: {nvidia.com/gpu: 1}
""",
        [
            "pod.yaml:9:16: spec.containers[0].resources.limits[nvidia.com/gpu]: not supported: extended resources are handed out by a cluster's device plugins",
        ],
        id="extended-resource",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: Allways
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:5:18: spec.restartPolicy: 'Allways' is not one of Always, OnFailure, Never; did you mean 'Always'?",
        ],
        id="restart-policy",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - name: setup
    command: ["true"]
    restartPolicy: OnFailure
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:8:20: spec.initContainers[0].restartPolicy: 'OnFailure': an init container takes only Always (a sidecar)",
        ],
        id="init-restart-policy",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    restartPolicy: Always
""",
        [
            "pod.yaml:8:20: spec.containers[0].restartPolicy: not supported on a container of spec.containers: set spec.restartPolicy (only an init container takes restartPolicy: Always, which makes it a sidecar)",
        ],
        id="main-restart-policy",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    livenessProbe:
      periodSeconds: 5
""",
        [
            "pod.yaml:8:5: spec.containers[0].livenessProbe: must have a handler: one of exec, httpGet or tcpSocket",
        ],
        id="probe-no-handler",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    readinessProbe:
      exec: {command: ["true"]}
      tcpSocket: {port: 80}
""",
        [
            "pod.yaml:10:7: spec.containers[0].readinessProbe.tcpSocket: a probe has one handler; this one already has exec",
        ],
        id="probe-two-handlers",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    livenessProbe:
      exec: {command: ["true"]}
      successThreshold: 2
""",
        [
            "pod.yaml:10:25: spec.containers[0].livenessProbe.successThreshold: must be 1 for a livenessProbe (Kubernetes' rule); only a readinessProbe can ask for more",
        ],
        id="liveness-success-threshold",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    startupProbe:
      exec: {command: ["true"]}
      successThreshold: 3
""",
        [
            "pod.yaml:10:25: spec.containers[0].startupProbe.successThreshold: must be 1 for a startupProbe (Kubernetes' rule); only a readinessProbe can ask for more",
        ],
        id="startup-success-threshold",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    readinessProbe:
      exec: {command: ["true"]}
      periodSeconds: -5
""",
        [
            "pod.yaml:10:22: spec.containers[0].readinessProbe.periodSeconds: must be at least 1 (0 means the default, 10), not -5",
        ],
        id="period-negative",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    readinessProbe:
      exec: {command: ["true"]}
      terminationGracePeriodSeconds: 10
""",
        [
            "pod.yaml:10:38: spec.containers[0].readinessProbe.terminationGracePeriodSeconds: may not be set on a readinessProbe: a failing one never kills",
        ],
        id="readiness-grace",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    livenessProbe:
      exec: {command: ["true"]}
      terminationGracePeriodSeconds: 0
""",
        [
            "pod.yaml:10:38: spec.containers[0].livenessProbe.terminationGracePeriodSeconds: must be at least 1, not 0",
        ],
        id="probe-grace-zero",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    livenessProbe:
      grpc: {port: 9090}
""",
        [
            "pod.yaml:9:7: spec.containers[0].livenessProbe.grpc: not supported: podvisor does not speak the gRPC health-checking protocol yet; use an exec probe that runs grpc_health_probe (command: [grpc_health_probe, -addr=:PORT]), or a tcpSocket probe",
        ],
        id="grpc-probe",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [python3, -m, http.server, "8080"]
    ports:
    - {name: http, containerPort: 8080}
    readinessProbe:
      httpGet: {path: /, port: htpp}
""",
        [
            "pod.yaml:11:32: spec.containers[0].readinessProbe.httpGet.port: no port named 'htpp' in this container (named ports: http)",
        ],
        id="named-port-missing",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - name: migrate
    command: [./migrate]
    readinessProbe:
      exec: {command: ["true"]}
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:8:5: spec.initContainers[0].readinessProbe: may not be set on an init container that runs to completion; add restartPolicy: Always to make it a sidecar",
        ],
        id="init-with-probe",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  volumes:
  - {name: data, emptyDir: {}}
  containers:
  - name: web
    command: [sleep, infinity]
    volumeMounts:
    - {name: date, mountPath: /data}
""",
        [
            "pod.yaml:11:14: spec.containers[0].volumeMounts[0].name: no volume named 'date' in spec.volumes (data); did you mean 'data'?",
        ],
        id="volumes",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
    envFrom:
    - configMapRef: {name: settings}
""",
        [
            'pod.yaml:9:28: spec.containers[0].envFrom[0].configMapRef.name: CreateContainerConfigError: configmap "settings" not found: the kubelet keeps the container waiting; add a ConfigMap named settings in namespace default to this file (or pass it with --config), or set optional: true',
        ],
        id="env-from",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
    env:
    - name: PASSWORD
      valueFrom:
        secretKeyRef: {name: db, key: password}
""",
        [
            'pod.yaml:11:30: spec.containers[0].env[0].valueFrom.secretKeyRef.name: CreateContainerConfigError: secret "db" not found: the kubelet keeps the container waiting; add a Secret named db in namespace default to this file (or pass it with --config), or set optional: true',
        ],
        id="secret-key-ref",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
    env:
    - name: NODE
      valueFrom:
        fieldRef: {fieldPath: status.phase}
""",
        [
            "pod.yaml:11:31: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: 'status.phase' is not supported (supported: metadata.name, metadata.namespace, metadata.uid, spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP, status.podIPs, metadata.labels['KEY'], metadata.annotations['KEY']); did you mean 'status.podIPs'?",
        ],
        id="field-ref-unknown",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
    env:
    - name: NAME
      valueFrom:
        fieldRef: {fieldPath: metadata.nme}
""",
        [
            "pod.yaml:11:31: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: 'metadata.nme' is not supported (supported: metadata.name, metadata.namespace, metadata.uid, spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP, status.podIPs, metadata.labels['KEY'], metadata.annotations['KEY']); did you mean 'metadata.name'?",
        ],
        id="field-ref-typo",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  hostNetwork: true
  containers:
  - name: web
    command: [python3, -m, http.server]
    ports:
    - {containerPort: 8000, hostPort: 80}
""",
        [
            "pod.yaml:10:39: spec.containers[0].ports[0].hostPort: must equal containerPort (8000) with hostNetwork: true",
        ],
        id="host-network-port",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: a
    command: [sleep, infinity]
    ports: [{containerPort: 80, hostPort: 8080}]
  - name: b
    command: [sleep, infinity]
    ports: [{containerPort: 81, hostPort: 8080}]
""",
        [
            "pod.yaml:11:13: spec.containers[1].ports[0].hostPort: 8080/TCP is taken already, by container 'a'",
        ],
        id="host-port-taken",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web, annotations: {podvisor.io/network: loopback}}
spec:
  containers:
  - name: a
    command: [sleep, infinity]
    ports: [{containerPort: 80, hostPort: 8080}]
""",
        [
            "pod.yaml:8:13: spec.containers[0].ports[0].hostPort: needs the pod's own address to forward to, and the loopback network has none: use the bridge network (podvisor.io/network: bridge) or remove hostPort",
        ],
        id="host-port-on-loopback",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: web
    command: [sleep, infinity]
    lifecycle:
      preStop:
        sleep: {seconds: 10}
""",
        [
            "pod.yaml:10:7: spec.containers[0].lifecycle.preStop.sleep.seconds: 10s is longer than terminationGracePeriodSeconds (5s): the container would be killed during its preStop hook",
        ],
        id="pre-stop-too-long",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    lifecycle:
      postStart:
        tcpSocket: {port: 80}
""",
        [
            "pod.yaml:10:9: spec.containers[0].lifecycle.postStart.tcpSocket: not supported: Kubernetes keeps tcpSocket in hooks for compatibility only and never runs it; use exec, httpGet or sleep",
        ],
        id="hook-tcp-socket",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    lifecycle:
      preStop: {}
      postStart:
        command: [echo, hi]
""",
        [
            "pod.yaml:9:7: spec.containers[0].lifecycle.preStop: must have a handler: one of exec, httpGet or sleep",
            "pod.yaml:11:9: spec.containers[0].lifecycle.postStart.command: unknown field here: command goes under exec (exec: {command: [...]})",
        ],
        id="hook-no-handler",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    securityContext:
      allowPrivilegeEscalation: false
      privileged: true
""",
        [
            "pod.yaml:10:19: spec.containers[0].securityContext.privileged: cannot be true with allowPrivilegeEscalation: false",
        ],
        id="privileged-no-escalation",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  securityContext:
    runAsNonRoot: true
  containers:
  - name: web
    command: [sleep, infinity]
    securityContext:
      runAsUser: 0
""",
        [
            "pod.yaml:11:18: spec.containers[0].securityContext.runAsUser: container's runAsUser breaks non-root policy (container: web)",
        ],
        id="non-root-as-root",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    securityContext:
      capabilities:
        add: [NET_BIND_SERVCE]
        drop: [ALL]
""",
        [
            "pod.yaml:10:15: spec.containers[0].securityContext.capabilities.add[0]: 'NET_BIND_SERVCE' is not a Linux capability (see capabilities(7)); did you mean 'NET_BIND_SERVICE'?",
        ],
        id="capability-typo",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  securityContext:
    seccompProfile: {type: Default}
  containers:
  - name: web
    command: [sleep, infinity]
    securityContext:
      seccompProfile: {type: Localhost, localhostProfile: /etc/profile.json}
""",
        [
            "pod.yaml:6:28: spec.securityContext.seccompProfile.type: 'Default' is not one of RuntimeDefault, Localhost, Unconfined",
            "pod.yaml:11:59: spec.containers[0].securityContext.seccompProfile.localhostProfile: '/etc/profile.json' must be a relative path without '..'",
        ],
        id="seccomp",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    podvisor.io/pid-limit: "100"
spec:
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:6:5: metadata.annotations[podvisor.io/pid-limit]: unknown podvisor setting; did you mean 'podvisor.io/pids-limit'?",
        ],
        id="annotation-typo",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    podvisor.io/cpuset.wbe: "0-1"
spec:
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:6:5: metadata.annotations[podvisor.io/cpuset.wbe]: no container named 'wbe'; did you mean 'web'?",
        ],
        id="annotation-container-typo",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    podvisor.io/pids-limit: 100
spec:
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:6:29: metadata.annotations[podvisor.io/pids-limit]: must be a string, not the number 100: quote it, '100'",
        ],
        id="annotation-number",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    podvisor.io/network: vpn
    podvisor.io/backoff-max: "-5"
    podvisor.io/metrics-address: "9100"
    podvisor.io/stop-signal.web: SIGFOO
spec:
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:6:26: metadata.annotations[podvisor.io/network]: 'vpn' is not a network mode: use host, loopback or bridge",
            "pod.yaml:7:30: metadata.annotations[podvisor.io/backoff-max]: '-5' is not a duration (examples: 10, 10s, 500ms, 5m)",
            "pod.yaml:8:34: metadata.annotations[podvisor.io/metrics-address]: '9100' is not HOST:PORT or off (examples: 127.0.0.1:9464, [::1]:9464, :9464)",
            "pod.yaml:9:34: metadata.annotations[podvisor.io/stop-signal.web]: 'SIGFOO' is not a signal that can stop a process (examples: SIGTERM, SIGINT)",
        ],
        id="annotation-bad-value",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    podvisor.io/network.web: loopback
    podvisor.io/cpuset: "0"
spec:
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:6:5: metadata.annotations[podvisor.io/network.web]: podvisor.io/network applies to the whole pod: remove '.web'",
            "pod.yaml:7:5: metadata.annotations[podvisor.io/cpuset]: podvisor.io/cpuset applies to one container: write podvisor.io/cpuset.CONTAINER",
        ],
        id="annotation-scope",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    podvisor.io/network: loopback
    podvisor.io/subnet: 10.88.0.0/24
spec:
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:7:25: metadata.annotations[podvisor.io/subnet]: applies only with podvisor.io/network: bridge",
        ],
        id="subnet-without-bridge",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    podvisor.io/network: bridge
spec:
  hostNetwork: true
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:6:26: metadata.annotations[podvisor.io/network]: 'bridge' contradicts spec.hostNetwork: true",
        ],
        id="host-network-contradiction",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    lifecycle:
      stopSignal: SIGUSR1
""",
        [
            "pod.yaml:9:19: spec.containers[0].lifecycle.stopSignal: Kubernetes accepts stopSignal only when the pod sets spec.os.name: linux",
        ],
        id="stop-signal-without-os",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  shareProcessNamespace: true
  hostPID: true
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:5:26: spec.shareProcessNamespace: cannot be true with hostPID: true",
        ],
        id="share-pid-and-host-pid",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    version: "1.0 beta"
spec:
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:6:14: metadata.labels.version: '1.0 beta' is not a valid label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        ],
        id="label-value",
    ),
    pytest.param(
        """\
{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {"name": "web"},
  "spec": {
    "shareProcessNamespace": "true",
    "containers": [
      {"name": "web", "command": ["sleep", "infinity"]}
    ]
  }
}
""",
        [
            "pod.yaml:6:30: spec.shareProcessNamespace: must be true or false, not the string 'true': remove the quotes",
        ],
        id="json",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [make]
    workingDir: src
""",
        [
            "pod.yaml:8:17: spec.containers[0].workingDir: 'src' must be an absolute path",
        ],
        id="working-dir-relative",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    ports:
    - {name: http, containerPort: 80}
    - {name: http, containerPort: 81}
    - {name: HTTPS_PORT, containerPort: 443}
""",
        [
            "pod.yaml:10:14: spec.containers[0].ports[1].name: duplicate port name 'http'",
            "pod.yaml:11:14: spec.containers[0].ports[2].name: 'HTTPS_PORT' is not a valid port name: at most 15 lower-case letters, digits and '-', with at least one letter (e.g. 'http', 'metrics')",
        ],
        id="port-names",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  os: {name: windows}
  containers:
  - name: web
    command: [cmd.exe]
""",
        [
            "pod.yaml:5:14: spec.os.name: 'windows': podvisor runs Linux programs only (os.name: linux)",
        ],
        id="windows",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    lifecycle:
      preStop:
        sleep: {}
""",
        [
            "pod.yaml:10:9: spec.containers[0].lifecycle.preStop.sleep.seconds: required: how long to sleep",
        ],
        id="sleep-without-seconds",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    livenessProbe:
      httpGet: {port: 80, scheme: http}
""",
        [
            "pod.yaml:9:35: spec.containers[0].livenessProbe.httpGet.scheme: 'http' is not HTTP or HTTPS",
        ],
        id="http-scheme",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
    name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:5:3: spec.containers: must be a list, not a mapping",
        ],
        id="containers-not-a-list",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - &base
    name: init
    command: [sleep, "0"]
  containers:
  - <<: *base
    name: web
    comand: [sleep, infinity]
""",
        [
            "pod.yaml:12:5: spec.containers[0].comand: unknown field; did you mean 'command'?",
        ],
        id="merge-key",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  volumes:
  - {name: data, emptyDir: {medium: Disk}}
  - {name: data, emptyDir: {}}
  - {name: logs, hostPath: {path: var/log, type: Dir}}
  - {name: both, emptyDir: {}, hostPath: {path: /tmp}}
  - {name: none}
  containers:
  - name: web
    command: [sleep, infinity]
    volumeMounts:
    - {name: dta, mountPath: /data}
    - {name: data, mountPath: data}
    - {name: data, mountPath: /x, subPath: ../etc}
    - {name: data, mountPath: /y, mountPropagation: Bidirectional}
    - {name: data, mountPath: /y}
""",
        [
            "pod.yaml:6:37: spec.volumes[0].emptyDir.medium: 'Disk' is not \"\" (the disk) or Memory (a tmpfs)",
            "pod.yaml:7:12: spec.volumes[1].name: 'data' is taken (line 6): volume names are unique",
            "pod.yaml:8:35: spec.volumes[2].hostPath.path: 'var/log' must be an absolute path",
            "pod.yaml:8:50: spec.volumes[2].hostPath.type: 'Dir' is not a hostPath type ('', DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice)",
            "pod.yaml:9:32: spec.volumes[3].hostPath: may not be set together with emptyDir: a volume has one source",
            "pod.yaml:10:5: spec.volumes[4]: required: a source, e.g. emptyDir: {} (one of emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI, projected, image)",
            "pod.yaml:15:14: spec.containers[0].volumeMounts[0].name: no volume named 'dta' in spec.volumes (both, data, logs, none); did you mean 'data'?",
            "pod.yaml:16:31: spec.containers[0].volumeMounts[1].mountPath: 'data' must be an absolute path",
            "pod.yaml:17:44: spec.containers[0].volumeMounts[2].subPath: '../etc' must not contain '..'",
            "pod.yaml:18:53: spec.containers[0].volumeMounts[3].mountPropagation: Bidirectional propagation takes a privileged container (securityContext.privileged: true); HostToContainer needs no privilege",
        ],
        id="volume-problems",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  volumes:
  - name: share
    nfs: {server: nas, path: /export}
  - name: disk
    csi: {driver: ebs.csi.aws.com}
  - name: token
    projected:
      sources:
      - serviceAccountToken: {path: token}
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:7:5: spec.volumes[0].nfs: not supported: podvisor attaches no NFS export: mount it on the host and use a hostPath volume of its mount point",
            "pod.yaml:9:5: spec.volumes[1].csi: not supported: CSI drivers run in a cluster: mount the storage on the host and use a hostPath volume",
            "pod.yaml:13:9: spec.volumes[2].projected.sources[0].serviceAccountToken: not supported: a service account token: there is no API server to issue it: write what the program needs in a Secret of the same file and project that",
        ],
        id="volume-kinds-refused",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a.conf: "x"}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  volumes:
  - name: conf
    configMap:
      name: settings
      defaultMode: 01777
      items:
      - {key: b.conf, path: b.conf}
      - {key: a.conf, path: /etc/a.conf}
  - name: creds
    secret: {secretName: db}
  - name: claim
    persistentVolumeClaim: {claimName: data}
  - name: info
    downwardAPI:
      items:
      - {path: phase, fieldRef: {fieldPath: status.phase}}
  containers:
  - name: web
    command: [sleep, infinity]
""",
        [
            "pod.yaml:14:20: spec.volumes[0].configMap.defaultMode: 01777 (1023) is not a file mode: 0 to 0777 (0 to 511 in JSON)",
            "pod.yaml:16:15: spec.volumes[0].configMap.items[0].key: ConfigMap default/settings has no key b.conf: the kubelet cannot set up the volume; add the key, or set optional: true; did you mean 'a.conf'?",
            "pod.yaml:17:29: spec.volumes[0].configMap.items[1].path: '/etc/a.conf' must be a relative path",
            'pod.yaml:19:26: spec.volumes[1].secret.secretName: secret "db" not found: the kubelet cannot set up the volume and the pod stays ContainerCreating; add a Secret named db in namespace default to this file (or pass it with --config), or set optional: true',
            'pod.yaml:21:40: spec.volumes[2].persistentVolumeClaim.claimName: persistentvolumeclaim "data" not found: the pod would stay Pending; add a PersistentVolumeClaim named data in namespace default to this file (or pass it with --config)',
            "pod.yaml:25:45: spec.volumes[3].downwardAPI.items[0].fieldRef.fieldPath: 'status.phase' is not one a volume can hold (one of metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, or metadata.labels['KEY']); status and spec fields go in env",
        ],
        id="config-volume-problems",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Secret
metadata: {name: db}
data:
  password: not*base64
  "bad key": eA==
---
apiVersion: v1
kind: Secret
metadata: {name: registry}
type: kubernetes.io/dockerconfigjson
stringData: {other: x}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
""",
        [
            "pod.yaml:5:3: data.password: not base64: encode it (base64 -w0), or put the text under stringData",
            "pod.yaml:6:3: data[bad key]: 'bad key': a key is at most 253 letters, digits, '-', '_' and '.'",
            "pod.yaml:11:7: type: a kubernetes.io/dockerconfigjson Secret needs the key .dockerconfigjson in data or stringData",
        ],
        id="config-map-and-secret-problems",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {LOG_LEVEL: debug}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
    env:
    - name: LEVEL
      valueFrom:
        configMapKeyRef: {name: settings, key: LOG_LEVL}
    - name: OTHER
      valueFrom:
        configMapKeyRef: {name: settings, key: OTHER, optional: true}
""",
        [
            "pod.yaml:16:48: spec.containers[0].env[0].valueFrom.configMapKeyRef.key: CreateContainerConfigError: couldn't find key LOG_LEVL in ConfigMap default/settings: the kubelet keeps the container waiting; add the key, or set optional: true; did you mean 'LOG_LEVEL'?",
        ],
        id="env-missing-key",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
    resources: {limits: {cpu: "1"}}
    envFrom:
    - configMapRef: {name: a}
      secretRef: {name: b}
    env:
    - name: CPU
      valueFrom:
        resourceFieldRef: {resource: limits.cpu, divisor: 1Mi}
    - name: GPU
      valueFrom:
        resourceFieldRef: {resource: limits.nvidia.com/gpu}
    - name: OTHER
      valueFrom:
        resourceFieldRef: {containerName: sidecar, resource: limits.cpu}
""",
        [
            "pod.yaml:11:7: spec.containers[0].envFrom[0].secretRef: give one source: configMapRef or secretRef",
            "pod.yaml:15:59: spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: '1Mi' is not a divisor for limits.cpu (one of 1m, 1)",
            "pod.yaml:18:38: spec.containers[0].env[1].valueFrom.resourceFieldRef.resource: 'limits.nvidia.com/gpu' is not supported (supported: limits.cpu, requests.cpu, limits.memory, requests.memory); did you mean 'limits.cpu'?",
            "pod.yaml:21:43: spec.containers[0].env[2].valueFrom.resourceFieldRef.containerName: 'sidecar' is not a container of this pod",
        ],
        id="env-sources",
    ),
    pytest.param(
        """\
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  completions: 3
  backoffLimit: -1
  template:
    spec:
      containers:
      - name: work
        command: ["true"]
""",
        [
            "pod.yaml:5:16: spec.completions: 3: podvisor runs one pod to one completion; set completions: 1 or leave it out",
            "pod.yaml:6:17: spec.backoffLimit: must be at least 0, not -1",
            "pod.yaml:8:5: spec.template.spec.restartPolicy: required: a Job's pod has restartPolicy OnFailure or Never",
        ],
        id="workload-problems",
    ),
    pytest.param(
        """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: web
        command: [sleep, infinity]
""",
        [
            "pod.yaml:5:13: spec.replicas: 0 asks for no pod: nothing would run",
            "pod.yaml:8:22: spec.template.spec.restartPolicy: 'Never': a Deployment's pod has restartPolicy Always (a Job runs to completion)",
        ],
        id="deployment-problems",
    ),
    pytest.param(
        """\
apiVersion: v1
kind: Deployment
metadata: {name: web}
spec: {}
""",
        [
            "pod.yaml:1:13: apiVersion: 'v1': a Deployment is apiVersion: apps/v1",
        ],
        id="workload-wrong-api-version",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_malformed_manifest(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    assert [str(p) for p in caught.value.problems] == expected


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


def test_every_problem_has_a_place() -> None:
    # Past the one-line cases (an empty file), each message points at a line and column.
    for case in CASES:
        text, expected = case.values
        assert isinstance(text, str)
        assert isinstance(expected, list)
        if text.strip() and not text.lstrip().startswith("#"):
            for line in expected:
                assert line.split(":")[1].isdigit(), (case.id, line)
