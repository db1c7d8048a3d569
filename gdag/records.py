"""Small record classes without the dataclass decorator's start-up cost.

`publish` and `lookup` run in shell loops and git hooks, and every
`@dataclass` costs ~0.3 ms of code generation at import. The records on their
path subclass `Record` (equality and repr over `__slots__`) or `Frozen` (also
hashing, and assignment refused as with `@dataclass(frozen=True)`), and write
their `__init__` by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FrozenError(AttributeError):
    """Assignment to a field of a frozen record."""


class Record:
    """Equality and repr over the fields named in `__slots__`."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, as a dataclass

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Frozen(Record):
    """A record whose fields are set once, by `_set` in `__init__`."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(_hashable(v) for v in self._values()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"cannot delete field {name!r}")

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy (jobs cross processes)
        return _rebuild, (type(self), dict(zip(self.__slots__, self._values(), strict=True)))


def _rebuild(cls: type[Frozen], fields: dict[str, Any]) -> Frozen:
    record = cls.__new__(cls)
    record._set(**fields)
    return record


def _hashable(v: Any) -> Any:
    return tuple(sorted(v.items())) if isinstance(v, Mapping) else v
