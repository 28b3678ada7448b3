"""The bodies the mock teacher (herd.teacher.mockserver) answers with: a chat.completion object from herd's fake
teacher, with OpenAI-shaped log-probs when asked. Pure functions of the request body; standard library only."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from herd.teacher.base import Request
from herd.teacher.fake import answer, asks_for_grade, reply_logprobs


def completion(body: dict[str, Any], logprobs: bool = True) -> dict[str, Any]:
    """A chat.completion object answering `body` with herd's fake teacher (max_tokens counted in words)."""
    messages = tuple((str(m.get("role", "user")), str(m.get("content", ""))) for m in body["messages"])
    form = body.get("response_format")
    request = Request(messages=messages, temperature=float(body.get("temperature", 1.0)),
                      response_format=json.dumps(form) if isinstance(form, dict) else "")
    words = answer(request).split()
    limit = int(body.get("max_tokens") or 1 << 30)
    finish = "length" if len(words) > limit else "stop"
    text = " ".join(words[:limit])
    prompt_tokens = sum(len(c.split()) for _, c in messages)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    if logprobs and body.get("logprobs"):
        if asks_for_grade(request):  # a judge: the four grades are the alternatives at the letter
            choice["logprobs"] = reply_logprobs(request, text, int(body.get("top_logprobs") or 1))
        else:  # a response: the top-K of every word, as herd's token-level distillation keeps them
            choice["logprobs"] = {"content": mock_logprobs(words[:limit], int(body.get("top_logprobs") or 0))}
    return {
        "id": f"chatcmpl-{digest}", "object": "chat.completion", "created": int(time.time()),
        "model": body["model"],
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": min(len(words), limit),
                  "total_tokens": prompt_tokens + min(len(words), limit)},
    }


def mock_logprobs(words: list[str], k: int) -> list[dict[str, Any]]:
    """OpenAI-shaped `logprobs.content`: one entry per word (the mock's tokens), the word itself most likely and
    k - 1 other words of the answer after it, log-probs drawn from a hash of the word (deterministic)."""
    out = []
    for i, word in enumerate(words):
        others = [w for w in dict.fromkeys(words) if w != word][: max(0, k - 1)]
        top = [word, *others]
        seed = hashlib.sha256(word.encode()).digest()
        lps = sorted((-0.1 - (seed[j] / 64.0) * (j + 1) for j in range(len(top))), reverse=True)
        candidates = [{"token": t, "logprob": round(lp, 4), "bytes": list(t.encode())}
                      for t, lp in zip(top, lps, strict=True)]
        out.append({"token": word, "logprob": candidates[0]["logprob"], "bytes": list(word.encode()),
                    "top_logprobs": candidates if k else [], "position": i})
    return out
