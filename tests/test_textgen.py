"""herd.textgen on tiny models of every family: batched greedy equals one-at-a-time, order, budgets, stop strings,
finish reasons, token counts, pad-less tokenizers, out-of-memory halving, seeded sampling and streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

PROMPTS = [
    "write a short poem about the sun and the moon for my school",
    "hello",
    "what is the color of water",
    "list three animals",
    "give me a recipe for food please thanks",
    "why",
    "explain how music and math are about the same idea in five sentence",
]


def load(path: Path) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    seq2seq = AutoConfig.from_pretrained(path).is_encoder_decoder
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def models(tiny_models: dict[str, Path]) -> dict[str, tuple[Any, Any]]:
    return {name: load(tiny_models[name]) for name in ("gpt2", "llama", "t5")}


@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
def test_batched_greedy_equals_one_at_a_time_in_input_order(models: dict[str, Any], family: str) -> None:
    from herd.textgen import GenParams, generate_texts

    model, tok = models[family]
    params = GenParams(max_new_tokens=10)
    seen: list[int] = []
    batched = generate_texts(model, tok, PROMPTS, params, max_batch=3, on_output=lambda i, out: seen.append(i))
    single = [generate_texts(model, tok, [p], params)[0] for p in PROMPTS]
    assert [b.text for b in batched] == [s.text for s in single]
    assert [b.prompt_tokens for b in batched] == [s.prompt_tokens for s in single]
    assert sorted(seen) == list(range(len(PROMPTS)))
    assert seen != list(range(len(PROMPTS)))  # rows finish longest-first, yet come back in input order
    assert len({b.text for b in batched}) > 1
    for out, prompt in zip(batched, PROMPTS, strict=True):
        assert out.prompt_tokens == len(tok(prompt)["input_ids"])


def test_padless_tokenizer_pads_with_eos_and_is_left_as_it_was(models: dict[str, Any]) -> None:
    from herd.textgen import GenParams, generate_texts

    model, tok = models["gpt2"]
    assert tok.eos_token is not None and tok.pad_token is None
    params = GenParams(max_new_tokens=4)
    outs = generate_texts(model, tok, PROMPTS[:3], params)
    assert tok.pad_token is None  # the caller's tokenizer is not changed behind its back
    assert all(o.finish_reason in ("stop", "length") for o in outs)
    alone = [generate_texts(model, tok, [p], params)[0].text for p in PROMPTS[:3]]
    assert [o.text for o in outs] == alone  # EOS as left padding changes no answer


def test_token_budget_sets_batch_sizes(models: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from herd.textgen import GenParams, generate_texts

    model, tok = models["llama"]
    shapes: list[tuple[int, int]] = []
    real = model.generate

    def spy(**kwargs: Any) -> Any:
        shapes.append(tuple(kwargs["input_ids"].shape))
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    budget, new = 60, 6
    outs = generate_texts(model, tok, PROMPTS, GenParams(max_new_tokens=new), batch_tokens=budget, max_batch=4)
    assert sum(rows for rows, _ in shapes) == len(PROMPTS) == len(outs)
    assert all(rows == 1 or rows * (width + new) <= budget for rows, width in shapes)
    assert max(rows for rows, _ in shapes) > 1
    widths = [width for _, width in shapes]
    assert widths == sorted(widths, reverse=True)


def test_out_of_memory_halves_the_batch(models: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from herd.textgen import GenParams, generate_texts

    model, tok = models["llama"]
    params = GenParams(max_new_tokens=5)
    expected = [o.text for o in generate_texts(model, tok, PROMPTS, params)]
    rows_tried: list[int] = []
    real = model.generate

    def small_memory(**kwargs: Any) -> Any:
        rows = kwargs["input_ids"].shape[0]
        rows_tried.append(rows)
        if rows > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", small_memory)
    outs = generate_texts(model, tok, PROMPTS, params, max_batch=8)
    assert [o.text for o in outs] == expected
    assert rows_tried[0] == len(PROMPTS)
    answered = [rows for rows in rows_tried if rows <= 2]
    assert sum(answered) == len(PROMPTS)  # every row answered once, in batches that fit


def test_stop_strings_cut_the_text(models: dict[str, Any]) -> None:
    from herd.textgen import GenParams, generate_texts

    model, tok = models["llama"]
    full = generate_texts(model, tok, PROMPTS, GenParams(max_new_tokens=12))
    # A word from the middle of the first answer that is not in its first two words.
    words = full[0].text.split()
    stop = next(w for w in words[2:] if w not in words[:2])
    cut = generate_texts(model, tok, PROMPTS, GenParams(max_new_tokens=12, stop=(stop,)))
    for before, after in zip(full, cut, strict=True):
        if stop in before.text:
            assert after.text == before.text[: before.text.index(stop)]
            assert after.finish_reason == "stop"
            assert after.completion_tokens < 12
        else:
            assert after.text == before.text
    assert cut[0].text != full[0].text


def test_finish_reasons_and_token_counts(tiny_models: dict[str, Path]) -> None:
    from herd.textgen import GenParams, generate_texts

    model, tok = load(tiny_models["llama"])
    params = GenParams(max_new_tokens=6)
    first = generate_texts(model, tok, PROMPTS[:2], params)
    assert [o.finish_reason for o in first] == ["length", "length"]
    assert [o.completion_tokens for o in first] == [6, 6]
    # Make the token each first answer starts with an end-of-sequence token: both then stop at once, with no text.
    starts = [tok(o.text)["input_ids"][0] for o in first]
    model.generation_config.eos_token_id = [tok.eos_token_id, *starts]
    ended = generate_texts(model, tok, PROMPTS[:2], params)
    assert [o.finish_reason for o in ended] == ["stop", "stop"]
    assert [o.completion_tokens for o in ended] == [1, 1]
    assert [o.text for o in ended] == ["", ""]


def test_seeded_sampling_is_reproducible(models: dict[str, Any]) -> None:
    from herd.textgen import GenParams, generate_texts

    model, tok = models["gpt2"]
    params = GenParams(max_new_tokens=8, temperature=1.0, top_p=0.95, seed=7, num_return_sequences=2)
    one = generate_texts(model, tok, PROMPTS[:3], params)
    two = generate_texts(model, tok, PROMPTS[:3], params)
    assert [o.texts for o in one] == [o.texts for o in two]
    assert all(len(o.texts) == 2 and o.text == o.texts[0] for o in one)
    other = generate_texts(model, tok, PROMPTS[:3], GenParams(max_new_tokens=8, temperature=1.0, seed=8))
    assert [o.text for o in other] != [o.text for o in one]


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_stream_text_matches_batched_text(models: dict[str, Any], family: str) -> None:
    from herd.textgen import GenParams, generate_texts, stream_text

    model, tok = models[family]
    params = GenParams(max_new_tokens=10)
    texts = [o.text for o in generate_texts(model, tok, PROMPTS, params)]
    prompt, expected = max(zip(PROMPTS, texts, strict=True), key=lambda pair: len(pair[1]))  # a long answer
    pieces = list(stream_text(model, tok, prompt, params))
    assert len(pieces) > 1
    assert "".join(pieces) == expected
    stop = expected.split()[3]
    cut = "".join(stream_text(model, tok, prompt, GenParams(max_new_tokens=10, stop=(stop,))))
    assert cut == expected[: expected.index(stop)]
