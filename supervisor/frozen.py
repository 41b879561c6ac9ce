"""`@frozen`: a frozen dataclass whose methods are shared by every such class.

Why. `@dataclass(frozen=True)` compiles, for each class, its own `__init__`,
`__repr__`, `__eq__`, `__hash__`, `__setattr__` and `__delattr__`. podvisor's
model and lifecycle are made of some ninety such classes, and the supervisor
keeps them as long as its pod runs: those methods were 0.6 MB of its memory.
Only `__init__` depends on more than the names of the fields (their
defaults, their order); the other five are written here once, for every
class, given the names of its fields.

So a class under `@frozen` is a dataclass as `@dataclass(frozen=True)` makes
it, to `dataclasses` (`fields`, `replace`, `asdict`), to pickle, and to mypy
(`dataclass_transform`), with these methods:

* `__eq__`: only between instances of the same class, over the fields with
  `compare=True`, as a tuple (as dataclasses compare);
* `__hash__`: the hash of the tuple of the fields that dataclasses hash;
* `__repr__`: ``Name(field=value, ...)`` without the fields with `repr=False`;
* `__setattr__`, `__delattr__`: FrozenInstanceError for a field, and for any
  name on an instance of a class made here.

A method the class body defines itself is kept, as dataclasses keep it.

How. `dataclass(frozen=True, repr=False, eq=False)` makes the class and its
`__init__`, which sets the fields with `object.__setattr__`; the
`__setattr__` and `__delattr__` it compiled are replaced (their memory goes
to the next class's), and the class gets a `_frozen_shape`: the getters of
the fields each shared method needs.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

#: The fields' values as a tuple, for one of the shared methods.
Getter = Callable[[Any], tuple[Any, ...]]


class FrozenShape:
    """What the shared methods need of one class: its fields' getters."""

    __slots__ = ("compared", "hashed", "shown")

    def __init__(self, fields: tuple[dataclasses.Field[Any], ...]) -> None:
        self.compared = _getter([f.name for f in fields if f.compare])
        self.hashed = _getter([f.name for f in fields if (f.compare if f.hash is None else f.hash)])
        self.shown = tuple(f.name for f in fields if f.repr)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[T]) -> type[T]:
    """Make *cls* a frozen dataclass with the methods of this module (above)."""
    own = {name for name in ("__repr__", "__eq__") if name in cls.__dict__}
    # As dataclasses judge it: a body's __eq__ without __hash__ sets __hash__ to None.
    body_hash = cls.__dict__.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (
        body_hash is dataclasses.MISSING or (body_hash is None and "__eq__" in cls.__dict__)
    )
    dataclasses.dataclass(frozen=True, repr=False, eq=False)(cls)  # in place: no slots
    made: Any = cls
    made._frozen_shape = FrozenShape(dataclasses.fields(made))
    made.__setattr__ = _setattr
    made.__delattr__ = _delattr
    if "__repr__" not in own:
        made.__repr__ = _repr
    if "__eq__" not in own:
        made.__eq__ = _eq
    if not explicit_hash:
        made.__hash__ = _hash
    return cls


def _getter(names: list[str]) -> Getter:
    if len(names) > 1:
        return attrgetter(*names)  # a tuple of their values
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda _: ()


def _shape(obj: object) -> FrozenShape:
    shape: FrozenShape = type(obj)._frozen_shape  # type: ignore[attr-defined]
    return shape


def _eq(self: object, other: object) -> object:  # a bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    compared = _shape(self).compared
    return compared(self) == compared(other)


def _hash(self: object) -> int:
    return hash(_shape(self).hashed(self))


@reprlib.recursive_repr()
def _repr(self: object) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _shape(self).shown)
    return f"{type(self).__qualname__}({shown})"


def _refuses(obj: object, name: str) -> bool:
    cls = type(obj)
    return "_frozen_shape" in cls.__dict__ or name in cls.__dataclass_fields__  # type: ignore[attr-defined]


def _setattr(self: object, name: str, value: object) -> None:
    if _refuses(self, name):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _delattr(self: object, name: str) -> None:
    if _refuses(self, name):
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)
