"""The tiny fixtures load as ordinary checkpoints of each family and generate."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["gpt2", "gptneo", "llama", "t5"])
def test_tiny_models_load_and_generate(tiny_models, name):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = tiny_models[name]
    tok = AutoTokenizer.from_pretrained(path)
    is_seq2seq = AutoConfig.from_pretrained(path).is_encoder_decoder
    assert is_seq2seq == (name == "t5")
    model = (AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM).from_pretrained(path)
    ids = tok("write a short poem about the sun", return_tensors="pt")
    assert tok.unk_token_id not in ids["input_ids"][0].tolist()
    out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape[1] > (0 if is_seq2seq else ids["input_ids"].shape[1])
    assert (tok.pad_token is None) == (name in ("gpt2", "gptneo"))
