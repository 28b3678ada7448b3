"""Quiet progress lines: one at the start, then on a timer; a batch that lands at once is never reported row by row."""

from __future__ import annotations

import time

import pytest

from herd.progress import Progress


def test_quiet_progress_speaks_at_once_and_never_extrapolates_from_a_batchs_first_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Progress("teacher", total=32, quiet=True, every_s=0.05) as bar:
        time.sleep(0.3)  # a long first batch: lines keep coming, with no ETA yet
        for _ in range(16):  # the batch finishes: all its rows within microseconds
            bar.advance(tokens=10)
        time.sleep(0.2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[teacher] 0/32") and "eta ?" in lines[0]
    assert len([x for x in lines if x.startswith("[teacher] 0/32")]) >= 3
    counts = [line.split()[1] for line in lines]
    # the 16 rows land within microseconds: no line per row (a 50 ms timer tick may fall inside the loop once)
    assert len([c for c in counts if c not in ("0/32", "16/32")]) <= 1
    assert lines[-1].startswith("[teacher] 16/32")


def test_training_reports_steps_loss_and_an_eta_from_this_runs_own_pace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run resumed at step 40 of 100: the ETA extrapolates from the steps this run made, not from all 40."""
    from types import SimpleNamespace

    from herd import progress
    from herd.train.loop import progress_callback

    now = [1000.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: now[0], strftime=time.strftime,
                                                          gmtime=time.gmtime))

    state = SimpleNamespace(max_steps=100, global_step=40, num_input_tokens_seen=4_000, is_world_process_zero=True)
    callback = progress_callback("train tiny", quiet=True)
    callback.on_train_begin(None, state, None)
    callback.bar.every_s = 3600.0  # no timer line in between: the test reads the first and the last
    now[0] += 100.0  # 100 s later
    state.global_step, state.num_input_tokens_seen = 50, 6_000
    callback.on_log(None, state, None, logs={"loss": 1.23456})
    callback.on_log(None, state, None, logs={"eval_loss": 2.5})
    callback.on_step_end(None, state, None)
    callback.on_train_end(None, state, None)
    first, last = capsys.readouterr().err.splitlines()
    assert first.startswith("[train tiny] 40/100") and "eta ?" in first and "$" not in first
    assert last.startswith("[train tiny] 50/100 0.10 steps/s 20 tok/s eta 00:08:20 loss 1.235 eval 2.500"), last
