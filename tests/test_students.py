"""students.py: family detection, prompts, training labels, pad tokens, the wrapper as chat template, saving, and
herd.pipeline, on the tiny models of every family."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from herd.errors import UserError
from herd.students import (
    IGNORE,
    default_wrapper,
    ensure_pad_token,
    family_of,
    fill,
    format_prompt,
    load_student,
    read_meta,
)
from herd.students.saving import save_student
from herd.students.training import encode_pairs, packing_is_exact
from herd.train.collate import BucketCollator

PAIRS = (["write a short poem about the sun", "name three colors"], ["the sun is red and good .", "red , blue"])


def test_default_wrapper_is_the_papers(shared_data):
    assert default_wrapper() == (shared_data / "lamini_paper_decoder_only_wrapper.txt").read_text(encoding="utf-8")
    assert fill(default_wrapper(), "X").endswith("### Instruction:\nX\n\n### Response:")


@pytest.mark.parametrize(("name", "family"), [("t5", "seq2seq"), ("gpt2", "causal"), ("gptneo", "causal"),
                                              ("llama", "causal")])
def test_family_of(tiny_models, name, family):
    assert family_of(str(tiny_models[name])) == family


def test_family_of_rejects_other_models_in_one_line(tmp_path):
    from transformers import DistilBertConfig

    DistilBertConfig(vocab_size=10, dim=8, n_layers=1, n_heads=1, hidden_dim=8).save_pretrained(tmp_path / "enc")
    with pytest.raises(UserError, match="'distilbert' is neither a seq2seq nor a causal") as err:
        family_of(str(tmp_path / "enc"))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no such model folder"):
        family_of(str(tmp_path / "missing"))


def test_causal_labels_mask_exactly_prompt_and_padding(tiny_models):
    student = load_student(str(tiny_models["gpt2"]), device="cpu")
    rows = student.model.get_input_embeddings().weight.shape[0]
    assert ensure_pad_token(student.model, student.tokenizer)  # GPT-2 has none: EOS pads, the vocabulary stays
    tok = student.tokenizer
    assert tok.pad_token == tok.eos_token and student.model.get_input_embeddings().weight.shape[0] == rows
    wrapper = default_wrapper()
    enc = encode_pairs("causal", tok, wrapper, PAIRS, max_length=128)
    for i, (instruction, response) in enumerate(zip(*PAIRS, strict=True)):
        prompt = tok(fill(wrapper, instruction))["input_ids"]
        answer = tok(" " + response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert enc["input_ids"][i] == prompt + answer
        assert enc["labels"][i] == [IGNORE] * len(prompt) + answer
    batch = BucketCollator("causal", tok.pad_token_id, None, [])(
        [{"input_ids": i, "labels": lab} for i, lab in zip(enc["input_ids"], enc["labels"], strict=True)])
    for row in range(2):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        prompt_len = len(tok(fill(wrapper, PAIRS[0][row]))["input_ids"])
        expected = [IGNORE if (j < prompt_len or not mask[j]) else int(ids[j]) for j in range(len(ids))]
        assert labels.tolist() == expected
    assert int(batch["attention_mask"].sum()) == sum(len(x) for x in enc["input_ids"])  # padded to a multiple of 64
    unmasked = encode_pairs("causal", tok, wrapper, PAIRS, max_length=128, mask_prompt=False)
    assert unmasked["labels"] == unmasked["input_ids"]


def test_causal_truncation_keeps_the_prompt_and_drops_what_cannot_fit(tiny_models):
    tok = load_student(str(tiny_models["llama"]), device="cpu").tokenizer
    prompt_len = len(tok(fill(default_wrapper(), PAIRS[0][0]))["input_ids"])
    enc = encode_pairs("causal", tok, default_wrapper(), PAIRS, max_length=prompt_len + 3)
    assert len(enc["input_ids"][0]) == prompt_len + 3 and enc["labels"][0][:prompt_len] == [IGNORE] * prompt_len
    tight = encode_pairs("causal", tok, default_wrapper(), PAIRS, max_length=prompt_len)
    assert tight["input_ids"][0] == [] and tight["labels"][0] == []


def test_seq2seq_gets_the_bare_instruction_and_eos_labels(tiny_models):
    student = load_student(str(tiny_models["t5"]), device="cpu")
    tok = student.tokenizer
    assert format_prompt(student, PAIRS[0][0]) == PAIRS[0][0]
    enc = encode_pairs("seq2seq", tok, default_wrapper(), PAIRS, max_length=64)
    assert enc["input_ids"][0] == tok(PAIRS[0][0])["input_ids"]
    assert enc["labels"][1][-1] == tok.eos_token_id and IGNORE not in enc["labels"][1]
    assert not ensure_pad_token(student.model, tok)


def test_prompt_uses_chat_template_when_no_wrapper(tiny_models):
    student = load_student(str(tiny_models["llama"]), device="cpu")  # its tokenizer has a chat template
    assert student.wrapper is None
    assert format_prompt(student, "hello") == "<s> user : hello </s> <s> assistant : "
    student.wrapper = default_wrapper()
    assert format_prompt(student, "hello") == fill(default_wrapper(), "hello")
    bare = load_student(str(tiny_models["gpt2"]), device="cpu")
    assert format_prompt(bare, "hello") == "hello"


def test_saved_wrapper_round_trips_as_chat_template(tiny_models, tmp_path):
    from transformers import AutoTokenizer

    student = load_student(str(tiny_models["gpt2"]), device="cpu")
    ensure_pad_token(student.model, student.tokenizer)
    wrapper = "Q {json}: {instruction}\n{% raw %} A:"  # braces and Jinja syntax must come through as text
    out = save_student(student.model, student.tokenizer, "causal", tmp_path / "ckpt",
                       {"wrapper": wrapper, "base_model": "tiny", "response_prefix": " "})
    tok = AutoTokenizer.from_pretrained(out)
    user = [{"role": "user", "content": "name three colors"}]
    prompt = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert prompt == fill(wrapper, "name three colors")
    both = tok.apply_chat_template([*user, {"role": "assistant", "content": "red"}], tokenize=False)
    assert both == prompt + " red" + tok.eos_token
    meta = read_meta(str(out))
    assert meta is not None and meta["family"] == "causal" and meta["wrapper"] == wrapper
    assert load_student(str(out), device="cpu").wrapper == wrapper
    assert read_meta(str(tiny_models["gpt2"])) is None
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] != "TokenizersBackend"


def test_save_clears_a_gguf_quantizer(tiny_models, tmp_path):
    student = load_student(str(tiny_models["llama"]), device="cpu")
    student.model.config.quantization_config = {"quant_method": "gguf"}  # what a GGUF-loaded model carries
    student.model.hf_quantizer = object()
    out = save_student(student.model, student.tokenizer, "causal", tmp_path / "ckpt", {"wrapper": None})
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert student.model.hf_quantizer is None


@pytest.mark.parametrize(("name", "exact"), [("gpt2", True), ("gptneo", True), ("llama", True), ("t5", False)])
def test_packing_check(tiny_models, name, exact):
    student = load_student(str(tiny_models[name]), device="cpu")
    assert packing_is_exact(student.model, student.family) is exact


def test_pipeline_answers_both_families(tiny_models):
    import herd

    for name in ("t5", "gpt2"):
        pipe = herd.pipeline(str(tiny_models[name]), device="cpu")
        one = pipe("write a poem", max_new_tokens=4, do_sample=False)
        many = pipe(["write a poem", "name a color"], max_new_tokens=4, do_sample=False)
        assert len(many) == 2 and many[0][0]["generated_text"] == one[0]["generated_text"]
        tok, model = pipe.student.tokenizer, pipe.student.model
        ids = tok("write a poem", return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id)
        new = out[0] if name == "t5" else out[0, ids["input_ids"].shape[1]:]  # the answer, not the prompt
        assert one[0]["generated_text"] == tok.decode(new, skip_special_tokens=True).strip() != ""


def test_importing_herd_does_not_import_torch():
    code = "import sys, herd; herd.pipeline; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
