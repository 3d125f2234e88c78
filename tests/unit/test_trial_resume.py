"""A training trial outlives its worker (issue 16, item 12): its state goes to its checkpoint every
epoch and, within long epochs, every ``checkpoint_seconds``; a later attempt continues from there
and ends with the uninterrupted run's weights, bit for bit, on CPU."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from spaces.nb201 import NB201Config, NB201Space
from tests.unit.test_training import Ctx
from worker.evaluators.train import TrainConfig, TrainEvaluator
from worker.outcomes import TrialStopped
from worker.training import datasets as ds
from worker.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPACE = NB201Space(NB201Config(channels=4, cells_per_stage=1))
ARCH = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "skip_connect"]


class Killed(Exception):
    """The process running the trial died."""


class DiesAt(nn.Module):
    """The network, and a process that dies during training step ``at`` (never when None)."""

    def __init__(self, at: int | None) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.net = SPACE.build(ARCH, (1, 8, 8), 10)
        self.at, self.steps = at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps += 1
            if self.steps == self.at:
                raise Killed
        return self.net(x)


def run(model: nn.Module, checkpoint, **kw) -> dict[str, float]:
    data = dataclasses.replace(ds.load_dataset("digits"), augment=True)  # with augmentation's own generator
    return train(model, data, epochs=3, batch_size=256, lr=0.05, seed=4, checkpoint=checkpoint, **kw)


def test_a_run_killed_part_way_through_an_epoch_continues_to_the_uninterrupted_weights(tmp_path):
    whole = DiesAt(None)
    expected = run(whole, tmp_path / "whole.pt")
    steps_per_epoch = whole.steps // 3

    epochs: list[int] = []
    with pytest.raises(Killed):  # during the 5th step of epoch 2, saved after every step
        run(DiesAt(steps_per_epoch + 5), tmp_path / "run.pt", checkpoint_seconds=0.0,
            on_epoch=lambda e, m: epochs.append(e))
    saved = torch.load(tmp_path / "run.pt", weights_only=True)
    assert epochs == [1] and saved["epoch"] == 1 and saved["within"]["batches"] == 4

    again = DiesAt(None)  # a new process: weights as built, nothing in memory
    reported: list[int] = []
    resumed = run(again, tmp_path / "run.pt", continue_checkpoint=True, on_epoch=lambda e, m: reported.append(e))
    assert reported == [2, 3]
    assert again.steps == 2 * steps_per_epoch - 4, "only the steps after the last save trained again"
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert resumed["val_acc"] == expected["val_acc"] and resumed["test_acc"] == expected["test_acc"]
    assert resumed["train_loss"] == expected["train_loss"]


def test_a_later_attempt_of_a_trial_continues_from_its_checkpoint(tmp_path):
    evaluator = TrainEvaluator(TrainConfig(dataset="digits", epochs=4, latency_repeats=1))
    whole = evaluator.evaluate(SPACE, ARCH, Ctx(number=0, artifacts=tmp_path))
    first = Ctx(number=1, artifacts=tmp_path, stop_after=2)  # its worker lost after epoch 2
    with pytest.raises(TrialStopped):
        evaluator.evaluate(SPACE, ARCH, first)
    second = Ctx(number=1, artifacts=tmp_path, attempt=2)
    resumed = evaluator.evaluate(SPACE, ARCH, second)
    assert [e for e, _ in second.reports] == [3, 4]
    assert {k: resumed[k] for k in ("val_acc", "test_acc", "train_loss")} == {
        k: whole[k] for k in ("val_acc", "test_acc", "train_loss")}
    model = torch.load(tmp_path / "trial-1" / "checkpoint.pt", weights_only=True)["model"]
    reference = torch.load(tmp_path / "trial-0" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(model[k], reference[k]) for k in reference)

    fresh = Ctx(number=1, artifacts=tmp_path, attempt=1)  # a first attempt never continues anything
    evaluator.evaluate(SPACE, ARCH, fresh)
    assert [e for e, _ in fresh.reports] == [1, 2, 3, 4]
