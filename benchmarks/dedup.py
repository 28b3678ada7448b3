"""How fast and how well herd dedup's core finds planted duplicates, against self-instruct's ROUGE-L all-pairs rule.

A synthetic corpus generator (part of this benchmark) writes instruction-like strings: an imperative verb and 6-30
words drawn from function words and a Zipf-distributed vocabulary of synthetic words. A share of rows (10% by
default) are planted copies of earlier rows: some differ only in case, punctuation and spacing (exact duplicates
after normalisation), the rest also have one or two words substituted, inserted or deleted, kept only if the pair's
true Jaccard similarity under herd's shingling is at least threshold + 0.05 (a near-duplicate by herd's definition,
with a margin). Ground truth: each planted row and the row it was copied from.

Printed, for --rows N (default 2.58M, LaMini's size) and for N/10:
  - seconds and peak resident memory of the core (normalise + hash, exact duplicates, MinHash LSH near-duplicates);
    goals at 2.58M on 2 cores: <= 10 minutes and <= 8 GB
  - precision and recall on the planted pairs (goal >= 0.95 each); a hit is a planted row whose duplicate_of is its
    original (or a copy of that original)
  - how time grows: t(N) / t(N/10) (10 = linear)
  - the baseline: herd's ROUGE-L filter (self-instruct's rule, 0.7) on 10K rows, and the naive rouge_score loop that
    self-instruct runs on --naive-rows rows, extrapolated to 10K by the square of the row ratio; the ratio printed
    is MinHash rows/s over ROUGE-L rows/s.

    .venv/bin/python benchmarks/dedup.py [--rows 2580000] [--dup-share 0.1] [--rouge-rows 10000] [--naive-rows 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from herd.dedup.core import KEEP, NearParams, band_shape, exact_duplicates, near_duplicates, normalise, prepare
from herd.dedup.rouge import rouge_duplicates

VERBS = ("Write Explain Describe List Give Create Summarize Translate Classify Generate Find Identify Compare Suggest "
         "Rewrite Name Provide Calculate Design Outline Convert Edit Analyze Compose Tell Determine Predict Recommend "
         "Evaluate Make").split()
FUNCTION = "the a of to and in for with on about from by as is that this your an at or".split()
SYLLABLES = "ka lo mi ne ru ta shi vo pe da zu bri tor sen gal mon fe li qua dro".split()
MARGIN = 0.05


def vocabulary() -> list[str]:
    """8,400 synthetic content words: every 2- and 3-syllable combination."""
    two = [a + b for a in SYLLABLES for b in SYLLABLES]
    return two + [w + c for w in two for c in SYLLABLES]


def base_rows(n: int, rng: np.random.Generator) -> list[list[str]]:
    """n random instructions as word lists: a verb, then 6-30 words (35% function words, the rest Zipf)."""
    vocab = np.array(vocabulary(), dtype=object)
    weights = 1.0 / (np.arange(len(vocab)) + 10.0)
    lengths = rng.integers(6, 31, size=n)
    total = int(lengths.sum())
    content = vocab[rng.choice(len(vocab), size=total, p=weights / weights.sum())]
    function = np.array(FUNCTION, dtype=object)[rng.integers(0, len(FUNCTION), size=total)]
    words = np.where(rng.random(total) < 0.35, function, content).tolist()
    verbs = np.array(VERBS, dtype=object)[rng.integers(0, len(VERBS), size=n)].tolist()
    out, at = [], 0
    for verb, length in zip(verbs, lengths.tolist(), strict=True):
        out.append([verb, *words[at:at + length]])
        at += length
    return out


def shingles(words: list[str], k: int) -> set[str]:
    norm = normalise(" ".join(words)).split()
    norm += ["\0"] * (k - len(norm))
    return {" ".join(norm[i:i + k]) for i in range(len(norm) - k + 1)}


def surface(words: list[str], rng: np.random.Generator) -> str:
    """The same words with other case, punctuation and spacing: equal after normalisation."""
    style = int(rng.integers(0, 4))
    text = [w.upper() if style == 0 else w.lower() if style == 1 else w for w in words]
    if style == 2 and len(text) > 3:
        text[2] += ","
    sep = "  " if style == 3 else " "
    return sep.join(text) + str(rng.choice(["", ".", "?", "!", " ..."]))


def edited(words: list[str], rng: np.random.Generator, vocab: list[str], k: int, floor: float) -> list[str] | None:
    """One or two word edits whose result stays at Jaccard >= floor with the original, else None."""
    for edits in ((2, 1) if len(words) >= 20 else (1,)):
        new = list(words)
        for _ in range(edits):
            at = int(rng.integers(1, len(new)))
            kind = int(rng.integers(0, 3))
            if kind == 0:
                new[at] = vocab[int(rng.integers(0, len(vocab)))]
            elif kind == 1:
                new.insert(at, vocab[int(rng.integers(0, len(vocab)))])
            elif len(new) > 3:
                del new[at]
        a, b = shingles(words, k), shingles(new, k)
        if len(a & b) / len(a | b) >= floor:
            return new
    return None


def make_corpus(rows: int, dup_share: float, params: NearParams, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """(texts, source): source[j] is the row that row j was copied from, or -1 for an original row."""
    rng = np.random.default_rng(seed)
    planted = np.sort(rng.choice(np.arange(1, rows), size=int(rows * dup_share), replace=False))
    is_copy = np.zeros(rows, dtype=bool)
    is_copy[planted] = True
    originals = np.flatnonzero(~is_copy)
    source = np.full(rows, -1, dtype=np.int64)
    # each copy comes from a random original earlier in the corpus
    before = np.searchsorted(originals, planted)
    source[planted] = originals[(rng.random(len(planted)) * before).astype(np.int64)]
    words = base_rows(rows, rng)
    vocab = vocabulary()
    texts = [" ".join(w) + "." for w in words]
    for j in planted.tolist():
        base = words[int(source[j])]
        new = edited(base, rng, vocab, params.shingle_size, params.threshold + MARGIN) if rng.random() < 0.6 else None
        texts[j] = surface(new if new is not None else base, rng)
    return texts, source


def score(dup_of: np.ndarray, source: np.ndarray) -> tuple[float, float]:
    """Precision and recall of the found duplicates against the planted ones."""
    root = np.where(source >= 0, source, np.arange(len(source)))
    found = dup_of != KEEP
    hit = found & (source >= 0) & (root[np.where(found, dup_of, 0)] == root)
    return hit.sum() / max(found.sum(), 1), hit.sum() / max((source >= 0).sum(), 1)


class PeakRSS:
    """Samples the process's resident memory every 20 ms while a block runs."""

    def __enter__(self) -> PeakRSS:
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def dedup_core(texts: list[str], params: NearParams) -> np.ndarray:
    """What `herd dedup` does between reading and writing: hash, exact duplicates, near-duplicates."""
    prep = prepare(texts, params.shingle_size)
    alive = np.ones(len(texts), dtype=bool)
    dup_of = exact_duplicates(prep.keys, alive)
    alive &= dup_of == KEEP
    near, _ = near_duplicates(prep, alive, params)
    return np.where(near != KEEP, near, dup_of)


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float, int]:
    """(result, wall seconds, CPU seconds, peak RSS bytes). CPU time says more than wall time on a shared machine."""
    with PeakRSS() as rss:
        started, cpu = time.perf_counter(), time.process_time()
        out = fn()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return out, seconds, cpu, rss.peak


