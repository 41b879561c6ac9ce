"""`@frozen`: a frozen dataclass whose methods are shared by every such class.

Standard library only: the init's wire (`podvisor.init.protocol`) is made of
these classes, and so are the supervisor's (`podvisor.supervisor.frozen`).

Why. `@dataclass(frozen=True)` compiles, for each class, its own `__init__`,
`__repr__`, `__eq__`, `__hash__`, `__setattr__` and `__delattr__`: six calls of
`exec` on generated source when the class is made, and six functions kept.
podvisor's model, lifecycle and wires are some hundred and fifty such
classes, all made while `podvisor run` starts its pod (and the wire's while
the pod's init starts), and the supervisor
keeps them as long as the pod runs: compiling their methods was the largest
part of the supervisor's start-up imports, and the methods a good part of its
memory. None of the six needs code of its own: given the names of a class's
fields, their defaults and their order, one function serves every class.

So a class under `@frozen` is a dataclass as `@dataclass(frozen=True)` makes
it, to `dataclasses` (`fields`, `replace`, `asdict`), to pickle, and to mypy
(`dataclass_transform`), with these methods:

* `__init__`: the fields as arguments, positional or by name (those with
  ``kw_only`` by name only), in the order dataclasses take them; a missing
  one takes its default or its ``default_factory()``; then
  `__post_init__`, when the class has one (``InitVar`` is not supported);
* `__eq__`: only between instances of the same class, over the fields with
  `compare=True`, as a tuple (as dataclasses compare);
* `__hash__`: the hash of the tuple of the fields that dataclasses hash;
* `__repr__`: ``Name(field=value, ...)`` without the fields with `repr=False`;
* `__setattr__`, `__delattr__`: FrozenInstanceError for a field, and for any
  name on an instance of a class made here.

A method the class body defines itself is kept, as dataclasses keep it.

How. `dataclass(init=False, repr=False, eq=False)` makes the class a
dataclass (its fields, ``__match_args__``) without compiling anything; the
class then gets the shared methods and a `_frozen_shape`: what they need of
its fields. A `__init__` sets the fields with `object.__setattr__`.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from dataclasses import MISSING
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

#: The fields' values as a tuple, for one of the shared methods.
Getter = Callable[[Any], tuple[Any, ...]]


class FrozenShape:
    """What the shared methods need of one class: its fields' getters, its arguments."""

    __slots__ = ("accepted", "compared", "hashed", "positional", "post_init", "setting", "shown")

    def __init__(self, cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> None:
        self.compared = _getter([f.name for f in fields if f.compare])
        self.hashed = _getter([f.name for f in fields if (f.compare if f.hash is None else f.hash)])
        self.shown = tuple(f.name for f in fields if f.repr)
        self.positional = tuple(f.name for f in fields if f.init and not f.kw_only)
        self.accepted = tuple(f.name for f in fields if f.init)
        #: Each field in order: its name, whether it is an argument, its default, its factory.
        self.setting = tuple((f.name, f.init, f.default, f.default_factory) for f in fields)
        self.post_init = hasattr(cls, "__post_init__")
        _check_arguments(cls, fields)


def _check_arguments(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> None:
    """Refuse what dataclasses' own `__init__` would refuse when the class is made."""
    defaulted = False
    for f in fields:
        if not f.init or f.kw_only:
            continue
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if defaulted and not has_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        defaulted |= has_default


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[T]) -> type[T]:
    """Make *cls* a frozen dataclass with the methods of this module (above)."""
    own = {name for name in ("__repr__", "__eq__") if name in cls.__dict__}
    # As dataclasses judge it: a body's __eq__ without __hash__ sets __hash__ to None.
    body_hash = cls.__dict__.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (
        body_hash is dataclasses.MISSING or (body_hash is None and "__eq__" in cls.__dict__)
    )
    # Nothing compiled: every method comes from here. Not frozen=True to
    # dataclasses, which would compile a __setattr__ and __delattr__; the
    # shared ones below refuse assignment as theirs do.
    # A class without a docstring gets one naming its fields, as dataclasses
    # give it; theirs comes from inspect.signature, which is slow and, for a
    # class that has no __init__ of its own yet, leaves cyclic garbage behind.
    documented = bool(cls.__doc__)
    if not documented:
        cls.__doc__ = cls.__name__
    dataclasses.dataclass(init=False, repr=False, eq=False)(cls)  # in place: no slots
    made: Any = cls
    fields = dataclasses.fields(made)
    made._frozen_shape = FrozenShape(cls, fields)
    if not documented:
        made.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields)})"
    if "__init__" not in cls.__dict__:
        made.__init__ = _init
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


def _init(self: object, *args: object, **kwargs: object) -> None:
    shape = _shape(self)
    if len(args) > len(shape.positional):
        raise TypeError(
            f"{type(self).__qualname__}() takes {len(shape.positional)} positional "
            f"argument(s) but {len(args)} were given"
        )
    given = dict(zip(shape.positional, args, strict=False))
    for name, value in kwargs.items():
        if name not in shape.accepted or name in given:
            how = "multiple values for" if name in given else "an unexpected keyword"
            raise TypeError(f"{type(self).__qualname__}() got {how} argument {name!r}")
        given[name] = value
    for name, argument, default, factory in shape.setting:
        if argument and name in given:
            value = given[name]
        elif default is not MISSING:
            value = default
        elif factory is not MISSING:
            value = factory()
        elif argument:
            raise TypeError(f"{type(self).__qualname__}() missing required argument {name!r}")
        else:
            continue  # init=False without a default: __post_init__ sets it, as dataclasses do
        object.__setattr__(self, name, value)
    if shape.post_init:
        self.__post_init__()  # type: ignore[attr-defined]


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
