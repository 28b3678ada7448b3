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
