"""herd stats: numbers checked against values worked out by hand, the files and figures it writes, bad input."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from herd import stats
from herd.config import load_config
from herd.errors import UserError
from herd.stats.embed import bundled_model
from herd.stats.measures import leading_verb, mattr

ROWS = [
    {"id": "1", "instruction": "Write a poem about cats.", "response": "Cats purr softly.",
     "instruction_source": "alpaca"},
    {"id": "2", "instruction": "What is the capital of France?", "response": "Paris.", "instruction_source": "alpaca"},
    {"id": "3", "instruction": "Write a haiku about the sea.", "response": "Waves fold into foam, gulls wheel.",
     "instruction_source": "generated_p3"},
    {"id": "4", "instruction": "List three fruits.", "response": "Apple, pear, plum.", "instruction_source": "mine"},
    {"id": "5", "instruction": "Please explain gravity.", "response": "Mass attracts mass.",
     "instruction_source": "mine"},
]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config(tmp_path: Path, src: Path, *extra: str):
    return load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", f"stats.input={json.dumps(str(src))}",
                              "stats.embedder=tfidf", *extra])


def ids(words: str) -> np.ndarray:
    vocab: dict[str, int] = {}
    return np.array([vocab.setdefault(w, len(vocab)) for w in words.split()], dtype=np.int32)


def test_mattr_by_hand():
    assert mattr(ids("a b a c"), 2) == pytest.approx(100.0)  # windows ab, ba, ac: all distinct
    assert mattr(ids("a b a c"), 3) == pytest.approx(100 * (2 / 3 + 1) / 2)  # aba: 2/3, bac: 3/3
    assert mattr(ids("a a a a"), 2) == pytest.approx(50.0)
    assert mattr(ids("a b a"), 50) == pytest.approx(100 * 2 / 3)  # shorter than the window: plain TTR


def test_mattr_equals_a_sliding_window():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 40, size=400).astype(np.int32)
    slow = np.mean([len(set(tokens[s:s + 50].tolist())) / 50 for s in range(len(tokens) - 49)]) * 100
    assert mattr(tokens, 50) == pytest.approx(slow)
    assert mattr(tokens, 50, chunk=37) == pytest.approx(slow)  # windows taken a few at a time


@pytest.mark.parametrize(
    ("instruction", "verb"),
    [("Write a poem.", "write"), ("please List three fruits", "list"), ("What is AI?", None),
     ("The sky is blue. Why?", None), ("3 ways to cook rice", None), ("Summarize: the text", "summarize"),
     ("Given a list, sort it.", None)],
)
def test_leading_verb(instruction, verb):
    assert leading_verb(instruction) == verb


def test_numbers_match_hand_counts(tmp_path):
    src = write(tmp_path / "in.jsonl", ROWS)
    out = stats.run(config(tmp_path, src, "stats.mattr_window=4"))
    numbers = json.loads((out / "stats.json").read_text())
    sources = numbers["sources"]
    assert list(sources) == ["generated_p3", "alpaca", "mine"]  # the paper's order first, then others
    assert {k: v["rows"] for k, v in sources.items()} == {"generated_p3": 1, "alpaca": 2, "mine": 2}
    # words and punctuation: "Write a poem about cats ." = 6, "What is the capital of France ?" = 7
    assert sources["alpaca"]["instruction_tokens"]["mean"] == 6.5
    assert sources["alpaca"]["response_tokens"]["mean"] == 3.0  # "Cats purr softly ." and "Paris ."
    assert sources["generated_p3"]["response_tokens"]["max"] == 8  # "Waves fold into foam , gulls wheel ."
    # mine's responses as words: apple pear plum mass attracts mass; windows of 4 have 4, 4, 3 distinct words
    assert sources["mine"]["mattr_response"] == pytest.approx(round(100 * (1 + 1 + 0.75) / 3, 2))
    assert numbers["leading_verbs"] == [["write", 2], ["list", 1], ["explain", 1]]
    assert numbers["all"]["leading_verb_share"] == 0.8
    assert sources["alpaca"]["paper"]["avg_instruction_tokens"] == 17.1 and "paper" not in sources["mine"]
    md = (out / "stats.md").read_text()
    assert "| alpaca | 2 | 40.0% | 6.5 | 3.0 |" in md and "| 50,000 | 1.9% | 17.1 | 54.7 |" in md


def test_writes_readable_pngs(tmp_path):
    from PIL import Image

    rng = random.Random(0)
    verbs = ["Write", "Explain", "List", "Describe", "What is"]
    rows = [{"id": str(i), "instruction": f"{rng.choice(verbs)} topic {rng.randint(0, 30)} in {i % 7} lines.",
             "response": " ".join(["word"] * rng.randint(1, 60)),
             "instruction_source": rng.choice(["alpaca", "original_flan", "custom"])} for i in range(60)]
    out = stats.run(config(tmp_path, write(tmp_path / "in.jsonl", rows)))
    numbers = json.loads((out / "stats.json").read_text())
    assert numbers["plots"] == ["composition.png", "lengths.png", "verbs.png", "map.png"]
    assert numbers["map"] == {"embedder": "tfidf+svd", "projection": "t-SNE", "points": 60}
    for name in numbers["plots"]:
        with Image.open(out / name) as img:
            img.verify()
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] >= 600 and img.size[1] >= 250
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"rows": 60} and manifest["config"]["stats"]["embedder"] == "tfidf"


def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path):
    src = write(tmp_path / "in.jsonl", [ROWS[0], {"id": "x", "response": "no instruction"}])
    with pytest.raises(UserError, match=r"in.jsonl:2: missing field 'instruction'"):
        stats.run(config(tmp_path, src))
    assert not (tmp_path / "runs").exists()
    out = subprocess.run([sys.executable, "-m", "herd", "stats", "-i", str(src), "--set",
                          f"run.dir={json.dumps(str(tmp_path / 'runs'))}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == f"herd: error: {src}:2: missing field 'instruction'"


def test_default_input_prefers_dedup_output(tmp_path):
    run = tmp_path / "runs" / "default"
    for stage, rows in (("responses", ROWS), ("dedup", ROWS[:2])):
        (run / stage).mkdir(parents=True)
        write(run / stage / "data.jsonl", rows)
    out = stats.run(load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", "stats.map_points=0"]))
    numbers = json.loads((out / "stats.json").read_text())
    assert numbers["rows"] == 2 and numbers["input"].endswith("dedup/data.jsonl") and numbers["map"] is None


def test_hugging_face_tokenizer_counts_its_tokens(tmp_path):
    from tests.tiny import tiny_tokenizer

    tiny_tokenizer(tmp_path / "tok")
    src = write(tmp_path / "in.jsonl", ROWS[:1])
    out = stats.run(config(tmp_path, src, f"stats.tokenizer={json.dumps(str(tmp_path / 'tok'))}", "stats.map_points=0"))
    numbers = json.loads((out / "stats.json").read_text())
    assert numbers["all"]["instruction_tokens"]["mean"] == 6.0  # Write a poem about cats .
    assert "tokens (" in (out / "stats.md").read_text()
    with pytest.raises(UserError, match="stats.tokenizer"):
        stats.run(config(tmp_path, src, f"stats.tokenizer={json.dumps(str(tmp_path / 'nowhere'))}"))


@pytest.mark.skipif(bundled_model() is None, reason="no sentence model package installed")
def test_auto_embedder_uses_the_installed_sentence_model(tmp_path):
    src = write(tmp_path / "in.jsonl", ROWS)
    out = stats.run(config(tmp_path, src, "stats.embedder=auto", "stats.projection=pca"))
    numbers = json.loads((out / "stats.json").read_text())
    assert numbers["map"]["embedder"].startswith("all-MiniLM-L6-v2") and numbers["map"]["projection"] == "PCA"
