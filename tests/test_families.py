"""students/families.py: each family's description answers right for tiny T5, GPT-2 and LLaMA models built from
configs, its answers match what those models actually do, the one context-budget rule is what generate, chat and
serve all apply, and no module outside students/ tells the families apart by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from herd.students import CAUSAL, FAMILIES, SEQ2SEQ, family_of_config, family_spec, spec_of_model


def _config(kind: str):  # noqa: ANN202
    from transformers import GPT2Config, LlamaConfig, T5Config

    if kind == "t5":
        return T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
                        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    if kind == "gpt2":
        return GPT2Config(vocab_size=40, n_positions=64, n_embd=16, n_layer=1, n_head=2)
    return LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=2, max_position_embeddings=64)


EXPECTED = {  # kind: (family, label, model class, trainer, peft task, pipeline tag, padding side)
    "t5": ("seq2seq", "encoder-decoder", "T5ForConditionalGeneration", "Seq2SeqTrainer", "SEQ_2_SEQ_LM",
           "text2text-generation", "right"),
    "gpt2": ("causal", "decoder-only", "GPT2LMHeadModel", "Trainer", "CAUSAL_LM", "text-generation", "left"),
    "llama": ("causal", "decoder-only", "LlamaForCausalLM", "Trainer", "CAUSAL_LM", "text-generation", "left"),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_family_answers_for_its_models(kind):
    from peft import TaskType

    family, label, model_class, trainer, task, tag, side = EXPECTED[kind]
    config = _config(kind)
    spec = family_spec(family_of_config(config, kind))
    model = spec.model_class().from_config(config)
    assert (spec.name, spec.label, type(model).__name__) == (family, label, model_class)
    assert spec_of_model(model) is spec
    trainer_class, args_class = spec.trainer_classes()
    assert (trainer_class.__name__, args_class.__name__) == (trainer, trainer.replace("Trainer", "TrainingArguments"))
    assert TaskType(spec.peft_task).value == task and spec.pipeline_tag == tag and spec.padding_side == side
    decoder_only = family == "causal"
    assert spec.wraps_prompts is spec.packs is spec.shifts_labels is spec.answer_shares_context is decoder_only
    assert spec.separate_decoder is spec.decoder_starts_from_pad is (not decoder_only)


def test_the_families_by_name():
    assert FAMILIES == {"seq2seq": SEQ2SEQ, "causal": CAUSAL}
    assert family_spec("causal") is CAUSAL
    with pytest.raises(ValueError, match="unknown student family 'bert'"):
        family_spec("bert")


@pytest.mark.parametrize("name", ["t5", "gpt2", "llama"])
def test_answer_start_is_where_generate_puts_the_new_tokens(tiny_models, name):
    import torch

    from herd.students import load_student

    student = load_student(str(tiny_models[name]), device="cpu")
    ids = torch.tensor([student.tokenizer("write a poem about the sun")["input_ids"]])
    out = student.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3,
                                 do_sample=False, pad_token_id=0)
    start = student.spec.answer_start(ids.shape[1])
    assert out.shape[1] - start == 3  # exactly the new tokens follow
    if student.spec.separate_decoder:
        assert bool((out[:, 0] == student.model.config.decoder_start_token_id).all())
    else:
        assert torch.equal(out[:, :start], ids)


def test_special_tokens_rule():
    assert SEQ2SEQ.adds_special_tokens("<s> hello", "<s>")  # an encoder needs its EOS whatever the text
    assert CAUSAL.adds_special_tokens("hello", "<s>") and CAUSAL.adds_special_tokens("hello", None)
    assert not CAUSAL.adds_special_tokens("<s> user : hello", "<s>")  # a chat template wrote BOS already


@pytest.mark.parametrize(("spec", "prompt", "new", "context", "reason"), [
    (CAUSAL, 10, 5, 15, ""),
    (CAUSAL, 10, 6, 15, "prompt 10 tokens + max_new_tokens 6 > context 15"),
    (CAUSAL, 16, 0, 15, "prompt 16 tokens + max_new_tokens 0 > context 15"),
    (CAUSAL, 10, 500, None, ""),
    (SEQ2SEQ, 15, 500, 15, ""),  # the decoder has its own length: only the prompt must fit
    (SEQ2SEQ, 16, 1, 15, "prompt 16 tokens > context 15"),
])
def test_over_context(spec, prompt, new, context, reason):
    assert spec.over_context(prompt, new, context) == reason
    assert CAUSAL.answer_room(10, 15) == 5 and SEQ2SEQ.answer_room(10, 15) is None


@pytest.mark.parametrize("name", ["gpt2", "t5"])
def test_generate_chat_and_serve_apply_the_same_context_rule(tiny_models, name):
    from herd.chat import ChatSession
    from herd.config import ServeConfig
    from herd.serve.loaded import ServedModel, sampling
    from herd.serve.protocol import ApiError, CompletionRequest
    from herd.students import load_student
    from herd.textgen import GenParams

    student = load_student(str(tiny_models[name]), device="cpu")
    tok, context = student.tokenizer, 12
    served = ServedModel(name, student, None, context, False, tok, 0)  # type: ignore[arg-type]
    cfg = ServeConfig(models=[name], max_tokens_limit=1000)
    verdicts = set()
    for words in (4, 8, 11, 12, 13):
        prompt = " ".join(["sun"] * words)
        ids = list(tok(prompt)["input_ids"])
        for new in (1, 4, 8):
            rule = bool(student.spec.over_context(len(ids), new, context))
            chat = ChatSession(student, GenParams(max_new_tokens=new), context=context).too_long(prompt)
            req = CompletionRequest(model=name, prompt=ids, max_tokens=new)
            try:
                sampling(served, req, [ids], cfg, new)
                serve = False
            except ApiError as exc:
                assert exc.code == "context_length_exceeded"
                serve = True
            assert rule == chat == serve, (words, new)
            verdicts.add(rule)
    assert verdicts == {True, False}  # the cases straddle the boundary


def test_no_module_outside_students_tells_the_families_apart_by_name():
    src = Path(__file__).resolve().parents[1] / "src" / "herd"
    branch = re.compile(r"family\s*[!=]=|is_encoder_decoder|[!=]=\s*\"(seq2seq|causal)\"")
    found = [f"{path.relative_to(src)}:{n}" for path in sorted(src.rglob("*.py")) if "students" not in path.parts
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if branch.search(line)]
    assert found == []
