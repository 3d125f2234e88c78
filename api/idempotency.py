"""``Idempotency-Key`` on ``POST /v1/jobs``: a submission sent again with the same key (a client
retrying after its answer was lost) is answered with the job the first one created, never a second
job. A key belongs to its owner and is kept as long as its job; the same key with a different
request is refused (409), naming the header. Two submissions racing with one key meet at the
key's primary key (``storage.models.IdempotencyKey``): the loser answers the winner's job."""
from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import Header
from sqlalchemy.orm import Session

from api.schemas import JobCreate
from scion.errors import Conflict
from storage import repository as repo
from storage.models import Job

HEADER = "Idempotency-Key"

KeyHeader = Annotated[str | None, Header(
    alias=HEADER, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
    description="Any printable ASCII string without spaces, up to 200 characters, new for each job (the SDK "
                "sends a UUID): the same key with the same request answers the job it created (200), with "
                "another request a 409.",
)]


def request_hash(request: JobCreate) -> str:
    """The request as validated, in canonical JSON: two bodies that differ only in layout or in
    fields left at their defaults are the same request."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def earlier_job(session: Session, *, owner: str | None, key: str, digest: str) -> Job | None:
    """The job the owner's earlier submission with this key created, or None when the key is new;
    Conflict when that submission's request was another."""
    earlier = repo.idempotency_key(session, owner=owner, key=key)
    if earlier is None:
        return None
    if earlier.request_hash != digest:
        raise Conflict(f"the {HEADER} {key!r} was sent before with a different request (job {earlier.job_id}); "
                       f"send a new key for a new job")
    return repo.get_job(session, job_id=earlier.job_id)
