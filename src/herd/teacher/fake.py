"""A deterministic teacher for tests: the same request always gets the same answer, with no model and no network.

Asked for `<example>` blocks (an instruction-generation prompt), it writes that many numbered instructions derived
from a hash of the prompt (as a JSON object when the request carries the instructions schema); asked for a
`Grade:` (the judge's rubric) it grades A-D, asked for a `Verdict:` (the hallucination probe) it says REJECTED or
HALLUCINATED, both from a hash; asked anything else, it answers with a short sentence that quotes the question. The
model name `fake-unparseable` answers judges with no grade at all, for testing re-asks. A request with `score` (the
judge's probability grading) gets log-probs for its candidates from the same hash, the best one on the grade the
text judge would give. Token counts are word counts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Sequence

from herd.teacher.base import Emit, Request, Result
from herd.teacher.structured import schema_text

_VERBS = ("Write", "Explain", "List", "Describe", "Summarize", "Compare", "Suggest", "Classify", "Create", "Give")
_TOPICS = (
    "photosynthesis", "the French revolution", "prime numbers", "a healthy breakfast", "remote work", "volcanoes",
    "the stock market", "machine learning", "a job interview", "recycling", "the solar system", "jazz music",
)
_ASK_N = re.compile(r"(\d+)\s+(?:new\s+|more\s+|diverse\s+)?(?:examples|instructions|topics)", re.I)


class FakeTeacher:
    def __init__(self, model: str = "fake", latency_s: float = 0.0) -> None:
        self.model_id = f"fake:{model}"
        self.latency_s = latency_s
        self.calls = 0
        self.can_score = True

    def run(self, requests: Sequence[Request], emit: Emit) -> None:
        for req in requests:
            self.calls += 1
            if self.latency_s:
                time.sleep(self.latency_s)
            if req.score:
                scores = candidate_logprobs(req)
                emit(Result(request=req, ok=True, text=max(scores, key=lambda c: scores[c]), finish_reason="score",
                            prompt_tokens=sum(len(c.split()) for _, c in req.messages), raw={"scores": scores}))
                continue
            text = answer(req, self.model_id)
            words = len(text.split())
            emit(Result(
                request=req, ok=True, text=text, finish_reason="stop",
                prompt_tokens=sum(len(c.split()) for _, c in req.messages), completion_tokens=words,
                latency_s=self.latency_s,
            ))

    def close(self) -> None:
        return None


def _digest(req: Request) -> bytes:
    return hashlib.sha256(f"{req.messages}|{req.sample_index}|{req.temperature}".encode()).digest()


def candidate_logprobs(req: Request) -> dict[str, float]:
    """Log-probs for the request's candidates (sum of their probabilities below 1): a hash picks the favourite."""
    digest = _digest(req)
    favourite = digest[0] % len(req.score)
    weights = [(1 + digest[1 + i] % 7) / 50 for i in range(len(req.score))]
    weights[favourite] = 0.5
    return {c: math.log(w) for c, w in zip(req.score, weights, strict=True)}


def user_text(req: Request) -> str:
    """The last user message (a judge's scoring request ends with the start of the assistant's reply)."""
    return next((content for role, content in reversed(req.messages) if role == "user"), req.messages[-1][1])


def asks_for_grade(req: Request) -> bool:
    """Whether the request is the judge's rubric (its prompt ends asking for `Grade: <letter>`)."""
    return "\nGrade: <" in user_text(req)


def answer(req: Request, model_id: str = "fake:fake") -> str:
    prompt = user_text(req)
    digest = _digest(req)
    grade = asks_for_grade(req)
    if grade or "\nVerdict: <" in prompt:
        if model_id.endswith("unparseable"):
            return "I would rather not say."
        if grade:
            return f"Grade: {'ABCD'[digest[0] % 4]}\nReason: graded by the fake judge."
        return f"Verdict: {('REJECTED', 'HALLUCINATED')[digest[0] % 2]}\nReason: marked by the fake judge."
    schema = json.loads(schema_text(req.response_format) or "{}")
    items = schema.get("properties", {}).get("instructions", {})
    if "<example>" in prompt or items:
        match = _ASK_N.search(prompt)
        n = int(items.get("maxItems") or (match.group(1) if match else 5))
        lines = []
        for i in range(n):
            verb = _VERBS[(digest[i % 32] + i) % len(_VERBS)]
            topic = _TOPICS[(digest[(i * 7) % 32] + i) % len(_TOPICS)]
            number = digest[i % 32] + i
            lines.append(f"{verb} a short note about {topic} for reader number {number}.")
        if items:  # held to the schema, as an endpoint with structured output is
            return json.dumps({"instructions": lines})
        return "\n".join(f"<example>{line}</example>" for line in lines)
    words = prompt.split()
    head = " ".join(words[:12])
    return f"Here is a concise answer about: {head}. It covers the main point in {3 + digest[0] % 5} sentences."


def reply_logprobs(req: Request, text: str, top_n: int) -> dict[str, object]:
    """An OpenAI `logprobs` object for a reply (for the mock server): one entry per word; at a lone grade letter the
    alternatives are the four grades (the chosen one most likely), elsewhere the word alone."""
    digest = _digest(req)
    content: list[dict[str, object]] = []
    for token in re.findall(r"\s*\S+", text):
        if token.strip() in ("A", "B", "C", "D"):
            others = [g for g in "ABCD" if g != token.strip()]
            alts = [(token, math.log(0.6))] + [(" " + g, math.log((1 + digest[i + 2] % 5) / 40))
                                               for i, g in enumerate(others)]
        else:
            alts = [(token, -0.05)]
        top = [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alts[:max(1, top_n)]]
        content.append({"token": token, "logprob": alts[0][1], "bytes": list(token.encode()), "top_logprobs": top})
    return {"content": content}
