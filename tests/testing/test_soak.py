"""A CI-sized chaos run: faults everywhere, yet no call lost, late or left running."""

from __future__ import annotations

import logging

import pytest

from dspex.testing import soak


async def test_chaos_loses_no_call_and_leaves_nothing_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="dspex")  # a few hundred crash reports otherwise
    report = await soak(
        2500,
        concurrency=50,
        deadline=2.0,
        native_crash_rate=0.05,
        lm_error_rate=0.05,
        lm_hang_rate=0.01,
        malformed_rate=0.02,
        seed=1,
    )
    assert report.reconciled
    assert report.lost == 0  # every call: a Prediction or a dspex error
    assert report.past_deadline == 0, f"worst overrun {report.worst_overrun_s:.2f} s"
    assert report.tasks_left == 0
    assert report.supervisor_escalations == 0  # restart intensity held
    assert report.succeeded > 0.8 * report.submitted
    assert report.restarts > 0  # the faults really happened...
    assert report.fallbacks > 0
    assert all(report.injected[kind] > 0 for kind in ("crash", "lm_error", "lm_hang"))
    assert set(report.errors) <= {"Timeout", "ActorExited", "ParseError", "LMError", "LMTimeout"}
