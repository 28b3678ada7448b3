from __future__ import annotations

import json

import pytest

from herd.errors import UserError
from herd.records import RowWriter, ids, read_rows, stable_id, write_rows


def test_broken_jsonl_line_names_file_and_line(tmp_path):
    p = tmp_path / "seeds.jsonl"
    p.write_text('{"id": "a", "instruction": "x"}\n{"id": "b", "instruction": \n')
    with pytest.raises(UserError, match=r"seeds.jsonl:2: not valid JSON"):
        read_rows(p)


def test_missing_field_names_file_line_and_field(tmp_path):
    p = tmp_path / "seeds.jsonl"
    p.write_text('{"id": "a", "instruction": "x"}\n{"id": "b"}\n')
    with pytest.raises(UserError, match=r"seeds.jsonl:2: missing field 'instruction'"):
        read_rows(p, required=["instruction"])


def test_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    c = tmp_path / "a.csv"
    c.write_text("id,instruction\n1,hello\n2,world\n")
    assert [r["instruction"] for r in read_rows(c)] == ["hello", "world"]
    q = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "1", "instruction": "x"}]), q)
    assert read_rows(q, ["instruction"]) == [{"id": "1", "instruction": "x"}]


def test_torn_tail_is_repaired_on_open(tmp_path):
    p = tmp_path / "data.jsonl"
    with RowWriter(p) as w:
        w.write({"id": "1"})
        w.write({"id": "2"})
    with p.open("a") as fh:
        fh.write('{"id": "3", "text": "cut sh')  # a kill mid-write
    assert ids(p) == {"1", "2"}
    with RowWriter(p) as w:
        w.write({"id": "3"})
    assert [json.loads(line)["id"] for line in p.read_text().splitlines()] == ["1", "2", "3"]


def test_write_rows_atomic_and_stable_id(tmp_path):
    p = tmp_path / "out.jsonl"
    assert write_rows(p, [{"id": "x"}]) == 1
    assert not (tmp_path / "out.jsonl.tmp").exists()
    assert stable_id("a", 1) == stable_id("a", 1) != stable_id("a", 2)


def test_repair_tail_with_a_last_line_longer_than_the_window(tmp_path):
    p = tmp_path / "data.jsonl"
    long_row = {"id": "2", "text": "x" * 200_000}
    p.write_text(json.dumps({"id": "1"}) + "\n" + json.dumps(long_row) + "\n")
    assert ids(p) == {"1", "2"}  # a whole long line is kept
    with p.open("a") as fh:
        fh.write(json.dumps({"id": "3", "text": "y" * 150_000})[:-20])  # torn
    assert ids(p) == {"1", "2"}
    assert p.read_text().endswith("\n")
