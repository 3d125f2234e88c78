"""The job-spec side of one-shot (weight-sharing) NAS: each method's knobs with its published
defaults, and what a one-shot job adds to a search.

A one-shot job runs in three phases (``PHASES``): one long trial trains a supernet whose
sub-networks are the space's architectures; a search scores sub-networks with the weights they
inherit from it; the best ``retrain_top_k`` are trained from scratch with the job's ``train``
evaluator. A job may instead name another job's trained supernet (``supernet_from``) and only
search and retrain: train once, specialise many times. The methods run on workers
(``worker/one_shot/``); these configs are all the API and the scheduler need.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from scion.configs.bounds import MAX_BATCH_SIZE, MAX_EPOCHS

SUPERNET, SEARCH, RETRAIN = "supernet", "search", "retrain"
PHASES: tuple[str, ...] = (SUPERNET, SEARCH, RETRAIN)


class MethodConfig(BaseModel):
    """What every method declares: the spaces it has supernets for and whether the job's
    strategy (rather than the method itself) proposes the search phase's candidates."""

    spaces: ClassVar[tuple[str, ...]] = ("nb201", "darts", "chain", "conv1d")
    uses_strategy: ClassVar[bool] = False

    epochs: int
    batch_size: int
    recalibration_batches: int = Field(
        20, ge=0, le=10_000,
        description="Training batches (of the method's batch_size) each scored sub-network runs in train mode to "
                    "re-estimate its BatchNorm statistics before validation (SPOS: 20,000 images); 0 scores with "
                    "the supernet's statistics.",
    )

    def candidates(self) -> int | None:
        """How many architectures the trained method proposes itself for the search phase; None
        when the job's strategy proposes them (its ``budget.max_trials``)."""
        return None


class SPOSConfig(MethodConfig):
    """Single Path One-Shot: Guo et al., "Single Path One-Shot Neural Architecture Search with
    Uniform Sampling", ECCV 2020. Each step trains one uniformly sampled path; with ``fair`` the
    FairNAS rule (Chu et al., "FairNAS: Rethinking Evaluation Fairness of Weight Sharing Neural
    Architecture Search", ICCV 2021) instead trains, per step, as many paths as the largest
    choice has options, each option of every choice exactly once, and applies their summed
    gradients at once. The search phase is run by the job's strategy (SPOS used evolution)."""

    model_config = ConfigDict(extra="forbid")
    uses_strategy: ClassVar[bool] = True

    type: Literal["spos"] = "spos"
    epochs: int = Field(120, ge=1, le=MAX_EPOCHS, description="Supernet training epochs (SPOS: 120).")
    batch_size: int = Field(1024, ge=2, le=MAX_BATCH_SIZE, description="Examples per step (SPOS: 1024).")
    lr: float = Field(0.5, gt=0, le=10, description="Peak SGD learning rate, decayed linearly to 0 (SPOS: 0.5).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (SPOS: 0.9).")
    weight_decay: float = Field(4e-5, ge=0, le=1, description="L2 weight decay (SPOS: 4e-5).")
    fair: bool = Field(
        False, description="FairNAS strict fairness: per step as many paths as the largest choice has options, "
                           "every option of every choice in one of them (exactly one when all have as many).")


class DARTSMethodConfig(MethodConfig):
    """Differentiable architecture search: Liu, Simonyan & Yang, "DARTS: Differentiable
    Architecture Search", ICLR 2019 (first order, or second order with the unrolled step and
    its finite-difference Hessian-vector product). The training set is split in halves, weights
    trained on one and architecture weights on the other, as in DARTS. The derived architecture
    (the strongest operations of the architecture weights) is the one candidate of the search
    phase.

    Against DARTS' collapse onto skip connections and parameter-free operations, two published
    remedies (``remedy``):

    - ``darts-`` adds DARTS-'s auxiliary skip connection with a coefficient decaying from
      ``beta`` to 0 (Chu et al., "DARTS-: Robustly Stepping out of Performance Collapse Without
      Indicators", ICLR 2021);
    - ``early-stop`` is DARTS-ES (Zela et al., "Understanding and Robustifying Differentiable
      Architecture Search", ICLR 2020): after every epoch the dominant eigenvalue of the Hessian
      of the validation loss (the architecture weights' half) with respect to the architecture
      weights is computed; smoothed over ``stop_window`` = k epochs around each epoch, the search
      stops at the first epoch where smoothed(i - k) / smoothed(i) < ``stop_ratio``, i being the
      latest epoch whose window is complete, and the architecture derived at epoch i - k is the
      candidate. The supernet trial then ends there: its history holds the epochs trained.

    The eigenvalue is computed (power iteration on Hessian-vector products, ``hessian_steps`` at
    most, on the first ``hessian_batches`` batches of the architecture weights' half) and
    reported as ``hessian_eigenvalue`` only with ``early-stop``: on small supernets it costs a
    large share of an epoch."""

    model_config = ConfigDict(extra="forbid")
    spaces: ClassVar[tuple[str, ...]] = ("nb201", "darts")

    type: Literal["darts"] = "darts"
    order: Literal[1, 2] = Field(1, description="1: first-order approximation; 2: the unrolled second-order gradient.")
    remedy: Literal["none", "darts-", "early-stop"] = Field(
        "darts-", description="'none' is plain DARTS; 'darts-' the auxiliary skip (DARTS-); 'early-stop' stopping on "
                              "the Hessian's dominant eigenvalue (DARTS-ES).")
    beta: float = Field(1.0, ge=0, le=10, description="DARTS-: the auxiliary skip's initial coefficient (1).")
    stop_window: int = Field(5, ge=1, le=1000, description="DARTS-ES: k, the epochs the eigenvalue is smoothed over "
                                                           "and the look-back of the ratio (5).")
    stop_ratio: float = Field(0.75, gt=0, le=1, description="DARTS-ES: stop when the smoothed eigenvalue k epochs "
                                                             "back over the latest is below this (0.75).")
    hessian_steps: int = Field(20, ge=1, le=1000, description="DARTS-ES: power-iteration steps at most for the "
                                                              "dominant eigenvalue (the paper takes the whole "
                                                              "spectrum of the explicit Hessian).")
    hessian_batches: int = Field(1, ge=1, le=1000, description="DARTS-ES: batches (of batch_size) of the architecture "
                                                               "weights' half the Hessian is computed on, the same "
                                                               "every epoch (RobustDARTS' code: one).")
    epochs: int = Field(50, ge=1, le=MAX_EPOCHS, description="Search epochs (DARTS: 50).")
    batch_size: int = Field(64, ge=2, le=MAX_BATCH_SIZE, description="Examples per step (DARTS: 64).")
    lr: float = Field(0.025, gt=0, le=10, description="Weights' SGD learning rate, cosine-annealed (DARTS: 0.025).")
    lr_min: float = Field(0.001, ge=0, le=10, description="Where the cosine schedule ends (DARTS: 0.001).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Weights' SGD momentum (DARTS: 0.9).")
    weight_decay: float = Field(3e-4, ge=0, le=1, description="Weights' L2 decay (DARTS: 3e-4).")
    arch_lr: float = Field(3e-4, gt=0, le=10, description="Architecture weights' Adam learning rate (DARTS: 3e-4).")
    arch_weight_decay: float = Field(1e-3, ge=0, le=1, description="Architecture weights' decay (DARTS: 1e-3).")

    def candidates(self) -> int | None:
        return 1


