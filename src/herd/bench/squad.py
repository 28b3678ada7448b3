"""SQuAD's answer normalisation, exact match and token F1, for lm-eval's ReCoRD task on any transformers version.

lm-eval's `super_glue/record/util.py` scores ReCoRD with `transformers.data.metrics.squad_metrics` (`compute_f1`,
`compute_exact`), a module that transformers 5 removed, so on a default install the task cannot even be loaded.
`install()` registers this module under that name when, and only when, the installed transformers lacks it; lm-eval's
own task config then runs unchanged. The metric follows the SQuAD v2 evaluation script's definition: lower case,
punctuation dropped, the articles a/an/the dropped, whitespace collapsed; F1 over the multiset of tokens left, and an
empty answer counts as right only against an empty answer.
"""

from __future__ import annotations

import importlib
import re
import string
import sys
import types
from collections import Counter

TRANSFORMERS_MODULE = "transformers.data.metrics.squad_metrics"
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no ASCII punctuation, no articles, single spaces (the order matters: "The," loses both)."""
    lowered = text.lower()
    no_punct = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", no_punct).split())


def get_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def compute_exact(a_gold: str, a_pred: str) -> int:
    """1 when the two answers are equal after normalisation, else 0."""
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """Harmonic mean of token precision and recall (tokens counted with multiplicity)."""
    gold, pred = get_tokens(a_gold), get_tokens(a_pred)
    if not gold or not pred:
        return float(gold == pred)  # no answer is right only when there is none to give
    shared = sum((Counter(gold) & Counter(pred)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def install() -> bool:
    """Make `import transformers.data.metrics.squad_metrics` work; True when herd's module had to stand in.

    Called before lm-eval loads a task. A transformers that still ships the module keeps its own.
    """
    try:
        importlib.import_module(TRANSFORMERS_MODULE)
        return False
    except ImportError:
        pass
    data = importlib.import_module("transformers.data")  # a real package in transformers 4 and 5 alike
    metrics = sys.modules.get("transformers.data.metrics")
    if metrics is None:
        metrics = types.ModuleType("transformers.data.metrics", "herd: stands in for the module transformers 5 removed")
        metrics.__path__ = []  # a package, so the submodule below can hang under it
        sys.modules[metrics.__name__] = metrics
        data.metrics = metrics  # type: ignore[attr-defined]
    sys.modules[TRANSFORMERS_MODULE] = sys.modules[__name__]
    metrics.squad_metrics = sys.modules[__name__]  # type: ignore[attr-defined]
    return True
