"""``podvisor events / describe / top``, and the watches of ``ps -w`` and ``status -w``.

Watches and top poll the pods' control sockets; nothing is pushed. As
``kubectl get -w``, a watch prints its table once, then one row each time a
row changes (with ``-o json``, one JSON object a line). ``top`` redraws its
table in place on a terminal, as ``docker stats`` does, and prints one table
after another through a pipe; ``--no-stream`` prints one and ends. A pod that
has gone away ends ``status -w`` and ``events -f`` (exit 0, said on stderr).

Standard library only, like the rest of the client.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from podvisor.init.protocol import plain
from podvisor.supervisor.cli import output as out
from podvisor.supervisor.control.client import Client, ask
from podvisor.supervisor.control.paths import list_pods
from podvisor.supervisor.control.wire import (
    ContainerRow,
    Describe,
    DescribeReply,
    EventRecord,
    Events,
    EventsReply,
    PodSummary,
    Ps,
    PsReply,
    Status,
    StatusReply,
    Termination,
    as_object,
)
from podvisor.supervisor.errors import ControlError
from podvisor.supervisor.frozen import frozen

#: How often a watch asks again.
WATCH_SECONDS = 1.0
#: How often top refreshes (as docker stats).
TOP_SECONDS = 2.0
PS_TIMEOUT = 2.0  # per pod: one stuck supervisor must not hold up the list
#: Clear the screen and go home, for top on a terminal.
CLEAR = "\x1b[H\x1b[2J"

T = TypeVar("T")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    """``events``, ``describe`` and ``top``; *command* makes a parser (commands._command)."""
    events_ = command(sub, "events", "list a pod's events, as Kubernetes records them", events)
    events_.add_argument("pod", metavar="POD", nargs="?", help="one pod (default: every pod)")
    events_.add_argument(
        "-f", "--follow", action="store_true", help="keep printing events as they happen"
    )
    _output(events_)
    describe_ = command(
        sub, "describe", "show a pod in full: containers, conditions, events", describe
    )
    describe_.add_argument("pod", metavar="POD")
    _output(describe_)
    top_ = command(
        sub, "top", "show each container's CPU, memory, PIDs and restarts, refreshing", top
    )
    attach_ = command(
        sub,
        "attach",
        "follow a running pod's output, as `podvisor run` prints it; -i: type into a container",
        attach,
    )
    attach_.add_argument("pod", metavar="POD")
    attach_.add_argument(
        "--tail", type=int, default=0, metavar="N", help="first the last N lines (default: 0)"
    )
    from podvisor.supervisor.cli import attach as attaching

    attaching.add_options(attach_)
    _output(attach_)
    top_.add_argument("pod", metavar="POD", nargs="?", help="one pod (default: every pod)")
    top_.add_argument("--no-stream", action="store_true", help="print one table and end")
    _output(top_)


def add_watch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-w", "--watch", action="store_true", help="after the table, print each row that changes"
    )


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for scripts",
    )


def _print(text: str) -> None:
    print(text, flush=True)


# =============================================================================
# ps: live pods, dead records cleaned up
# =============================================================================


@frozen
class Unreachable:
    """A pod whose socket is there but which did not answer, or whose supervisor is gone."""

    name: str
    status: str
    error: str


def gone(path: Path) -> bool:
    """Whether *path* was left by a supervisor that died; it is removed if so."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    probe.settimeout(PS_TIMEOUT)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def pods(everything: bool) -> list[PodSummary | Unreachable]:
    """Every pod on the host; with *everything*, also those found dead (and cleaned up)."""
    found: list[PodSummary | Unreachable] = []
    for name, path in list_pods():
        try:
            with Client(name, path, timeout=PS_TIMEOUT) as client:
                found.append(client.request(Ps(), PsReply).pod)
        except ControlError as exc:
            if not gone(path):
                found.append(Unreachable(name, "Unknown", str(exc)))
            elif everything:
                found.append(Unreachable(name, "Gone", "its supervisor died; record removed"))
    return found


