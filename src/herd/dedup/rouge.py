"""Self-instruct's similarity rule: a row is dropped when its ROUGE-L F1 with an already kept row exceeds a threshold.

Self-instruct compares each new instruction with every kept one (0.7, rouge_score's tokenizer, no stemmer). That is
quadratic, so herd offers it for small sets only, and computes the same answer faster: a pair's ROUGE-L F1 is at most
2 * overlap / (len_x + len_y), where overlap bounds the longest common subsequence by shared token counts. The bound
is computed for whole blocks of pairs with sparse matrix products; the exact LCS runs only on pairs whose bound
exceeds the threshold. The result is identical to scoring every pair with rouge_score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from herd.dedup.core import KEEP, unmatched


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """rouge_score's default tokenizer (lower case, ASCII letters and digits), as self-instruct used it."""
    from rouge_score import tokenizers

    tok = tokenizers.DefaultTokenizer(use_stemmer=False)
    return [tok.tokenize(t) for t in texts]


def lcs_length(x: Sequence[int], y: Sequence[int]) -> int:
    """Longest common subsequence, one DP row at a time (rouge_score's full table costs more for the same number)."""
    if len(x) < len(y):
        x, y = y, x
    prev = [0] * (len(y) + 1)
    for a in x:
        cur = [0]
        for j, b in enumerate(y):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(x: Sequence[int], y: Sequence[int]) -> float:
    """ROUGE-L F1 of two token sequences (rouge_score's fmeasure)."""
    if not x or not y:
        return 0.0
    lcs = lcs_length(x, y)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(y), lcs / len(x)
    return 2 * precision * recall / (precision + recall)


def _encode(tokens: list[list[str]]) -> tuple[list[list[int]], Any, np.ndarray]:
    """Token ids per row, the sparse count matrix (rows x vocabulary) and row lengths."""
    from scipy.sparse import csr_matrix

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in row] for row in tokens]
    indptr = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in ids], out=indptr[1:])
    flat = np.fromiter((t for r in ids for t in r), dtype=np.int64, count=int(indptr[-1]))
    counts = csr_matrix((np.ones(len(flat), dtype=np.float32), flat, indptr), shape=(len(ids), max(len(vocab), 1)))
    counts.sum_duplicates()
    return ids, counts, np.diff(indptr)


def rouge_duplicates(
    texts: Sequence[str], alive: np.ndarray, threshold: float, block: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate_of, score) per row: the kept row with the highest ROUGE-L F1 above `threshold`, or KEEP.

    Rows are decided in input order against the rows kept before them, as self-instruct does.
    """
    dup_of, score = unmatched(len(texts))
    rows = np.flatnonzero(alive)
    if len(rows) < 2:
        return dup_of, score
    ids, counts, lengths = _encode(tokenize([texts[i] for i in rows.tolist()]))
    present = counts.copy()
    present.data[:] = 1
    kept = np.ones(len(rows), dtype=bool)
    for lo in range(0, len(rows), block):
        hi = min(lo + block, len(rows))
        # overlap[x, y] <= sum over shared tokens of min(count_x, count_y), from both sides
        over = np.minimum((counts[lo:hi] @ present[:hi].T).toarray(), (present[lo:hi] @ counts[:hi].T).toarray())
        total = (lengths[lo:hi, None] + lengths[None, :hi]).astype(np.float64)
        bound = np.divide(2 * over.astype(np.float64), total, out=np.zeros_like(total), where=total > 0)
        for x in range(lo, hi):
            # a hair below the threshold: the bound and the exact score round differently
            cands = np.flatnonzero(bound[x - lo, :x] > threshold - 1e-9)
            best, best_score = KEEP, threshold
            for y in cands.tolist():
                if kept[y]:
                    s = rouge_l(ids[x], ids[y])
                    if s > best_score:
                        best, best_score = y, s
            if best != KEEP:
                kept[x] = False
                dup_of[rows[x]], score[rows[x]] = rows[best], best_score
    return dup_of, score
