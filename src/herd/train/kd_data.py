"""The teacher's stored top-K distributions joined to one student's tokenised pairs (`train.objective = "kd"`).

Reads the sidecar (`responses/topk.parquet`, see herd.teacher.topk) and checks, before any training, that each
student's tokenizer has the teacher's vocabulary (the same token string at every teacher id; a student may add tokens
after them, such as a pad token). For each tokenised example it finds which response label positions the teacher's
generated tokens correspond to: the student re-tokenises the response text (with its wrapper's leading space and its
own EOS), so the two token sequences are aligned by their longest matching runs of equal ids (difflib), and only
positions whose token equals the teacher's get the teacher's distribution; the rest train on cross-entropy alone.
The share of response tokens that got one is recorded (`kd.coverage`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.students import IGNORE
from herd.teacher.topk import SIDECAR, read_sidecar, vocab_digest


def sidecar_paths(kd_topk: str, run_dir: Path) -> list[Path]:
    """The sidecar file, or every topk.parquet of a responses folder and its shard-i-of-n/ folders."""
    path = Path(kd_topk) if kd_topk else run_dir / "responses"
    found = [path] if path.is_file() else sorted([*path.glob(SIDECAR), *path.glob(f"shard-*/{SIDECAR}")])
    if not found:
        raise UserError(f"train.kd_topk: no {SIDECAR} at {path} (set responses.top_logprobs = K and run herd "
                        "responses, or point train.kd_topk at a topk.parquet)")
    return found


def load_targets(kd_topk: str, run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, targets by row id) from one sidecar or several shards' (which must share a tokenizer and K)."""
    meta: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    for path in sidecar_paths(kd_topk, run_dir):
        one, found = read_sidecar(path)
        if meta and (one["vocab_sha256"], one["k"]) != (meta["vocab_sha256"], meta["k"]):
            raise UserError(f"{path}: top-K from another tokenizer or K than {meta['source']}")
        meta = meta or {**one, "source": str(path)}
        rows.update(found)
    if not rows:
        raise UserError(f"{meta['source']}: no rows with top-K log-probs")
    return meta, rows


def check_vocabulary(tokenizer: Any, meta: dict[str, Any], where: str) -> None:
    """UserError unless the student's ids 0..n-1 spell the teacher's tokens (compared by vocabulary, not name)."""
    size = int(meta["vocab_size"])
    same = len(tokenizer) >= size and vocab_digest(tokenizer, size) == meta["vocab_sha256"]
    if not same:
        raise UserError(f"{where}: train.objective = 'kd' needs the teacher's vocabulary, but this student's "
                        f"tokenizer ({len(tokenizer)} tokens) differs from {meta['name']!r} ({size} tokens) the "
                        "top-K log-probs belong to; use a student that shares it, or objective = 'sft'")


def student_tokenizer(base: str, tokenizer: str) -> Any:
    """The tokenizer a student table will train with, loaded alone (cheap) for the check above."""
    from herd.train.build import load_tokenizer

    source = tokenizer or base
    if source == "embedded":
        from herd.teacher.embedded import embedded_model_path

        source = embedded_model_path()
    return load_tokenizer(source)


def align(response_ids: list[int], teacher_tokens: list[int]) -> list[tuple[int, int]]:
    """(student index, teacher step) pairs where the two token sequences agree, in order."""
    matcher = difflib.SequenceMatcher(None, response_ids, teacher_tokens, autojunk=False)
    return [(a + j, b + j) for a, b, size in matcher.get_matching_blocks() for j in range(size)]


def example_targets(labels: list[int], start: int, found: Any, k: int) -> dict[str, Any]:
    """kd_pos (label positions), kd_ids and kd_lps (flat, K per position) for one example; empty when untaught."""
    if found is None:
        return {"kd_pos": [], "kd_ids": [], "kd_lps": []}
    tokens, ids, lps = found
    response = labels[start:]
    pairs = [(i, t) for i, t in align(response, tokens.tolist()) if response[i] != IGNORE]
    steps = [t for _, t in pairs]
    return {"kd_pos": [start + i for i, _ in pairs], "kd_ids": ids[steps].reshape(-1).tolist(),
            "kd_lps": lps[steps].reshape(-1).tolist()}


def attach(dataset: Any, targets: dict[str, Any], k: int, separate_decoder: bool) -> tuple[Any, dict[str, Any]]:
    """The tokenised dataset with kd_pos / kd_ids / kd_lps columns, and coverage figures for herd.json."""

    def add(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"kd_pos": [], "kd_ids": [], "kd_lps": []}
        ids = batch.get("id") or [""] * len(batch["labels"])  # rows without ids cannot be joined: CE only
        for row_id, labels, prompt in zip(ids, batch["labels"], batch["prompt_tokens"], strict=True):
            one = example_targets(labels, 0 if separate_decoder else int(prompt), targets.get(str(row_id)), k)
            for key in out:
                out[key].append(one[key])
        return out

    joined = dataset.map(add, batched=True)
    taught = sum(len(p) for p in joined["kd_pos"])
    response = sum(joined["response_tokens"])
    rows = sum(1 for p in joined["kd_pos"] if p)
    coverage = {"rows_with_topk": rows, "rows": len(joined), "response_tokens": response, "taught_tokens": taught,
                "coverage": round(taught / response, 4) if response else 0.0}
    return joined, coverage
