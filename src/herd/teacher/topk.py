"""The teacher's top-K next-token log-probs as a training target: which tokenizer they belong to, the mapping of an
endpoint's token strings to ids, and the Parquet sidecar beside a stage's rows.

`responses/topk.parquet` has one row per kept response: `id` (the row id), `call` (the journal key), `n` (generated
tokens), and three little-endian byte columns: `tokens` (n ids), `ids` (n x K ids, most likely first) and `logprobs`
(n x K float16). Ids are uint16 when the vocabulary has at most 65,536 entries, else int32 (see `id_dtype` in the
file's metadata). A slot with no candidate (an endpoint token no tokenizer entry matches) has log-prob -inf.
The sidecar is derived: the journal holds every call's top-K (written with the call), and the stage writes the
sidecar afresh from it when it finishes, so a killed stage never leaves the two disagreeing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.teacher.base import TopK

SIDECAR = "topk.parquet"
OPENAI_MAX_K = 20


def vocab_digest(tokenizer: Any, size: int) -> str:
    """sha256 of the token strings of ids 0..size-1: two tokenizers with the same digest share those ids."""
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    return hashlib.sha256(json.dumps([by_id.get(i, "") for i in range(size)]).encode("utf-8")).hexdigest()


def tokenizer_record(tokenizer: Any, name: str) -> dict[str, Any]:
    """What the manifest says about the tokenizer top-K ids belong to (compared by vocabulary, not by name)."""
    size = len(tokenizer)
    return {"name": name, "class": type(tokenizer).__name__, "vocab_size": size,
            "vocab_sha256": vocab_digest(tokenizer, size)}


def teacher_tokenizer(backend: str, model: str, topk_tokenizer: str) -> tuple[Any, str]:
    """(tokenizer, name) the stored ids refer to: a local teacher's own; for an endpoint, responses.topk_tokenizer."""
    from herd.train.build import load_tokenizer

    if backend == "openai":
        if not topk_tokenizer:
            raise UserError("responses.topk_tokenizer: an openai endpoint returns token strings; name the teacher's "
                            "tokenizer (a folder, Hub id or 'embedded') so they can be mapped to ids")
        return load_tokenizer(topk_tokenizer), topk_tokenizer
    if backend != "local":
        raise UserError(f"responses.top_logprobs: teacher.backend = {backend!r} returns no log-probs "
                        "(use a local teacher or an openai endpoint)")
    name = topk_tokenizer or model
    if name == "embedded":
        from herd.teacher.embedded import embedded_model_path

        return load_tokenizer(embedded_model_path()), "embedded"
    return load_tokenizer(name), name


