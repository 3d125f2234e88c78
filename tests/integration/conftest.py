"""Fixtures of the in-process scheduler tests."""
from __future__ import annotations

import logging

import pytest

from tests.integration.harness import Broker


@pytest.fixture
def make_broker():
    brokers: list[Broker] = []

    def make(threads: int = 0) -> Broker:
        brokers.append(Broker(threads))
        return brokers[-1]

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture(autouse=True)
def _scheduler_never_swallows_errors(caplog: pytest.LogCaptureFixture):
    """The scheduler logs and retries a failing pass; in these tests that is a bug to show."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.name.startswith("scheduler") and r.levelno >= logging.ERROR]
    assert not errors, "scheduler logged errors:\n" + "\n".join(
        f"{r.getMessage()}\n{r.exc_text or ''}" for r in errors
    )
