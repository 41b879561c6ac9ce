"""A container's environment, resolved as the kubelet does (`env` reads it).

kubelet `makeEnvironmentVariables` and third_party/forked/golang/expansion:
variables are taken in order; a value's `$(NAME)` is replaced by NAME's
value if NAME was defined *earlier* in the list, and left as written
otherwise; `$$` is a literal `$`. `valueFrom` values are filled in and never
expanded. Then `$(NAME)` in command and args is expanded against the
finished environment. Only the manifest's variables take part, as on
Kubernetes (where the image's ENV does not): the caller lays the result over
the base environment the process gets.

Apart from `env` because the supervisor resolves every container's
environment while the pod runs, and needs none of the manifest's reading
(PyYAML and the checks), which `podvisor run` leaves to a forked child.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from podvisor.supervisor.manifest.model import Container, Pod

__all__ = ["SUBSCRIPTED", "expand", "expand_argv", "field_value", "resolve_env"]

#: The fieldPaths with a key: metadata.labels['k'] and metadata.annotations['k'].
SUBSCRIPTED = ("metadata.labels['", "metadata.annotations['")


def resolve_env(container: Container, pod: Pod, pod_ip: str | None) -> dict[str, str]:
    """The container's variables, in order, references expanded; pod_ip fills status.podIP."""
    env: dict[str, str] = {}
    for var in container.env:
        if var.field_path is not None:
            env[var.name] = field_value(var.field_path, pod, pod_ip)
        else:
            env[var.name] = expand(var.value or "", env)
    return env


def expand_argv(container: Container, env: Mapping[str, str]) -> tuple[str, ...]:
    """command + args with `$(NAME)` expanded against `env` (from `resolve_env`)."""
    return tuple(expand(arg, env) for arg in container.argv)


def field_value(field_path: str, pod: Pod, pod_ip: str | None) -> str:
    """The value of a `valueFrom.fieldRef.fieldPath` the loader accepted."""
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: pod.name,
        "metadata.namespace": lambda: pod.namespace,
        "metadata.uid": lambda: pod.uid,
        "status.podIP": lambda: pod_ip or "",
        "status.podIPs": lambda: pod_ip or "",
    }
    if field_path in simple:
        return simple[field_path]()
    for prefix, values in zip(SUBSCRIPTED, (pod.labels, pod.annotations), strict=True):
        if field_path.startswith(prefix):
            return values.get(field_path[len(prefix) : -2], "")
    raise ValueError(f"unsupported fieldPath {field_path!r}")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace `$(NAME)` by env[NAME] when defined; `$$` is `$`; anything else stays."""
    out: list[str] = []
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar == -1 or dollar + 1 == len(text):
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        following = text[dollar + 1]
        if following == "$":
            out.append("$")
            i = dollar + 2
        elif following == "(" and (close := text.find(")", dollar + 2)) != -1:
            name = text[dollar + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            # Not a reference: "$x" and an unclosed "$(" are kept as written.
            out.append("$" + following)
            i = dollar + 2
    return "".join(out)
