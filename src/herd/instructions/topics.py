"""Topics for topic-guided generation (LaMini §1): herd's own list, a user's list, and topics the teacher proposes.

herd's list (src/herd/assets/topics.txt, about 2.4K names written for herd) follows the spirit of the paper's
filtered Wikipedia categories: broad, common subjects of one to three words, never a specific title, because specific
titles made the teacher invent facts. A user's file has one topic per line ('#' starts a comment).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.instructions.parse import clean, split_blocks
from herd.instructions.render import fill
from herd.teacher import Engine, Request, Result

PER_CALL = 50  # topics asked for per proposal call: short answers, few calls
SHOWN = 10  # known topics shown as examples in a proposal call
_TOPIC_CHARS = re.compile(r"^[\w][\w '&\-]*$")


def own_topics_path() -> Path:
    return Path(str(resources.files("herd.assets").joinpath("topics.txt")))


def load_topics(spec: str) -> tuple[list[str], Path]:
    """The topic list (case-insensitive duplicates dropped); a topic with a quote or comma would break the prompt."""
    path = Path(spec) if spec else own_topics_path()
    if not path.is_file():
        raise UserError(f"instructions.topics: {path}: file not found")
    topics: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        topic = line.strip()
        if not topic or topic.startswith("#"):
            continue
        if '"' in topic or "," in topic:
            raise UserError(f"{path}:{number}: a topic may not contain a double quote or a comma")
        if topic.lower() not in seen:
            seen.add(topic.lower())
            topics.append(topic)
    if not topics:
        raise UserError(f"{path}: the topic list is empty")
    return topics, path


def propose(
    engine: Engine, template: str, known: Sequence[str], n: int, params: dict[str, Any], seed: int
) -> tuple[list[str], dict[str, int]]:
    """Ask the teacher for `n` new topics (journaled like every call); returns them and rejects counted by reason."""
    requests = []
    for i in range((n + PER_CALL - 1) // PER_CALL):
        rng = random.Random(f"herd-topics:{seed}:{i}")
        shown = rng.sample(list(known), min(SHOWN, len(known)))
        prompt = fill(template, examples="\n".join(f"<topic>{t}</topic>" for t in shown),
                      n=str(min(PER_CALL, n - i * PER_CALL)))
        requests.append(Request.chat(prompt, None, sample_index=i, tag=str(i), **params))
    results: dict[str, Result] = {}
    engine.map(requests, lambda r: results.__setitem__(r.request.tag, r), label="topics")
    found: list[str] = []
    rejected: Counter[str] = Counter()
    seen = {t.lower() for t in known}
    for request in requests:  # in call order, so the list is the same however the answers arrived
        result = results[request.tag]
        if not result.ok:
            rejected["teacher_failed"] += 1
            continue
        for raw in split_blocks(result.text, "topic")[0]:
            topic = clean(raw, "topic").rstrip(".").strip()
            reason = topic_reason(topic, seen)
            if reason:
                rejected[reason] += 1
                continue
            seen.add(topic.lower())
            found.append(topic)
    return found[:n], dict(rejected)


def topic_reason(topic: str, seen: set[str]) -> str:
    """Why a proposed topic cannot be used ('' when it can)."""
    if not topic:
        return "empty"
    if len(topic.split()) > 3:
        return "too_long"
    if not _TOPIC_CHARS.match(topic):
        return "bad_characters"
    if topic.lower() in seen:
        return "duplicate"
    return ""