# ------------------------------------------------------------------------------------------------ endpoint strings
def byte_level_table() -> dict[int, str]:
    """GPT-2's byte-to-character table (bytes a byte-level BPE vocabulary spells as printable characters)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def piece_id(tokenizer: Any, piece: str, vocab: dict[str, int], table: dict[int, str]) -> int | None:
    """The id of an endpoint's token string: 'token_id:N' (vLLM --return-tokens-as-token-ids), an exact vocabulary
    entry, its byte-level spelling (GPT-2/LLaMA-3/SmolLM style BPE) or its SentencePiece spelling; else None."""
    if piece.startswith("token_id:") and piece[9:].isdigit():
        return int(piece[9:])
    for form in (piece, "".join(table[b] for b in piece.encode("utf-8")), piece.replace(" ", "\u2581")):
        if form in vocab:
            return vocab[form]
    return None


def map_pieces(topk: TopK, tokenizer: Any, vocab: dict[str, int], table: dict[int, str]) -> tuple[TopK, int]:
    """Token strings to ids (ids already there are kept); returns the mapped TopK and how many strings had no id."""
    if topk.ids or not topk.pieces:
        return topk, 0
    missing = 0
    ids: list[list[int]] = []
    logprobs: list[list[float]] = []
    for row, values in zip(topk.pieces, topk.logprobs, strict=True):
        found = [piece_id(tokenizer, p, vocab, table) for p in row]
        missing += sum(f is None for f in found)
        ids.append([f if f is not None else 0 for f in found])
        logprobs.append([v if f is not None else float("-inf") for f, v in zip(found, values, strict=True)])
    tokens = [piece_id(tokenizer, p, vocab, table) for p in topk.sampled]
    return TopK([t if t is not None else -1 for t in tokens], ids, logprobs), missing


# ------------------------------------------------------------------------------------------------ the sidecar
def write_sidecar(folder: Path, rows: Iterable[tuple[str, str]], found: dict[str, TopK], tokenizer: Any,
                  record: dict[str, Any]) -> dict[str, Any]:
    """Write `folder/topk.parquet` atomically for (row id, call key) pairs; returns the manifest entry."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    vocab = tokenizer.get_vocab()
    table = byte_level_table()
    id_dtype = np.dtype("<u2") if record["vocab_size"] <= 65536 else np.dtype("<i4")
    columns: dict[str, list[Any]] = {"id": [], "call": [], "n": [], "tokens": [], "ids": [], "logprobs": []}
    k = int(record["k"])
    unmapped = absent = 0
    for row_id, key in rows:
        if key not in found:
            absent += 1
            continue
        topk, missing = map_pieces(found[key], tokenizer, vocab, table)
        unmapped += missing
        pad = [k - len(r) for r in topk.ids]  # an endpoint may return fewer than K candidates at a step
        ids_k = [r[:k] + [0] * max(0, p) for r, p in zip(topk.ids, pad, strict=True)]
        lps_k = [r[:k] + [float("-inf")] * max(0, p) for r, p in zip(topk.logprobs, pad, strict=True)]
        columns["id"].append(row_id)
        columns["call"].append(key)
        columns["n"].append(len(topk))
        columns["tokens"].append(np.asarray(topk.tokens, dtype=np.int64).clip(0).astype(id_dtype).tobytes())
        columns["ids"].append(np.asarray(ids_k, dtype=np.int64).astype(id_dtype).tobytes())
        columns["logprobs"].append(np.asarray(lps_k, dtype=np.float32).astype("<f2").tobytes())
    meta = {**record, "id_dtype": id_dtype.str, "logprob_dtype": "<f2"}
    schema = pa.schema([("id", pa.string()), ("call", pa.string()), ("n", pa.int32()), ("tokens", pa.binary()),
                        ("ids", pa.binary()), ("logprobs", pa.binary())],
                       metadata={b"herd_topk": json.dumps(meta).encode("utf-8")})
    target = folder / SIDECAR
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), tmp, compression="zstd")
    os.replace(tmp, target)
    tokens = int(sum(columns["n"]))
    size = target.stat().st_size
    return {"file": SIDECAR, **meta, "rows": len(columns["id"]), "tokens": tokens, "bytes": size,
            "bytes_per_token": round(size / tokens, 2) if tokens else None, "unmapped_strings": unmapped,
            "rows_without_topk": absent}


def read_sidecar(path: Path) -> tuple[dict[str, Any], dict[str, tuple[Any, Any, Any]]]:
    """(metadata, {row id: (tokens (n,), ids (n, K), logprobs (n, K) float32)}); UserError for any other file."""
    import numpy as np
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[b"herd_topk"])
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{path}: not a herd top-K sidecar ({str(exc).splitlines()[0][:120]})") from None
    k = max(1, int(meta["k"]))
    dtype = np.dtype(meta["id_dtype"])
    out: dict[str, tuple[Any, Any, Any]] = {}
    for row in table.to_pylist():
        n = int(row["n"])
        out[row["id"]] = (np.frombuffer(row["tokens"], dtype=dtype).astype(np.int64),
                          np.frombuffer(row["ids"], dtype=dtype).astype(np.int64).reshape(n, k),
                          np.frombuffer(row["logprobs"], dtype="<f2").astype(np.float32).reshape(n, k))
    return meta, out
