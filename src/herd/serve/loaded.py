"""The models one server holds: each loaded once (`students.load_student`), with its batcher (continuous batching
for decoder-only models the step loop can run, request-level batching otherwise), its prompt-token bound, how its
conversations become prompts, and the limits a request must respect.

Every model has a prompt bound: `serve.max_prompt_tokens` when set, else the model's context length (its config,
else its tokenizer), else `serve.default_context` (2048) for models that declare none (T5's relative positions).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.config import ServeConfig
from herd.errors import UserError
from herd.serve.batcher import Batcher
from herd.serve.continuous import ContinuousBatcher
from herd.serve.protocol import ApiError
from herd.students import FamilySpec
from herd.textgen import GenParams


@dataclass
class ServedModel:
    name: str
    student: Any
    batcher: Batcher | ContinuousBatcher
    context: int  # tokens the model can see: prompt + answer for decoders, prompt for seq2seq
    multi_turn: bool
    counter: Any  # a copy of the tokenizer for counting in the event loop while the worker thread uses the original
    created: int
    declared: bool = True  # False: `context` is serve.default_context, the model declares no length

    @property
    def spec(self) -> FamilySpec:
        """What the model's family does differently (students.families): the context rule, log-probs."""
        return self.student.spec

    def count(self, text: str, special: bool = True) -> int:
        """Tokens in a text; `special=False` for answers (no BOS/EOS added)."""
        return len(self.counter(text, add_special_tokens=special)["input_ids"])

    @property
    def vocab(self) -> int:
        """Token ids a prompt may hold: 0 to vocab - 1 (the rows of the input embedding)."""
        return int(self.student.model.get_input_embeddings().num_embeddings)

    def encode(self, prompt: str) -> list[int]:
        """The token ids the model is fed for a formatted prompt (special tokens as `textgen` adds them)."""
        from herd.textgen import encode_prompt

        return encode_prompt(self.counter, prompt, self.student.model)

    def decode(self, ids: list[int]) -> str:
        return str(self.counter.decode(ids, skip_special_tokens=False))

    def piece(self, tid: int) -> str:
        """One token's text, for log-probs (special tokens spelled out)."""
        return str(self.counter.decode([tid], skip_special_tokens=False))

    def card(self) -> dict[str, Any]:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "herd",
                "family": self.student.family, "context_length": self.context, "multi_turn": self.multi_turn}


def parse_spec(spec: str) -> tuple[str, str]:
    """'NAME=PATH' -> (NAME, PATH); a bare path or Hub id is its own name."""
    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name and path:
        return name, path
    return spec, spec


def load_models(cfg: ServeConfig) -> dict[str, ServedModel]:
    """Load every model named in `cfg.models` (a directory that is not a model is a UserError, before any socket)."""
    from herd.conversation import keeps_history
    from herd.students import context_length, load_student

    if not cfg.models:
        raise UserError("serve.models is empty: name at least one model (--model PATH)")
    served: dict[str, ServedModel] = {}
    for spec in cfg.models:
        name, path = parse_spec(spec)
        if name in served:
            raise UserError(f"serve.models: the name {name!r} is given twice")
        student = load_student(path, device=cfg.device, dtype=cfg.dtype)
        declared = context_length(student.model, student.tokenizer)
        served[name] = ServedModel(
            name=name, student=student, batcher=make_batcher(student, cfg),
            context=declared or cfg.default_context, multi_turn=keeps_history(student),
            counter=copy.deepcopy(student.tokenizer), created=_created(path), declared=declared is not None,
        )
    return served


def make_batcher(student: Any, cfg: ServeConfig) -> Batcher | ContinuousBatcher:
    """Continuous batching where the step loop can run the model (and `serve.continuous`), else request-level."""
    from herd.serve.decode import prompt_logprobs, supports
    from herd.students import pad_id
    from herd.textgen import generate_encoded, stream_encoded

    model, tok = student.model, student.tokenizer
    if cfg.continuous and supports(model):
        return ContinuousBatcher(model, tok, max_batch=cfg.max_batch, batch_tokens=cfg.batch_tokens,
                                 max_queue=cfg.max_queue)

    def batch(prompts: list[list[int]], params: GenParams) -> list[Any]:
        return generate_encoded(model, tok, prompts, params, batch_tokens=cfg.batch_tokens, max_batch=cfg.max_batch)

    def stream(prompt: list[int], params: GenParams) -> Any:
        return stream_encoded(model, tok, prompt, params)

    def score(rows: list[list[int]], k: int) -> Any:
        return prompt_logprobs(model, rows, k, pad_id(tok))

    return Batcher(batch, stream, max_batch=cfg.max_batch, wait_s=cfg.batch_wait_ms / 1000.0,
                   max_queue=cfg.max_queue, score_fn=None if student.spec.separate_decoder else score)


def _created(path: str) -> int:
    p = Path(path)
    return int(p.stat().st_mtime) if p.exists() else int(time.time())


def sampling(
    served: ServedModel, req: Any, prompts: Sequence[list[int]], cfg: ServeConfig, max_tokens: int | None
) -> GenParams:
    """GenParams for a request after checking its prompts and max_tokens against the model and the server limits."""
    longest = max(len(p) for p in prompts)
    limit = min(cfg.max_prompt_tokens or served.context, served.context)
    spec = served.spec  # the family's context-budget rule: a decoder's answer shares the context with its prompt
    room = spec.answer_room(longest, served.context)
    if longest > limit or spec.over_context(longest, 0 if max_tokens == 0 else 1, served.context):
        source = "" if served.declared else " (serve.default_context: the model declares no length)"
        raise ApiError(400, f"the prompt is {longest} tokens; {served.name} takes at most {limit} tokens of prompt"
                            + (" and answer together" if spec.answer_shares_context else "") + source,
                       param="messages" if hasattr(req, "messages") else "prompt", code="context_length_exceeded")
    if max_tokens is not None and max_tokens > cfg.max_tokens_limit:
        raise ApiError(400, f"max_tokens = {max_tokens} is above this server's limit of {cfg.max_tokens_limit}",
                       param="max_tokens")
    if max_tokens is not None and spec.over_context(longest, max_tokens, served.context):
        raise ApiError(400, f"prompt ({longest} tokens) + max_tokens ({max_tokens}) is longer than {served.name}'s "
                            f"context of {served.context} tokens", param="max_tokens", code="context_length_exceeded")
    if max_tokens is None:
        cap = room if room is not None else cfg.default_max_tokens
        max_tokens = min(cfg.default_max_tokens, cfg.max_tokens_limit, cap)
    return GenParams(
        max_new_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,  # OpenAI's default
        top_p=1.0 if req.top_p is None else req.top_p,
        repetition_penalty=req.repetition_penalty or 1.0,
        stop=req.stops(),
        seed=req.seed,
        num_return_sequences=req.n,
    )
