"""The job-spec side of learning-curve early stopping (``scheduler/early_stopping.py``)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scion.configs.bounds import MAX_EPOCHS


class CurveStoppingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["curve"] = "curve"
    min_epochs: int = Field(2, ge=2, le=MAX_EPOCHS, description="Epochs seen before a trial may be judged.")
    top_k: int = Field(3, ge=1, le=1000, description="Compare with the k-th best finished trial.")
    margin: float = Field(
        0.0, ge=0, le=1e6, description="Slack, in objective units, granted to the extrapolation."
    )
