"""Structured teacher output: the JSON schema an answer must follow, as each backend enforces it.

A request carries an OpenAI `response_format` (`{"type": "json_schema", "json_schema": {"name", "schema",
"strict"}}`) as JSON text. The `openai` backend sends it as it is (OpenAI, vLLM, llama.cpp server and Ollama hold
the reply to the schema). The `local` backend constrains its decoding to the same schema with llguidance (the
grammar engine behind vLLM's, SGLang's and llama.cpp's structured output): at every step a logits processor masks
the tokens the schema does not allow, so the reply always parses. herd writes no grammar code of its own; it only
hands llguidance's token mask to transformers' `generate`.
"""

from __future__ import annotations

import json
from typing import Any

from herd.errors import UserError

INSTALL = "pip install llguidance"
_TOKENIZERS: dict[int, Any] = {}  # id(hf tokenizer) -> llguidance tokenizer (building one takes ~0.3 s)


# One plain sentence: a capital letter first, a full stop, question mark or colon last, no brackets, braces or line
# breaks between (a small model otherwise "closes" the JSON inside a string and rambles on). The quote and backslash
# are excluded too, but llguidance still lets escaped quotes through (seen in the demo).
PLAIN_SENTENCE = r'^[A-Z][^\[\]{}<>\\\n"]*[.?!:]$'


def instructions_schema(n: int, min_chars: int, max_chars: int, plain: bool = False) -> dict[str, Any]:
    """A JSON object holding exactly `n` instruction strings (each one `PLAIN_SENTENCE` with `plain`)."""
    item: dict[str, Any] = {"type": "string", "minLength": min_chars}
    if max_chars > 0:
        item["maxLength"] = max_chars
    if plain:
        item["pattern"] = PLAIN_SENTENCE
    return {
        "type": "object",
        "properties": {"instructions": {"type": "array", "items": item, "minItems": n, "maxItems": n}},
        "required": ["instructions"],
        "additionalProperties": False,
    }


def response_format(schema: dict[str, Any], name: str) -> str:
    """The OpenAI `response_format` for a schema, as the compact JSON text a `Request` carries."""
    body = {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def schema_text(response_format_json: str) -> str:
    """The JSON schema inside a request's response_format, as text ('' = none, free text)."""
    if not response_format_json:
        return ""
    body = json.loads(response_format_json)
    schema = (body.get("json_schema") or {}).get("schema") if isinstance(body, dict) else None
    return json.dumps(schema, sort_keys=True) if isinstance(schema, dict) else ""


def available() -> bool:
    from importlib import util

    return util.find_spec("llguidance") is not None


def require(key: str) -> None:
    """A one-line UserError when constrained decoding is asked for and llguidance is not installed."""
    if not available():
        raise UserError(f"{key}: constrained JSON output with the local teacher needs llguidance: {INSTALL}")


def is_refusal(error: str) -> bool:
    """Whether a failed call's error reads like an endpoint refusing `response_format` (not a fault to retry)."""
    head, _, detail = error.partition(":")
    words = ("response_format", "json_schema", "schema", "structured", "format")
    return head in ("http_400", "http_422", "http_501") and any(w in detail.lower() for w in words)


class SchemaMask:
    """A transformers logits processor: each row's scores outside its schema's next allowed tokens go to -inf.

    One llguidance matcher per row follows the tokens that row has generated; a row whose matcher finished (or hit
    an error) may only end, so `generate` stops it with EOS.
    """

    def __init__(self, tokenizer: Any, schema: str, rows: int, vocab: int, eos: int) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.torch

        key = id(tokenizer)
        if key not in _TOKENIZERS:
            _TOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab, eos_token=eos)
        lltok = _TOKENIZERS[key]
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
        self.matchers = [llguidance.LLMatcher(lltok, grammar, log_level=0) for _ in range(rows)]
        self.bitmask = llguidance.torch.allocate_token_bitmask(rows, lltok.vocab_size)
        self.fill = llguidance.torch.fill_next_token_bitmask
        self.eos = eos
        self.started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch

        for i, matcher in enumerate(self.matchers):
            done = matcher.is_stopped() or matcher.is_error()
            if self.started and not done:
                matcher.consume_token(int(input_ids[i, -1]))
                done = matcher.is_stopped() or matcher.is_error()
            if done:
                bit = 1 << (self.eos % 32)
                self.bitmask[i].zero_()
                self.bitmask[i, self.eos // 32] = bit - (1 << 32) if bit >= 1 << 31 else bit  # int32 words
            else:
                self.fill(matcher, self.bitmask, i)
        self.started = True
        # Bit j of 32-bit word w allows token 32*w + j: little-endian bytes unpacked little-endian give that order.
        bits = np.unpackbits(self.bitmask.numpy().view(np.uint8), axis=1, bitorder="little")
        width = scores.shape[1]
        banned = np.ones((len(self.matchers), width), dtype=bool)
        shared = min(width, bits.shape[1])
        banned[:, :shared] = bits[:, :shared] == 0
        return scores.masked_fill_(torch.from_numpy(banned).to(scores.device), float("-inf"))
