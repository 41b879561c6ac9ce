"""Reading a manifest's YAML nodes into typed values, noting every problem where it is.

How this works: the text is *composed*, not loaded (`yaml.compose` with the
safe loader), so every value keeps the line and column it came from. The
readers below take a node and a path (`spec.containers[0].ports[1].hostPort`),
return the typed value or None, and on the way record each problem in a
`Report` rather than raising: the loader carries on and the user gets all
problems at once. Values follow Kubernetes' JSON typing: a string field given
`8080` is an error (the API server refuses it too), `null` means "not set".
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import yaml

from podvisor.supervisor.errors import ConfigError, Problem
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest import bounds
from podvisor.supervisor.manifest.model import Ignored

# libyaml's composer when PyYAML was built with it (much faster), else the pure
# one; both are the safe loader: no Python object is ever built from a tag.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Used only for its scalar constructors (0o17, 1_000, yes) and merge keys (<<).
_CONSTRUCTOR = yaml.SafeLoader("")

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"

Choice = TypeVar("Choice", bound=StrEnum)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The deepest JSON read for its field names (a Pod nests a dozen levels).
MAX_JSON_NESTING = 5_000
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


# --- Where problems go -----------------------------------------------------------


@dataclass
class Report:
    """Everything found while reading one manifest."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    # Accepted by `podvisor check`, refused by `podvisor run` until it is implemented.
    not_yet: list[Problem] = field(default_factory=list)
    # The key each mapping or list value was read under: a problem with the
    # whole value is shown on its key's line (a block mapping starts a line lower).
    keys: dict[int, yaml.Node] = field(default_factory=dict)

    def error(self, node: yaml.Node | None, path: str, message: str) -> None:
        self.problems.append(Problem(self.source, *self.where(node), path, message))

    def warn(self, node: yaml.Node | None, path: str, message: str) -> None:
        self.warnings.append(Problem(self.source, *self.where(node), path, message))

    def ignore(self, node: yaml.Node | None, path: str, reason: str) -> None:
        self.ignored.append(Ignored(path, self.where(node)[0], reason))

    def where(self, node: yaml.Node | None) -> tuple[int, int]:
        if isinstance(node, yaml.CollectionNode):
            node = self.keys.get(id(node), node)
        return position(node)

    def fail(self) -> None:
        """Raise ConfigError with every problem so far, in file order, if there is one."""
        if self.problems:
            raise ConfigError(sorted(self.problems, key=lambda p: (p.line, p.column)))


def position(node: yaml.Node | None) -> tuple[int, int]:
    """1-based (line, column) of a node; (0, 0) when it has none (JSON read without YAML)."""
    mark = node.start_mark if node is not None else None
    return (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)


