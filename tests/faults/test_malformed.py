"""60 malformed manifests: each refused with a clear message, exit status 2, nothing started.

45 are made from one valid manifest by a seeded random mutator, each
mutation wrong by construction: JSON cut short inside its outer braces,
fields given values of the wrong type (one to five at once, each of which
must be named with its line and column), random binary, values replaced by
nesting hundreds to thousands deep, misspelled field names, a tab as
indentation. 15 more are written by hand to hurt: empty, NUL bytes, invalid
UTF-8, a "billion laughs" alias bomb, nesting 10,000 deep, 50 MB files, a
Python object tag, a number with a hundred digits, ...

"Clear" is checked line by line: standard error holds one line per problem,
`FILE:LINE:COLUMN: PATH: MESSAGE` or `FILE: REASON`, each under 500
characters and no traceback, then `podvisor: N problem(s); nothing was
started`. "Nothing started": standard output is empty, the runner is never
called (the mutations run through the CLI in-process with the runner
replaced by a tripwire), and the hand-written ones run as real
`podvisor run` processes under a 2 GiB address-space limit, after which the
`no_leaks` fixture finds no process, cgroup or namespace.
"""

from __future__ import annotations

import copy
import json
import random
import re
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from podvisor.init import entry
from podvisor.supervisor import manifest
from tests.faults.conftest import Record
from tests.faults.pods import podvisor_command

pytestmark = pytest.mark.faults

SEED = 10
MAX_LINE = 500
SUMMARY = re.compile(r"podvisor: (\d+) problem\(s\); nothing was started")

BASE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "fault-malformed",
        "labels": {"app": "web"},
        "annotations": {"podvisor.io/network": "loopback"},
    },
    "spec": {
        "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": 5,
        "initContainers": [{"name": "setup", "command": ["true"]}],
        "containers": [
            {
                "name": "main",
                "command": ["sh", "-c", "exit 0"],
                "env": [{"name": "GREETING", "value": "hello"}],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5},
            }
        ],
    },
}

Path_ = tuple[str | int, ...]
C0: Path_ = ("spec", "containers", 0)

#: Fields of BASE (or that BASE could have) and the kind of value each takes.
FIELDS: dict[Path_, str] = {
    ("metadata", "name"): "str",
    ("metadata", "labels"): "map",
    ("spec", "restartPolicy"): "str",
    ("spec", "terminationGracePeriodSeconds"): "int",
    ("spec", "hostNetwork"): "bool",
    ("spec", "initContainers", 0, "name"): "str",
    ("spec", "initContainers", 0, "command"): "list",
    (*C0, "name"): "str",
    (*C0, "command", 0): "str",
    (*C0, "env", 0, "value"): "str",
    (*C0, "ports", 0, "containerPort"): "int",
    (*C0, "resources", "limits", "memory"): "quantity",
    (*C0, "resources", "limits", "cpu"): "quantity",
    (*C0, "readinessProbe", "exec"): "map",
    (*C0, "readinessProbe", "periodSeconds"): "int",
}

#: Values of the wrong type for each kind of field.
WRONG: dict[str, list[Any]] = {
    "str": [["a", "b"], {"a": 1}, 42],
    "int": ["soon", [5], {"seconds": 5}, 2.5],
    "list": ["sh -c true", 7, {"a": "b"}],
    "map": ["lots", [1, 2], 3],
    "quantity": ["lots", [64], {"Mi": 64}],
    "bool": ["maybe", [True], {"yes": 1}],
}

#: Mappings that take only known fields, and a misspelling to put in each.
TYPOS: dict[Path_, str] = {
    (): "apiversion",
    ("metadata",): "nmae",
    ("spec",): "restartPolicyy",
    ("spec", "initContainers", 0): "comand",
    C0: "imagePullPolice",
    (*C0, "resources"): "limit",
    (*C0, "readinessProbe"): "periodSecond",
    (*C0, "ports", 0): "containerport",
}


@dataclass
class Case:
    name: str
    data: bytes
    #: Paths (as podvisor writes them) that must each be named in a problem line.
    named: list[str] = field(default_factory=list)


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


