"""Row filters of `herd dedup`, applied before duplicate search: empty and refusing answers, length bounds and
(optionally) answers cut off at the token limit. Each returns the reason a row is dropped, or None to keep it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from herd.errors import UserError

# Refusals are recognised in the opening of an answer only: "I cannot stress enough..." deep inside is not one.
REFUSAL_WINDOW = 200


@dataclass(frozen=True)
class Filters:
    instruction_min_words: int = 3
    instruction_max_words: int = 0
    response_min_words: int = 1
    response_max_words: int = 0
    drop_truncated: bool = False
    responses: bool = True  # rows carry a response: the response filters apply


def compile_refusals(patterns: tuple[str, ...] | list[str]) -> re.Pattern[str] | None:
    """One case-insensitive regex for all patterns; a broken pattern is the user's mistake, named by its index."""
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UserError(f"dedup.refusal_patterns[{i}] = {pattern!r}: not a valid regex ({exc})") from None
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def _length(what: str, words: int, low: int, high: int) -> str | None:
    if words < low:
        return f"{what}_too_short: {words} words < {low}"
    if high and words > high:
        return f"{what}_too_long: {words} words > {high}"
    return None


def reject_reason(row: dict[str, Any], f: Filters, refusal: re.Pattern[str] | None) -> str | None:
    """Why `row` fails a filter, or None. The reason's text before ':' is its kind (counted in the manifest)."""
    reason = _length("instruction", len(row["instruction"].split()), f.instruction_min_words, f.instruction_max_words)
    if reason or not f.responses:
        return reason
    response = row["response"].strip()
    if not response:
        return "empty_response"
    if refusal is not None:
        hit = refusal.search(response[:REFUSAL_WINDOW])
        if hit:
            return f"refusal: {hit.group(0)!r}"
    if f.drop_truncated and (row.get("truncated") is True or row.get("finish_reason") == "length"):
        return "truncated"
    return _length("response", len(response.split()), f.response_min_words, f.response_max_words)
