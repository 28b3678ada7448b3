"""Held-out loss (herd.train.heldout): a seeded slice of pairs is never trained on; each student's loss and
perplexity on it before and after training, and the teacher's own when it is a local model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from herd.errors import UserError
from tests.test_train import make_config, one_thread, write_pairs  # noqa: F401 - one_thread: autouse fixture


def pairs_of(path: Path):
    from herd.config import load_config
    from herd.train.data import load_pairs

    return load_pairs(str(path), load_config(None, []), ("instruction", "response"))


def keys(dataset) -> list[tuple[str, str]]:  # noqa: ANN001 - a datasets.Dataset
    return list(zip(dataset["instruction"], dataset["response"], strict=True))


def test_split_is_seeded_recorded_and_checked(tmp_path: Path) -> None:
    from herd.train.heldout import hold_out

    pairs = pairs_of(write_pairs(tmp_path / "pairs.jsonl", n=20))
    a, b, c = hold_out(pairs, 5, 0), hold_out(pairs, 5, 0), hold_out(pairs, 5, 1)
    assert keys(a.heldout) == keys(b.heldout) and keys(a.heldout) != keys(c.heldout)
    assert len(a.dataset) == 15 and a.manifest["rows"] == 15
    assert a.manifest["heldout"] == {"rows": 5, "seed": 0, "of": 20}
    assert len(set(keys(a.dataset) + keys(a.heldout))) == 20
    assert hold_out(pairs, 0, 0) is pairs
    with pytest.raises(UserError, match=r"^train.heldout_rows = 20: must be between 0 and 19"):
        hold_out(pairs, 20, 0)


def test_students_loss_on_held_out_rows_only_before_and_after(tiny_models, tmp_path, monkeypatch) -> None:
    import herd.train as train
    from herd.students import load_student
    from herd.train.heldout import measure

    trained_on: list[str] = []
    real = train.tokenise

    def spy(pairs, *args, **kwargs):  # noqa: ANN001, ANN202 - records what each student is trained on
        trained_on.extend(keys(pairs.dataset))
        return real(pairs, *args, **kwargs)

    monkeypatch.setattr(train, "tokenise", spy)
    data = write_pairs(tmp_path / "pairs.jsonl", n=24)
    cfg = make_config(tmp_path, [{"base": str(tiny_models["gpt2"]), "name": "g", "lr": 1e-2}], data=str(data),
                      epochs=8, heldout_rows=6)
    out = train.run(cfg)
    lines = (out / "heldout.jsonl").read_text().splitlines()
    held = {(r["instruction"], r["response"]) for r in map(json.loads, lines)}
    assert len(held) == 6 and len(trained_on) == 18
    assert not held & set(trained_on)  # never trained on
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["heldout"]["rows"] == 6
    assert "not this run's teacher" in manifest["data"]["heldout"]["teacher"]["skipped"]
    entry = manifest["students"][0]["heldout"]
    before, after = entry["before"], entry["after"]
    assert before["rows"] == after["rows"] == 6 and before["tokens"] == after["tokens"] > 6
    assert after["loss"] < before["loss"] and entry["loss_fall"] == pytest.approx(1 - after["loss"] / before["loss"],
                                                                                  abs=1e-3)
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]), rel=1e-3)
    # The number is the trained student's loss on exactly the held-out rows, tokenised as for training.
    student = load_student(str(out / "g"))
    pairs = pairs_of(data)
    from herd.prompts import read_prompt
    from herd.train.record import Encoding

    encoding = Encoding(cfg.train.max_length, mask_prompt=True, response_prefix=" ")

    wrapper = read_prompt(cfg.train.wrapper)
    held_rows = pairs.dataset.filter(lambda r: (r["instruction"], r["response"]) in held)
    other_rows = pairs.dataset.filter(lambda r: (r["instruction"], r["response"]) not in held).select(range(6))
    again = measure(student.model, student.tokenizer, "causal", wrapper, encoding, held_rows)
    assert again["loss"] == pytest.approx(after["loss"], abs=1e-3)
    assert measure(student.model, student.tokenizer, "causal", wrapper, encoding, other_rows)["loss"] != again["loss"]


def test_teacher_loss_on_its_own_responses(tiny_models, tmp_path) -> None:
    from datasets import Dataset

    from herd.config import load_config
    from herd.train.heldout import teacher_loss

    held = Dataset.from_list([{"instruction": "list three animals", "response": "dog cat tree ."},
                              {"instruction": "name a color", "response": "red"}])
    cfg = load_config(None, [f"run.dir={str(tmp_path)!r}", "teacher.backend=local",
                             f"teacher.model={str(tiny_models['llama'])!r}"])
    got = teacher_loss(cfg, held)
    assert got["rows"] == 2 and got["tokens"] == 4 + 1 + 1 + 1  # response tokens and EOS, no prompt tokens
    assert got["loss"] > 0 and got["model"].startswith("local:")
    api = load_config(None, ["teacher.backend=fake"])
    assert "not a local model" in teacher_loss(api, held)["skipped"]
