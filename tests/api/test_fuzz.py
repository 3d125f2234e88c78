"""Schema-driven fuzzing of the whole HTTP API (schemathesis, in-process over ASGI, on SQLite):
for every operation in the app's own OpenAPI document, inputs that fit the schema and inputs
that do not. Whatever comes in, the API never answers 5xx, and every 4xx carries a non-empty
``detail`` that says what was wrong.

Run with auth off, and with auth on, where each request carries no token, a random one, a
revoked one or a valid one: without a valid token a private route answers 401, never 500.

The number of examples per operation and mode is SCION_FUZZ_EXAMPLES (default 20, which keeps
this file under a minute on two cores); the generation is seeded, so a run is reproducible.
"""
from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api.main import create_app
from scion.settings import get_settings
from storage import tokens
from storage.db import session_scope
from tests.api.test_api import add_trial, train_spec

pytestmark = pytest.mark.timeout(300)

EXAMPLES = int(os.environ.get("SCION_FUZZ_EXAMPLES", "20"))
PUBLIC = {"/healthz", "/readyz", "/"}


def seed_data(owner: str | None) -> None:
    """A few jobs with trials, so generated ids (small integers) find something to read."""
    from storage import repository as repo

    with session_scope() as session:
        for i in range(3):
            job = repo.create_job(session, name=f"seed-{i}", spec=_spec(), owner=owner)
            for n in range(3):
                add_trial(session, job.id, n, "completed", objective=50.0 + n, score=50.0 + n,
                          metrics={"val_acc": 50.0 + n, "params": 1000.0 * (3 - n)})


def _spec() -> dict[str, Any]:
    from scion.spec import JobSpec

    return JobSpec.model_validate(train_spec()).model_dump(mode="json")


def check(response: Any, *, must_be_401: bool) -> str | None:
    """What is wrong with this response, or None."""
    status = response.status_code
    if status >= 500:
        return f"server error {status}: {response.text[:500]}"
    if must_be_401 and status != 401:
        try:
            routed = response.json().get("detail") not in ("Not Found", "Method Not Allowed")
        except ValueError:
            routed = True
        if routed:  # a path the generator bent out of shape is the router's 404, before any auth
            return f"expected 401 without a valid token, got {status}: {response.text[:300]}"
    if 400 <= status < 500:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            return f"{status} without a JSON body: {response.text[:300]}"
        if not isinstance(detail, str) or not detail.strip():
            return f"{status} without a detail message: {response.text[:300]}"
    return None


def fuzz_operation(operation: Any, mode: GenerationMode, auth_choices: dict[str, dict[str, str]],
                   valid: set[str]) -> list[str]:
    """Up to three problems found in one operation with one kind of input."""
    public = operation.path in PUBLIC
    found: list[str] = []

    @seed(20240611)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode), who=st.sampled_from(sorted(auth_choices)))
    def run(case: Any, who: str) -> None:
        response = case.call(headers=auth_choices[who])
        problem = check(response, must_be_401=not public and who not in valid)
        if problem and len(found) < 3:
            found.append(f"{operation.label} [{mode.value}, {who}] {case.method} {case.formatted_path} "
                         f"query={case.query} body={str(case.body)[:300]}: {problem}")

    try:
        run()
    except Unsatisfiable:  # nothing to get wrong: an operation without parameters or body
        assert mode is GenerationMode.NEGATIVE, operation.label
    except Exception as exc:  # an exception escaping the app: what a user would see as a 500
        found.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {exc}")
    return found


def fuzz(app: Any, auth_choices: dict[str, dict[str, str]], valid: set[str]) -> list[str]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    return [problem for operation in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            for problem in fuzz_operation(operation, mode, auth_choices, valid)]


