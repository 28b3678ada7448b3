"""Batched text generation for any Hugging Face causal or seq2seq model: the core of the local teacher, `herd
generate`, `herd serve` and `herd chat`.

`generate_texts(model, tokenizer, prompts, params)` answers already-formatted prompts (the caller applies a chat
template or wrapper). It sorts prompts by token length (longest first, so an out-of-memory error shows up in the first
batch rather than hours in), groups them into batches under a token budget, left-pads decoder-only inputs (right-pads
encoder inputs), halves a batch that runs out of CUDA memory, cuts texts at stop strings, and returns outputs in input
order. Greedy results equal one-prompt-at-a-time results. `stream_text` yields the pieces of one answer as they are
generated. Reads and writes no files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from herd.students.families import spec_of_model
from herd.students.padding import pad_id as pad_id_of


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters; `temperature` 0 means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    num_return_sequences: int = 1
    top_logprobs: int = 0  # K > 0: keep the top-K log-probs of the raw (temperature 1) distribution per new token
    schema: str = ""  # a JSON schema every answer must follow ('' = free text); see herd.teacher.structured


@dataclass
class GenOutput:
    """One prompt's answer. `text` is the first sequence; `texts` has all of them (num_return_sequences)."""

    text: str
    finish_reason: str  # "stop" (EOS or a stop string) | "length" (max_new_tokens reached)
    prompt_tokens: int
    completion_tokens: int  # summed over all sequences
    texts: list[str] = field(default_factory=list)
    # with params.top_logprobs: (token ids, top-K ids, top-K log-probs) of the first sequence's counted tokens
    topk: tuple[list[int], list[list[int]], list[list[float]]] | None = None
    # per sequence, when asked for (herd serve's continuous batcher): (token id, log-prob, [(id, log-prob)] top-k)
    logprobs: list[list[tuple[int, float, list[tuple[int, float]]]]] = field(default_factory=list)


OnOutput = Callable[[int, GenOutput], None]


def generate_texts(
    model: Any, tokenizer: Any, prompts: Sequence[str], params: GenParams, *, batch_tokens: int = 8192,
    max_batch: int = 32, on_output: OnOutput | None = None, seeds: Sequence[int] | None = None,
) -> list[GenOutput]:
    """Answer every prompt; `on_output(index, output)` sees each row as soon as its batch finishes.

    `seeds` (one per prompt) makes sampling per row (herd.sampling): a prompt's answer then depends on its own seed
    only, not on the batch it lands in.
    """
    if not prompts:
        return []
    encoded = [encode_prompt(tokenizer, p, model) for p in prompts]
    return generate_encoded(model, tokenizer, encoded, params, batch_tokens=batch_tokens, max_batch=max_batch,
                            on_output=on_output, seeds=seeds)


def generate_encoded(
    model: Any, tokenizer: Any, encoded: Sequence[list[int]], params: GenParams, *, batch_tokens: int = 8192,
    max_batch: int = 32, on_output: OnOutput | None = None, seeds: Sequence[int] | None = None,
) -> list[GenOutput]:
    """`generate_texts` for prompts that are already token ids (as `encode_prompt` makes them, or as a client sent)."""
    if not encoded:
        return []
    pad_id = pad_id_of(tokenizer)
    encoded = [list(e) for e in encoded]
    # Longest first; ties keep input order so batching is deterministic.
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    results: list[GenOutput | None] = [None] * len(encoded)
    if params.seed is not None:
        import torch

        torch.manual_seed(params.seed)
    cap = max(1, max_batch)
    start = 0
    while start < len(order):
        size = _batch_size(encoded, order[start:], params, batch_tokens, cap)
        batch = order[start : start + size]
        rows = [(encoded[i], seeds[i] if seeds is not None else None) for i in batch]
        outs, cap = _run_with_halving(model, tokenizer, rows, params, pad_id, cap)
        for index, out in zip(batch, outs, strict=True):
            results[index] = out
            if on_output is not None:
                on_output(index, out)
        start += size
    return [r for r in results if r is not None]


