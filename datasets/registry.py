"""A name -> factory registry that fails loudly (the timm / lm-evaluation-harness pattern).

It lives in ``datasets``, the lowest layer, so every package can use it and imports run one way: ``bench`` ->
``reports``, ``methods`` -> ``datasets``.

Every registry in the project (datasets, models, pairs, methods, suites) is one of these, so a duplicate name is
always an error and an unknown name always answers with the valid names and a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects (usually factories); registering a name twice is an error.

    Args:
        kind: what the registry holds ("dataset", "pair", "method", ...), used in error messages.
        discover: a package whose modules register entries here (e.g. "methods"): every module of it is imported
            once, the first time a name is missing or the names are listed, so a new entry is one new file.
    """

    def __init__(self, kind: str, *, discover: str | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._discover = discover

    def discover(self) -> None:
        """Imports every module of the ``discover`` package (once), so that their entries register."""
        package, self._discover = self._discover, None
        if package is None:
            return
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            importlib.import_module(module.name)

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

    def get(self, name: str) -> T:
        if name not in self._items:
            self.discover()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = difflib.get_close_matches(name, self._items, n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        return f"unknown {self.kind} {name!r}.{did_you_mean} Valid names: {', '.join(sorted(self._items))}"

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self.discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.discover()
        return len(self._items)