class ENASConfig(MethodConfig):
    """Efficient NAS via parameter sharing: Pham et al., ICML 2018. Epochs alternate between
    training the shared weights, one sampled architecture per step, and training the REINFORCE
    controller (``scion.policy``, the policy of the ``reinforce`` strategy) on the validation
    accuracy sampled architectures reach with the shared weights. The trained controller's
    ``samples`` most likely distinct architectures are the search phase's candidates."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["enas"] = "enas"
    epochs: int = Field(150, ge=1, le=MAX_EPOCHS, description="Alternations of shared-weight and controller training "
                                                          "(ENAS micro search: 150).")
    batch_size: int = Field(128, ge=2, le=MAX_BATCH_SIZE, description="Examples per shared-weight step (ENAS: 128).")
    lr: float = Field(0.05, gt=0, le=10, description="Shared weights' peak SGD learning rate, cosine (ENAS: 0.05).")
    lr_min: float = Field(0.0005, ge=0, le=10, description="Where the cosine schedule ends (ENAS: 0.0005).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Shared weights' Nesterov momentum (ENAS: 0.9).")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="Shared weights' L2 decay (ENAS: 1e-4).")
    controller_steps: int = Field(50, ge=1, le=10_000, description="Controller updates per epoch (ENAS: 50).")
    controller_aggregate: int = Field(
        20, ge=1, le=10_000, description="Architectures sampled per controller update (ENAS: 20).")
    controller_lr: float = Field(3.5e-4, gt=0, le=10, description="Controller's Adam learning rate (ENAS: 0.00035).")
    entropy_weight: float = Field(1e-4, ge=0, le=10, description="Weight of the controller's entropy bonus, which "
                                                                 "keeps it from settling early (ENAS: 0.0001).")
    baseline_decay: float = Field(0.99, ge=0, lt=1, description="Moving-average reward baseline (ENAS: 0.99).")
    samples: int = Field(10, ge=1, le=1000, description="Distinct architectures the trained controller proposes.")

    def candidates(self) -> int | None:
        return self.samples


AnyMethod = SPOSConfig | DARTSMethodConfig | ENASConfig
METHODS: dict[str, type[MethodConfig]] = {"spos": SPOSConfig, "darts": DARTSMethodConfig, "enas": ENASConfig}


class OneShotConfig(BaseModel):
    """A search job's one-shot part: the method, whose supernet, and how many to retrain."""

    model_config = ConfigDict(extra="forbid")
    method: AnyMethod = Field(..., discriminator="type", description="spos | darts | enas, with its knobs.")
    supernet_from: int | None = Field(
        None, ge=0, le=2**31 - 1,
        description="A one-shot job whose trained supernet (same space and dataset) to search instead of "
                    "training one; its method must have trained single paths (spos or enas).",
    )
    retrain_top_k: int = Field(
        3, ge=0, le=64,
        description="How many of the best searched architectures to train from scratch with the job's evaluator; "
                    "0 answers with the best inherited-weight score alone.",
    )


__all__ = ["METHODS", "PHASES", "RETRAIN", "SEARCH", "SUPERNET", "AnyMethod", "DARTSMethodConfig", "ENASConfig",
           "MethodConfig", "OneShotConfig", "SPOSConfig"]