def ps_rows(found: Sequence[PodSummary | Unreachable], now: float) -> list[list[out.Cell]]:
    rows: list[list[out.Cell]] = []
    for p in found:
        if isinstance(p, Unreachable):
            rows.append([p.name, p.status, "-", "-", "-", "-", "-"])
            continue
        ready = f"{p.ready}/{p.containers}" if p.containers is not None else "-"
        age = out.since(p.start_time, now)
        rows.append(
            [p.name, p.status, ready, str(p.restarts), age, p.pod_ip or "-", p.metrics or "-"]
        )
    return rows


PS_HEADERS = ("NAME", "STATUS", "READY", "RESTARTS", "AGE", "IP", "METRICS")


def ps_table(found: Sequence[PodSummary | Unreachable], style: out.Style, now: float) -> str:
    notes = [f"{p.name}: {p.error}" for p in found if isinstance(p, Unreachable)]
    return "\n".join([out.table(PS_HEADERS, ps_rows(found, now), style), *notes])


def ps(args: argparse.Namespace) -> int:
    everything: bool = getattr(args, "all", False)
    found = pods(everything)
    if not args.watch:
        if args.output == "json":
            _print(json.dumps(plain(found), indent=2))
        elif not found:
            print("no pods run on this host", file=sys.stderr)
        else:
            _print(ps_table(found, out.Style(sys.stdout), time.time()))
        return 0
    return _watch(lambda: pods(everything), _ps_key, PS_HEADERS, ps_rows, args.output)


def _ps_key(p: PodSummary | Unreachable) -> tuple[object, ...]:
    """What makes a pod's row new to a watch (not its age)."""
    if isinstance(p, Unreachable):
        return (p.name, p.status)
    return (p.name, p.status, p.ready, p.containers, p.restarts, p.pod_ip)


# =============================================================================
# Watches
# =============================================================================


def _watch(
    read: Callable[[], Sequence[T]],
    key: Callable[[T], tuple[object, ...]],
    headers: Sequence[str],
    rows: Callable[[Sequence[T], float], list[list[out.Cell]]],
    output: str,
    *,
    as_json: Callable[[T], object] = plain,
) -> int:
    """Print the rows, then each row that changes, until interrupted."""
    style = out.Style(sys.stdout)
    seen: dict[object, tuple[object, ...]] = {}
    first = True
    for found in _every(WATCH_SECONDS, read):
        changed = [item for item in found if seen.get(key(item)[0]) != key(item)]
        for item in changed:
            seen[key(item)[0]] = key(item)
        if output == "json":
            for item in changed:
                _print(json.dumps(as_json(item), separators=(",", ":")))
            continue
        if not changed and not first:
            continue
        table = out.table(headers, rows(changed, time.time()), style).split("\n")
        _print("\n".join(table if first else table[1:]))
        first = False
    return 0


def _every(seconds: float, read: Callable[[], T]) -> Iterator[T]:
    """*read*'s answer now, then every *seconds*; ends when the pod has gone."""
    while True:
        try:
            yield read()
        except ControlError as exc:
            print(f"podvisor: {exc}", file=sys.stderr)
            return
        time.sleep(seconds)


def status_watch(args: argparse.Namespace, headers: Sequence[str], row: RowMaker) -> int:
    """``status -w``: the containers' rows, then each that changes."""

    def read() -> tuple[ContainerRow, ...]:
        return ask(args.pod, Status(), StatusReply).containers

    def key(c: ContainerRow) -> tuple[object, ...]:
        last = c.last_termination
        return (c.name, c.state, c.reason, c.ready, c.restarts, c.paused, last, c.message)

    def rows(found: Sequence[ContainerRow], now: float) -> list[list[out.Cell]]:
        return [row(c, now) for c in found]

    return _watch(read, key, headers, rows, args.output)


RowMaker = Callable[[ContainerRow, float], list[out.Cell]]

# =============================================================================
# events
# =============================================================================


EVENT_HEADERS = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")