def naive_rouge(texts: list[str], threshold: float) -> np.ndarray:
    """Self-instruct's loop: rouge_score on each new instruction against every kept one. Returns the pairs scored."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept: list[str] = []
    pairs = 0
    for text in texts:
        scores = [scorer.score(text, other)["rougeL"].fmeasure for other in kept]
        pairs += len(kept)
        if not scores or max(scores) <= threshold:
            kept.append(text)
    return np.array([pairs])


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


def baseline(args: argparse.Namespace, params: NearParams, minhash: tuple[float, float]) -> None:
    """The ROUGE-L rule on --rouge-rows rows (herd's filter) and on --naive-rows rows (self-instruct's loop)."""
    texts, source = make_corpus(args.rouge_rows, args.dup_share, params, seed=1)
    alive = np.ones(len(texts), dtype=bool)
    found, wall, cpu, _ = timed(lambda: rouge_duplicates(texts, alive, 0.7)[0])
    precision, recall = score(found, source)
    print(f"baseline: herd ROUGE-L filter (all pairs, 0.7) on {len(texts):,} rows: {wall:.1f} s wall, {cpu:.1f} s "
          f"CPU; precision {precision:.4f}, recall {recall:.4f}")
    pairs, naive_wall, naive_cpu, _ = timed(lambda: naive_rouge(texts[:args.naive_rows], 0.7))
    scale = (len(texts) / args.naive_rows) ** 2
    print(f"baseline: naive rouge_score loop on {args.naive_rows:,} rows: {naive_wall:.1f} s wall, {naive_cpu:.1f} s "
          f"CPU ({int(pairs[0]):,} pairs, {naive_cpu / max(int(pairs[0]), 1) * 1e6:.0f} us CPU a pair); "
          f"extrapolated to {len(texts):,} rows: {naive_cpu * scale:,.0f} s CPU")
    rows = args.rows
    per_row = {"minhash": minhash[1] / rows, "rouge": cpu / len(texts), "naive": naive_cpu * scale / len(texts)}
    print(f"ratio (CPU seconds a row): ROUGE-L filter at {len(texts):,} rows / MinHash LSH at {rows:,} rows = "
          f"{per_row['rouge'] / per_row['minhash']:,.0f}x; naive ROUGE-L / MinHash LSH = "
          f"{per_row['naive'] / per_row['minhash']:,.0f}x")


def whole_stage(rows: int, dup_share: float, params: NearParams) -> None:
    """`herd dedup` as a user runs it, in its own process: JSONL in, data.jsonl and rejects.jsonl out."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        texts, source = make_corpus(rows, dup_share, params)
        with path.open("w", encoding="utf-8") as fh:
            for i, text in enumerate(texts):
                fh.write(json.dumps({"id": f"r{i}", "instruction": text, "response": f"Answer number {i}.",
                                     "instruction_source": "synthetic"}) + "\n")
        del texts
        size = path.stat().st_size / 2**20
        cmd = [sys.executable, "-m", "herd", "dedup", "-q", "-i", str(path), "--set", f"run.dir={json.dumps(tmp)}",
               "--set", f"dedup.threshold={params.threshold}", "--set", f"dedup.num_perm={params.num_perm}",
               "--set", f"dedup.shingle_size={params.shingle_size}", "--set", f"run.seed={params.seed}"]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        found = np.full(rows, KEEP, dtype=np.int64)
        with (Path(tmp) / "default" / "dedup" / "rejects.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                found[int(row["id"][1:])] = int(row["duplicate_of"][1:])
        precision, recall = score(found, source)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"stage: herd dedup on {rows:,} JSONL rows ({size:,.0f} MiB): {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS "
          f"{usage.ru_maxrss / 2**20:.2f} GiB; precision {precision:.4f}, recall {recall:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_580_000)
    ap.add_argument("--dup-share", type=float, default=0.1)
    ap.add_argument("--rouge-rows", type=int, default=10_000)
    ap.add_argument("--naive-rows", type=int, default=1500)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle-size", type=int, default=2)
    ap.add_argument("--stage", action="store_true", help="also run the whole `herd dedup` command on --rows rows")
    args = ap.parse_args()
    params = NearParams(args.threshold, args.num_perm, args.shingle_size, seed=0)
    print(f"# herd dedup benchmark; {load_note()}")
    band_shape(params.threshold, params.num_perm)  # imports datasketch before the clocks start
    results: dict[int, tuple[float, float]] = {}
    for rows in (max(args.rows // 10, 10), args.rows):
        started = time.perf_counter()
        texts, source = make_corpus(rows, args.dup_share, params)
        made = time.perf_counter() - started
        found, seconds, cpu, peak = timed(lambda texts=texts: dedup_core(texts, params))
        precision, recall = score(found, source)
        results[rows] = (seconds, cpu)
        print(f"rows {rows:>9,}: corpus {made:6.1f} s; dedup core {seconds:7.1f} s wall, {cpu:7.1f} s CPU, "
              f"{rows / seconds:9,.0f} rows/s, peak RSS {peak / 2**30:.2f} GiB (incl. the corpus); "
              f"planted {int((source >= 0).sum()):,}, precision {precision:.4f}, recall {recall:.4f}")
        del texts, source, found
    small, large = sorted(results)
    print(f"growth: t({large:,}) / t({small:,}) = {results[large][0] / results[small][0]:.1f} wall, "
          f"{results[large][1] / results[small][1]:.1f} CPU (rows x{large / small:.0f}; linear = {large / small:.0f})")
    baseline(args, params, results[large])
    if args.stage:
        whole_stage(args.rows, args.dup_share, params)
    print(f"# {load_note()}")


if __name__ == "__main__":
    main()