def _batch_size(encoded: list[list[int]], rest: list[int], params: GenParams, budget: int, cap: int) -> int:
    """Rows from the head of `rest` that fit the token budget; the head is the longest, so it sets the width."""
    width = len(encoded[rest[0]]) + params.max_new_tokens
    per_row = width * max(1, params.num_return_sequences)
    return max(1, min(cap, len(rest), budget // max(1, per_row)))


Row = tuple[list[int], "int | None"]  # a prompt's token ids and its own sampling seed (None = the global generator)


def _run_with_halving(
    model: Any, tokenizer: Any, rows: list[Row], params: GenParams, pad_id: int, cap: int
) -> tuple[list[GenOutput], int]:
    """Generate one batch; on CUDA out-of-memory split it in halves (and lower the cap for later batches)."""
    try:
        return _generate_batch(model, tokenizer, rows, params, pad_id), cap
    except Exception as exc:
        if not _is_oom(exc) or len(rows) == 1:
            raise
    free_cuda_cache()
    half = (len(rows) + 1) // 2
    cap = min(cap, half)
    first, cap = _run_with_halving(model, tokenizer, rows[:half], params, pad_id, cap)
    second, cap = _run_with_halving(model, tokenizer, rows[half:], params, pad_id, cap)
    return first + second, cap


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_cuda_cache() -> None:
    """Hand cached, unused CUDA memory back (after an out-of-memory error, or when a model is dropped)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def encode_prompt(tokenizer: Any, prompt: str, model: Any) -> list[int]:
    """The token ids `generate_texts` feeds the model for one formatted prompt."""
    add = spec_of_model(model).adds_special_tokens(prompt, getattr(tokenizer, "bos_token", None))
    ids = tokenizer(prompt, add_special_tokens=add)["input_ids"]
    return list(ids) if ids else [_fallback_start(tokenizer)]


def _fallback_start(tokenizer: Any) -> int:
    """Something to condition on when a prompt encodes to nothing (an empty string with no BOS)."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if tid is not None:
            return int(tid)
    return 0


def pad_rows(rows: list[list[int]], pad_id: int, left: bool) -> tuple[Any, Any]:
    """(input ids, attention mask) of token rows padded to the longest, on the left or the right."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends an answer: the model's generation config may list several (chat models)."""
    found: list[int] = []
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        for tid in source if isinstance(source, (list, tuple)) else [source]:
            if tid is not None and int(tid) not in found:
                found.append(int(tid))
    return found


def generation_config(model: Any, tokenizer: Any, params: GenParams, pad_id: int) -> Any:
    """A GenerationConfig that says exactly what `params` say, whatever defaults the checkpoint ships."""
    from transformers import GenerationConfig

    sample = params.temperature > 0
    # Every knob is set explicitly: a value left unset would be filled from the checkpoint's generation_config
    # (some ship num_beams=4, no_repeat_ngram_size=3 or top_k=50), and herd's params mean exactly what they say.
    cfg = GenerationConfig(
        max_new_tokens=params.max_new_tokens,
        min_new_tokens=0,
        do_sample=sample,
        num_beams=1,
        temperature=params.temperature if sample else 1.0,
        top_p=params.top_p if sample else 1.0,
        top_k=0 if sample else None,  # OpenAI-style sampling: no hidden top-k cut
        repetition_penalty=params.repetition_penalty,
        no_repeat_ngram_size=0,
        num_return_sequences=params.num_return_sequences if sample else 1,
        pad_token_id=pad_id,
        eos_token_id=eos_ids(model, tokenizer) or None,
    )
    if params.top_logprobs > 0:  # the raw logits of every step come back with the sequences
        cfg.output_logits = True
        cfg.return_dict_in_generate = True
    return cfg


def _processors(model: Any, tokenizer: Any, rows: list[Row], params: GenParams) -> tuple[list[Any], GenParams]:
    """Logits processors for a batch (schema mask, per-row sampler) and the params `generate` itself then gets."""
    from dataclasses import replace

    procs: list[Any] = []
    if params.schema:
        from herd.teacher.structured import SchemaMask

        vocab = int(model.get_output_embeddings().weight.shape[0])
        procs.append(SchemaMask(tokenizer, params.schema, len(rows), vocab, eos_ids(model, tokenizer)[0]))
    seeds = [seed for _, seed in rows]
    if params.temperature > 0 and params.num_return_sequences == 1 and all(s is not None for s in seeds):
        from herd.sampling import RowSampler

        procs.append(RowSampler([int(s) for s in seeds if s is not None], params.temperature, params.top_p))
        params = replace(params, temperature=0.0, top_p=1.0)  # generate keeps the sampler's one-hot pick
    return procs, params


def _generate_batch(model: Any, tokenizer: Any, batch: list[Row], params: GenParams, pad_id: int) -> list[GenOutput]:
    import torch

    spec = spec_of_model(model)
    rows = [ids for ids, _ in batch]
    ids, mask = pad_rows(rows, pad_id, left=spec.padding_side == "left")
    device = model.device
    start = spec.answer_start(ids.shape[1])
    stops = [_StopStrings(tokenizer, params.stop, start)] if params.stop else []
    procs, gen_params = _processors(model, tokenizer, batch, params)
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device),
            generation_config=generation_config(model, tokenizer, gen_params, pad_id),
            stopping_criteria=stops or None, logits_processor=procs or None,
        )
    top = _top_logprobs(out.logits, params.top_logprobs) if params.top_logprobs > 0 else None
    out = out.sequences if params.top_logprobs > 0 else out
    generated = out[:, start:]
    n = params.num_return_sequences if params.temperature > 0 else 1
    ends = set(eos_ids(model, tokenizer))
    outputs = []
    for i, row in enumerate(rows):
        seqs = [_finish(tokenizer, generated[i * n + j].tolist(), ends, pad_id, params) for j in range(n)]
        texts = [s[0] for s in seqs] * (params.num_return_sequences if n == 1 else 1)
        kept = None
        if top is not None:
            used = seqs[0][2]
            kept = (generated[i * n, :used].tolist(), top[0][i * n, :used].tolist(), top[1][i * n, :used].tolist())
        outputs.append(GenOutput(
            text=texts[0], finish_reason=seqs[0][1], prompt_tokens=len(row),
            completion_tokens=sum(s[2] for s in seqs), texts=texts, topk=kept,
        ))
    return outputs


