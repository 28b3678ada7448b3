"""The duplicate finder behind `herd dedup`: exact duplicates after normalisation, then near-duplicates by MinHash LSH.

Everything here works on plain texts and numpy arrays, so the benchmark (benchmarks/dedup.py) runs the same code as the
stage. Definitions:

- *normalised text*: NFKC, case-folded, punctuation replaced by spaces, whitespace collapsed.
- *exact duplicate*: same normalised text as an earlier row (compared by a 64-bit blake2b digest).
- *near duplicate*: the Jaccard similarity of the two rows' sets of word n-gram shingles (n = `shingle_size`) is at
  least `threshold`. MinHash LSH only proposes candidate pairs; every candidate is checked against the exact Jaccard
  of the shingle sets, so an estimate's noise never drops a row.

The first occurrence in input order is kept; a dropped row points at the earliest kept row it duplicates (never at a
dropped one), so `duplicate_of` always names a row that is in the output.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

_PUNCT = re.compile(r"[^\w\s]+")
_MASK64 = (1 << 64) - 1
# A word that stands for "no word": short texts are padded with it so that every row has at least one shingle.
_PAD = 0x9E3779B97F4A7C15
# Each candidate is also paired with this many earlier members of its bucket besides the bucket's first member:
# enough for chains of variants, while a bucket of thousands of template rows still costs linear time.
NEIGHBOURS = 3
KEEP = -1


@dataclass(frozen=True)
class NearParams:
    """How near-duplicates are defined and searched for."""

    threshold: float = 0.7
    num_perm: int = 128
    shingle_size: int = 2
    seed: int = 0


def normalise(text: str) -> str:
    """The text compared for exact duplicates: case, punctuation and whitespace do not count."""
    return " ".join(_PUNCT.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass
class Prepared:
    """Per row: the digest of its normalised text and its shingle hashes (row i: shingles[offsets[i]:offsets[i+1]])."""

    keys: np.ndarray      # uint64, one per row
    shingles: np.ndarray  # uint32, all rows back to back
    offsets: np.ndarray   # int64, n + 1

    def __len__(self) -> int:
        return len(self.keys)

    def shingle_set(self, row: int) -> set[int]:
        return set(self.shingles[self.offsets[row]:self.offsets[row + 1]].tolist())


class Preparer:
    """Reads texts one at a time (the stage streams them from disk) and keeps only digests and word hashes."""

    def __init__(self, shingle_size: int) -> None:
        if shingle_size < 1:
            raise ValueError("shingle_size must be at least 1")
        self.k = shingle_size
        self._words: dict[str, int] = {}
        self._keys = array("Q")
        self._hashes = array("Q")
        self._lengths = array("q")

    def add(self, text: str) -> None:
        norm = normalise(text)
        self._keys.append(_digest(norm))
        words = norm.split()
        cache = self._words
        hashes = [cache.get(w) for w in words]
        if None in hashes:  # a word seen for the first time: hash it once, then it is a dict lookup
            for w in words:
                if w not in cache:
                    cache[w] = _digest(w)
            hashes = [cache[w] for w in words]
        if len(hashes) < self.k:
            hashes.extend([_PAD] * (self.k - len(hashes)))
        self._hashes.extend(hashes)  # type: ignore[arg-type]
        self._lengths.append(len(hashes))

    def finish(self) -> Prepared:
        words = np.frombuffer(self._hashes, dtype=np.uint64) if self._hashes else np.zeros(0, np.uint64)
        lengths = np.frombuffer(self._lengths, dtype=np.int64) if self._lengths else np.zeros(0, np.int64)
        keys = np.frombuffer(self._keys, dtype=np.uint64).copy() if self._keys else np.zeros(0, np.uint64)
        shingles, offsets = _shingle(words, lengths, self.k)
        self._hashes, self._lengths, self._words = array("Q"), array("q"), {}
        return Prepared(keys, shingles, offsets)


def prepare(texts: Iterable[str], shingle_size: int) -> Prepared:
    prep = Preparer(shingle_size)
    for text in texts:
        prep.add(text)
    return prep.finish()


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the high 32 bits that are kept."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _shingle(words: np.ndarray, lengths: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash every run of k consecutive words inside a row, vectorised over the whole corpus."""
    counts = lengths - (k - 1)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    row_start = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths):
        np.cumsum(lengths[:-1], out=row_start[1:])
    # global word index of each shingle's first word
    first = np.arange(offsets[-1], dtype=np.int64) + np.repeat(row_start - offsets[:-1], counts)
    h = words[first].copy()
    with np.errstate(over="ignore"):
        for t in range(1, k):
            h *= np.uint64(0x100000001B3)
            h += words[first + t]
        h = _mix64(h)
    return (h >> np.uint64(32)).astype(np.uint32), offsets