def child(path: str, key: str | int) -> str:
    """`spec` + `containers` -> `spec.containers`; keys that are not identifiers go in brackets."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not path:
        return key
    return f"{path}.{key}" if _IDENTIFIER.fullmatch(key) else f"{path}[{key}]"


# --- The document ------------------------------------------------------------------


def compose(source: str, text: str) -> yaml.Node:
    """The one document in `text`; ConfigError (one line) when there is not exactly one mapping."""
    documents = compose_all(source, text)
    if len(documents) > 1:
        line, column = position(documents[1])
        message = (
            f"{len(documents)} YAML documents in one file: podvisor runs one Pod per file; "
            "split them, or remove the '---' separators"
        )
        raise ConfigError([Problem(source, line, column, "", message)])
    root = documents[0]
    if not isinstance(root, yaml.MappingNode):
        message = (
            f"a Pod manifest is a mapping (apiVersion, kind, metadata, spec), not {kind_of(root)}"
        )
        raise ConfigError([Problem(source, *position(root), "", message)])
    return root


def compose_all(source: str, text: str) -> list[yaml.Node]:
    """Every document in `text` (empty ones left out); ConfigError (one line) when there is none.

    A document may be anything: the caller says what a document must be.
    """
    text = text.removeprefix("\ufeff")
    bounds.check_size(source, text)
    try:
        documents = [d for d in yaml.compose_all(text, Loader=_LOADER) if not is_null(d)]
        for document in documents:
            bounds.check_aliases(source, document)
    except yaml.YAMLError as error:
        node = _from_json(text)
        if node is None:
            raise ConfigError([_yaml_problem(source, error)]) from None
        documents = [node]
    if not documents:
        raise ConfigError([Problem(source, 0, 0, "", "empty manifest: expected a Pod")])
    return documents


def _from_json(text: str) -> yaml.Node | None:
    """Nodes, without positions, for JSON the YAML loader refuses.

    The YAML loader refuses tabs, and nesting past libyaml's limit of 1,000;
    JSON nested up to `MAX_JSON_NESTING` deep is still read here, so that the
    problem is named by its field (`spec.containers[0].command[0]: expected a
    string`) rather than by a column on a line thousands of characters long.
    Reading it takes more recursion than Python allows by default: the limit
    is raised for the read, to what that depth needs and no more.
    """
    depth = _json_nesting(text)
    if depth > MAX_JSON_NESTING:
        return None
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * depth + 1_000))  # the representer: ~3 frames a level
    try:
        data = json.loads(text)
        node: yaml.Node = yaml.representer.SafeRepresenter().represent_data(data)
    except (ValueError, RecursionError):
        return None
    finally:
        sys.setrecursionlimit(limit)
    return node


def _json_nesting(text: str) -> int:
    """How deep the arrays and objects of JSON *text* nest (its strings left out)."""
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _yaml_problem(source: str, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    context_mark = getattr(error, "context_mark", None)
    if context and context_mark is not None:
        what += f" ({context} started at line {context_mark.line + 1})"
    return Problem(source, line, column, "", f"not YAML: {what}")


# --- Fields: what podvisor does with each key of a mapping ---------------------------


@frozen
class Supported:
    """A field podvisor reads and acts on."""


@frozen
class Ignore:
    """A field that only means something to a cluster: accepted, listed as ignored."""

    reason: str


@frozen
class Refuse:
    """A field that would change what a process does and that podvisor does not implement.

    `harmless` accepts the values that ask for what podvisor does anyway
    (`readOnlyRootFilesystem: false`); those are listed as ignored instead.
    """

    reason: str
    harmless: Callable[[Any], bool] | None = None


SUPPORTED = Supported()
Rule = Supported | Ignore | Refuse


def mapping(
    report: Report,
    node: yaml.Node,
    path: str,
    rules: Mapping[str, Rule],
    misplaced: Mapping[str, str] | None = None,
) -> dict[str, yaml.Node] | None:
    """The supported, non-null fields of a mapping node, by name; every other key is dealt with.

    `misplaced` names, for a field that belongs one level down, where it goes:
    {"command": "exec"} turns "unknown field" into "command goes under exec".
    """
    if not isinstance(node, yaml.MappingNode):
        report.error(node, path, f"must be a mapping (field: value), not {kind_of(node)}")
        return None
    found: dict[str, yaml.Node] = {}
    for key_node, value in entries(report, node, path):
        key = key_node.value
        rule = rules.get(key)
        if isinstance(rule, Supported) and not is_null(value):
            found[key] = value  # the common case first: this runs for every field
            continue
        where = child(path, key)
        if rule is None and misplaced and key in misplaced:
            report.error(key_node, where, f"unknown field here: {key} goes under {misplaced[key]}")
        elif rule is None:
            report.error(key_node, where, unknown_field(key, rules))
        elif is_null(value):
            continue  # null is "not set" in Kubernetes
        elif isinstance(rule, Supported):
            found[key] = value
        elif is_empty(value):
            continue  # [] or {} of a field podvisor does not act on asks for nothing
        elif isinstance(rule, Ignore):
            report.ignore(key_node, where, rule.reason)
        elif rule.harmless is not None and small(value) and rule.harmless(plain(value)):
            report.ignore(
                key_node, where, f"{key}: {dump(plain(value))} asks for what podvisor does anyway"
            )
        else:
            report.error(key_node, where, f"not supported: {rule.reason}")
    return found


@dataclass
class Fields:
    """The supported fields of one mapping, read with its report and path at hand.

    `fields.string("image")` is the string at `image`, or None when it is not
    set or not a string (the latter reported at `spec.containers[0].image`).
    """

    report: Report
    node: yaml.Node  # the mapping itself
    path: str
    found: dict[str, yaml.Node]

    def __contains__(self, key: str) -> bool:
        return key in self.found

    def __getitem__(self, key: str) -> yaml.Node:
        return self.found[key]

    def get(self, key: str) -> yaml.Node | None:
        return self.found.get(key)

    def at(self, key: str) -> str:
        return child(self.path, key)

    def error(self, key: str, message: str) -> None:
        """Report at the field's value, or at the mapping when the field is missing."""
        self.report.error(self.found.get(key, self.node), self.at(key), message)

    def warn(self, key: str, message: str) -> None:
        self.report.warn(self.found.get(key, self.node), self.at(key), message)

    def require(self, key: str, message: str) -> bool:
        """True when the field is there; else report `required: message`."""
        if key not in self.found:
            self.error(key, f"required: {message}")
        return key in self.found

    def string(self, key: str) -> str | None:
        return string(self.report, self.found[key], self.at(key)) if key in self else None

    def integer(
        self, key: str, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        if key not in self:
            return None
        return integer(self.report, self.found[key], self.at(key), minimum, maximum)

    def boolean(self, key: str) -> bool | None:
        return boolean(self.report, self.found[key], self.at(key)) if key in self else None

    def flag(self, key: str) -> bool:
        """A boolean that is false when not set."""
        return bool(self.boolean(key))

    def strings(self, key: str) -> tuple[str, ...]:
        return strings(self.report, self.found[key], self.at(key)) if key in self else ()

    def choice(self, key: str, kind: type[Choice], default: Choice) -> Choice:
        """One of *kind*'s values; *default* when not set, or when wrong (reported)."""
        value = self.string(key)
        if value is None:
            return default
        choices = [c.value for c in kind]
        if value not in choices:
            hint = did_you_mean(value, choices)
            self.error(key, f"{value!r} is not one of {', '.join(choices)}{hint}")
            return default
        return kind(value)

    def items(self, key: str) -> list[tuple[yaml.Node, str]]:
        """(item, its path) for each item of a list field."""
        if key not in self:
            return []
        items = sequence(self.report, self.found[key], self.at(key))
        return [(item, child(self.at(key), i)) for i, item in enumerate(items)]

    def mapping(
        self, key: str, rules: Mapping[str, Rule], misplaced: Mapping[str, str] | None = None
    ) -> Fields | None:
        """The fields of a nested mapping; None when it is not set or not a mapping."""
        if key not in self:
            return None
        return fields_of(self.report, self.found[key], self.at(key), rules, misplaced)


def fields_of(
    report: Report,
    node: yaml.Node,
    path: str,
    rules: Mapping[str, Rule],
    misplaced: Mapping[str, str] | None = None,
) -> Fields | None:
    """`mapping()` as a Fields; None when the node is not a mapping (reported)."""
    found = mapping(report, node, path, rules, misplaced)
    return None if found is None else Fields(report, node, path, found)


def entries(
    report: Report, node: yaml.MappingNode, path: str
) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    """(key, value) pairs of a mapping: merge keys (`<<: *base`) applied, duplicates refused."""
    seen: dict[str, yaml.Node] = {}
    merges = False
    for key_node, _ in node.value:
        merges = merges or key_node.tag == MERGE
        if key_node.tag == MERGE or not isinstance(key_node, yaml.ScalarNode):
            continue
        if key_node.value in seen:
            first = position(seen[key_node.value])[0]
            report.error(
                key_node, child(path, key_node.value), f"duplicate key (first at line {first})"
            )
        seen[key_node.value] = key_node
    if merges:
        node = yaml.MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
        try:
            _CONSTRUCTOR.flatten_mapping(node)
        except yaml.MarkedYAMLError as error:
            report.error(node, path, f"bad merge key (<<): {error.problem}")
            return []
    pairs: dict[str, tuple[yaml.ScalarNode, yaml.Node]] = {}
    for key_node, value in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR:
            report.error(key_node, path, f"keys must be strings, not {kind_of(key_node)}")
            continue
        pairs[key_node.value] = (key_node, value)  # later wins, as in Kubernetes
        if isinstance(value, yaml.CollectionNode):
            report.keys.setdefault(id(value), key_node)
    return list(pairs.values())


def unknown_field(key: str, known: Mapping[str, object]) -> str:
    """`unknown field; did you mean 'command'?`, when a known field is close."""
    return "unknown field" + did_you_mean(key, known)


def did_you_mean(word: str, choices: Mapping[str, object] | list[str]) -> str:
    names = list(choices)
    folded = {n.lower(): n for n in names}
    close = [folded[word.lower()]] if word.lower() in folded else []
    close = close or difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- Typed values --------------------------------------------------------------------


def string(report: Report, node: yaml.Node, path: str) -> str | None:
    """A string; numbers and booleans are refused (quote them), as the API server does."""
    if is_null(node):
        return None
    if isinstance(node, yaml.ScalarNode) and node.tag == STR:
        return str(node.value)
    if isinstance(node, yaml.ScalarNode) and node.tag in (INT, FLOAT, BOOL):
        report.error(node, path, f"must be a string, not {kind_of(node)}: quote it, '{node.value}'")
    else:
        report.error(node, path, f"must be a string, not {kind_of(node)}")
    return None


INT64_MAX = 2**63 - 1


def integer(
    report: Report,
    node: yaml.Node,
    path: str,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """An integer within [minimum, maximum]; a quoted number is refused (unquote it)."""
    if is_null(node):
        return None
    if not (isinstance(node, yaml.ScalarNode) and node.tag == INT):
        hint = ": remove the quotes" if _looks_numeric(node) else ""
        report.error(node, path, f"must be an integer, not {kind_of(node)}{hint}")
        return None
    value = int(_CONSTRUCTOR.construct_yaml_int(node))
    if maximum is None:
        maximum = INT64_MAX  # Kubernetes' integers are int64 at most
    small = maximum < 2**31 - 1  # worth saying, unlike int32's
    if minimum is not None and small and not minimum <= value <= (maximum or 0):
        report.error(node, path, f"must be between {minimum} and {maximum}, not {value}")
    elif minimum is not None and value < minimum:
        report.error(node, path, f"must be at least {minimum}, not {value}")
    elif maximum is not None and value > maximum:
        report.error(node, path, f"must be at most {maximum}, not {value}")
    else:
        return value
    return None


def boolean(report: Report, node: yaml.Node, path: str) -> bool | None:
    """true or false; a quoted "true" is refused (unquote it)."""
    if is_null(node):
        return None
    if isinstance(node, yaml.ScalarNode) and node.tag == BOOL:
        return bool(_CONSTRUCTOR.construct_yaml_bool(node))
    hint = ""
    if isinstance(node, yaml.ScalarNode) and node.value.lower() in ("true", "false"):
        hint = ": remove the quotes"
    report.error(node, path, f"must be true or false, not {kind_of(node)}{hint}")
    return None


def sequence(report: Report, node: yaml.Node, path: str) -> list[yaml.Node]:
    """The items of a list ([] when null or not a list, the latter reported)."""
    if is_null(node):
        return []
    if not isinstance(node, yaml.SequenceNode):
        report.error(node, path, f"must be a list, not {kind_of(node)}")
        return []
    return list(node.value)


def strings(report: Report, node: yaml.Node, path: str) -> tuple[str, ...]:
    """A list of strings; each item that is not one is reported."""
    found = []
    for i, item in enumerate(sequence(report, node, path)):
        value = string(report, item, child(path, i))
        if value is not None:
            found.append(value)
        elif is_null(item):
            report.error(item, child(path, i), "must be a string, not empty")
    return tuple(found)


def string_map(
    report: Report, node: yaml.Node, path: str
) -> list[tuple[yaml.ScalarNode, yaml.Node, str, str]]:
    """(key node, value node, key, value) of a string-to-string mapping (labels, annotations)."""
    if is_null(node):
        return []
    if not isinstance(node, yaml.MappingNode):
        report.error(node, path, f"must be a mapping (key: value), not {kind_of(node)}")
        return []
    found = []
    for key_node, value_node in entries(report, node, path):
        value = string(report, value_node, child(path, key_node.value))
        if value is None and is_null(value_node):
            value = ""  # `key:` with nothing after it is the empty string in a map
        if value is not None:
            found.append((key_node, value_node, key_node.value, value))
    return found


def scalar_text(node: yaml.Node) -> str | None:
    """The text of a number or string as written; None for anything else."""
    if isinstance(node, yaml.ScalarNode) and node.tag in (STR, INT, FLOAT):
        return str(node.value)
    return None


# --- Kinds and plain values -------------------------------------------------------------


def is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL)


def is_empty(node: yaml.Node) -> bool:
    """null, [] or {}: Kubernetes treats each as "not set"."""
    return is_null(node) or (
        isinstance(node, yaml.SequenceNode | yaml.MappingNode) and not node.value
    )


def kind_of(node: yaml.Node) -> str:
    """A node's JSON kind, as a user would say it: 'a list', 'the number 8080'."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    names = {INT: "the number", FLOAT: "the number", BOOL: "the boolean"}
    if node.tag in names:
        return f"{names[node.tag]} {node.value}"
    if node.tag == NULL:
        return "empty"
    return f"the string {node.value!r}"


def _looks_numeric(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == STR and node.value.isdigit()


def small(node: yaml.Node, budget: int = 100) -> bool:
    """True when the value has at most `budget` nodes: aliases can make a tiny file huge."""
    stack = [node]
    while stack:
        budget -= 1
        if budget < 0:
            return False
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            stack += [n for pair in current.value for n in pair]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value
    return True


def plain(node: yaml.Node) -> Any:
    """A node as plain Python data (merge keys applied), for comparisons and messages."""
    if isinstance(node, yaml.MappingNode):
        node = yaml.MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
        with contextlib.suppress(yaml.MarkedYAMLError):  # reported where the mapping is read
            _CONSTRUCTOR.flatten_mapping(node)
        return {
            plain(k) if isinstance(k, yaml.ScalarNode) else repr(k): plain(v) for k, v in node.value
        }
    if isinstance(node, yaml.SequenceNode):
        return [plain(item) for item in node.value]
    constructor = _CONSTRUCTOR.yaml_constructors.get(node.tag)
    return constructor(_CONSTRUCTOR, node) if constructor else node.value


def dump(value: Any) -> str:
    """A plain value in flow YAML, for messages: `{type: Unconfined}`, `false`."""
    text: str = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix(" ...").strip()


def value_of(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The node under `key` when *node* is a mapping that has it, else None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next(
        (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None
    )


def has_key(node: yaml.Node, key: str) -> bool:
    """True when a mapping node has `key`, whatever its value."""
    return isinstance(node, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value == key for k, _ in node.value
    )
