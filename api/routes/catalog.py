"""/v1/spaces, /v1/strategies, /v1/evaluators, /v1/datasets: what a job spec may name."""
from __future__ import annotations

from fastapi import APIRouter

from api.schemas import CatalogEntry
from scion.components import EVALUATORS, SPACES, STRATEGIES
from scion.configs.datasets import describe_datasets
from scion.registry import Registry
from scion.spec import make_space

router = APIRouter(prefix="/v1", tags=["catalogue"])


def _entries(registry: Registry, details=lambda entry: {}) -> list[CatalogEntry]:
    return [
        CatalogEntry(name=e.name, summary=e.summary, json_schema=e.config.model_json_schema(), details=details(e))
        for e in registry.entries()
    ]


def _space_details(entry) -> dict:
    space = make_space(entry.config())
    import numpy as np

    return {"size": space.size(), "example": space.sample(np.random.default_rng(0))}


def _evaluator_details(entry) -> dict:
    cls = entry.config
    return {
        "queue": cls.queue,
        "objectives": [{"metric": m.name, "mode": m.mode, "description": m.description} for m in cls.objectives],
        "recorded": list(cls.recorded),
    }


@router.get("/spaces", response_model=list[CatalogEntry])
def spaces() -> list[CatalogEntry]:
    return _entries(SPACES, _space_details)


@router.get("/strategies", response_model=list[CatalogEntry])
def strategies() -> list[CatalogEntry]:
    return _entries(STRATEGIES)


@router.get("/evaluators", response_model=list[CatalogEntry])
def evaluators() -> list[CatalogEntry]:
    return _entries(EVALUATORS, _evaluator_details)


@router.get("/datasets", response_model=list[CatalogEntry])
def datasets() -> list[CatalogEntry]:
    return [CatalogEntry(**d) for d in describe_datasets()]
