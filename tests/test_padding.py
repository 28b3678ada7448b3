"""students/padding.py: the one pad-token rule. Generation reads it without touching the tokenizer; training writes it
into the student without growing the vocabulary; a response's real EOS is still learnt when EOS also pads; and the
trained checkpoint pads the same way under transformers' `pipeline()` and `herd.pipeline`."""

from __future__ import annotations

import pytest

from herd.students import IGNORE, default_wrapper, ensure_pad_token, load_student, pad_id, pad_token, set_pad_token
from herd.students.training import encode_pairs
from herd.train.collate import BucketCollator, PackedCollator
from tests.tiny import tiny_tokenizer

PAIRS = (["write a short poem about the sun", "name three colors"], ["the sun is red and good .", "red , blue"])


def test_the_rule_pad_else_eos_else_unk_and_the_tokenizer_is_left_alone():
    with_pad, without = tiny_tokenizer(with_pad=True), tiny_tokenizer(with_pad=False)
    assert (pad_id(with_pad), pad_token(with_pad)) == (with_pad.pad_token_id, "<pad>")
    assert (pad_id(without), pad_token(without)) == (without.eos_token_id, "</s>")
    assert without.pad_token is None  # asking changed nothing
    without.eos_token = None
    assert (pad_id(without), pad_token(without)) == (without.unk_token_id, "<unk>")
    assert without.pad_token is None


def test_training_borrows_eos_without_growing_the_vocabulary(tiny_models):
    student = load_student(str(tiny_models["gpt2"]), device="cpu")
    tok, model = student.tokenizer, student.model
    size, rows = len(tok), model.get_input_embeddings().weight.shape[0]
    assert ensure_pad_token(model, tok)
    assert tok.pad_token == tok.eos_token and len(tok) == size and model.get_input_embeddings().weight.shape[0] == rows
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tok.eos_token_id
    assert not ensure_pad_token(model, tok) and not set_pad_token(tok)  # once is enough


def test_a_student_cut_from_teacher_layers_keeps_the_teachers_vocabulary(tiny_models):
    from herd.train.build import init_from_teacher_layers

    teacher = load_student(str(tiny_models["gpt2"]), device="cpu")
    student = init_from_teacher_layers(str(tiny_models["gpt2"]), 1)
    ensure_pad_token(student.model, student.tokenizer)
    assert student.tokenizer.get_vocab() == teacher.tokenizer.get_vocab()
    assert student.model.get_input_embeddings().weight.shape == teacher.model.get_input_embeddings().weight.shape


@pytest.mark.parametrize("packed", [False, True])
def test_the_real_eos_is_learnt_when_eos_also_pads(tiny_models, packed):
    student = load_student(str(tiny_models["gpt2"]), device="cpu")
    tok = student.tokenizer
    ensure_pad_token(student.model, tok)
    eos = tok.eos_token_id
    assert tok.pad_token_id == eos
    enc = encode_pairs("causal", tok, default_wrapper(), PAIRS, max_length=128)
    features = [{"input_ids": i, "labels": lab} for i, lab in zip(enc["input_ids"], enc["labels"], strict=True)]
    collate = PackedCollator(eos, 128, 2) if packed else BucketCollator("causal", eos, None, [])
    batch = collate(features)
    ids, labels = batch["input_ids"].flatten().tolist(), batch["labels"].flatten().tolist()
    assert ids.count(eos) > len(PAIRS)  # EOS is in the batch as padding too ...
    assert labels.count(eos) == len(PAIRS)  # ... but only each response's own EOS is a label
    assert sum(t != IGNORE for t in labels) == sum(t != IGNORE for lab in enc["labels"] for t in lab)


def test_a_trained_checkpoint_pads_with_eos_in_pipeline(tiny_models, tmp_path):
    from transformers import pipeline

    import herd
    from herd.students import save_student

    student = load_student(str(tiny_models["gpt2"]), device="cpu")
    ensure_pad_token(student.model, student.tokenizer)
    out = save_student(student.model, student.tokenizer, "causal", tmp_path / "ckpt",
                       {"wrapper": default_wrapper(), "base_model": "tiny", "response_prefix": " "})
    generator = pipeline("text-generation", model=str(out), device="cpu")
    assert generator.tokenizer.pad_token == generator.tokenizer.eos_token
    prompts = ["write a poem", "name three colors of the sun and the moon"]
    batched = generator(prompts, batch_size=2, max_new_tokens=4, do_sample=False, return_full_text=False)
    alone = [generator(p, max_new_tokens=4, do_sample=False, return_full_text=False) for p in prompts]
    assert [b[0]["generated_text"] for b in batched] == [a[0]["generated_text"] for a in alone]
    pipe = herd.pipeline(str(out), device="cpu")
    assert len(pipe(prompts, max_new_tokens=4, do_sample=False)) == 2


def test_herd_pipeline_leaves_a_padless_tokenizer_alone(tiny_models):
    import herd

    pipe = herd.pipeline(str(tiny_models["gpt2"]), device="cpu")
    tok = pipe.student.tokenizer
    side = tok.padding_side
    many = pipe(["write a poem", "name a color of the sun and the moon"], max_new_tokens=4, do_sample=False)
    assert tok.pad_token is None and tok.padding_side == side
    assert many[1][0]["generated_text"] == pipe("name a color of the sun and the moon", max_new_tokens=4,
                                                do_sample=False)[0]["generated_text"]
