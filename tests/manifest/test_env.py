"""Environment variables and argv, resolved as the kubelet resolves them.

The expansion cases are Kubernetes' own (third_party/forked/golang/expansion,
expand_test.go).
"""

from __future__ import annotations

import pytest

from podvisor.supervisor.manifest import expand, expand_argv, load, resolve_env

CONTEXT = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("$(VAR_A)-1", "A-1"),
        ("___$(VAR_B)___", "___B___"),
        ("___$(VAR_C)", "___C"),
        ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
        ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
        ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("foo\\$(VAR_C)bar", "foo\\Cbar"),
        ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
        ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
        ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
        ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
        ("$(VAR_REF)", "$(VAR_A)"),
        ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
        ("foo$(VAR_EMPTY)bar", "foobar"),
        ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
        ("f00__(VAR_A)__", "f00__(VAR_A)__"),
        ("$?_boo_$!", "$?_boo_$!"),
        ("$VAR_A", "$VAR_A"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
        ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
        ("$$$$$$$(VAR_A)", "$$$A"),
        ("$VAR_A)", "$VAR_A)"),
        ("${VAR_A}", "${VAR_A}"),
        ("$(VAR_B)_______$(A", "B_______$(A"),
        ("$(VAR_C)_______$(", "C_______$("),
        ("$(VAR_A)foobarzab$", "Afoobarzab$"),
        ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
        ("--$($($($($--", "--$($($($($--"),
        ("$($($($($--foo$(", "$($($($($--foo$("),
        ("foo0--$($($($(", "foo0--$($($($("),
        ("$(foo$$var)", "$(foo$$var)"),
        ("\n", "\n"),
    ],
)
def test_kubernetes_expansion_cases(text: str, expected: str) -> None:
    assert expand(text, CONTEXT) == expected


MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: env-demo
  namespace: tests
  uid: 0b5a6c1e-0000-4000-8000-000000000001
  labels: {app.kubernetes.io/name: demo}
  annotations: {example.com/owner: team-a}
spec:
  containers:
  - name: app
    command: [echo, "$(GREETING)", "$$(GREETING)", "$(MISSING)"]
    args: ["--ip=$(POD_IP)"]
    env:
    - {name: LATER_REF, value: "x$(FOO)"}
    - {name: FOO, value: bar}
    - {name: ZOO, value: "$(FOO)-1"}
    - {name: BLU, value: "$(ZOO)-2"}
    - {name: GREETING, value: "hello $(POD_NAME)"}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid, apiVersion: v1}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app.kubernetes.io/name']"}}}
    - {name: OWNER, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['example.com/owner']"}}}
    - {name: NONE, valueFrom: {fieldRef: {fieldPath: "metadata.labels['absent']"}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: POD_IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
    - {name: LITERAL, value: "$(POD_IP)"}
"""


def test_resolve_env_in_order_with_field_refs() -> None:
    loaded = load("env.yaml", MANIFEST)
    container = loaded.pod.container("app")
    env = resolve_env(container, loaded.pod, "10.88.0.2")
    assert env == {
        "LATER_REF": "x$(FOO)",  # FOO comes later: left as written, as the kubelet does
        "FOO": "bar",
        "ZOO": "bar-1",
        "BLU": "bar-1-2",
        "GREETING": "hello $(POD_NAME)",  # POD_NAME is defined after GREETING
        "POD_NAME": "env-demo",
        "NS": "tests",
        "UID": "0b5a6c1e-0000-4000-8000-000000000001",
        "APP": "demo",
        "OWNER": "team-a",
        "NONE": "",
        "POD_IP": "10.88.0.2",
        "POD_IPS": "10.88.0.2",
        "LITERAL": "10.88.0.2",
    }
    assert expand_argv(container, env) == (
        "echo",
        "hello $(POD_NAME)",
        "$(GREETING)",
        "$(MISSING)",
        "--ip=10.88.0.2",
    )


def test_pod_ip_unknown_is_empty() -> None:
    loaded = load("env.yaml", MANIFEST)
    env = resolve_env(loaded.pod.container("app"), loaded.pod, None)
    assert env["POD_IP"] == ""
    assert env["LITERAL"] == ""