def _pod_events(names: Sequence[str]) -> list[tuple[str, EventRecord]]:
    found = []
    for name in names:
        try:
            found += [(name, e) for e in ask(name, Events(), EventsReply).events]
        except ControlError:
            if len(names) == 1:
                raise
    return sorted(found, key=lambda pe: pe[1].last)


def events(args: argparse.Namespace) -> int:
    names = [args.pod] if args.pod else [name for name, _ in list_pods()]

    def read() -> list[tuple[str, EventRecord]]:
        return _pod_events(names)

    def key(pe: tuple[str, EventRecord]) -> tuple[object, ...]:
        pod, e = pe
        return ((pod, e.type, e.reason, e.message, e.container), e.count, e.last)

    if args.follow:
        as_json = lambda pe: _event_object(*pe)  # noqa: E731 -- as `events -o json` writes one
        return _watch(read, key, EVENT_HEADERS, _event_rows, args.output, as_json=as_json)
    found = read()
    if args.output == "json":
        _print(json.dumps([_event_object(p, e) for p, e in found], indent=2))
    elif not found:
        print("no events", file=sys.stderr)
    else:
        _print(out.table(EVENT_HEADERS, _event_rows(found, time.time()), out.Style(sys.stdout)))
    return 0


def _event_object(pod: str, e: EventRecord) -> dict[str, object]:
    return {"pod": pod, **as_object_plain(e)}


def as_object_plain(value: object) -> dict[str, object]:
    found = plain(value)
    assert isinstance(found, dict)
    return found


def _event_rows(found: Sequence[tuple[str, EventRecord]], now: float) -> list[list[out.Cell]]:
    rows: list[list[out.Cell]] = []
    for pod, e in found:
        seen = out.since(e.last, now)
        if e.count > 1:
            seen += f" (x{e.count} over {out.since(e.first, now)})"
        who = f"pod/{pod}" + (f" {e.container}" if e.container else "")
        colour = "yellow" if e.type == "Warning" else None
        rows.append([seen, (e.type, colour), e.reason, who, e.message])
    return rows


# =============================================================================
# describe
# =============================================================================


def describe(args: argparse.Namespace) -> int:
    found = ask(args.pod, Describe(), DescribeReply)
    if args.output == "json":
        _print(json.dumps(as_object(found), indent=2))
        return 0
    _print(describe_text(found, out.Style(sys.stdout), time.time()))
    return 0


def describe_text(d: DescribeReply, style: out.Style, now: float) -> str:
    """kubectl describe's shape: the pod, each container, conditions, events."""
    pod = d.pod
    lines = [
        f"Name:           {pod.name}",
        f"Start Time:     {out.timestamp(pod.start_time) if pod.start_time else '-'}",
        f"Status:         {style.word(pod.status)}",
        f"IP:             {pod.pod_ip or '-'}",
        f"Metrics:        {pod.metrics or '-'}",
        f"Supervisor:     pid {pod.supervisor_pid}",
    ]
    if d.message:
        lines.append(f"Message:        {d.message}")
    lines.append("Containers:")
    details = {c.name: c for c in d.details}
    for c in d.containers:
        lines += _container_lines(c, details.get(c.name), style, now)
    lines.append("Conditions:")
    lines.append("  Type              Status")
    lines += [f"  {c.type:<17} {c.status}" for c in d.conditions]
    lines.append("Events:")
    if not d.events:
        lines.append("  <none>")
    else:
        rows = _event_rows([(pod.name, e) for e in d.events], now)
        table = out.table(EVENT_HEADERS, rows, style)
        lines += ["  " + line for line in table.split("\n")]
    return "\n".join(lines)


def _ended_lines(end: Termination, style: out.Style) -> list[str]:
    lines = [
        f"      Reason:       {style.word(end.reason)}",
        f"      Exit Code:    {end.exit_code}",
    ]
    if end.signal:
        lines.append(f"      Signal:       {end.signal}")
    if end.message:
        lines.append(f"      Message:      {end.message}")
    lines.append(f"      Started:      {_when(end.started_at)}")
    lines.append(f"      Finished:     {_when(end.finished_at)}")
    return lines


