"""herd dedup: planted exact and near duplicates, filters, reasons, idempotence, bad input, the ROUGE-L rule."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from herd import dedup
from herd.config import load_config
from herd.dedup.core import KEEP, NearParams, exact_duplicates, near_duplicates, normalise, prepare, signatures
from herd.dedup.rouge import rouge_duplicates, rouge_l, tokenize
from herd.errors import UserError

LONG = "Write a detailed guide that explains how a small team can plan and run a community garden in a dry city"
ANSWER = "Start with a site survey, then choose drought tolerant plants and set up drip irrigation."


def row(i: int, instruction: str, response: str = ANSWER, **extra: object) -> dict:
    return {"id": f"r{i}", "instruction": instruction, "response": response, "instruction_source": "alpaca", **extra}


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cfg_for(tmp_path: Path, src: Path, *extra: str):
    return load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", "run.quiet=true",
                              f"dedup.input={json.dumps(str(src))}", *extra])


def planted() -> list[dict]:
    words = LONG.split()
    near = " ".join(words[:8] + ["volunteer"] + words[9:])  # one word swapped: Jaccard of word pairs 0.82
    chain = " ".join(words[:8] + ["volunteer"] + words[9:19] + ["wet", "village"])  # 0.82 to `near`, 0.67 to LONG
    return [
        row(0, LONG),
        row(1, "Name three primary colours and give an example of each"),
        row(2, LONG.upper().replace(" A ", " a,  ") + "!!"),  # exact after normalisation
        row(3, near),
        row(4, "Translate the sentence 'good morning' into French and Spanish"),
        row(5, chain),
        row(6, "name THREE primary colours, and give an example of each."),  # exact duplicate of r1
    ]


def test_normalise_ignores_case_whitespace_and_punctuation():
    assert normalise("  Hello,   WORLD!  How's it going? ") == "hello world how s it going"
    assert normalise("Ｆｕｌｌ width") == "full width"  # NFKC


def test_planted_duplicates_are_dropped_with_the_id_they_repeat(tmp_path):
    src = write(tmp_path / "in.jsonl", planted())
    out = dedup.run(cfg_for(tmp_path, src))
    kept = [r["id"] for r in read(out / "data.jsonl")]
    rejects = {r["id"]: r for r in read(out / "rejects.jsonl")}
    # r5 is near r3, which is dropped; it is compared with kept rows only, and r0 is not similar enough
    assert kept == ["r0", "r1", "r4", "r5"]
    assert rejects["r2"]["reason"] == "exact_duplicate" and rejects["r2"]["duplicate_of"] == "r0"
    assert rejects["r6"]["reason"] == "exact_duplicate" and rejects["r6"]["duplicate_of"] == "r1"
    assert rejects["r3"]["reason"].startswith("near_duplicate: jaccard 0.8") and rejects["r3"]["duplicate_of"] == "r0"
    assert read(out / "data.jsonl")[0] == planted()[0]  # kept rows are copied unchanged
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rejects_by_reason"] == {"exact_duplicate": 2, "near_duplicate": 1}
    assert manifest["rows_in"] == 7 and manifest["lsh"]["bands"] * manifest["lsh"]["rows_per_band"] <= 128


def test_a_higher_threshold_keeps_the_near_duplicate(tmp_path):
    src = write(tmp_path / "in.jsonl", planted())
    out = dedup.run(cfg_for(tmp_path, src, "dedup.threshold=0.9"))
    assert "r3" in [r["id"] for r in read(out / "data.jsonl")]


def test_filters_give_their_reasons(tmp_path):
    rows = [
        row(0, "Explain photosynthesis to a child", ""),
        row(1, "Explain how vaccines train the immune system", "I'm sorry, but I cannot help with that."),
        row(2, "Write a poem about tax law", "As an AI language model, I do not write poems."),
        row(3, "Summarise", "A summary."),
        row(4, "Describe the water cycle in detail", "Water evaporates " * 30),
        row(5, "Give me a recipe for pancakes please", "Mix flour, eggs and milk", truncated=True),
        row(6, "List five rivers of Europe and their lengths", "Danube, Rhine, Elbe, Loire, Tagus."),
        row(7, "Explain how vaccines train the immune system", "They show the body a harmless copy."),
    ]
    src = write(tmp_path / "in.jsonl", rows)
    out = dedup.run(cfg_for(tmp_path, src, "dedup.response_max_words=40", "dedup.drop_truncated=true"))
    reasons = {r["id"]: r["reason"] for r in read(out / "rejects.jsonl")}
    assert reasons == {
        "r0": "empty_response",
        "r1": "refusal: \"I'm sorry\"",
        "r2": "refusal: 'As an AI'",
        "r3": "instruction_too_short: 1 words < 3",
        "r4": "response_too_long: 60 words > 40",
        "r5": "truncated",
    }
    # r7 repeats r1's instruction, but r1 was a refusal: the good answer is the one kept
    assert [r["id"] for r in read(out / "data.jsonl")] == ["r6", "r7"]
    relaxed = dedup.run(cfg_for(tmp_path, src, "dedup.refusal_patterns=[]", "dedup.instruction_min_words=1"))
    assert {r["id"] for r in read(relaxed / "rejects.jsonl")} == {"r0", "r7"}


def test_rerun_gives_the_same_output_and_cleans_a_killed_run(tmp_path):
    src = write(tmp_path / "in.jsonl", planted())
    cfg = cfg_for(tmp_path, src)
    out = dedup.run(cfg)
    first = ((out / "data.jsonl").read_bytes(), (out / "rejects.jsonl").read_bytes())
    (out.with_name("dedup.tmp")).mkdir()  # what a kill mid-write leaves behind
    (out.with_name("dedup.tmp") / "data.jsonl").write_text('{"id": "junk"}\n')
    again = dedup.run(cfg)
    assert ((again / "data.jsonl").read_bytes(), (again / "rejects.jsonl").read_bytes()) == first
    assert not out.with_name("dedup.tmp").exists() and not out.with_name("dedup.old").exists()


def test_default_input_is_the_stage_before_it_in_the_chain(tmp_path):
    run = tmp_path / "runs" / "default"
    write(run / "responses" / "data.jsonl", [row(0, LONG), row(1, LONG)])
    write(run / "mix" / "data.jsonl", [row(5, LONG)])
    base = [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", "run.quiet=true"]
    out = dedup.run(load_config(None, base))  # the default chain has no mix: a mix folder lying there is not read
    assert json.loads((out / "manifest.json").read_text())["input"].endswith("responses/data.jsonl")
    out = dedup.run(load_config(None, [*base, 'run.stages=["responses","mix","dedup"]']))
    assert [r["id"] for r in read(out / "data.jsonl")] == ["r5"]


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"id": "x", "instruction": "Write a poem about dogs"}, ":3: missing field 'response'"),
        ({"id": "r0", "instruction": "Write a poem about dogs", "response": "Woof."}, ":3: duplicate id 'r0'"),
        ({"id": "x", "instruction": ["not", "text"], "response": "Woof."}, ":3: field 'instruction' must be a string"),
    ],
)
def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path, broken, message):
    src = write(tmp_path / "in.jsonl", [row(0, LONG), row(1, "Write a poem about cats"), broken])
    with pytest.raises(UserError, match=message):
        dedup.run(cfg_for(tmp_path, src))
    assert not (tmp_path / "runs").exists()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(row(0, LONG)) + "\n{broken\n")
    out = subprocess.run([sys.executable, "-m", "herd", "dedup", "-i", str(src), "--set",
                          f"run.dir={json.dumps(str(tmp_path / 'runs'))}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"herd: error: {src}:2: not valid JSON (Expecting property name "
                                               "enclosed in double quotes)"]
    assert not (tmp_path / "runs").exists()


def test_cli_summary_line(tmp_path):
    src = write(tmp_path / "in.jsonl", planted())
    out = subprocess.run([sys.executable, "-m", "herd", "dedup", "-q", "-i", str(src), "--set",
                          f"run.dir={json.dumps(str(tmp_path / 'runs'))}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("dedup: kept 4 of 7 rows (exact_duplicate 2, near_duplicate 1) -> ")


def test_bad_settings_name_the_key(tmp_path):
    src = write(tmp_path / "in.jsonl", planted())
    with pytest.raises(UserError, match=r"dedup.threshold = 1.5"):
        dedup.run(cfg_for(tmp_path, src, "dedup.threshold=1.5"))
    with pytest.raises(UserError, match=r"dedup.refusal_patterns\[0\]"):
        dedup.run(cfg_for(tmp_path, src, "dedup.refusal_patterns=['(unclosed']"))
    with pytest.raises(UserError, match="dedup.rouge_max_rows = 5"):
        dedup.run(cfg_for(tmp_path, src, "dedup.rouge_l=0.7", "dedup.rouge_max_rows=5"))
    assert not (tmp_path / "runs").exists()


def test_instructions_only_needs_no_response(tmp_path):
    rows = [{"id": f"i{n}", "instruction": text} for n, text in enumerate([LONG, LONG.lower(), "Write a haiku"])]
    src = write(tmp_path / "in.jsonl", rows)
    out = dedup.run(cfg_for(tmp_path, src, "dedup.instructions_only=true"))
    assert [r["id"] for r in read(out / "data.jsonl")] == ["i0", "i2"]


def test_rouge_rule_drops_what_minhash_keeps(tmp_path):
    rows = [row(0, "Write a poem about cats."), row(1, "Write a poem about dogs."), row(2, "Plan a trip to Rome.")]
    src = write(tmp_path / "in.jsonl", rows)
    plain = dedup.run(cfg_for(tmp_path, src))  # word-pair Jaccard 3/5 < 0.7
    assert len(read(plain / "data.jsonl")) == 3
    out = dedup.run(cfg_for(tmp_path, src, "dedup.rouge_l=0.7"))
    (reject,) = read(out / "rejects.jsonl")
    assert (reject["id"], reject["duplicate_of"], reject["reason"]) == ("r1", "r0", "rouge_l: 0.800")


def test_rouge_l_matches_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(3)
    vocab = "the a cat dog sat on mat and ran to house big red".split()
    for _ in range(200):
        a = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12)))
        b = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12)))
        ta, tb = tokenize([a, b])
        assert rouge_l(ta, tb) == pytest.approx(scorer.score(a, b)["rougeL"].fmeasure, abs=1e-12)


def test_rouge_filter_equals_scoring_every_pair():
    """The pruned filter must give exactly self-instruct's all-pairs answer."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(5)
    vocab = "write a short poem story about the sea moon cat dog city list three five ways to".split()
    texts: list[str] = []
    for _ in range(150):
        words = [rng.choice(vocab) for _ in range(rng.randint(3, 9))]
        if texts and rng.random() < 0.3:  # a copy of an earlier row with one word changed
            words = rng.choice(texts).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
        texts.append(" ".join(words))
    found, _ = rouge_duplicates(texts, np.ones(len(texts), dtype=bool), 0.7)
    kept: list[int] = []
    expected = np.full(len(texts), KEEP)
    for i, text in enumerate(texts):
        scores = [scorer.score(text, texts[k])["rougeL"].fmeasure for k in kept]
        if scores and max(scores) > 0.7:
            expected[i] = kept[int(np.argmax(scores))]
        else:
            kept.append(i)
    assert (found != KEEP).sum() > 10
    assert found.tolist() == expected.tolist()


