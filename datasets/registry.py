"""A name -> object registry that fails loudly (the timm / lm-evaluation-harness pattern), the only one in the house.

It lives in ``datasets``, the lowest layer, so every package can use it and imports run one way.

Every registry in the project (datasets, models, pairs, training families, methods, strategies, analyses, power-index
estimators, the estimator benchmark's estimators, suites) is one of these, so a duplicate name is always an error and
an unknown name always answers with the valid names and a "did you mean" hint. Entries are added by the module that
defines them; a package's ``__init__`` imports its modules, so a registry is complete once its package is imported,
and a module that fails to import fails there, naming itself. Nothing is discovered by string.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from datasets.errors import UsageError

T = TypeVar("T")


class UnknownNameError(KeyError, UsageError):
    """Raised for a name that is not registered; the message lists the valid names.

    A ``KeyError`` (a failed look-up) and a :class:`~datasets.errors.UsageError` (a bad name given by a user).
    """

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects (usually factories or specs); registering a name twice is an error.

    Args:
        kind: what the registry holds ("dataset", "pair", "method", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers the decorated object under ``name``."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def remove(self, name: str) -> T:
        """Takes ``name`` out (for a test that registers an entry of its own and must leave the registry as it was)."""
        if name not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        return self._items.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    __getitem__ = get

    def unknown_message(self, name: str) -> str:
        hint = difflib.get_close_matches(name, self._items, n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        return f"unknown {self.kind} {name!r}.{did_you_mean} Valid names: {', '.join(sorted(self._items))}"

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._items)

    def values(self) -> list[T]:
        """Every registered object, in the order they were registered."""
        return list(self._items.values())

    def items(self) -> list[tuple[str, T]]:
        """(name, object) pairs in the order they were registered."""
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