def _top_logprobs(step_logits: Any, k: int) -> tuple[Any, Any]:
    """(ids, log-probs), each (rows, steps, k), of the K most likely tokens at each generated step.

    `output_logits` are the model's raw logits, before temperature, top-p or any other processor (generate's
    `output_scores` would be the processed ones): the log-softmax of these is the model's own distribution at
    temperature 1, the right target for distillation whatever temperature sampled the text.
    """
    import torch

    values, indices = [], []
    for logits in step_logits:  # one step at a time: a (rows, steps, vocab) stack would not fit a long answer
        top = torch.log_softmax(logits.float(), dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
        values.append(top.values.cpu())
        indices.append(top.indices.cpu())
    return torch.stack(indices, dim=1), torch.stack(values, dim=1)


def _finish(tokenizer: Any, tokens: list[int], ends: set[int], pad_id: int, params: GenParams) -> tuple[str, str, int]:
    """(text, finish_reason, completion tokens) of one generated sequence; the EOS token counts but is not text."""
    used, kept, reason = len(tokens), len(tokens), "length"
    for pos, tid in enumerate(tokens):
        if tid in ends:
            used, kept, reason = pos + 1, pos, "stop"
            break
        if tid == pad_id and all(t == pad_id for t in tokens[pos:]):
            # Padding after the row finished: a stop string ended it (the pad fill starts the step after).
            used, kept, reason = pos, pos, "stop"
            break
    text = tokenizer.decode(tokens[:kept], skip_special_tokens=True)
    cut = cut_at_stop(text, params.stop)
    if cut is not None:
        return cut, "stop", used
    if reason == "length" and used < params.max_new_tokens:
        reason = "stop"  # the whole batch ended on a stop string at this row's last token
    return text, reason, used


def cut_at_stop(text: str, stop: Sequence[str]) -> str | None:
    """The text before the earliest stop string, or None when none occurs."""
    hits = [text.find(s) for s in stop if s and s in text]
    return text[: min(hits)] if hits else None


class _StopStrings:
    """A stopping criterion: a row is done once its generated text contains a stop string.

    Only the tail of each row is decoded (one token is at least one character for the tokenizers herd meets), so
    the check stays cheap; the final text is cut again on the full decode, so a miss here only costs tokens.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.start = prompt_width
        self.window = max((len(s) for s in self.stop), default=1) + 2

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tails = input_ids[:, self.start :][:, -self.window :].tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        done = [any(s in t for s in self.stop) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def stream_text(model: Any, tokenizer: Any, prompt: str, params: GenParams) -> Iterator[str]:
    """Yield pieces of one answer as they are generated (a background thread runs `generate`).

    Stop strings are honoured across piece boundaries: text that could be the start of a stop string is held back
    until it is clear. Closing the iterator early stops the generation thread.
    """
    return stream_encoded(model, tokenizer, encode_prompt(tokenizer, prompt, model), params)


def stream_encoded(model: Any, tokenizer: Any, row: list[int], params: GenParams) -> Iterator[str]:
    """`stream_text` for a prompt that is already token ids. One sequence (num_return_sequences is ignored: a
    streamer follows one row)."""
    import dataclasses

    import torch
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    pad_id = pad_id_of(tokenizer)
    params = dataclasses.replace(params, num_return_sequences=1)
    ids, mask = pad_rows([list(row)], pad_id, left=True)
    # generate() puts the prompt (decoder-only) or the decoder start token (seq2seq) first; both are skipped.
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    cancel = threading.Event()
    failure: list[BaseException] = []

    def cancelled(input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    def work() -> None:
        try:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with torch.inference_mode():
                model.generate(
                    input_ids=ids.to(model.device), attention_mask=mask.to(model.device), streamer=streamer,
                    generation_config=generation_config(model, tokenizer, params, pad_id),
                    stopping_criteria=StoppingCriteriaList([cancelled]),
                )
        except BaseException as exc:  # handed to the consumer below
            failure.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield from _hold_back_stops(streamer, params.stop)
    finally:
        cancel.set()  # the streamer's queue is unbounded, so the thread never blocks and ends at its next step
        thread.join()
    if failure:
        raise failure[0]


def _hold_back_stops(pieces: Iterator[str], stop: Sequence[str]) -> Iterator[str]:
    stops = [s for s in stop if s]
    keep = max((len(s) for s in stops), default=1) - 1
    pending = ""
    for piece in pieces:
        pending += piece
        cut = cut_at_stop(pending, stops)
        if cut is not None:
            if cut:
                yield cut
            return
        ready = len(pending) - keep if stops else len(pending)
        if ready > 0:
            yield pending[:ready]
            pending = pending[ready:]
    if pending:
        yield pending
