"""A worker gives back the memory of a job's data once the job ends (issue 16, item 7): the
datasets only that job used leave the process's cache, with their copies as tensors, within a
heartbeat; a dataset a live job still uses stays."""
from __future__ import annotations

import gc
import weakref

import numpy as np

from spaces import make_space
from storage import repository as repo
from storage.db import session_scope
from tests.integration.harness import TINY_NET, make_job, train_spec, wait_for
from worker.runner import run_trials
from worker.training import datasets as ds
from worker.training.datasets import DATASETS


def run_one_trial(job_id: int, spec: dict) -> None:
    space = make_space(spec["space"])
    arch = space.sample(np.random.default_rng(0))
    with session_scope() as session:
        [trial_id] = repo.add_trials(session, job_id=job_id, first_number=0,
                                     trials=[{"arch": arch, "arch_key": space.key(arch)}])
    assert run_trials([trial_id], "cpu") == {trial_id: "completed"}


def kept(config: dict) -> weakref.ref:
    """The dataset the worker keeps for ``config``, without holding on to it."""
    return weakref.ref(ds.load_dataset(DATASETS[config["type"]].config.model_validate(config)))


def test_a_cancelled_jobs_data_is_given_back_and_a_running_jobs_is_kept(settings_env):
    ds.clear_cache()
    cancelled_data = {"type": "mnist1d", "num_samples": 1200}
    running_data = {"type": "digits"}
    ended = train_spec(dataset=cancelled_data)
    live = train_spec(dataset=running_data)
    assert ended["space"] == live["space"] == TINY_NET
    ended_id, live_id = make_job(ended, "ended"), make_job(live, "live")
    run_one_trial(ended_id, ended)
    run_one_trial(live_id, live)
    ended_ref, live_ref = kept(cancelled_data), kept(running_data)
    assert ended_ref() is not None and live_ref() is not None

    with session_scope() as session:
        repo.cancel_job(session, job_id=ended_id)
    wait_for(lambda: gc.collect() is not None and ended_ref() is None, timeout=10,
             what="the cancelled job's dataset to be released")
    assert live_ref() is not None, "the job still pending keeps its data"
    assert ds.cached_jobs() == {live_id}
    ds.clear_cache()  # nothing left for the heartbeat thread to ask this test's database about
