"""Bounds that several parts of a job spec share, so that no part can ask for what another
refuses: a strategy's fidelity (ASHA's epochs) and a one-shot method's schedule stay within the
train evaluator's caps. docs/security.md lists them with the server's own limits."""
from __future__ import annotations

MAX_EPOCHS = 1000  # training epochs of any network or supernet, however they are set
MAX_BATCH_SIZE = 4096  # examples per step, for any network or supernet
MIN_TIME_LIMIT_S = 1.0  # a time limit shorter than this could not even start a trial
MAX_CLASSES = 100_000  # a file dataset's labels are 0..MAX_CLASSES-1
