"""The job spec: what a user may send (``JobRequest``) and what the database holds (``JobSpec``).

Each part (space, strategy, evaluator) is validated by its config in the core registries
(``scion.components``); cross-part rules (does this evaluator score this space, is this metric
one it reports, do the warm-start architectures belong to the space) are checked here, with
messages that name the field and the allowed values. Checking architectures asks the space's
implementation, which ``spaces/`` registers: a process that validates specs imports it.

A request is checked once, at submission, files included. What is stored is the normalised spec
with its ``spec_version``; ``load_spec`` reads any stored version (upgrading older ones) as
trusted: no file is read and no path resolved again, so a scheduler need not see the data.
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from scion.components import EVALUATORS, SPACES, STRATEGIES
from scion.configs.bounds import MIN_TIME_LIMIT_S
from scion.configs.datasets import stored_dataset, trusted
from scion.configs.early_stopping import CurveStoppingConfig
from scion.configs.one_shot import RETRAIN, SEARCH, SUPERNET, OneShotConfig
from scion.space import (
    InvalidArchitecture,
    InvalidSpace,
    SearchSpace,
    check_input,
    searched_settings,
    training_settings,
)


def steers_terminal(char: str) -> bool:
    """A control or formatting character: printed, it would move the cursor, recolour, hide text
    or reorder it (bidirectional overrides). Refused in names; the CLI strips it from what it prints."""
    return unicodedata.category(char) in ("Cc", "Cf")


SPEC_VERSION = 3  # 1: stored before specs carried a version; 2: before one_shot (both: the same fields otherwise)
TRUSTED = {"trusted": True}  # validation context of a stored spec: checked at submission, files included


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field(..., min_length=1, max_length=100, description="A metric the evaluator reports.")
    mode: Literal["max", "min"] | None = Field(None, description="Defaults to the metric's natural direction.")


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_trials: int = Field(20, ge=1, le=100_000, description="Trials to run in all.")
    max_parallel: int = Field(2, ge=1, le=1024, description="Trials in flight at once.")
    time_limit_s: float | None = Field(
        None, ge=MIN_TIME_LIMIT_S, le=90 * 24 * 3600, description="Wall-clock limit for the whole job, in seconds."
    )
    trial_time_limit_s: float | None = Field(
        None, ge=MIN_TIME_LIMIT_S, le=90 * 24 * 3600,
        description="Wall-clock limit for one run of a trial, in seconds: a trial past it is recorded as stopped "
                    "and its worker interrupts it, mid-epoch if need be.",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Runs of a trial whose worker was lost before it fails.")


class Constraint(BaseModel):
    """A bound on a measured cost; a candidate outside it is not trained."""

    model_config = ConfigDict(extra="forbid")
    metric: str = Field(..., min_length=1, max_length=100, description="A cost the evaluator measures.")
    max: float | None = Field(None, description="Upper bound (inclusive).")
    min: float | None = Field(None, description="Lower bound (inclusive).")

    @model_validator(mode="after")
    def _bounded(self) -> Constraint:
        if self.max is None and self.min is None:
            raise ValueError(f"constraint on {self.metric!r} needs max or min")
        return self

    def violation(self, value: float) -> str | None:
        if self.max is not None and value > self.max:
            return f"{self.metric} = {value:.4g} > {self.max:g}"
        if self.min is not None and value < self.min:
            return f"{self.metric} = {value:.4g} < {self.min:g}"
        return None


class RetrainSource(BaseModel):
    """The one architecture a retrain job trains: a trial of a job (resolved by the API at
    submission, which then fills in ``arch`` and ``trial``) or an architecture given directly."""

    model_config = ConfigDict(extra="forbid")
    from_job: int | None = Field(
        None, ge=0, le=2**31 - 1,
        description="A job whose trial to retrain (its space is used unless `space` is given).",
    )
    trial: int | None = Field(
        None, ge=0, le=2**31 - 1, description="That job's trial number; null: its best completed trial."
    )
    arch: Any = Field(None, description="The architecture, a value of the job's space; filled in from from_job.")

    @model_validator(mode="after")
    def _one_source(self) -> RetrainSource:
        if self.from_job is None and self.arch is None:
            raise ValueError("retrain: give from_job (a job with a completed trial) or arch (an architecture)")
        if self.trial is not None and self.from_job is None:
            raise ValueError("retrain.trial: names a trial of retrain.from_job, which is missing")
        return self


def unstorable(value: Any) -> str | None:
    """Why a JSON value cannot be stored and read back as it was, or None: a NaN or infinite
    number (not JSON; PostgreSQL refuses it), or a NUL character (PostgreSQL text cannot hold
    one). Iterative, so no nesting depth makes it fail."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{path or 'body'}: {item} is not allowed; numbers in a job spec must be finite"
        if isinstance(item, str) and "\x00" in item:
            return f"{path or 'body'}: the NUL character (\\u0000) is not allowed in text"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"{path or 'body'}: the NUL character (\\u0000) is not allowed in a key"
                stack.append((f"{path}.{key}" if path else str(key), child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


class JobRequest(BaseModel):
    """What a user may send: ``POST /v1/jobs``'s body."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("search", min_length=1, max_length=200,
                      description="Shown in listings; printable text (no control characters).")
    kind: Literal["search", "retrain"] = Field(
        "search",
        description="'search' explores the space; 'retrain' trains one architecture (see `retrain`) with the "
                    "evaluator's (longer) schedule and keeps its weights for export.",
    )
    retrain: RetrainSource | None = Field(
        None, description="For kind 'retrain': {from_job: ID, trial: N or null (its best)} or {arch: ...}."
    )
    space: SPACES.config_union() | None = Field(  # type: ignore[valid-type]
        None, description="Required, except for a retrain job from a job, which defaults to that job's space."
    )
    strategy: STRATEGIES.config_union() | None = Field(  # type: ignore[valid-type]
        None, description="Required for a search; a retrain job runs none (leave it out)."
    )
    evaluator: EVALUATORS.config_union()  # type: ignore[valid-type]
    objectives: list[Objective] = Field(
        default_factory=list, max_length=8,
        description="The first is what the strategy optimises; empty means the evaluator's default.",
    )
    budget: Budget = Field(default_factory=Budget)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    warm_start: list[Any] = Field(
        default_factory=list, max_length=1000, description="Architectures to evaluate first, in this order."
    )
    constraints: list[Constraint] = Field(
        default_factory=list, max_length=8, description="Bounds on measured costs, e.g. latency_ms <= 5."
    )
    early_stopping: CurveStoppingConfig | None = Field(
        None, description="Stop trials whose extrapolated learning curve cannot reach the k-th best."
    )
    one_shot: OneShotConfig | None = Field(
        None, description="Weight-sharing NAS: train a supernet (or name one: supernet_from), score its "
                          "sub-networks with inherited weights, retrain the best k from scratch.",
    )

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = unstorable(data)
        if problem:
            raise ValueError(problem)
        return data

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str, info: ValidationInfo) -> str:
        """A name is printed in terminals and pages, where control and formatting characters would
        move the cursor, recolour, hide text or reorder it (bidirectional overrides). Names stored
        before this check load as they are; the CLI strips such characters when it prints."""
        for at, char in enumerate(name if not trusted(info) else ""):
            if steers_terminal(char):
                raise ValueError(f"control character {char!r} at position {at} is not allowed; use printable text")
        return name

    @model_validator(mode="after")
    def _parts_fit_together(self, info: ValidationInfo) -> JobRequest:
        if not self._kind_rules():  # a retrain job whose space comes from its source job: checked once resolved
            return self
        evaluator = self.evaluator
        try:
            evaluator.check_space(self.space.type)
        except ValueError as exc:
            raise ValueError(f"evaluator: {exc}") from None
        metrics = {m.name: m for m in evaluator.reported_objectives()}
        for i, objective in enumerate(self.objectives):
            if objective.metric not in metrics:
                raise ValueError(
                    f"objectives[{i}].metric: {objective.metric!r} is not reported by evaluator "
                    f"{self.evaluator.type!r}; allowed: {', '.join(metrics)}"
                )
        costs = evaluator.constraint_metrics
        for i, constraint in enumerate(self.constraints):
            if constraint.metric not in costs:
                raise ValueError(
                    f"constraints[{i}].metric: {constraint.metric!r} is not measured before training by evaluator "
                    f"{self.evaluator.type!r}; allowed: {', '.join(costs) or 'none'}"
                )
        if self.early_stopping and not hasattr(self.evaluator, "epochs"):
            raise ValueError(f"early_stopping: evaluator {self.evaluator.type!r} reports no learning curve; "
                             "use an evaluator that trains for epochs (train)")
        if self.kind == "search" and not trusted(info):  # a stored spec was settled at submission
            self._written_settings_kept()
        space = make_space(self.space)
        self._space_fits(space, info)
        if self.one_shot is not None:
            self._one_shot_fits()
        if self.kind == "retrain":
            self._retrain_arch(space, check_written=not trusted(info))
        for i, arch in enumerate(self.warm_start):
            _in_space(space, arch, f"warm_start[{i}]")
        return self

    def _space_fits(self, space: SearchSpace, info: ValidationInfo) -> None:
        """What a space asks of the rest of the job: its networks must take the dataset's inputs
        (whose shape a built-in dataset declares; a file dataset's is known from its files only,
        so a worker's build checks it), and the training settings it searches (a declared space's
        hyperparameters) must be ones the evaluator trains with, within the evaluator's bounds,
        and not ones the strategy sets per trial."""
        dataset = getattr(self.evaluator, "dataset", None)
        shape = dataset.input_shape if dataset is not None else None
        if shape is not None:
            try:
                check_input(space, shape)
            except InvalidSpace as exc:
                raise ValueError(f"space.{exc} (dataset {dataset.type!r} has inputs of shape {tuple(shape)})") from None
        evaluator, strategy = self.evaluator, self.strategy or STRATEGIES["random"].config()
        for name, options in searched_settings(space).items():
            where = f"space.hyperparameters.{name}"
            if name not in evaluator.tunable:
                raise ValueError(f"{where}: evaluator {self.evaluator.type!r} does not train with {name}; it takes: "
                                 f"{', '.join(evaluator.tunable) or 'none (leave hyperparameters out)'}")
            if name in strategy.fidelity_settings:
                raise ValueError(f"{where}: strategy {self.strategy.type!r} sets each trial's {name} itself; "
                                 f"leave {name} out of the searched hyperparameters")
            if name in evaluator.model_fields_set and self.kind == "search" and not trusted(info):
                raise ValueError(f"{where}: searches {name} per trial, but evaluator.{name} sets it to "
                                 f"{getattr(evaluator, name)!r}; keep one (leave {name} out of the hyperparameters "
                                 f"to train every trial with the evaluator's, or out of the evaluator to search it)")
            for value in options:
                try:
                    type(self.evaluator).__pydantic_validator__.validate_assignment(
                        self.evaluator.model_copy(), name, value)
                except ValidationError as exc:
                    raise ValueError(f"{where}: {value!r} is not allowed: {exc.errors()[0]['msg']}") from None

    def _written_settings_kept(self) -> None:
        """A training setting written on the evaluator is one the user meant: a declared space
        searches lr and batch size by default, and a setting the evaluator names leaves that
        default search (hyperparameters written to search it too are refused by ``_space_fits``)."""
        hyperparameters = getattr(self.space, "hyperparameters", None)
        if hyperparameters is None or "hyperparameters" in self.space.model_fields_set:
            return
        searched = hyperparameters.options()
        kept = {name: list(options) for name, options in searched.items()
                if name not in self.evaluator.model_fields_set}
        if len(kept) < len(searched):
            self.space.hyperparameters = type(hyperparameters)(**kept)

    def _one_shot_fits(self) -> None:
        """What a one-shot method asks of the rest of the job: a supernet of this space, the train
        evaluator (its dataset trains the supernet, its recipe retrains the best), and a search
        phase the method can run (its own candidates, or the job's strategy scoring inherited
        weights, which have no epochs to stop early or to vary)."""
        method = self.one_shot.method
        if self.space.type not in method.spaces:
            later = "; declared spaces have no supernet yet" if self.space.type == "declared" else ""
            raise ValueError(f"one_shot.method: method {method.type!r} has supernets for spaces "
                             f"{', '.join(method.spaces)}; not {self.space.type!r}{later}")
        if self.evaluator.type != "train":
            raise ValueError(f"evaluator: a one-shot job trains its supernet and retrains the best with the train "
                             f"evaluator, not {self.evaluator.type!r}")
        if self.early_stopping is not None:
            raise ValueError("early_stopping: a one-shot search scores inherited weights, with no learning curve to "
                             "stop; leave early_stopping out")
        if method.uses_strategy:
            if self.strategy is not None and self.strategy.fidelity_settings:
                raise ValueError(f"strategy: {self.strategy.type!r} sets each trial's "
                                 f"{', '.join(self.strategy.fidelity_settings)}; a one-shot search scores "
                                 f"inherited weights without training: use another strategy")
        else:
            # (random: the inert strategy the stored spec fills in, as a retrain job's)
            if (self.strategy is not None and self.strategy.type != "random") or self.warm_start:
                part = "strategy" if self.strategy is not None else "warm_start"
                raise ValueError(f"{part}: method {method.type!r} proposes its own candidates; leave {part} out")
            if "max_trials" in self.budget.model_fields_set and self.budget.max_trials != method.candidates():
                raise ValueError(f"budget.max_trials: method {method.type!r} scores its own {method.candidates()} "
                                 f"candidate(s); leave max_trials out")
        if self.one_shot.supernet_from is not None and method.type != "spos":
            raise ValueError(f"one_shot.supernet_from: a trained supernet is searched with method 'spos' (the "
                             f"strategy scores its sub-networks); method {method.type!r} trains its own")

    def _kind_rules(self) -> bool:
        """A search needs a space and a strategy. A retrain job reuses the search machinery: its
        architecture is the job's only warm-start entry, max_trials is 1 and the strategy (random,
        filled in) is never asked. False while the space is unknown (from_job not yet resolved)."""
        if self.kind == "search":
            if self.retrain is not None:
                raise ValueError("retrain: only a job of kind 'retrain' takes a retrain source")
            required = ("space",) if self.one_shot is not None else ("space", "strategy")
            for part in required:
                if getattr(self, part) is None:
                    raise ValueError(f"{part}: field required")
            return True
        if self.one_shot is not None:
            raise ValueError("one_shot: a retrain job trains one architecture; one-shot search is a 'search' job")
        if self.retrain is None:
            raise ValueError("retrain: field required for kind 'retrain': "
                             "{from_job: ID, trial: N or null} or {arch: ...}")
        if self.strategy is not None and self.strategy.type != "random":
            raise ValueError("strategy: a retrain job trains one architecture and runs no search strategy; "
                             "leave it out")
        if self.evaluator.type != "train":
            raise ValueError(f"evaluator: a retrain job trains its architecture and keeps the weights; use the train "
                             f"evaluator, not {self.evaluator.type!r}")
        if "max_trials" in self.budget.model_fields_set and self.budget.max_trials != 1:
            raise ValueError("budget.max_trials: a retrain job runs exactly one trial; leave max_trials out")
        if self.space is None and self.retrain.from_job is None:
            raise ValueError("space: field required (a retrain job takes its space from retrain.from_job only)")
        return self.space is not None

    def _retrain_arch(self, space: SearchSpace, *, check_written: bool) -> None:
        if self.retrain.arch is None:
            if self.warm_start:
                raise ValueError("warm_start: a retrain job trains retrain's architecture alone; leave warm_start out")
            return  # from_job, not resolved yet: check_runnable refuses to run it
        arch = _in_space(space, self.retrain.arch, "retrain.arch")
        carried = training_settings(space, arch) if check_written else {}
        for name in carried:
            if name != "epochs" and name in self.evaluator.model_fields_set:
                raise ValueError(f"evaluator.{name}: the architecture carries its searched {name} ({carried[name]!r}), "
                                 f"which a retrain job trains with; leave evaluator.{name} out (only epochs is the "
                                 f"evaluator's)")
        if self.warm_start and self.warm_start not in ([self.retrain.arch], [arch]):
            raise ValueError("warm_start: a retrain job trains retrain's architecture alone; leave warm_start out")


class JobSpec(JobRequest):
    """A job's spec as the database holds it: a request checked at submission and normalised
    (the objectives and their modes, a retrain job's single trial, architectures in their
    canonical form), with its version. Read it with ``load_spec``."""

    spec_version: Literal[3] = Field(SPEC_VERSION, description="The stored format's version.")

    @model_validator(mode="after")
    def _normalised(self) -> JobSpec:
        """What the checks of the request left implicit, made explicit for the scheduler and the
        workers, which read the spec and never guess."""
        if self.kind == "retrain":
            self.strategy = self.strategy or STRATEGIES["random"].config()
            self.budget.max_trials = self.budget.max_parallel = 1
            if "name" not in self.model_fields_set:
                self.name = "retrain"
        if self.one_shot is not None:
            method = self.one_shot.method
            # SPOS searched with evolution, as its paper did; darts and enas propose their own candidates
            self.strategy = self.strategy or STRATEGIES["evolution" if method.uses_strategy else "random"].config()
            self.budget.max_trials = method.candidates() or self.budget.max_trials
        metrics = {m.name: m for m in self.evaluator.reported_objectives()}
        self.objectives = self.objectives or [Objective(metric=next(iter(metrics)))]
        for objective in self.objectives:
            objective.mode = objective.mode or metrics[objective.metric].mode
        if self.space is not None:
            space = make_space(self.space)
            self.warm_start = [space.validate(arch) for arch in self.warm_start]
            if self.kind == "retrain" and self.retrain.arch is not None:
                self.retrain.arch = space.validate(self.retrain.arch)
                self.warm_start = [self.retrain.arch]
        most = self.budget.max_trials if self.one_shot is None else max(self.budget.max_trials,
                                                                        self.one_shot.retrain_top_k)
        self.budget.max_parallel = min(self.budget.max_parallel, most)  # no more at once than any phase runs
        return self

    def check_runnable(self) -> None:
        """Raise ValueError unless a scheduler can run this spec as stored: a retrain job's source
        must have been resolved to an architecture (the API does that at submission)."""
        if self.kind == "retrain" and (self.retrain.arch is None or self.space is None):
            raise ValueError("retrain.from_job was never resolved to an architecture; submit retrain jobs through "
                             "the API, which resolves it")

    @property
    def primary(self) -> Objective:
        return self.objectives[0]

    def score(self, metrics: dict[str, Any]) -> tuple[float | None, float | None]:
        """(objective, score): the primary metric and its value oriented so higher is better."""
        value = metrics.get(self.primary.metric)
        if value is None or math.isnan(value):
            return None, None
        value = float(value)
        return value, value if self.primary.mode == "max" else -value

    def strategy_view(self, metrics: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
        """The objective metrics only, as measured and oriented higher-is-better: held-out
        figures never reach a strategy, nor missing values (a NaN is stored as null)."""
        values = {
            o.metric: float(metrics[o.metric]) for o in self.objectives if metrics.get(o.metric) is not None
        }
        scores = {o.metric: values[o.metric] * (1 if o.mode == "max" else -1) for o in self.objectives
                  if o.metric in values}
        return values, scores

    @classmethod
    def of(cls, request: JobRequest) -> JobSpec:
        """The spec to store for a request that passed its checks."""
        sent = request.model_dump(mode="json", exclude_unset=True)  # defaults are the record's to fill in
        return cls.model_validate({**sent, "spec_version": SPEC_VERSION}, context=TRUSTED)


def load_spec(stored: dict[str, Any]) -> JobSpec:
    """A stored spec of any version, as the current ``JobSpec``, without reading files again."""
    version = stored.get("spec_version", 1)
    if version in (1, 2):  # an older Scion's: no field has changed meaning since, one_shot is new
        stored = {**stored, "spec_version": SPEC_VERSION}
    elif version != SPEC_VERSION:
        raise ValueError(f"spec_version {version!r} is newer than this Scion reads ({SPEC_VERSION}); upgrade it")
    return JobSpec.model_validate(stored, context=TRUSTED)


def answer_phase(stored: dict[str, Any]) -> str | None:
    """Whose trials answer a stored spec's job: a one-shot job's retrained networks (its search's,
    by inherited-weight score, when it retrains none); None for an ordinary job: all of them."""
    one_shot = stored.get("one_shot")
    if not one_shot:
        return None
    return RETRAIN if one_shot["retrain_top_k"] else SEARCH


def planned_trials(stored: dict[str, Any]) -> int:
    """How many trials a stored spec's job runs when every phase runs in full: the budget's, plus a
    one-shot job's supernet trial (unless it searches another job's) and its retrained networks."""
    one_shot = stored.get("one_shot")
    extra = (one_shot["supernet_from"] is None) + one_shot["retrain_top_k"] if one_shot else 0
    return stored["budget"]["max_trials"] + extra


def weightless(stored: dict[str, Any], job_id: int, number: int, phase: str | None = None) -> str | None:
    """Why a trial (of a one-shot job: of ``phase``) of this stored spec can have no weights to
    export (its evaluator keeps none; a supernet or a sub-network scored with its weights), or None
    when it can."""
    retrained = f"export one of its retrained trials (phase {RETRAIN})"
    if phase == SUPERNET:
        return (f"trial {number} of job {job_id} is the job's supernet, whose weights every network of the space "
                f"shares; {retrained}, or search it again with one_shot.supernet_from {job_id}")
    if phase == SEARCH:
        return (f"trial {number} of job {job_id} was scored with weights inherited from the supernet, not trained on "
                f"its own; {retrained}, or submit a retrain job with retrain.from_job {job_id} and retrain.trial "
                f"{number}")
    evaluator = stored["evaluator"]["type"]
    if EVALUATORS[evaluator].config.keeps_weights:
        return None
    return (f"trial {number} of job {job_id} was scored by the {evaluator!r} evaluator, which trains no weights; "
            f"only its architecture can be exported (GET /v1/jobs/{job_id}/trials/{number}/architecture), or "
            f"trained: submit a retrain job with retrain.from_job {job_id}")


def architecture_record(spec: dict[str, Any], job_id: int, number: int, arch: Any, arch_key: str,
                        signature: tuple[tuple[int, ...], int] | None) -> dict[str, Any]:
    """The architecture as JSON: enough to rebuild the network with ``spaces.make_space(space)
    .build(arch, input_shape, num_classes)``, each straight from the JSON; ``signature`` is
    (input_shape, num_classes) when known."""
    shape, classes = signature if signature is not None else (None, None)
    return {
        "job_id": job_id,
        "trial": number,
        "space": spec["space"],
        "arch": arch,
        "arch_key": arch_key,
        "evaluator": spec["evaluator"]["type"],
        "dataset": stored_dataset(spec),
        "input_shape": list(shape) if shape is not None else None,
        "num_classes": classes,
    }


def _in_space(space: SearchSpace, arch: Any, where: str) -> Any:
    """``arch`` in its canonical form, or the reason it is not in ``space``, at ``where``."""
    try:
        return space.validate(arch)
    except InvalidArchitecture as exc:
        raise ValueError(f"{where}: {exc}") from None


def make_space(config: Any) -> SearchSpace:
    """The space a config describes, built by the implementation ``spaces/`` registered. ``config``
    is a space config or its JSON form, as a job spec and an exported architecture
    (``GET .../architecture``, ``scion export``'s FILE.json) write it: ``{"type": "nb201", ...}``."""
    if isinstance(config, Mapping):
        config = TypeAdapter(SPACES.config_union(), config=ConfigDict(title="space")).validate_python(config)
    return SPACES[config.type].factory(config)


__all__ = ["SPEC_VERSION", "Budget", "Constraint", "JobRequest", "JobSpec", "Objective", "RetrainSource",
           "answer_phase", "architecture_record", "planned_trials", "load_spec", "make_space", "steers_terminal",
           "unstorable", "weightless"]