def test_fuzzing_with_auth_off_finds_no_server_error_and_no_4xx_without_a_message(
    sqlite_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCION_AUTH", "off")
    get_settings.cache_clear()
    seed_data(owner=None)
    problems = fuzz(create_app(), {"none": {}}, valid={"none"})
    assert not problems, "\n".join(problems)


def test_fuzzing_with_auth_on_answers_401_without_a_valid_token_and_never_500(
    sqlite_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCION_AUTH", "on")
    get_settings.cache_clear()
    with session_scope() as session:
        alice = tokens.create_token(session, name="alice")
        admin = tokens.create_token(session, name="root", is_admin=True)
        revoked = tokens.create_token(session, name="old")
        tokens.revoke_token(session, name="old")
    seed_data(owner="bob")  # another owner's jobs: alice must get 404s, never 500s
    choices = {
        "no token": {},
        "random token": {"Authorization": "Bearer scion_" + "x" * 43},
        "not bearer": {"Authorization": "Token abc"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "alice": {"Authorization": f"Bearer {alice}"},
        "admin": {"Authorization": f"Bearer {admin}"},
    }
    problems = fuzz(create_app(), choices, valid={"alice", "admin"})
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- what fuzzing found, on both databases


def _raw(body: str) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


BASE = ('{"space": {"type": "nb201"}, "strategy": {"type": "random"}, '
        '"evaluator": {"type": "train", "dataset": "digits"}')
BAD_INPUTS = [
    # (what, method, path, request kwargs, status, fragments of the detail)
    ("NaN in a job spec (PostgreSQL refused it: a 503 that blamed the database)", "POST", "/v1/jobs",
     _raw(BASE + ', "constraints": [{"metric": "params", "max": NaN}]}'), 422, ["constraints[0].max", "finite"]),
    ("Infinity in a strategy's config", "POST", "/v1/jobs",
     _raw('{"space": {"type": "nb201"}, "strategy": {"type": "evolution", "population_size": Infinity}, '
          '"evaluator": {"type": "train", "dataset": "digits"}}'), 422,
     ["strategy.population_size", "finite"]),
    ("NUL in the job name (PostgreSQL text cannot hold it: a 503)", "POST", "/v1/jobs",
     _raw(BASE + ', "name": "a\\u0000b"}'), 422, ["name", "NUL"]),
    ("an escape sequence in the job name (scion status printed it as colour)", "POST", "/v1/jobs",
     _raw(BASE + ', "name": "a\\u001b[31mred"}'), 422, ["name", "control character '\\x1b' at position 1"]),
    ("a line break in the job name", "POST", "/v1/jobs", _raw(BASE + ', "name": "a\\r\\nb"}'), 422,
     ["name", "control character '\\r'"]),
    ("a right-to-left override in the job name", "POST", "/v1/jobs", _raw(BASE + ', "name": "gpj.\\u202eexe"}'), 422,
     ["name", "control character '\\u202e'"]),
    ("NUL in an object key", "POST", "/v1/jobs", _raw(BASE + ', "warm_start": [{"a\\u0000": 1}]}'), 422, ["NUL"]),
    ("a body that is not UTF-8", "POST", "/v1/jobs",
     {"content": b"\xb5\xbf^:", "headers": {"content-type": "application/json"}}, 400, ["not valid JSON", "utf-8"]),
    ("JSON nested deeper than the parser goes", "POST", "/v1/jobs", _raw("[" * 100_000 + "]" * 100_000), 400,
     ["not valid JSON", "recursion"]),
    ("a job id past the 32-bit column (PostgreSQL: out of range)", "GET", "/v1/jobs/2147483648", {}, 422,
     ["job_id", "2147483647"]),
    ("a trial number past the 32-bit column", "GET", "/v1/jobs/1/trials/99999999999999999999", {}, 422, ["number"]),
    ("an id SQLite cannot bind (over 64 bits)", "POST", "/v1/jobs/99999999999999999999999/cancel", {}, 422,
     ["job_id"]),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0].split(" (")[0] for c in BAD_INPUTS])
def test_inputs_that_once_failed_are_clear_4xx_on_both_databases(
    settings_env, case: tuple[str, str, str, dict[str, Any], int, list[str]]
) -> None:
    from fastapi.testclient import TestClient

    what, method, path, kwargs, status, fragments = case
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        assert client.post("/v1/jobs", json=train_spec()).json()["id"] == 1
        r = client.request(method, path, **kwargs)
        assert r.status_code == status, (what, r.text)
        detail = r.json()["detail"]
        assert all(f in detail for f in fragments), (what, detail)
        assert client.get("/v1/jobs").json()["total"] == 1  # nothing stored