def signatures(prep: Prepared, rows: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures of `rows`, as a (num_perm, len(rows)) uint32 array.

    datasketch computes one MinHash per row in a Python loop (~100 µs a row: minutes at 2.58M rows); here every
    permutation is applied to blocks of shingles at once. The permutations are multiply-shift hashes
    ((a*x + b) mod 2^64) >> 32 with random odd a: a strongly universal family that needs no modulo, which is the
    slow part of datasketch's (a*x + b) mod (2^61 - 1). Permutation-major layout keeps each block in cache.
    """
    rng = np.random.default_rng(seed)
    a = (rng.integers(0, 2**63, size=(num_perm, 1), dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
    b = rng.integers(0, 2**63, size=(num_perm, 1), dtype=np.uint64)
    out = np.empty((num_perm, len(rows)), dtype=np.uint32)
    starts, ends = prep.offsets[rows], prep.offsets[rows + 1]
    block = 256
    with np.errstate(over="ignore"):
        for lo in range(0, len(rows), block):
            s, e = starts[lo:lo + block], ends[lo:lo + block]
            counts = e - s
            idx = np.repeat(s - np.concatenate(([0], np.cumsum(counts)[:-1])), counts) + np.arange(counts.sum())
            x = prep.shingles[idx].astype(np.uint64)
            values = a * x  # (num_perm, shingles in block)
            values += b
            values >>= np.uint64(32)
            local = np.concatenate(([0], np.cumsum(counts)[:-1]))
            out[:, lo:lo + block] = np.minimum.reduceat(values, local, axis=1)
    return out


def band_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) from datasketch's own optimiser.

    Candidates are verified exactly afterwards, so a false candidate costs only a set comparison while a missed one
    is a duplicate left in the data: false negatives weigh 9 times more than false positives.
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    return int(lsh.b), int(lsh.r)


def candidate_pairs(sigs: np.ndarray, bands: int, rows_per_band: int) -> np.ndarray:
    """Pairs (i, j), i < j, of columns that share at least one band bucket, as a sorted unique int64 array i*n + j.

    Banding is done here with numpy sorts instead of datasketch's MinHashLSH: its per-row Python inserts and its
    dict-of-lists buckets would take minutes and several GB at 2.58M rows; a sort per band takes a fraction of a
    second and no memory beyond one column of hashes. Within a bucket (rows in input order) each member is paired
    with the bucket's first member and with its NEIGHBOURS predecessors.
    """
    n = sigs.shape[1]
    found: list[np.ndarray] = []
    for band in range(bands):
        chunk = sigs[band * rows_per_band:(band + 1) * rows_per_band]
        h = np.full(n, band, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for row in chunk:
                h *= np.uint64(0x100000001B3)
                h += row.astype(np.uint64)
            h = _mix64(h)
        order = np.argsort(h, kind="stable")  # stable: members of a bucket stay in input order
        ordered = h[order]
        pos = np.arange(n)
        new = np.ones(n, dtype=bool)
        new[1:] = ordered[1:] != ordered[:-1]
        run_start = np.maximum.accumulate(np.where(new, pos, 0))
        member = ~new
        found.append(order[run_start[member]] * n + order[pos[member]])
        for d in range(1, NEIGHBOURS + 1):
            near = pos - d > run_start
            found.append(order[pos[near] - d] * n + order[pos[near]])
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64))


def exact_duplicates(keys: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """For each row, the index of the first alive row with the same key, or KEEP; rows not alive stay KEEP."""
    dup_of = np.full(len(keys), KEEP, dtype=np.int64)
    rows = np.flatnonzero(alive)
    if len(rows) == 0:
        return dup_of
    _, first, inverse = np.unique(keys[rows], return_index=True, return_inverse=True)
    owner = rows[first[inverse]]
    repeat = owner != rows
    dup_of[rows[repeat]] = owner[repeat]
    return dup_of


def unmatched(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate_of, score) arrays in which no row duplicates another yet."""
    return np.full(n, KEEP, dtype=np.int64), np.zeros(n, dtype=np.float32)


def near_duplicates(prep: Prepared, alive: np.ndarray, params: NearParams) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate_of, jaccard) per row: the earliest kept alive row whose shingle set is similar enough, or KEEP."""
    n = len(prep)
    dup_of, score = unmatched(n)
    rows = np.flatnonzero(alive)
    if len(rows) < 2:
        return dup_of, score
    bands, per_band = band_shape(params.threshold, params.num_perm)
    sigs = signatures(prep, rows, params.num_perm, params.seed)
    pairs = candidate_pairs(sigs, bands, per_band)
    del sigs
    m = len(rows)
    first, second = rows[pairs // m], rows[pairs % m]
    # sorted by the later row, then the earlier one: the greedy pass below decides rows in input order
    order = np.lexsort((first, second))
    kept = np.ones(n, dtype=bool)
    last_decided = -1
    for i, j in zip(first[order].tolist(), second[order].tolist(), strict=True):
        if j == last_decided or not kept[i]:
            continue  # j already dropped for an earlier i, or i is itself a duplicate
        a, b = prep.shingle_set(i), prep.shingle_set(j)
        jaccard = len(a & b) / len(a | b)
        if jaccard >= params.threshold:
            kept[j] = False
            dup_of[j], score[j] = i, jaccard
            last_decided = j
    return dup_of, score
