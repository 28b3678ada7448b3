"""The numbers of `herd stats`: token counts, MATTR, leading verbs, and the paper's Table 1 to compare with."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from herd.errors import UserError

# LaMini Table 1 (../shared/LAMINI.md §1): pairs, average instruction and response length in tokens (tokenizer
# unknown), and the MATTR of all instructions and all responses.
PAPER_TABLE1: dict[str, tuple[int, float, float]] = {
    "self_instruct_without_topic": (270_000, 14.3, 65.9),
    "self_instruct_with_topic": (280_000, 13.3, 62.4),
    "generated_p3": (300_000, 49.2, 21.3),
    "generated_flan": (290_000, 36.4, 29.3),
    "alpaca": (50_000, 17.1, 54.7),
    "original_p3": (460_000, 84.8, 21.2),
    "original_flan": (930_000, 61.9, 23.6),
}
PAPER_MATTR = {"instruction": 78.6, "response": 77.6}

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
# First words that are not verbs: questions, pronouns, articles, prepositions, and the labels of templated prompts.
# A POS tagger would need a model download; this list is enough to leave the imperative verbs.
NOT_VERBS = frozenset("""
what how who whom whose which why when where whether is are was were be been am do does did can could would should
will shall may might must i you we they he she it its my your our their his her me us them the a an this that these
those there here in on at for of to if as with from by into over under after before during about between and or but
so not no yes all any some each every one two three many much more most other such than then also only just very
question answer q input output context title article passage text sentence paragraph premise hypothesis given
based according following using
""".split())


def word_counter(tokenizer: str) -> Callable[[Sequence[str]], list[int]]:
    """A function giving the token count of each text: the regex word counter, or a Hugging Face tokenizer."""
    if tokenizer == "words":
        return lambda texts: [len(_TOKEN.findall(t)) for t in texts]
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as exc:
        raise UserError(f"stats.tokenizer = {tokenizer!r}: cannot load it ({str(exc).splitlines()[0]})") from None

    def count(texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]

    return count


def words(text: str) -> list[str]:
    """Lower-case word tokens, as used for MATTR."""
    return _WORD.findall(text.lower())


def mattr(ids: np.ndarray, window: int = 50, chunk: int = 4_000_000) -> float:
    """Moving-average type-token ratio x 100: the mean share of distinct tokens over every window of `window` tokens.

    A text shorter than one window gives its plain type-token ratio. Windows are taken `chunk` at a time so that
    memory stays bounded for hundreds of millions of tokens.
    """
    n = len(ids)
    if n == 0:
        return float("nan")
    if n < window:
        return 100.0 * len(np.unique(ids)) / n
    windows = n - window + 1
    total = 0
    for start in range(0, windows, chunk):
        stop = min(start + chunk, windows)
        total += _distinct_in_windows(ids[start:stop + window - 1], window)
    return 100.0 * total / (windows * window)


def _distinct_in_windows(ids: np.ndarray, window: int) -> int:
    """Sum over every window of `ids` of its number of distinct tokens, without sliding.

    A token at position p is new in window s (covering s..s+window-1) exactly when its previous occurrence lies
    before s, so each position adds the number of windows in which it is new. O(n log n).
    """
    n = len(ids)
    order = np.argsort(ids, kind="stable")
    prev = np.full(n, -1, dtype=np.int64)
    same = ids[order[1:]] == ids[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    pos = np.arange(n, dtype=np.int64)
    first = np.maximum(np.maximum(pos - window + 1, prev + 1), 0)
    last = np.minimum(pos, n - window)
    return int(np.clip(last - first + 1, 0, None).sum())


def leading_verb(instruction: str) -> str | None:
    """The instruction's first word when it reads as an imperative verb ("Write", "List"), else None."""
    tokens = words(instruction)
    if tokens and tokens[0] == "please":
        tokens = tokens[1:]
    if not tokens or not tokens[0].isalpha() or tokens[0] in NOT_VERBS:
        return None
    return tokens[0]


def summary(lengths: Sequence[int]) -> dict[str, Any]:
    """Mean, median, 10th and 90th percentile, min and max of a list of token counts."""
    if not lengths:
        return {"n": 0}
    arr = np.asarray(lengths, dtype=np.float64)
    p10, median, p90 = np.percentile(arr, [10, 50, 90])
    return {"n": len(arr), "mean": round(float(arr.mean()), 2), "median": float(median), "p10": float(p10),
            "p90": float(p90), "min": int(arr.min()), "max": int(arr.max())}
