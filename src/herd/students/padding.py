"""The one pad-token rule, for training and generation alike: a tokenizer's own pad token, else its EOS, else its UNK.

No token is ever added. A new '[PAD]' would change the vocabulary: the embeddings would have to grow, and a student
cut from a teacher's layers or distilled from its token distributions would no longer share the teacher's
vocabulary. Borrowing EOS is safe for the loss: herd's collators pad labels with -100 by position, not by token id
(herd.train.collate), so a response's real EOS is still learnt when EOS also pads, and attention masks come from
lengths too.

Generation asks `pad_id` and leaves the tokenizer as it is (a server's or a teacher's tokenizer is shared; nothing
changes behind its owner's back). Training writes the choice into the student it builds (`ensure_pad_token`), so the
saved checkpoint pads the same way under `pipeline()`. Reads tokenizers; writes nothing.
"""

from __future__ import annotations

from typing import Any

_RULE = ("pad", "eos", "unk")  # its own pad token, else these, in this order (as `X_token` and `X_token_id`)


def pad_token(tokenizer: Any) -> str | None:
    """The token that pads for this tokenizer (its own pad token, else EOS, else UNK); None if it has none."""
    for name in _RULE:
        token = getattr(tokenizer, f"{name}_token", None)
        if token is not None:
            return str(token)
    return None


def pad_id(tokenizer: Any) -> int:
    """The id that pads for this tokenizer (0 when it has no pad, EOS or UNK token); the tokenizer is not changed."""
    for name in _RULE:
        tid = getattr(tokenizer, f"{name}_token_id", None)
        if tid is not None:
            return int(tid)
    return 0


def set_pad_token(tokenizer: Any) -> bool:
    """Give a tokenizer that herd is building a student with (it owns it) the pad token of the rule; True if it had
    none and got one. The vocabulary stays as it is."""
    if tokenizer.pad_token is not None:
        return False
    token = pad_token(tokenizer)
    if token is None:
        return False
    tokenizer.pad_token = token
    return True


def ensure_pad_token(model: Any, tokenizer: Any) -> bool:
    """`set_pad_token` on a student's tokenizer, and the same pad id in its model config and generation config, so
    that the checkpoint saved from them pads with it; True if the tokenizer had no pad token."""
    if not set_pad_token(tokenizer):
        return False
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return True
