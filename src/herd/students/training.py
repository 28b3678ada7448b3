"""Training data and machinery per family: labels (-100 on prompt and padding), the packing check, attention
kernels, special ids of a config built from scratch (herd.train.collate builds the batches; the Trainer classes are
the family's, herd.students.families). Reads tokenizers and models; writes nothing."""

from __future__ import annotations

from typing import Any

from herd.errors import UserError
from herd.students.families import Family, family_spec
from herd.students.prompting import prompt_for, uses_chat_template

IGNORE = -100  # label value the loss skips


def encode_pairs(
    family: Family, tokenizer: Any, wrapper: str | None, pairs: tuple[list[str], list[str]], *,
    max_length: int, mask_prompt: bool = True, response_prefix: str = " ",
) -> dict[str, list[Any]]:
    """Tokenise (instructions, responses) for training: `input_ids` and `labels` per pair (empty when it cannot fit),
    plus `length` (what a batch pads to), `prompt_tokens` and `response_tokens` per pair.

    seq2seq: the instruction is the encoder input, the response + EOS the labels. causal: prompt tokens (wrapper or
    chat template, tokenised alone, exactly as at inference) + response tokens + EOS; with `mask_prompt` the prompt's
    labels are -100, so the loss is on the response only. Padding is the collator's job (labels padded with -100).
    """
    instructions, responses = pairs
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the student's tokenizer has no EOS token; herd needs one to end responses")
    if family_spec(family).separate_decoder:
        sources = tokenizer(instructions, truncation=True, max_length=max_length)["input_ids"]
        targets = tokenizer(text_target=responses, truncation=True, max_length=max_length)["input_ids"]
        # the tokenizer's own EOS (T5 adds one) is kept; otherwise one replaces the last token that fits
        ended = [t if t and t[-1] == eos else t[:max_length - 1] + [eos] for t in targets]
        # encoder inputs and labels are padded separately: a pair costs both
        lengths = [len(a) + len(b) for a, b in zip(sources, ended, strict=True)]
        return {"input_ids": sources, "labels": ended, "length": lengths,
                "prompt_tokens": [len(a) for a in sources], "response_tokens": [len(b) for b in ended]}
    prompts = [prompt_for(family, tokenizer, wrapper, text) for text in instructions]
    chat = uses_chat_template(family, tokenizer, wrapper)
    # a chat template writes its own special tokens and turn markup; the wrapper and bare text get the prefix
    answers = list(responses) if chat else [response_prefix + text for text in responses]
    prompt_ids = tokenizer(prompts, add_special_tokens=not chat)["input_ids"]
    answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    ids: list[list[int]] = []
    labels: list[list[int]] = []
    counts: list[tuple[int, int]] = []
    for prompt, answer in zip(prompt_ids, answer_ids, strict=True):
        room = max_length - len(prompt)
        if room < 2:  # not even one response token plus EOS fits: the pair is dropped by the caller
            ids.append([])
            labels.append([])
            counts.append((0, 0))
            continue
        answer = (answer + [eos])[:room]
        ids.append(prompt + answer)
        labels.append(([IGNORE] * len(prompt) if mask_prompt else list(prompt)) + answer)
        counts.append((len(prompt), len(answer)))
    return {"input_ids": ids, "labels": labels, "length": [len(i) for i in ids],
            "prompt_tokens": [c[0] for c in counts], "response_tokens": [c[1] for c in counts]}


def attention_kernel(family: Family, requested: str) -> str:
    """The attn_implementation to load with ('' = the model's default): auto picks flash-attention 2 for decoders on
    a GPU where it is installed (its varlen kernel makes packing free); encoder-decoders keep their default."""
    if requested != "auto":
        return requested
    from importlib import util

    import torch

    fast = family_spec(family).packs and torch.cuda.is_available() and util.find_spec("flash_attn") is not None
    return "flash_attention_2" if fast else ""


def set_special_ids(config: Any, tokenizer: Any, family: Family) -> None:
    """A config built from scratch takes its vocabulary size and special ids from the tokenizer (T5 also starts
    decoding from the pad token, its convention)."""
    config.vocab_size = len(tokenizer)
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    if family_spec(family).decoder_starts_from_pad:
        config.decoder_start_token_id = tokenizer.pad_token_id


def packing_is_exact(model: Any, family: Family) -> bool:
    """True when this model, fed two packed examples with restarting position ids, gives each example the same
    logits as alone: the proof that no attention crosses the boundary, checked on the real model before training."""
    if not family_spec(family).packs:
        return False
    import torch

    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().weight.shape[0]
    first = torch.arange(3, 10, device=device).remainder(vocab)[None]
    second = torch.arange(11, 16, device=device).remainder(vocab)[None]
    positions = torch.cat([torch.arange(7), torch.arange(5)]).to(device)[None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model(input_ids=second, use_cache=False).logits[0].float()
            packed = model(input_ids=torch.cat([first, second], 1), position_ids=positions, use_cache=False)
        together = packed.logits[0, 7:].float()
    except (RuntimeError, TypeError, ValueError):
        return False
    finally:
        model.train(was_training)
    return bool(torch.allclose(alone, together, atol=1e-3, rtol=1e-3))
