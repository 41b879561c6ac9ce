"""`@frozen` behaves as `@dataclass(frozen=True)`, with methods every class shares."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import field

import pytest

from podvisor.supervisor.frozen import frozen


@frozen
class Port:
    number: int
    name: str = ""
    seen: list[int] = field(default_factory=list, compare=False)
    secret: str = field(default="", repr=False)


@dataclasses.dataclass(frozen=True)
class PortAsDataclasses:
    number: int
    name: str = ""
    seen: list[int] = field(default_factory=list, compare=False)
    secret: str = field(default="", repr=False)


@frozen
class Single:
    only: int


@frozen
class Empty:
    pass


@frozen
class Named(Port):
    label: str = "x"


@frozen
class OwnMethods:
    value: int

    def __repr__(self) -> str:
        return "mine"

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 7


def test_it_compares_hashes_and_shows_as_dataclasses_do() -> None:
    ours, theirs = Port(80, "http", [1], "s"), PortAsDataclasses(80, "http", [1], "s")
    assert repr(ours) == repr(theirs).replace("PortAsDataclasses", "Port")
    assert repr(ours) == "Port(number=80, name='http', seen=[1])"
    assert hash(ours) == hash(theirs) == hash((80, "http", "s"))
    assert ours == Port(80, "http", [2], "s")  # seen: compare=False
    assert ours != Port(80, "http", [1], "t")
    another: object = theirs
    assert ours != another  # another class, as dataclasses say
    assert Port.__eq__(ours, theirs) is NotImplemented
    assert (hash(Single(3)), hash(Empty())) == (hash((3,)), hash(()))
    assert Single(3) == Single(3) != Single(4)
    assert Empty() == Empty()
    assert repr(Empty()) == "Empty()"


def test_it_is_frozen() -> None:
    port = Port(80)
    with pytest.raises(dataclasses.FrozenInstanceError, match="'number'"):
        port.number = 81  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="'other'"):
        port.other = 1  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError, match="'number'"):
        del port.number
    assert port.number == 80


def test_dataclasses_pickle_and_copy_take_it() -> None:
    port = Named(80, "http", [1], "s", "web")
    assert dataclasses.is_dataclass(port)
    assert [f.name for f in dataclasses.fields(port)] == [
        "number",
        "name",
        "seen",
        "secret",
        "label",
    ]
    assert dataclasses.replace(port, number=81) == Named(81, "http", [], "s", "web")
    assert dataclasses.asdict(port)["label"] == "web"
    assert pickle.loads(pickle.dumps(port)) == port
    assert copy.deepcopy(port) == port
    assert repr(port) == "Named(number=80, name='http', seen=[1], label='web')"
    assert port != Port(80, "http", [1], "s")


def test_a_class_keeps_the_methods_its_body_defines() -> None:
    assert repr(OwnMethods(1)) == "mine"
    assert OwnMethods(1) == OwnMethods(2)
    assert hash(OwnMethods(1)) == 7


def test_the_methods_are_shared_not_compiled_per_class() -> None:
    # What the module is for: one function for every class, not one per class.
    for name in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
        assert getattr(Port, name) is getattr(Single, name), name


@frozen
class Checked:
    low: int
    high: int = 10
    tags: list[str] = field(default_factory=list)
    label: str = field(default="", kw_only=True)
    derived: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low above high")
        object.__setattr__(self, "derived", self.high - self.low)


def test_it_takes_its_arguments_as_dataclasses_do() -> None:
    assert Checked(1) == Checked(low=1, high=10, label="")
    made = Checked(1, 4, label="x")
    assert (made.low, made.high, made.tags, made.label, made.derived) == (1, 4, [], "x", 3)
    assert Checked(1).tags is not Checked(1).tags  # a fresh default each time
    assert Checked.__match_args__ == ("low", "high", "tags")
    assert Checked.__doc__ == "Checked(low, high, tags, label, derived)"  # it had none
    assert Port.__doc__ == "Port(number, name, seen, secret)"
    assert dataclasses.replace(made, high=9).derived == 8
    with pytest.raises(ValueError, match="low above high"):
        Checked(5, 4)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing required argument 'low'"),
        ((1, 2, [], "x"), {}, "takes 3 positional argument"),
        ((1,), {"low": 2}, "multiple values for argument 'low'"),
        ((1,), {"derived": 2}, "unexpected keyword argument 'derived'"),
        ((1,), {"nothing": 2}, "unexpected keyword argument 'nothing'"),
    ],
)
def test_it_refuses_what_dataclasses_refuse(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        Checked(*args, **kwargs)  # type: ignore[arg-type]


def test_a_field_without_default_after_one_with_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="non-default argument 'second' follows default argument"):

        @frozen
        class Wrong:
            first: int = 0
            second: int  # type: ignore[misc]
