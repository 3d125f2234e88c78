"""The job-spec side of the search strategies: each one's knobs with their published defaults.

The strategies themselves live in ``scheduler/strategies/`` and register against these names.
``fidelity_settings`` names the training settings a strategy's proposals set per trial, which
a job may then not also search."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scion.configs.bounds import MAX_EPOCHS

# What one job's strategy may make its scheduler do per ask, whatever else that scheduler serves
# (docs/security.md): the largest predictor (16 networks of 8 hidden layers of 64 units, 1,000 Adam
# steps a fit) takes tens of seconds a fit and tens of MB, not minutes and gigabytes, and candidate
# pools and resampling stay in the thousands. The scheduler still runs a busy strategy aside
# (scheduler/aside.py), so these bound how long that job waits on itself, not the other jobs.
MAX_ENSEMBLE = 16  # networks in a predictor ensemble
MAX_HIDDEN_UNITS = 64  # units in a hidden layer of a predictor
MAX_HIDDEN_LAYERS = 8  # hidden layers of a predictor
MAX_FIT_EPOCHS = 1_000  # Adam steps of any one fit (fresh, warm update, fantasy)
MAX_POOL = 10_000  # candidates a predictor scores in one ask or round
MAX_RESAMPLE = 1_000  # draws an ask tries for an unseen architecture


class StrategyConfig(BaseModel):
    fidelity_settings: ClassVar[tuple[str, ...]] = ()


class RandomSearchConfig(StrategyConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["random"] = "random"
    max_resample: int = Field(100, ge=1, le=MAX_RESAMPLE, description="Draws tried before accepting a repeat.")


class EvolutionConfig(StrategyConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["evolution"] = "evolution"
    population_size: int = Field(20, ge=2, le=10_000, description="Living members; also the random warm-up.")
    sample_size: int = Field(5, ge=1, le=10_000, description="Tournament size.")
    max_resample: int = Field(20, ge=1, le=MAX_RESAMPLE, description="Mutations tried before accepting a repeat.")

    @model_validator(mode="after")
    def _sample_fits(self) -> EvolutionConfig:
        if self.sample_size > self.population_size:
            raise ValueError(
                f"sample_size ({self.sample_size}) must not exceed population_size ({self.population_size})"
            )
        return self


class NSGA2Config(StrategyConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["nsga2"] = "nsga2"
    population_size: int = Field(20, ge=2, le=1_000, description="Members kept; also the random warm-up.")
    crossover_prob: float = Field(
        0.5, ge=0.0, le=1.0, description="Chance that an offspring is a uniform crossover of two parents."
    )
    max_resample: int = Field(20, ge=1, le=MAX_RESAMPLE, description="Offspring tried before accepting a repeat.")


class GridConfig(StrategyConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["grid"] = "grid"
    shuffle: bool = Field(
        True,
        description="Visit the grid in a seeded pseudo-random order (any prefix is then a uniform "
        "sample without repeats); False visits it in lexicographic order of the decisions.",
    )
    max_size: int = Field(
        1_000_000, ge=1, le=10**12,
        description="Refuse spaces with more architectures than this (or infinite ones): "
        "enumerating them is not a search anyone can finish.",
    )


class LocalSearchConfig(StrategyConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["local_search"] = "local_search"
    initial_samples: int = Field(
        10, ge=1, le=10_000,
        description="Random architectures evaluated at the start and at each restart; the climb "
        "starts from the best of them.",
    )
    first_improvement: bool = Field(
        True,
        description="Move to a neighbour as soon as it beats the centre (True), or only once the "
        "whole neighbourhood is evaluated, to its best member (False).",
    )
    max_resample: int = Field(100, ge=1, le=MAX_RESAMPLE, description="Random draws tried before accepting a repeat.")


class ReinforceConfig(StrategyConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["reinforce"] = "reinforce"
    learning_rate: float = Field(
        0.1, gt=0, le=10, description="Step size of the policy update (Adam's, or plain SGD's)."
    )
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="Adam (as the ENAS controller) or plain gradient ascent."
    )
    baseline_decay: float = Field(
        0.9, ge=0, lt=1,
        description="Exponential moving-average baseline: b <- decay * b + (1 - decay) * reward.",
    )
    entropy_weight: float = Field(
        0.1, ge=0, le=10,
        description="Weight of the policy-entropy bonus that keeps the policy from collapsing early.",
    )
    standardize: bool = Field(
        True,
        description="Divide the advantage by the running standard deviation of the rewards, so "
        "the learning rate means the same whatever the scale of the score.",
    )
    max_resample: int = Field(
        100, ge=1, le=MAX_RESAMPLE,
        description="Policy samples tried before a repeat is replaced by an unseen neighbour.",
    )


class ASHAConfig(StrategyConfig):
    fidelity_settings: ClassVar[tuple[str, ...]] = ("epochs",)
    model_config = ConfigDict(extra="forbid")
    type: Literal["asha"] = "asha"
    mode: Literal["promotion", "stopping"] = Field("promotion", description="How budget is withheld.")
    min_epochs: int = Field(1, ge=1, le=MAX_EPOCHS, description="Budget of the bottom rung.")
    max_epochs: int = Field(
        9, ge=1, le=MAX_EPOCHS, description="Budget of the top rung (a full training): epochs, within the train "
                                            "evaluator's cap."
    )
    reduction_factor: int = Field(3, ge=2, le=100, description="η: the top 1/η of a rung go on.")
    brackets: int = Field(1, ge=1, le=10, description="Hyperband brackets; bracket b starts at rung b.")
    max_resample: int = Field(100, ge=1, le=MAX_RESAMPLE, description="Draws tried before accepting a repeat.")

    @model_validator(mode="after")
    def _budgets_ordered(self) -> ASHAConfig:
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) must not exceed max_epochs ({self.max_epochs})")
        return self


class TPEConfig(StrategyConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["tpe"] = "tpe"
    n_startup_trials: int = Field(
        10, ge=0, le=10_000, description="Random trials before the Parzen estimators take over."
    )
    n_ei_candidates: int = Field(
        24, ge=1, le=1_000, description="Candidates drawn from l(x) to pick the best l(x)/g(x) of."
    )
    multivariate: bool = Field(
        True, description="One joint kernel over all decisions (Falkner et al.) instead of one per decision."
    )
    constant_liar: bool = Field(
        True,
        description="Treat running trials as bad results so parallel asks spread out "
        "(Optuna's constant liar for distributed optimisation).",
    )
    max_resample: int = Field(
        5, ge=1, le=1_000,
        description="TPE asks tried before a repeated architecture is replaced by an unseen neighbour.",
    )


class PredictorConfig(StrategyConfig):
    """Surrogate settings shared by the predictor-guided strategies (BANANAS, PNAS)."""

    model_config = ConfigDict(extra="forbid")
    initial_samples: int = Field(
        10, ge=1, le=10_000,
        description="Random architectures proposed before the predictor is used (the warm-up).",
    )
    ensemble_size: int = Field(5, ge=1, le=MAX_ENSEMBLE, description="Neural predictors in the ensemble.")
    hidden_units: int = Field(32, ge=1, le=MAX_HIDDEN_UNITS, description="Units in each hidden layer of a predictor.")
    hidden_layers: int = Field(2, ge=1, le=MAX_HIDDEN_LAYERS, description="Hidden layers of a predictor.")
    epochs: int = Field(
        100, ge=1, le=MAX_FIT_EPOCHS, description="Full-batch Adam steps of a fresh fit of the ensemble."
    )
    refit_every: int = Field(
        10, ge=1, le=10_000,
        description="New results after which the ensemble is refitted from a fresh "
        "initialisation; results in between are folded in by a warm update.",
    )
    update_epochs: int = Field(
        20, ge=1, le=MAX_FIT_EPOCHS,
        description="Adam steps of a warm update (new results folded into the fitted ensemble).",
    )
    learning_rate: float = Field(0.01, gt=0, le=1, description="Adam step size.")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="L2 penalty on the weights.")
    max_resample: int = Field(
        100, ge=1, le=MAX_RESAMPLE,
        description="Random draws tried for an unseen architecture before accepting a repeat.",
    )


class BananasConfig(PredictorConfig):
    type: Literal["bananas"] = "bananas"
    initial_samples: int = Field(
        20, ge=1, le=10_000,
        description="Random architectures proposed before the predictor is used, and again to seed "
        "each restarted region.",
    )
    acquisition: Literal["its", "ucb"] = Field(
        "its",
        description="Independent Thompson sampling (a draw from each candidate's predictive normal, "
        "the paper's choice) or an upper confidence bound (mean + ucb_kappa * std).",
    )
    ucb_kappa: float = Field(1.0, ge=0, le=100, description="Weight of the ensemble's spread in 'ucb'.")
    parents: int = Field(
        10, ge=0, le=100,
        description="Best results of the current region whose mutations enter the candidate pool "
        "(and from which hill climbs on the predicted mean start).",
    )
    mutations_per_parent: int = Field(10, ge=0, le=100, description="Random mutations drawn from each parent.")
    max_edits: int = Field(2, ge=1, le=100, description="A mutation makes 1 to max_edits random edits.")
    neighbours_of: int = Field(
        3, ge=0, le=100,
        description="Best results of the current region whose whole neighbourhood (every single "
        "edit) enters the pool.",
    )
    random_candidates: int = Field(100, ge=0, le=MAX_POOL, description="Random samples added to the pool.")
    climb_steps: int = Field(
        10, ge=0, le=100,
        description="Most moves of the hill climbs on the predicted mean, from each parent, whose "
        "end points enter the pool (0: no climbs).",
    )
    climb_starts: int = Field(0, ge=0, le=100, description="Extra hill climbs from random architectures.")
    fantasy_epochs: int = Field(
        20, ge=0, le=MAX_FIT_EPOCHS,
        description="Adam steps that fold trials in flight into the ensemble at their predicted "
        "value (kriging believer); 0 only keeps them from being proposed again.",
    )
    restart_patience: int = Field(
        20, ge=0, le=100_000,
        description="Results of the current region, asked after its best was known, that failed to "
        "improve on it before the search restarts in a new region (0: never restart).",
    )
    restart_at_local_optimum: bool = Field(
        True, description="Also restart as soon as every neighbour of the region's best has been evaluated."
    )
    restart_model: Literal["local", "global"] = Field(
        "local",
        description="After a restart the surrogate learns from the new region's results only "
        "('local', TuRBO's local models) or from every result ('global').",
    )


class PNASConfig(PredictorConfig):
    type: Literal["pnas"] = "pnas"
    pool_size: int = Field(1000, ge=1, le=MAX_POOL, description="Candidates the predictor scores each round.")
    top_k: int = Field(10, ge=1, le=1_000, description="Best-predicted candidates proposed per round (the beam).")
    expand_fraction: float = Field(
        0.5, ge=0, le=1,
        description="Share of each round's pool made of expansions (single-edit mutations) of the "
        "best top_k results so far; the rest are fresh random samples.",
    )


