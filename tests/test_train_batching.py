"""Token-budget batches (issue 12): the loss of an accumulated step equals the loss of the same examples in one padded
batch (both families), packed rows never let one example attend to another, shapes stay within the buckets and the
token budget holds, the order depends only on (seed, epoch), and bad batch_tokens / fp16-for-T5 / compile without a
compiler are one line, exit 2, nothing written. Never a timing."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from herd.errors import UserError
from tests.test_train import Recorder, make_config, one_thread, write_pairs  # noqa: F401 (one_thread: fixture)

REPO = Path(__file__).resolve().parents[1]


def lamini_sizes(n: int, seed: int = 0, seq2seq: bool = False) -> list[tuple[int, int]]:
    """Lengths shaped like LaMini's pairs: short prompts, responses of tens of tokens with a long tail."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = min(200, int(rng.lognormvariate(3.3, 0.6))) + 1
        response = min(300, int(rng.lognormvariate(4, 0.9))) + 1
        out.append((prompt, response) if seq2seq else (prompt + response, prompt + response))
    return out


@pytest.mark.parametrize("family,packing", [("causal", True), ("causal", False), ("seq2seq", False)])
def test_shapes_stay_in_buckets_and_the_token_budget_holds(family, packing):
    from herd.train.batching import BUCKET, TokenBudgetBatches, make_layout

    sizes = lamini_sizes(3000, seq2seq=family == "seq2seq")
    layout = make_layout(sizes, family, packing, 4096, 1024, [f"row {i}" for i in range(len(sizes))])
    sampler = TokenBudgetBatches(sizes, layout, seed=1)
    counts = []
    for epoch in range(2):
        batches = sampler.batches(epoch)
        assert len(batches) == len(sampler)  # the same number of micro-batches every epoch
        assert sorted(i for b in batches for i in b) == list(range(len(sizes)))  # every example once an epoch
        shapes = sampler.shapes(epoch)
        assert len(shapes) <= 16
        for shape in shapes:
            assert shape[0] * sum(shape[1:]) <= 4096  # padded positions within the budget
            assert all(n % BUCKET == 0 for n in shape[1:])  # multiples of 16
        counts.append(shapes)
    real = sum(a + (b if family == "seq2seq" else 0) for a, b in sizes)
    padded = sum(s[0] * sum(s[1:]) * n for s, n in counts[0].items())
    assert real / padded > (0.9 if packing else 0.6)  # little padding


def test_packed_micro_batches_hold_their_rows():
    from herd.train.batching import TokenBudgetBatches, make_layout, segment

    sizes = lamini_sizes(2000, seed=3)
    layout = make_layout(sizes, "causal", True, 2048, 64, [""] * len(sizes))
    for batch in TokenBudgetBatches(sizes, layout, seed=0).batches(0):
        assert len(batch) <= 64
        assert len(segment([sizes[i][0] for i in batch], layout.row_length)) <= layout.rows


def test_order_depends_only_on_seed_and_epoch():
    from herd.train.batching import TokenBudgetBatches, make_layout

    for family, packing in (("causal", True), ("seq2seq", False)):
        sizes = lamini_sizes(500, seed=2, seq2seq=family == "seq2seq")
        layout = make_layout(sizes, family, packing, 2048, 32, [""] * len(sizes))
        first = TokenBudgetBatches(sizes, layout, seed=3)
        again = TokenBudgetBatches(sizes, layout, seed=3)
        assert first.batches(0) == again.batches(0) and first.batches(1) == again.batches(1)
        assert first.batches(0) != first.batches(1)
        first.set_epoch(1)
        assert list(first) == again.batches(1)


def step_examples(tiny_models, family: str) -> tuple[object, object, list[dict[str, list[int]]]]:
    """The tiny student of the family (dropout off) and 12 of herd's tokenised training examples."""
    import datasets

    from herd.students import default_wrapper, ensure_pad_token, load_student
    from herd.train.data import Pairs, tokenise
    from herd.train.record import Encoding

    student = load_student(str(tiny_models["t5" if family == "seq2seq" else "llama"]), device="cpu")
    ensure_pad_token(student.model, student.tokenizer)
    rows = [json.loads(line) for line in write_pairs(Path(student.path) / "pairs.jsonl", n=12).read_text().splitlines()]
    pairs = Pairs(datasets.Dataset.from_list([{**r, "source_row": i + 1} for i, r in enumerate(rows)]), "pairs")
    wrapper = None if family == "seq2seq" else default_wrapper()
    data = tokenise(pairs, family, student.tokenizer, wrapper, Encoding(128, mask_prompt=True, response_prefix=" "),
                    0.0, 0)
    student.model.eval()  # no dropout: the same numbers both ways
    return student, data, [data.train[i] for i in range(len(data.train))]


