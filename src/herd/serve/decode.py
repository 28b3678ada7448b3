"""Continuous batching for decoder-only models: one step loop where a request joins the running batch at the next
decoding step and leaves it as soon as it is done.

The loop keeps one batched key/value cache (transformers' `DynamicCache`, plain layers) for every running row,
left-padded so that each row's tokens end in the same column; its rows are slots (kvcache.py). Each step it
(1) prefills the rows that arrived since the last step, in groups of similar length, and writes each into the slot of
a finished row or a free one, (2) fills the slots of finished rows that are left with the last rows and trims padding
columns no row needs any more, and (3) runs one decoding step for every row. Only a newcomer wider than the batch
copies the whole cache. Each row samples with its own settings and its own `torch.Generator` (so a seeded answer
does not depend on who else is in the batch), and may ask for the top-k log-probabilities of every token it picks.

Greedy rows pick the arg-max of the same logits `generate` would compute, so their answers equal one-at-a-time
answers (left padding is masked out). The loop runs in one thread; `DecodeLoop.submit` may be called from any thread,
and each row's `emit(event)` callback is called from the loop's thread.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from herd.serve.kvcache import growing_layer
from herd.students import pad_id as pad_id_of
from herd.students import spec_of_model
from herd.textgen import GenParams, cut_at_stop, eos_ids

TopK = list[tuple[int, float]]


@dataclass
class Row:
    """One sequence to generate. `emit` gets ("token", Row) after every token and ("done", Row) at the end."""

    ids: list[int]
    params: GenParams
    emit: Callable[[str, Row], None]
    top_logprobs: int | None = None  # None: no log-probs; k >= 0: the chosen token's log-prob plus the top k
    seed: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    out: list[int] = field(default_factory=list)  # generated ids (an EOS, when one ends the row, is last)
    logprobs: list[tuple[int, float, TopK]] = field(default_factory=list)
    finish: str = ""  # "stop" | "length" | "error: ..." once done
    text: str = ""  # the answer so far (kept up to date only for streaming rows), final text once done
    streaming: bool = False
    eos: bool = False  # the last generated id is an EOS
    generator: Any = None


@dataclass
class Score:
    """Log-probabilities of each prompt token given the tokens before it (`echo` with `logprobs`)."""

    rows: list[list[int]]
    k: int
    done: Callable[[list[list[tuple[float | None, TopK]]] | BaseException], None]


def supports(model: Any) -> bool:
    """Whether the step loop can run `model`: a decoder whose cache layers are plain, growable DynamicLayers."""
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        if spec_of_model(model).separate_decoder:  # the step loop runs one sequence per row
            return False
        layers = DynamicCache(config=model.config).layers
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
    except Exception:
        return False


class DecodeLoop:
    """The step loop for one model; `start()` its thread, `submit(row)` work, `stop()` on shutdown."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 32, batch_tokens: int = 8192,
                 on_step: Callable[[int, float], None] | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max(1, max_batch)
        self.batch_tokens = batch_tokens
        self.on_step = on_step
        self.inbox: queue.Queue[Row | Score | None] = queue.Queue()
        self.waiting: list[Row] = []
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: Any = None  # [rows, columns] 1 = real token
        self.ends = set(eos_ids(model, tokenizer))
        self.pad_id = pad_id_of(tokenizer)
        self.thread = threading.Thread(target=self._run, name="herd-decode", daemon=True)
        names = inspect.signature(model.forward).parameters
        # transformers 5.2x renamed past_key_values to cache; logits_to_keep=1 skips the LM head over the prompt
        self.cache_arg = "cache" if "cache" in names else "past_key_values"
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in names else {}

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=60)

    def submit(self, item: Row | Score) -> None:
        self.inbox.put(item)

    # ------------------------------------------------------------------------------------------------ the loop
    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                if not self._collect(block=not (self.rows or self.waiting)):
                    for row in self.rows + self.waiting:
                        self._end(row, "error: the server is shutting down")
                    return
                try:
                    self._step()
                except Exception as exc:  # every running row fails; the loop itself carries on
                    for row in self.rows + self.waiting:
                        self._end(row, f"error: {type(exc).__name__}: {exc}")
                    self.rows, self.waiting, self.cache, self.mask = [], [], None, None

    def _collect(self, block: bool) -> bool:
        """Move new work from the inbox (scores run at once); False when asked to stop."""
        while True:
            try:
                item = self.inbox.get(block=block)
            except queue.Empty:
                return True
            block = False
            if item is None:
                return False
            if isinstance(item, Score):
                self._score(item)
                block = not (self.rows or self.waiting)
            else:
                self.waiting.append(item)

    def _step(self) -> None:
        for row in self.rows:
            if row.cancel.is_set() and not row.finish:
                self._end(row, "stop")  # cancelled: the client went away
        self.waiting = [r for r in self.waiting if not r.cancel.is_set() or self._end(r, "stop")]
        live = [r for r in self.rows if not r.finish]
        room = self.max_batch - len(live)
        admitted = self._admit(room) if room > 0 and self.waiting else []
        if admitted:
            self._join(self._prefill(admitted))
        self._compact()
        if self.rows:
            self._decode()

    def _admit(self, room: int) -> list[Row]:
        admitted: list[Row] = []
        budget = self.batch_tokens
        while self.waiting and len(admitted) < room and (not admitted or len(self.waiting[0].ids) <= budget):
            budget -= len(self.waiting[0].ids)
            admitted.append(self.waiting.pop(0))
        return admitted

    def _prefill(self, new: list[Row]) -> list[tuple[list[Row], Any, Any]]:
        """Prefill the newcomers in groups of similar length (padding a 20-token prompt to 300 columns cost more
        than the forward passes saved); returns (rows, cache, mask) per group, each row's first token chosen."""
        import torch
        from transformers import DynamicCache

        done = []
        for group in _by_length(new):
            width = len(group[0].ids)
            ids = torch.full((len(group), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for i, row in enumerate(group):
                ids[i, width - len(row.ids):] = torch.tensor(row.ids, dtype=torch.long)
                mask[i, width - len(row.ids):] = 1
                row.generator = _generator(row.seed, self.model.device)
            cache = DynamicCache(config=self.model.config)
            cache.layers = [growing_layer() for _ in cache.layers]
            try:
                logits = self._forward(ids, mask, cache)
            except Exception as exc:  # only these newcomers fail (e.g. out of memory); the running batch is untouched
                for row in group:
                    self._end(row, f"error: {type(exc).__name__}: {exc}")
                continue
            self._pick(group, logits)
            done.append((group, cache, mask))
        return done

    def _decode(self) -> None:
        import torch

        last = torch.tensor([[r.out[-1]] for r in self.rows], dtype=torch.long)
        self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=torch.long)], dim=1)
        logits = self._forward(last, self.mask, self.cache)
        self._pick(self.rows, logits)

    def _forward(self, ids: Any, mask: Any, cache: Any) -> Any:
        """Logits of each row's next token; positions count only a row's real tokens (left padding skipped)."""
        device = self.model.device
        width = ids.shape[1]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -width:]
        started = time.monotonic()
        out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                         use_cache=True, **{self.cache_arg: cache}, **self.extra)
        logits = out.logits[:, -1, :].float()
        if self.on_step is not None:
            self.on_step(ids.shape[0], time.monotonic() - started)
        return logits

    # -------------------------------------------------------------------------------------------- cache surgery
    def _join(self, groups: list[tuple[list[Row], Any, Any]]) -> None:
        """Write each prefilled row into a finished row's slot or a free one (a copy of that row only); only a row
        wider than the batch, or more rows than slots, rebuilds the whole cache."""
        import torch

        new = [(row, cache, j, int(mask[j].sum())) for rows, cache, mask in groups for j, row in enumerate(rows)]
        if not new:
            return
        slots = [i for i, r in enumerate(self.rows) if r.finish]
        if (self.cache is None or max(w for *_, w in new) > self.mask.shape[1]
                or len(new) > len(slots) + self.cache.layers[0].free_slots()):
            self._rebuild(groups)
            return
        width = self.mask.shape[1]
        for row, cache, j, w in new:
            slot = slots.pop(0) if slots else len(self.rows)
            for layer, added in zip(self.cache.layers, cache.layers, strict=True):
                layer.place(slot, added.keys[j], added.values[j], w)
            line = torch.zeros(width, dtype=torch.long)
            line[width - w:] = 1
            if slot == len(self.rows):
                self.rows.append(row)
                self.mask = torch.cat([self.mask, line[None]], dim=0)
            else:
                self.rows[slot] = row
                self.mask[slot] = line

    def _compact(self) -> None:
        """Fill the slots of finished rows with the last rows (one row's copy each), then trim padding columns no
        row needs when they are a quarter of the width."""
        holes = [i for i, r in enumerate(self.rows) if r.finish]
        if not holes:
            return
        n = len(self.rows)
        for hole in holes:
            while n and self.rows[n - 1].finish:
                n -= 1
            if hole >= n:
                break
            for layer in self.cache.layers:
                layer.move(n - 1, hole)
            self.rows[hole], self.mask[hole] = self.rows[n - 1], self.mask[n - 1]
            n -= 1
        self.rows, self.mask = self.rows[:n], self.mask[:n]
        if not n:
            self.cache = self.mask = None
            return
        for layer in self.cache.layers:
            layer.keep_rows(n)
        width, used = self.mask.shape[1], int(self.mask.sum(dim=1).max())
        if width - used >= max(32, width // 4):
            self._rebuild([])

    def _rebuild(self, groups: list[tuple[list[Row], Any, Any]]) -> None:
        """The running rows that are not finished and the prefilled groups, right-aligned in as few columns as the
        longest row needs, with free slots up to max_batch: one copy of the whole cache per layer."""
        import torch

        parts: list[tuple[list[Row], list[Any], Any]] = []
        index = [i for i, r in enumerate(self.rows) if not r.finish]
        if index:
            whole = len(index) == len(self.rows)
            at = torch.tensor(index, dtype=torch.long, device=self.model.device)
            layers = [(y.keys, y.values) if whole else (y.keys[at], y.values[at]) for y in self.cache.layers]
            parts.append(([self.rows[i] for i in index], layers, self.mask if whole else self.mask[at.cpu()]))
        parts += [(rows, [(y.keys, y.values) for y in cache.layers], mask) for rows, cache, mask in groups]
        self.rows = [r for rows, _, _ in parts for r in rows]
        if not parts:
            self.cache = self.mask = None
            return
        width = max(int(mask.sum(dim=1).max()) for _, _, mask in parts)
        self.mask = torch.cat([_right(mask, width) for _, _, mask in parts], dim=0)
        if self.cache is None:
            self.cache = groups[0][1]
        spare_rows = max(0, self.max_batch - len(self.rows))
        for n, layer in enumerate(self.cache.layers):
            layer.put([layers[n] for _, layers, _ in parts], width, spare_rows=spare_rows)

    # ---------------------------------------------------------------------------------------------- choosing
    def _pick(self, rows: list[Row], logits: Any) -> None:
        """Choose each row's next token from its logits, record log-probs, and end rows that are done."""
        import torch

        greedy = [i for i, r in enumerate(rows) if r.params.temperature == 0 and r.params.repetition_penalty == 1.0]
        chosen: dict[int, int] = {}
        if greedy:
            best = logits[greedy].argmax(dim=-1).tolist()
            chosen.update(zip(greedy, best, strict=True))
        for i, row in enumerate(rows):
            if i not in chosen:
                chosen[i] = _sample(logits[i], row)
        for i, row in enumerate(rows):
            token = chosen[i]
            if row.top_logprobs is not None:
                logp = torch.log_softmax(logits[i], dim=-1)
                row.logprobs.append((token, float(logp[token]), _top(logp, row.top_logprobs)))
            row.out.append(token)
            self._advance(row)

    def _advance(self, row: Row) -> None:
        params = row.params
        if row.out[-1] in self.ends:
            self._end(row, "stop")
        elif params.stop or row.streaming:
            row.text = self.tokenizer.decode(row.out, skip_special_tokens=True)
            cut = cut_at_stop(row.text, params.stop)
            if cut is not None:
                row.text = cut
                self._end(row, "stop")
            elif len(row.out) >= params.max_new_tokens:
                self._end(row, "length")
            else:
                row.emit("token", row)
        elif len(row.out) >= params.max_new_tokens:
            self._end(row, "length")
        else:
            row.emit("token", row)

    def _end(self, row: Row, finish: str) -> bool:
        if row.finish:
            return False
        row.finish = finish
        row.eos = bool(row.out) and row.out[-1] in self.ends
        kept = row.out[:-1] if row.eos else row.out
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        cut = cut_at_stop(text, row.params.stop)
        row.text = text if cut is None else cut
        if cut is not None:
            row.finish = "stop"
        row.emit("done", row)
        return False

    def _score(self, job: Score) -> None:
        try:
            result = prompt_logprobs(self.model, job.rows, job.k, self.pad_id)
        except Exception as exc:
            job.done(exc)
            return
        job.done(result)


def _by_length(rows: list[Row]) -> list[list[Row]]:
    """Longest first; a row joins a group while it is at least 4/5 as long as the group's first (<= 20% padding)."""
    groups: list[list[Row]] = []
    for row in sorted(rows, key=lambda r: -len(r.ids)):
        if groups and len(row.ids) * 5 >= len(groups[-1][0].ids) * 4:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _right(mask: Any, width: int) -> Any:
    """The mask's last `width` columns, left-padded with zeros where it is narrower."""
    import torch.nn.functional as F

    return mask[:, -width:] if mask.shape[1] >= width else F.pad(mask, (width - mask.shape[1], 0))


def _generator(seed: int | None, device: Any) -> Any:
    import torch

    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def _sample(logits: Any, row: Row) -> int:
    """One token for a row: repetition penalty, then greedy or temperature + nucleus sampling (no hidden top-k)."""
    import torch

    params = row.params
    scores = logits.clone()
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(row.ids) | set(row.out)), dtype=torch.long, device=scores.device)
        picked = scores[seen]
        scores[seen] = torch.where(picked < 0, picked * params.repetition_penalty, picked / params.repetition_penalty)
    if params.temperature == 0:
        return int(scores.argmax())
    scores = scores / params.temperature
    if params.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - params.top_p)
        drop[-1] = False
        scores[order[drop]] = float("-inf")
    probs = scores.softmax(dim=-1)
    return int(torch.multinomial(probs, 1, generator=row.generator))


def _top(logp: Any, k: int) -> TopK:
    if k <= 0:
        return []
    values, ids = logp.topk(k)
    return list(zip(ids.tolist(), values.tolist(), strict=True))


def prompt_logprobs(model: Any, rows: list[list[int]], k: int, pad_id: int) -> list[list[tuple[float | None, TopK]]]:
    """For each prompt: (log-prob of token t given tokens < t, top-k there) per token; the first has no log-prob."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):  # right padding: positions are the natural ones
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    with torch.inference_mode():
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    result = []
    for i, row in enumerate(rows):
        entries: list[tuple[float | None, TopK]] = [(None, [])]
        for t in range(1, len(row)):
            entries.append((float(logp[i, t - 1, row[t]]), _top(logp[i, t - 1], k)))
        result.append(entries)
    return result
