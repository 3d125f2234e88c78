"""Checking a one-shot job against what this server allows and holds, at submission.

The spec's own checks (``scion.spec``) need no database: a method that has no supernet for the
space, a strategy that cannot search inherited weights. Two more need the server: whether the
supernet's training fits the memory this server allows (``supernet_memory_mb``), and whether a
job that searches another job's supernet (``one_shot.supernet_from``) names a trained one of the
same space and dataset.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from scion.configs.one_shot import SUPERNET
from scion.errors import Invalid, NotFound
from scion.settings import get_settings
from scion.spec import JobSpec, make_space
from storage import repository as repo
from storage.models import Job

BYTES_PER_PARAM = 4 * 3  # float32 weights, their gradients and the optimiser's momentum
SECOND_ORDER_COPIES = 2  # second-order DARTS keeps the unrolled weights and a perturbed copy too
TRAINED_SINGLE_PATHS = ("spos", "enas")  # methods whose supernets score single paths with inherited weights


def check(session: Session, spec: JobSpec, visible: Callable[[Job], bool]) -> None:
    if spec.one_shot is None:
        return
    _fits_memory(spec)
    if spec.one_shot.supernet_from is not None:
        _trained_source(session, spec, visible)


def supernet_memory_mib(spec: JobSpec) -> float | None:
    """The estimated training state of the job's supernet, None when the dataset's shape is known
    only from its files (a worker then finds out)."""
    dataset = spec.evaluator.dataset
    if dataset.input_shape is None or dataset.num_classes is None:
        return None
    params = make_space(spec.space).supernet_params(tuple(dataset.input_shape), int(dataset.num_classes))
    method = spec.one_shot.method
    copies = BYTES_PER_PARAM + (4 * SECOND_ORDER_COPIES if getattr(method, "order", 1) == 2 else 0)
    return params * copies / 2**20


def _fits_memory(spec: JobSpec) -> None:
    if spec.one_shot.supernet_from is not None:
        return  # trained already; searching it loads the weights once per worker
    limit, need = get_settings().supernet_memory_mb, supernet_memory_mib(spec)
    if need is not None and need > limit:
        raise Invalid("space", f"the {spec.space.type!r} supernet of this space needs about {need:,.0f} MiB to train "
                      f"(its parameters, gradients and momentum), above this server's limit of {limit:,.0f} MiB "
                      "(supernet_memory_mb); make the space smaller (fewer channels, layers or options)")


def _trained_source(session: Session, spec: JobSpec, visible: Callable[[Job], bool]) -> None:
    """The named job must hold a trained single-path supernet of this job's space and dataset;
    the refusal lists the jobs that do."""
    wanted = spec.one_shot.supernet_from
    space, dataset = spec.space.model_dump(mode="json"), spec.evaluator.dataset.model_dump(mode="json")
    fitting = [job.id for job in repo.trained_supernets(session) if visible(job)
               and job.spec["space"] == space and job.spec["evaluator"]["dataset"] == dataset
               and job.spec["one_shot"]["method"]["type"] in TRAINED_SINGLE_PATHS]
    job = repo.get_job(session, job_id=wanted)
    if job is None or not visible(job):
        raise NotFound(f"one_shot.supernet_from: job {wanted} not found")
    if wanted in fitting:
        return
    source = job.spec.get("one_shot")
    trial = repo.get_trial(session, job_id=wanted, number=0)
    if source is None or source.get("supernet_from") is not None or trial is None or trial.phase != SUPERNET:
        why = f"job {wanted} trained no supernet"
    elif trial.status != "completed":
        why = f"job {wanted}'s supernet is {trial.status}, not trained"
    elif source["method"]["type"] not in TRAINED_SINGLE_PATHS:
        why = (f"job {wanted} trained its supernet with {source['method']['type']!r}, whose mixed operations do "
               f"not score single paths; {', '.join(TRAINED_SINGLE_PATHS)} supernets do")
    elif job.spec["space"] != space:
        why = f"job {wanted}'s supernet is of another space ({job.spec['space']}), not this job's ({space})"
    else:
        why = (f"job {wanted}'s supernet was trained on another dataset ({job.spec['evaluator']['dataset']}), "
               f"not this job's ({dataset})")
    raise Invalid("one_shot.supernet_from", why, allowed=fitting or ["none yet: train one with a one-shot job"])


__all__ = ["check", "supernet_memory_mib"]
