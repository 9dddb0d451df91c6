"""A test plug-in that makes one rank of a training run die at a chosen global step, as a crashed process,
a lost node or an out-of-memory kill would: ``HASHGUARD_TEST_FAIL_RANK`` and ``HASHGUARD_TEST_FAIL_STEP``.
It changes nothing else (not the method, not the run identity), so the interrupted run resumes as itself."""

from __future__ import annotations

import os

from hashguard.training.clean_step import CleanStep

_original_call = CleanStep.__call__


def _failing_call(self, batch, step_index):  # noqa: ANN001, ANN202 - mirrors CleanStep.__call__
    if os.environ.get("RANK", "0") == os.environ.get("HASHGUARD_TEST_FAIL_RANK") and step_index == int(
        os.environ.get("HASHGUARD_TEST_FAIL_STEP", "-1")
    ):
        raise SystemExit(f"rank {os.environ['RANK']} fails at step {step_index} (test)")
    return _original_call(self, batch, step_index)


CleanStep.__call__ = _failing_call
