"""Resolving a retrain job's source at submission.

A retrain job (``kind: retrain``) is an ordinary job whose only trial is a given architecture:
``JobRequest`` turns ``retrain.arch`` into the single warm-start entry, fixes ``max_trials`` at 1 and
fills in an inert strategy, so the scheduler, the workers and the artifact store treat it like
any search. ``retrain.from_job`` names the architecture by a trial of another job instead; the
API resolves it here, once, against the database, and stores the spec with ``arch``, ``trial``
and (unless given) the source job's ``space`` filled in, so the job is self-contained and later
changes to the source job do not change it.
"""
from __future__ import annotations

from collections.abc import Callable

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from scion.errors import Invalid, NotFound
from scion.spec import JobRequest
from spaces import InvalidArchitecture, make_space
from storage import repository as repo
from storage.models import Job


def resolve(session: Session, spec: JobRequest, visible: Callable[[Job], bool] = lambda _job: True) -> JobRequest:
    """``spec`` with a retrain job's ``from_job`` resolved to an architecture (other specs as
    they are). NotFound when the source job or trial does not exist (or is not the caller's to
    see); Invalid when it cannot be retrained (nothing completed, another space); the completed
    spec's own errors (e.g. an architecture that is not in a ``space`` given explicitly) as the
    request's validation errors."""
    source = spec.retrain
    if spec.kind != "retrain" or source is None or source.from_job is None:
        return spec
    job = repo.get_job(session, job_id=source.from_job)
    if job is None or not visible(job):
        raise NotFound(f"retrain.from_job: job {source.from_job} not found")
    if source.trial is None:
        trial = repo.best_trial(session, job_id=job.id)
        if trial is None:
            raise Invalid("retrain.from_job", f"job {job.id} has no completed trial yet; wait for one or name a "
                          "trial with retrain.trial")
    else:
        trial = repo.get_trial(session, job_id=job.id, number=source.trial)
        if trial is None:
            raise NotFound(f"retrain.trial: job {job.id} has no trial {source.trial}")
        if trial.status != "completed":
            raise Invalid("retrain.trial", f"trial {trial.number} of job {job.id} is {trial.status}; only a "
                          "completed trial can be retrained")
    source_space = job.spec["space"]
    space = spec.space.model_dump(mode="json") if spec.space is not None else source_space
    if space["type"] != source_space["type"]:
        raise Invalid("space", f"job {job.id}'s architectures belong to a {source_space['type']!r} space, not "
                      f"{space['type']!r}; leave space out, or give a {source_space['type']!r} space (a wider or "
                      "deeper network of the same cells is fine)")
    if source.arch is not None:
        built = make_space(space)
        try:
            same = built.key(built.validate(source.arch)) == built.key(built.validate(trial.arch))
        except InvalidArchitecture:
            same = False
        if not same:
            raise Invalid("retrain.arch", f"differs from trial {trial.number} of job {job.id}; give from_job or "
                          "arch, not both")
    body = spec.model_dump(mode="json", exclude_unset=True)  # what the user sent, plus the resolution
    body["space"] = space
    body["retrain"] = {"from_job": job.id, "trial": trial.number, "arch": trial.arch}
    try:
        return JobRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False)]
        ) from None


__all__ = ["resolve"]
