"""Reading the teacher's answer: `<example>…</example>` blocks (or a JSON object) into instructions, and the reason
for each one dropped.

Teachers, small ones most of all, break the format in a few recurring ways, and each is handled on purpose:
numbering inside or before the tags ("1.", "Example 2:"), chatter between blocks (ignored), a missing closing tag
(the block ends at the next opening tag or blank line), and no tags at all (a numbered or bulleted list is read
instead). A piece that cannot be used is returned with its reason, so that it lands in rejects.jsonl.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

_NUMBERING = re.compile(
    r"^(?:(?:example|instruction|task|question|prompt)\s*#?\d*\s*[:.)\-]\s*|#?\d{1,3}\s*[.):\-]\s+|[-*\u2022]\s+)",
    re.I,
)
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,3}\s*[.)]|example\s*\d+\s*:|[-*\u2022])\s+(?P<text>\S.*)$", re.I)
_BLANK_LINE = re.compile(r"\n\s*\n")
_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'"}


@dataclass(frozen=True)
class Piece:
    text: str
    reason: str = ""  # '' = kept

    @property
    def kept(self) -> bool:
        return not self.reason


def split_blocks(text: str, tag: str = "example") -> tuple[list[str], bool]:
    """Raw pieces between `<tag>` and `</tag>`, in order, and whether the last one had no closing tag."""
    opening = re.compile(rf"<\s*{tag}\s*>", re.I)
    closing = re.compile(rf"<\s*/\s*{tag}\s*>", re.I)
    starts = list(opening.finditer(text))
    if not starts:
        return [m.group("text") for line in text.splitlines() if (m := _LIST_ITEM.match(line))], False
    pieces: list[str] = []
    unclosed = False
    for i, start in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        segment = text[start.end():end]
        close = closing.search(segment)
        if close:
            pieces.append(segment[: close.start()])
            unclosed = False
        else:
            blank = _BLANK_LINE.search(segment)  # what follows a blank line is chatter, not the instruction
            pieces.append(segment[: blank.start()] if blank else segment)
            unclosed = True
    return pieces, unclosed


def clean(piece: str, tag: str = "example") -> str:
    """Strip stray tags, numbering and labels, wrapping quotes and extra spaces; keeps line breaks inside."""
    text = re.sub(rf"<\s*/?\s*{tag}\s*>", " ", piece, flags=re.I).strip()
    for _ in range(3):  # "1. Example 2: ..." has two layers
        stripped = _NUMBERING.sub("", text, count=1).strip()
        if stripped == text:
            break
        text = stripped
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
        inner = text[1:-1]
        if text[0] not in inner and text[-1] not in inner:  # one quoted whole, not a quote inside the instruction
            text = inner.strip()
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def normalize(text: str) -> str:
    """The form used to compare instructions: lower case, single spaces, no closing punctuation."""
    return re.sub(r"\s+", " ", text.lower()).strip().rstrip(".?!:;").strip()


def banned_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    parts = [r"\s+".join(map(re.escape, w.split())) for w in words if w.strip()]
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.I) if parts else None


def judge(
    text: str, *, seeds: set[str], words: tuple[int, int], banned: re.Pattern[str] | None, truncated: bool = False,
) -> list[Piece]:
    """Every piece of one answer with its verdict. `seeds` holds normalized seed instructions of the pool."""
    raw, unclosed = split_blocks(text)
    if not raw:
        return [Piece(text.strip(), "unparseable")]
    last_cut = len(raw) - 1 if truncated and unclosed else -1
    return _verdicts([clean(piece) for piece in raw], seeds, words, banned, last_cut)


def judge_json(
    text: str, *, seeds: set[str], words: tuple[int, int], banned: re.Pattern[str] | None, truncated: bool = False,
) -> list[Piece]:
    """Every instruction of a JSON answer (`{"instructions": [...]}`) with its verdict.

    A reply cut off before its JSON closed keeps the strings that were complete and ends in one `truncated` piece,
    any other reply that does not parse is `unparseable`, an object of another shape is `wrong_shape`; a code fence
    or chatter around the object is ignored (an endpoint without schema support may add them).
    """
    body = _json_object(text)
    if body is None and truncated:
        done, rest = _complete_items(text)  # a paid call cut off by max_tokens still holds its finished strings
        kept = _verdicts([clean(x) for x in done], seeds, words, banned, -1)
        return kept + [Piece(rest.strip(), "truncated")]
    if body is None:
        return [Piece(text.strip(), "unparseable")]
    items = body.get("instructions")
    if not isinstance(items, list):
        return [Piece(text.strip(), "wrong_shape")]
    texts = [clean(x) if isinstance(x, str) else "" for x in items]
    pieces = _verdicts(texts, seeds, words, banned, -1)
    return [p if isinstance(x, str) else Piece(json.dumps(x), "wrong_shape")
            for x, p in zip(items, pieces, strict=True)]


def _complete_items(text: str) -> tuple[list[str], str]:
    """The strings of `{"instructions": [...` that closed before the cut, and the unfinished rest."""
    start = text.find("[")
    if start < 0:
        return [], text
    decoder = json.JSONDecoder()
    items: list[str] = []
    at = start + 1
    while True:
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            return items, text[at:]
        if isinstance(value, str):
            items.append(value)
        at = end


def _json_object(text: str) -> dict[str, object] | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        body = json.loads(text[start : end + 1])
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _verdicts(
    texts: list[str], seeds: set[str], words: tuple[int, int], banned: re.Pattern[str] | None, cut: int,
) -> list[Piece]:
    """The verdict on each cleaned instruction of one answer; `cut` = index of a piece the length limit cut off."""
    out: list[Piece] = []
    seen: set[str] = set()
    low, high = words
    for i, cleaned in enumerate(texts):
        key = normalize(cleaned)
        count = len(cleaned.split())
        if i == cut:
            reason = "truncated"
        elif count < low:
            reason = "too_short"
        elif count > high:
            reason = "too_long"
        elif banned is not None and banned.search(cleaned):
            reason = "mentions_image_or_file"
        elif key in seeds:
            reason = "copies_seed"
        elif key in seen:
            reason = "duplicate_in_call"
        else:
            reason = ""
        seen.add(key)
        out.append(Piece(cleaned, reason))
    return out
