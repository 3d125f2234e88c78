"""Name → config tables that the job spec and the catalogue are built from, and that the leaves
fill in with implementations.

The core registers each component's config and summary (``scion/components.py``); the package
that implements it (``spaces/``, ``scheduler/strategies/``, ``worker/``) calls ``implement`` when
imported. The core so never imports a leaf, and a process that uses a component imports its
package, which is where its code is anyway.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import BaseModel, Field

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    config: type[BaseModel]
    summary: str
    kind: str
    _factory: T | None = field(default=None, repr=False)

    @property
    def factory(self) -> T:
        if self._factory is None:
            raise LookupError(f"no implementation of {self.kind} {self.name!r} is loaded in this process; "
                              f"import the package that implements it")
        return self._factory


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config: type[BaseModel], summary: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, config, summary, self.kind)

    def implement(self, name: str, factory: T) -> None:
        entry = self[name]
        if entry._factory is not None and entry._factory is not factory:
            raise ValueError(f"{self.kind} {name!r} is implemented twice")
        entry._factory = factory

    def __getitem__(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def config_union(self) -> Any:
        """The tagged union of every registered config, discriminated by its ``type`` field."""
        configs = tuple(e.config for e in self.entries())
        if len(configs) == 1:
            return configs[0]
        return Annotated[Union[configs], Field(discriminator="type")]  # noqa: UP007

    def catalogue(self) -> list[dict[str, Any]]:
        return [
            {"name": e.name, "summary": e.summary, "schema": e.config.model_json_schema()}
            for e in self.entries()
        ]