def _set(doc: Any, path: Path_, value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


def _yaml(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


# --- the mutator ---------------------------------------------------------------------


def truncated(rng: random.Random, n: int) -> Case:
    text = json.dumps(BASE, indent=2)
    cut = rng.randrange(1, len(text) - 1)  # inside the outer braces: never closed
    return Case(f"truncated-{n}-at-{cut}", text[:cut].encode())


def wrong_types(rng: random.Random, n: int) -> Case:
    doc = copy.deepcopy(BASE)
    chosen: list[Path_] = []
    for path in rng.sample(sorted(FIELDS, key=str), len(FIELDS)):
        if len(chosen) == 1 + n % 5:
            break
        if not any(path[: len(c)] == c or c[: len(path)] == path for c in chosen):
            chosen.append(path)
    for path in chosen:
        _set(doc, path, rng.choice(WRONG[FIELDS[path]]))
    return Case(f"wrong-types-{n}-x{len(chosen)}", _yaml(doc), [dotted(p) for p in chosen])


def binary(rng: random.Random, n: int) -> Case:
    if n % 2:
        return Case(f"binary-{n}", rng.randbytes(4096))
    text = _yaml(BASE)
    at = rng.randrange(len(text))
    junk = rng.randbytes(63) + b"\0"
    return Case(f"binary-spliced-{n}", text[:at] + junk + text[at:])


def deeply_nested(rng: random.Random, n: int) -> Case:
    doc = copy.deepcopy(BASE)
    path = rng.choice(sorted(FIELDS, key=str))
    depth = rng.randrange(100, 5000)
    _set(doc, path, "@@DEEP@@")
    text = json.dumps(doc).replace('"@@DEEP@@"', "[" * depth + "]" * depth)
    return Case(f"nested-{n}-{depth}-deep", text.encode(), [dotted(path)])


def misspelled(rng: random.Random, n: int) -> Case:
    doc = copy.deepcopy(BASE)
    path = rng.choice(sorted(TYPOS, key=str))
    where: Any = doc
    for part in path:
        where = where[part]
    where[TYPOS[path]] = "x"
    return Case(f"misspelled-{n}", _yaml(doc), [dotted((*path, TYPOS[path]))])


def tab_indented(rng: random.Random, n: int) -> Case:
    lines = _yaml(BASE).decode().splitlines(keepends=True)
    at = rng.randrange(1, len(lines))
    lines[at] = "\t" + lines[at].lstrip(" ")
    return Case(f"tab-{n}-line-{at + 1}", "".join(lines).encode())


MUTATORS: list[tuple[Callable[[random.Random, int], Case], int]] = [
    (truncated, 10),
    (wrong_types, 15),
    (binary, 5),
    (deeply_nested, 5),
    (misspelled, 5),
    (tab_indented, 5),
]


def mutated_cases() -> list[Case]:
    rng = random.Random(SEED)
    return [make(rng, n) for make, count in MUTATORS for n in range(count)]


# --- the hand-written ones -------------------------------------------------------------


def _laughs() -> bytes:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    head = "apiVersion: v1\nkind: Pod\nmetadata: {name: fault-malformed}\n"
    body = "spec:\n  containers:\n    - {name: main, command: *a9}\n"
    return (head + "x-laughs:\n" + "".join(f"  {ln}\n" for ln in lines) + body).encode()


def _fifty_mb_argument() -> bytes:
    doc = copy.deepcopy(BASE)
    _set(doc, (*C0, "command"), ["echo", "x" * (50 << 20)])
    return json.dumps(doc).encode()


def hand_written() -> list[Case]:
    valid = _yaml(BASE)
    head = b"apiVersion: v1\nkind: Pod\nmetadata: {name: fault-malformed}\nspec: "
    return [
        Case("empty", b""),
        Case("only-comments", b"# nothing\n---\n# here\n"),
        Case("nul-bytes", valid.replace(b"main", b"ma\0in")),
        Case("invalid-utf-8", valid.replace(b"hello", b"h\xff\xfe\xc3llo")),
        Case("billion-laughs", _laughs()),
        Case("nested-10000-lists", head + b"[" * 10000 + b"]" * 10000 + b"\n"),
        Case("nested-10000-mappings", head + b"{a: " * 10000 + b"1" + b"}" * 10000 + b"\n"),
        Case("fifty-mb-garbage", valid + b"\x01" + b"garbage\x02" * (5 << 20)),
        Case("fifty-mb-argument", _fifty_mb_argument()),  # over the size limit: refused whole
        Case("python-object-tag", head + b"!!python/object/apply:os.system ['true']\n"),
        Case("hundred-digit-grace", valid.replace(b": 5\n", b": " + b"9" * 100 + b"\n", 1)),
        Case("a-list", b"- " + valid.replace(b"\n", b"\n  ")),
        Case("two-documents", valid + b"---\n" + valid),
        Case("json-wrong-types", json.dumps({**BASE, "spec": {"containers": "main"}}).encode()),
        Case("a-deployment", valid.replace(b"kind: Pod", b"kind: Deployment")),
    ]


# --- judging ---------------------------------------------------------------------------


def judge(case: Case, source: str, code: int, out: str, err: str) -> list[str]:
    """What is wrong with podvisor's answer to *case* (nothing, when it did its job)."""
    wrong = []
    if code != 2:
        wrong.append(f"exit status {code}, not 2")
    if out:
        wrong.append(f"something was written to stdout: {out[:200]!r}")
    if "Traceback" in err:
        wrong.append(f"a traceback: {err[-1500:]}")
    lines = err.splitlines()
    summary = SUMMARY.fullmatch(lines[-1]) if lines else None
    if summary is None:
        wrong.append(f"no summary line: {err[-500:]!r}")
    elif int(summary[1]) != len(lines) - 1:
        wrong.append(f"{summary[1]} problem(s) said, {len(lines) - 1} lines given")
    for line in lines[:-1]:
        if not re.match(rf"{re.escape(source)}(:\d+:\d+)?: \S", line):
            wrong.append(f"a line without its place: {line[:200]!r}")
        if len(line) > MAX_LINE:
            wrong.append(f"a line of {len(line)} characters: {line[:200]!r}...")
    wrong += [f"{path} is not named" for path in case.named if f": {path}: " not in err]
    return [f"{case.name}: {w}" for w in wrong]


def test_the_base_manifest_is_valid() -> None:
    """The mutations are what make the cases wrong: the manifest they start from loads."""
    assert manifest.load("base.yaml", _yaml(BASE).decode()).pod.name == "fault-malformed"


@pytest.mark.timeout(120)
def test_45_mutated_manifests(
    tmp_path: Path,
    faults: Record,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started: list[object] = []
    monkeypatch.setattr("podvisor.supervisor.pod.runner.run_pod", lambda *a, **k: started.append(a))
    problems = []
    for case in mutated_cases():
        path = tmp_path / f"{case.name}.yaml"
        path.write_bytes(case.data)
        code = entry.main(["run", "--metrics-address", "off", str(path)])
        said = capsys.readouterr()
        problems += judge(case, str(path), code, said.out, said.err)
    assert not started, "a mutated manifest was run"
    faults.runs = len(mutated_cases())
    faults.figure("categories", len(MUTATORS))
    assert not problems, "\n".join(problems)


def _run(case: Case, directory: Path) -> list[str]:
    path = directory / f"{case.name}.yaml"
    path.write_bytes(case.data)
    done = subprocess.run(
        [
            "prlimit",
            f"--as={2 << 30}",
            *podvisor_command(),
            "run",
            "--metrics-address",
            "off",
            str(path),
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=90,
        check=False,
    )
    return judge(case, str(path), done.returncode, done.stdout, done.stderr)


#: Hand-written cases podvisor gets wrong today (reported): each is its own strict xfail.
HAND_WRITTEN_BUGS: dict[str, str] = {}


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "only",
    [
        pytest.param(None, id="the-others"),
        *(
            pytest.param(name, id=name, marks=pytest.mark.xfail(strict=True, reason=why))
            for name, why in HAND_WRITTEN_BUGS.items()
        ),
    ],
)
def test_15_hand_written_nasty_manifests(only: str | None, tmp_path: Path, faults: Record) -> None:
    cases = [
        c
        for c in hand_written()
        if c.name == only or (only is None and c.name not in HAND_WRITTEN_BUGS)
    ]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda c: _run(c, tmp_path), cases))
    faults.runs = len(cases)
    problems = [p for ps in found for p in ps]
    assert not problems, "\n".join(problems)