def test_near_duplicates_match_brute_force_on_planted_pairs():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(500)]
    texts: list[str] = []
    originals: list[str] = []
    for _ in range(600):
        if originals and rng.random() < 0.3:
            words = rng.choice(originals).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)  # word-pair Jaccard >= 0.81 for 20+ words
            texts.append(" ".join(words))
        else:
            originals.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(20, 30))))
            texts.append(originals[-1])
    prep = prepare(texts, 2)
    alive = np.ones(len(texts), dtype=bool)
    exact = exact_duplicates(prep.keys, alive)
    alive &= exact == KEEP
    found, score = near_duplicates(prep, alive, NearParams(0.6, 128, 2, 0))
    kept: list[int] = []
    expected = np.full(len(texts), KEEP)
    sets = [prep.shingle_set(i) for i in range(len(texts))]
    for j in np.flatnonzero(alive).tolist():
        hit = next((i for i in kept if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= 0.6), None)
        if hit is None:
            kept.append(j)
        else:
            expected[j] = hit
    assert (expected != KEEP).sum() > 100
    assert found.tolist() == expected.tolist()
    assert np.all(score[found != KEEP] >= 0.6)


def test_signatures_estimate_jaccard():
    rng = random.Random(1)
    base = [f"w{rng.randrange(10_000)}" for _ in range(300)]
    other = base[:200] + [f"v{i}" for i in range(100)]
    prep = prepare([" ".join(base), " ".join(other)], 1)
    a, b = prep.shingle_set(0), prep.shingle_set(1)
    truth = len(a & b) / len(a | b)
    sigs = signatures(prep, np.array([0, 1]), 256, seed=0)
    assert float(np.mean(sigs[:, 0] == sigs[:, 1])) == pytest.approx(truth, abs=0.08)
