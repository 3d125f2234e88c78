"""Name → (config model, implementation) tables that the API builds its schema from.

A new space, strategy or evaluator is one module plus one ``register`` call; the job spec's
tagged unions and the ``GET /v1/...`` catalogue follow from the registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import BaseModel, Field

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    config: type[BaseModel]
    factory: T
    summary: str


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config: type[BaseModel], factory: T, summary: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, config, factory, summary)

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