def _container_lines(
    c: ContainerRow, detail: object | None, style: out.Style, now: float
) -> list[str]:
    from podvisor.supervisor.control.wire import ContainerDetail

    lines = [f"  {c.name}:", f"    Kind:           {c.kind}"]
    if isinstance(detail, ContainerDetail):
        if detail.image:
            lines.append(f"    Image:          {detail.image}")
        lines.append(f"    Command:        {' '.join(detail.command)}")
    state = c.state.capitalize()
    lines.append(f"    State:          {style.word(state)}")
    ended = c.last_termination if c.state == "terminated" else None
    if c.state == "running":
        lines.append(f"      Started:      {_when(c.started_at)}")
    elif ended is not None:  # as kubectl: the current end's details under State
        lines += _ended_lines(ended, style)
    elif c.reason:
        lines.append(f"      Reason:       {style.word(c.reason)}")
    if c.message and ended is None:
        lines.append(f"      Message:      {c.message}")
    if c.last_state is not None:
        lines += ["    Last State:     Terminated", *_ended_lines(c.last_state, style)]
    lines += [f"    Ready:          {c.ready}", f"    Restart Count:  {c.restarts}"]
    if isinstance(detail, ContainerDetail):
        lines += _listed("Limits", detail.limits) + _listed("Requests", detail.requests)
        lines += [f"    {p}" for p in detail.probes]
        lines += _listed("Mounts", detail.mounts)
    return lines


def _listed(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    return [f"    {title}:", *(f"      {item}" for item in items)]


def _when(t: float | None) -> str:
    return out.timestamp(t) if t is not None else "-"


# =============================================================================
# top
# =============================================================================


TOP_HEADERS = ("POD", "CONTAINER", "CPU", "MEM USAGE / LIMIT", "MEM %", "PIDS", "RESTARTS")


def _top_rows(found: Sequence[tuple[str, ContainerRow]], _: float) -> list[list[out.Cell]]:
    rows: list[list[out.Cell]] = []
    for pod, c in found:
        running = c.state == "running"
        cpu = out.cores(c.cpu_cores) if running else "-"
        used, limit = c.memory_bytes, c.memory_limit_bytes
        mem = out.memory(used) + " / " + (out.memory(limit) if limit else "-") if running else "-"
        share = f"{100 * used / limit:.1f}%" if running and used is not None and limit else "-"
        pids = out.against(_n(c.pids), _n(c.pids_max)) if running else "-"
        rows.append([pod, c.name, cpu, mem, share, pids, str(c.restarts)])
    return rows


def _n(n: int | None) -> str:
    return "-" if n is None else str(n)


def _top_read(pod: str | None) -> list[tuple[str, ContainerRow]]:
    names = [pod] if pod else [name for name, _ in list_pods()]
    found = []
    for name in names:
        try:
            found += [(name, c) for c in ask(name, Status(), StatusReply).containers]
        except ControlError:
            if pod:
                raise
    return found


def top(args: argparse.Namespace) -> int:
    terminal = sys.stdout.isatty()
    style = out.Style(sys.stdout)
    for found in _every(TOP_SECONDS, lambda: _top_read(args.pod)):
        if args.output == "json":
            objects = [{"pod": p, **as_object_plain(c)} for p, c in found]
            _print(json.dumps(objects, indent=None if not args.no_stream else 2))
        else:
            table = out.table(TOP_HEADERS, _top_rows(found, time.time()), style)
            _print((CLEAR if terminal and not args.no_stream else "") + table)
        if args.no_stream:
            return 0
    return 0


# =============================================================================
# attach
# =============================================================================


def attach(args: argparse.Namespace) -> int:
    """Every container's lines as they come, until the pod ends; Ctrl-C leaves it running."""
    from podvisor.supervisor.cli import attach as attaching

    return attaching.attach(args)
