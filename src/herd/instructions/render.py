"""Prompt templates and the call plan of `herd instructions`.

The plan is a pure function of the pool, the topic list, `run.seed` and the call index: call k always shows the same
seeds (and topics), on every machine and after any restart, so a resumed or sharded run asks exactly the calls an
uninterrupted one would, and the journal answers the finished ones.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from herd.errors import UserError
from herd.instructions.seeds import Seed

Mode = Literal["example", "topic"]
_PLACEHOLDER = re.compile(r"\{(examples|n|topics)\}")
NEEDS: dict[str, tuple[str, ...]] = {"example": ("examples", "n"), "topic": ("examples", "n", "topics")}


@dataclass(frozen=True)
class Call:
    index: int
    mode: Mode
    seeds: tuple[Seed, ...]
    topics: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        return f"call-{self.index:07d}"


def fill(template: str, **values: str) -> str:
    """Put values into `{examples}`, `{n}` and `{topics}` in one pass (other braces stay as they are)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def check_template(template: str, name: str, mode: str) -> None:
    missing = [p for p in NEEDS[mode] if "{" + p + "}" not in template]
    if missing:
        raise UserError(f"prompt {name}: missing placeholder {{{missing[0]}}}")


def check_input_format(input_format: str) -> None:
    try:
        input_format.format(instruction="", stem="", input="")
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"instructions.input_format = {input_format!r}: unknown placeholder ({exc})") from None


def render(template: str, call: Call, n: int, input_format: str, as_json: bool = False) -> str:
    """The prompt of one call: its seed examples in `<example>` tags (or as one JSON object, `as_json`), N, and the
    topics joined by ', '."""
    shown = [seed.shown(input_format) for seed in call.seeds]
    if as_json:
        examples = json.dumps({"instructions": shown}, ensure_ascii=False)
    else:
        examples = "\n".join(f"<example>{text}</example>" for text in shown)
    return fill(template, examples=examples, n=str(n), topics=", ".join(call.topics))


def plan_calls(
    pool: Sequence[Seed], topics: Sequence[str], calls: int, modes: Sequence[Mode], seed: int,
    per_call: tuple[int, int] = (3, 3),
) -> list[Call]:
    """Calls 0..calls-1; with two modes they alternate (even: example-guided, odd: topic-guided).

    `per_call` is (examples, topics) per call. When seeds carry a group (a P3/FLAN task), every call's examples come
    from one group: the paper found that mixing tasks made the teacher copy the simplest example.
    """
    groups: dict[str, list[Seed]] = defaultdict(list)
    for s in pool:
        groups[s.group].append(s)
    names = sorted(groups)
    k_examples, k_topics = per_call
    plan = []
    for index in range(calls):
        mode = modes[index % len(modes)]
        rng = random.Random(f"herd-instructions:{seed}:{index}")  # str seeds hash the same in every process
        members: Sequence[Seed] = groups[rng.choice(names)] if len(names) > 1 else pool
        chosen = tuple(rng.sample(members, min(k_examples, len(members))))  # O(k): sample indexes, copies nothing
        picked = tuple(rng.sample(topics, min(k_topics, len(topics)))) if mode == "topic" else ()
        plan.append(Call(index, mode, chosen, picked))
    return plan