def padded_reference(model, tokenizer, features, family):  # noqa: ANN001, ANN201
    """The model's own mean loss (transformers' loss) over one batch padded to the longest example, and its grads."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([f["input_ids"] + [pad] * (width - len(f["input_ids"])) for f in features])
    mask = (torch.arange(width)[None] < torch.tensor([len(f["input_ids"]) for f in features])[:, None]).long()
    label_width = max(len(f["labels"]) for f in features) if family == "seq2seq" else width
    labels = torch.tensor([f["labels"] + [-100] * (label_width - len(f["labels"])) for f in features])
    model.zero_grad()
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("scored_only", [False, True], ids=["whole-logits", "scored-positions-only"])
@pytest.mark.parametrize("family", ["causal", "seq2seq"])
def test_accumulated_step_loss_equals_one_padded_batch(tiny_models, family, scored_only):
    """12 examples cut into several token-budget micro-batches (packed rows for the decoder, buckets for T5): the
    summed micro-batch losses, each over the step's label tokens, equal the mean loss of one padded batch, and so
    do the gradients; also when the output layer runs only at the scored positions (what training does)."""
    import torch

    from herd.train.batching import TokenBudgetBatches, make_layout
    from herd.train.collate import BucketCollator, PackedCollator
    from herd.train.loss import student_loss

    student, data, features = step_examples(tiny_models, family)
    model, tok = student.model, student.tokenizer
    reference, grads = padded_reference(model, tok, features, family)
    packing = family == "causal"
    layout = make_layout(data.sizes, family, packing, 256 if packing else 128, 5, data.where)
    batches = TokenBudgetBatches(data.sizes, layout, seed=0).batches(0)
    assert len(batches) >= 3  # really cut into several micro-batches
    if packing:
        collate = PackedCollator(tok.pad_token_id, layout.row_length, layout.rows)
    else:
        collate = BucketCollator(family, tok.pad_token_id, model.config.decoder_start_token_id, layout.buckets)
        features = [{**f, "bucket": layout.assignment[i]} for i, f in enumerate(features)]
    collated = [collate([features[i] for i in batch]) for batch in batches]
    items = sum(b["herd_label_tokens"] for b in collated)
    model.zero_grad()
    total = 0.0
    for batch in collated:
        loss, outputs = student_loss(model, batch, family, items, scored_only=scored_only)
        loss.backward()
        total += loss.item()
        assert outputs.logits.dim() == (2 if scored_only else 3)
        if scored_only:  # one row of logits per scored label, nothing for prompt or padding positions
            assert outputs.logits.shape[0] == batch["herd_label_tokens"]
    assert total == pytest.approx(reference, rel=1e-5, abs=1e-6)
    for name, p in model.named_parameters():
        if name in grads:
            assert torch.allclose(p.grad, grads[name], atol=1e-6, rtol=1e-4), name


def test_packed_rows_never_attend_across_examples(tiny_models):
    """Every example's logits inside packed rows (several rows, several examples a row, padding tails) equal its
    logits alone."""
    import torch

    from herd.students import ensure_pad_token, load_student
    from herd.train.batching import segment
    from herd.train.collate import PackedCollator

    _, _, features = step_examples(tiny_models, "causal")  # the tiny models share one vocabulary
    for name in ("llama", "gpt2"):
        student = load_student(str(tiny_models[name]), device="cpu")
        ensure_pad_token(student.model, student.tokenizer)
        model, pad = student.model.eval(), student.tokenizer.pad_token_id
        lengths = [len(f["input_ids"]) for f in features]
        batch = PackedCollator(pad, 128, 8)(features)  # rows of 128 tokens, padded to 4 or 8 rows
        rows = segment(lengths, 128)
        assert len(rows) >= 2 and max(len(r) for r in rows) >= 2
        with torch.no_grad():
            packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
            for r, members in enumerate(rows):
                offset = 0
                for pos in members:
                    ids = torch.tensor([features[pos]["input_ids"]])
                    alone = model(input_ids=ids, use_cache=False).logits[0]
                    assert torch.allclose(packed[r, offset:offset + ids.shape[1]], alone, atol=1e-4), (name, r, pos)
                    offset += ids.shape[1]


@pytest.mark.parametrize("packing", ["on", "off"])
def test_one_trainer_step_is_the_padded_batch_loss(tiny_models, tmp_path, packing):
    """herd train with the whole data as one step cut into several micro-batches logs, at step 1, the mean loss of
    all examples in one padded batch (dropout off, before any update)."""
    from herd.students import default_wrapper, load_student
    from herd.students.training import encode_pairs
    from herd.train import run

    data = write_pairs(tmp_path / "pairs.jsonl", n=12)
    overrides = {"attention_dropout": 0.0}
    recorder = Recorder()
    out = run(make_config(tmp_path, [{"base": str(tiny_models["llama"]), "config_overrides": overrides}],
                          data=str(data), batch_size=12, micro_batch_size=12, batch_tokens=64, max_steps=1,
                          logging_steps=1, packing=packing), callbacks=[recorder])
    meta = json.loads((out / "lamini-llama" / "herd.json").read_text())
    assert meta["batching"]["accumulation"] >= 3
    assert meta["batching"]["kind"] == ("packed" if packing == "on" else "buckets")
    assert "gradient_checkpointing_reason" in meta["batching"]
    student = load_student(str(tiny_models["llama"]), device="cpu")
    student.model.eval()
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    enc = encode_pairs("causal", student.tokenizer, default_wrapper(),
                       ([r["instruction"] for r in rows], [r["response"] for r in rows]), max_length=512)
    features = [{"input_ids": i, "labels": lab} for i, lab in zip(enc["input_ids"], enc["labels"], strict=True)]
    reference, _ = padded_reference(student.model, student.tokenizer, features, "causal")
    logged = next(row["loss"] for row in recorder.logs if "loss" in row)
    assert logged == pytest.approx(reference, rel=1e-4)


def test_batch_tokens_smaller_than_the_longest_example(tiny_models, tmp_path):
    from herd.train import run

    data = write_pairs(tmp_path / "pairs.jsonl")
    lines = data.read_text().splitlines()
    long = json.loads(lines[3])
    long["response"] = " ".join(["water"] * 60)
    lines[3] = json.dumps(long)
    data.write_text("\n".join(lines) + "\n")
    for base in ("gpt2", "t5"):
        with pytest.raises(UserError, match=r"train.batch_tokens = 40: .*pairs.jsonl:4: \d+ tokens") as err:
            run(make_config(tmp_path, [{"base": str(tiny_models[base])}], data=str(data), batch_tokens=40))
        assert "\n" not in str(err.value)
        assert not (tmp_path / "runs").exists()


def run_cli(tmp_path: Path, *keys: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "herd", "train", "-c", str(tmp_path / "run.toml"), *keys],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, **(env or {})})


def test_fp16_for_t5_and_compile_without_compiler_exit_2(tiny_models, tmp_path):
    import os

    data = write_pairs(tmp_path / "pairs.jsonl")
    make_config(tmp_path, [{"base": str(tiny_models["t5"])}], data=str(data), precision="fp16")
    out = run_cli(tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert "train.precision = 'fp16'" in line and "T5" in line
    make_config(tmp_path, [{"base": str(tiny_models["gpt2"])}], data=str(data), compile=True)
    bare = tmp_path / "bin"
    bare.mkdir()
    os.symlink(sys.executable, bare / "python")  # a PATH with python but no C++ compiler
    out = run_cli(tmp_path, env={"PATH": str(bare), "CXX": ""})
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert "train.compile = true" in line and "compiler" in line
    assert not (tmp_path / "runs").exists()


def test_flat_packed_batches_carry_varlen_boundaries():
    """The flash-attention layout: one row, cu_seq_lens at every example (and padding tail) start, matching the
    restarts of the position ids, which transformers' varlen path would otherwise derive itself."""
    from herd.train.collate import PackedCollator

    features = [{"input_ids": list(range(3, 3 + n)), "labels": [-100] * 2 + list(range(5, 3 + n))} for n in
                (30, 20, 50, 10, 40)]  # greedy rows of 64: [30, 20] [50, 10] [40], padded to 4 rows
    batch = PackedCollator(0, 64, 4, flat=True)(features)
    assert batch["input_ids"].shape == (1, 4 * 64)
    starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0] + [4 * 64]
    assert batch["cu_seq_lens_q"].tolist() == starts
    assert batch["max_length_q"] == max(b - a for a, b in zip(starts, starts[1:], strict=False))
    assert batch["herd_tokens"] == 150 and batch["herd_label_tokens"] == sum(n - 2 for n in (30, 20, 50, 10, 40))
