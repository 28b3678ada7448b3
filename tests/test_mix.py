"""herd mix: targets per source (counts, shares, the LaMini preset), seeded sampling, rows copied unchanged."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from herd.config import load_config
from herd.errors import UserError
from herd.mix import LAMINI_TABLE1, round_shares, run


def write_source(path: Path, source: str, n: int, start: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"id": f"{source}-{i}", "instruction": f"Do {i}.", "response": "Done. ✓",
                                 "instruction_source": source}, ensure_ascii=False) + "\n")
    return path


def mix(tmp_path: Path, inputs: list[Path], *sets: str) -> Path:
    cfg = load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}",
                             f"mix.inputs={json.dumps([str(p) for p in inputs])}", *sets])
    return run(cfg)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def seven(tmp_path) -> list[Path]:
    """One file per LaMini source, 1000 rows each."""
    return [write_source(tmp_path / "in" / f"{s}.jsonl", s, 1000) for s in LAMINI_TABLE1]


def test_lamini_preset_reproduces_table_1_at_any_size(tmp_path, seven):
    for total in (258, 1000, 777):
        out = mix(tmp_path, seven, "mix.preset=lamini", f"mix.total={total}")
        counts = Counter(r["instruction_source"] for r in read(out / "data.jsonl"))
        assert sum(counts.values()) == total
        for source, millions in LAMINI_TABLE1.items():
            assert abs(counts[source] - total * millions / 2.58) < 1  # largest remainder: off by under one row
    out = mix(tmp_path, seven, "mix.preset=lamini")  # total 0: the largest mix with these shares
    counts = Counter(r["instruction_source"] for r in read(out / "data.jsonl"))
    assert counts["original_flan"] == 1000 and counts["alpaca"] == round(1000 * 0.05 / 0.93)


def test_rows_are_copied_unchanged_and_sampling_is_seeded(tmp_path, seven):
    originals = {json.loads(line)["id"]: line for p in seven for line in p.read_text().splitlines()}
    a = (mix(tmp_path, seven, "mix.counts={alpaca=5, original_p3=7}") / "data.jsonl").read_text().splitlines()
    assert all(originals[json.loads(line)["id"]] == line for line in a)  # byte for byte, ids kept
    assert Counter(json.loads(line)["instruction_source"] for line in a) == {"alpaca": 5, "original_p3": 7}
    b = (mix(tmp_path, seven, "mix.counts={alpaca=5, original_p3=7}") / "data.jsonl").read_text().splitlines()
    c = (mix(tmp_path, seven, "mix.counts={alpaca=5, original_p3=7}", "run.seed=9") / "data.jsonl").read_text()
    assert a == b and set(a) != set(c.splitlines())
    ordered = read(mix(tmp_path, seven, "mix.counts={alpaca=5}", "mix.shuffle=false") / "data.jsonl")
    assert [r["id"] for r in ordered] == sorted((r["id"] for r in ordered), key=lambda x: int(x.split("-")[1]))


def test_short_and_missing_sources(tmp_path):
    inputs = [write_source(tmp_path / "a.jsonl", "alpaca", 10), write_source(tmp_path / "b.jsonl", "original_p3", 100)]
    shares = "mix.proportions={alpaca=0.5, original_p3=0.5}"
    shrunk = mix(tmp_path, inputs, shares, "mix.total=100")
    assert Counter(r["instruction_source"] for r in read(shrunk / "data.jsonl")) == {"alpaca": 10, "original_p3": 10}
    notes = json.loads((shrunk / "manifest.json").read_text())["notes"]
    assert notes == ["total 100 shrunk to 20: not enough rows in alpaca"]
    took = mix(tmp_path, inputs, shares, "mix.total=100", "mix.short=take_all")
    assert Counter(r["instruction_source"] for r in read(took / "data.jsonl")) == {"alpaca": 10, "original_p3": 50}
    with pytest.raises(UserError, match="'alpaca' has 10 rows, the target needs 50"):
        mix(tmp_path, inputs, shares, "mix.total=100", "mix.short=error")
    skipped = mix(tmp_path, inputs, "mix.preset=lamini", "mix.total=40")
    counts = Counter(r["instruction_source"] for r in read(skipped / "data.jsonl"))
    assert counts == {"alpaca": 4, "original_p3": 36}  # 0.05 : 0.46 of 40, the five absent sources left out
    with pytest.raises(UserError, match="no rows with instruction_source 'self_instruct_without_topic'"):
        mix(tmp_path, inputs, "mix.preset=lamini", "mix.missing=error")


def test_folders_with_shards_duplicates_and_no_targets(tmp_path):
    stage = tmp_path / "run1" / "responses"
    write_source(stage / "shard-0-of-2" / "data.jsonl", "alpaca", 3)
    write_source(stage / "shard-1-of-2" / "data.jsonl", "alpaca", 3, start=3)
    other = write_source(tmp_path / "other.jsonl", "alpaca", 2, start=4)  # ids alpaca-4 and -5 seen already
    out = mix(tmp_path, [stage, other])
    assert sorted(r["id"] for r in read(out / "data.jsonl")) == [f"alpaca-{i}" for i in range(6)]
    rejects = read(out / "rejects.jsonl")
    assert [r["id"] for r in rejects] == ["alpaca-4", "alpaca-5"]
    assert rejects[0]["reason"] == f"duplicate_id: first at {stage / 'shard-1-of-2' / 'data.jsonl'}:2"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"rows": 6, "rejects": 2, "rejects_by_reason": {"duplicate_id": 2}}


def test_bad_inputs_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "instruction_source": "alpaca"}\n{"id": "2", "instruction": "x"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: missing field 'instruction_source'"):
        mix(tmp_path, [bad])
    with pytest.raises(UserError, match="no data.jsonl in this folder"):
        mix(tmp_path, [tmp_path])
    assert not (tmp_path / "runs").exists()


def test_round_shares_sums_to_the_total():
    shares = {k: v / 2.58 for k, v in LAMINI_TABLE1.items()}
    for total in (1, 7, 100, 2_580_000, 999_999):
        assert sum(round_shares(shares, total).values()) == total
