"""The methods ``@dataclass`` generates, without compiling source code at import.

``@dataclass`` writes each class's ``__repr__``, ``__eq__``, ``__hash__``, frozen
``__setattr__``/``__delattr__`` and comparisons as source text and compiles it with
``exec``: for the parser's 26 classes that was 15 to 24 ms of ``import
storyreasoning.format``, most of its own import time, paid by every command that reads a
model output (``storyreasoning check FILE`` among them). The parser's classes are declared
``@dataclass(init=False, repr=False, eq=False)`` (so ``dataclasses.fields``, ``asdict`` and
``replace`` work on them as before) and :func:`dataclass_methods` gives each the methods
``@dataclass(frozen=...)`` would have given it, with the same meaning, made from
closures over the field names.

It also holds :data:`TYPE_CHECKING`, the parser modules' way to name ``typing``'s
``Final`` and ``Any`` for mypy without importing ``typing`` (another 5 ms of start-up).

This module is not compiled with mypyc (unlike the parser's core modules): the methods it
makes must be Python functions, which bind to an instance as methods do.
"""

from __future__ import annotations

import reprlib
from dataclasses import FrozenInstanceError, fields
from operator import attrgetter

#: False, like ``typing.TYPE_CHECKING`` at run time, without importing ``typing``: mypy (and so
#: mypyc) reads every ``if TYPE_CHECKING:`` block as taken, whatever the name's origin, and the
#: parser's modules import ``typing``'s names in such a block only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple]:
    """The tuple of these attributes of an object (read in C by ``attrgetter``)."""
    if len(names) >= 2:
        return attrgetter(*names)
    if names:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return lambda obj: ()


def dataclass_methods(cls: type, *, frozen: bool = False) -> type:
    """Give ``cls`` (declared ``@dataclass(init=False, repr=False, eq=False)``) the methods that
    ``@dataclass(frozen=frozen)`` generates, but those the class defines itself (as ``@dataclass``
    keeps them too): ``__repr__`` of the fields with ``repr=True``; ``__eq__`` on the fields with
    ``compare=True``, between objects of the same class only; ``__hash__`` of the compared fields
    when ``frozen`` and none (unhashable) otherwise; and when ``frozen``, assigning or deleting a
    field raises :class:`dataclasses.FrozenInstanceError`. Returns ``cls``. (``Box``, the one
    ordered class, writes its comparisons itself, where type checkers see them.)"""
    every = fields(cls)
    shown = tuple(f.name for f in every if f.repr)
    key = _getter(tuple(f.name for f in every if f.compare))
    names = frozenset(f.name for f in every)
    owner: Any = cls  # (for mypy: super() of a class held in a variable)

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        body = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({body})"

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    methods: dict[str, Any] = {"__repr__": __repr__, "__eq__": __eq__}
    if frozen:

        def __hash__(self: Any) -> int:
            return hash(key(self))

        def __setattr__(self: Any, name: str, value: Any) -> None:
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(owner, self).__setattr__(name, value)

        def __delattr__(self: Any, name: str) -> None:
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(owner, self).__delattr__(name)

        methods.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    else:
        methods["__hash__"] = None  # a mutable dataclass with __eq__ is unhashable
    # what the class writes itself stays, as @dataclass keeps it (a class that writes __eq__ has
    # __hash__ in its dict too: its own, or None as Python sets it)
    own = {name for name in methods if name in cls.__dict__}
    for name, method in methods.items():
        if name in own:
            continue
        if method is not None:
            method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    return cls
