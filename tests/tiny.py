"""Tiny models and tokenizers built offline from configs, for every student family herd trains.

Each builder saves an ordinary Hugging Face checkpoint (weights + tokenizer) into a folder, in well under a second.
The tokenizer is a word-level one made here from a small vocabulary, so no hub is needed.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the a an of to and in is are was be it that this for on with as by at from or not what how why who "
    "which write explain list describe give name tell make find suggest compare summarize classify "
    "create translate answer question response instruction task below above short long good bad first "
    "second three five ten number word sentence story poem email letter recipe plan idea reason example "
    "color animal food city country water sun moon dog cat tree book music game sport money time day "
    "year people school work home health science history math yes no true false red blue green one two "
    "four six seven eight nine hello world please thanks sure here there about into over after before "
    "can could would should will do does did have has had i you we they he she my your our their me us "
    "them some any all many more most other new old big small best great"
).split()
PUNCT = list(".,:;!?#'\"()-_/*+=<>[]{}0123456789")
SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


def tiny_tokenizer(folder: str | Path | None = None, with_pad: bool = True, chat: bool = False):  # noqa: ANN201
    """A word-level fast tokenizer: ids 0-3 are <pad>, </s>, <unk>, <s>; unknown words map to <unk>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS + ["assistant", "user", "system", "Below", "###", "Instruction", "Response", "Write",
                        "appropriately", "completes", "request", "describes", "that"] + WORDS + PUNCT
    # dict.fromkeys drops repeated words, so the largest id stays below len(vocab) (the model's vocab_size).
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    from tokenizers import decoders

    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    kwargs = {"eos_token": "</s>", "unk_token": "<unk>", "bos_token": "<s>"}
    if with_pad:
        kwargs["pad_token"] = "<pad>"
    tok = PreTrainedTokenizerFast(tokenizer_object=core, **kwargs)
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    if folder is not None:
        tok.save_pretrained(str(folder))
    return tok


def _save(model, tok, folder: str | Path) -> Path:  # noqa: ANN001
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def tiny_gpt2(folder: str | Path, with_pad: bool = False, chat: bool = False) -> Path:
    """GPT-2 family, like the real one without a pad token by default (herd must add one)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = tiny_tokenizer(with_pad=with_pad, chat=chat)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=3, eos_token_id=1, pad_token_id=0 if with_pad else None)
    return _save(GPT2LMHeadModel(cfg), tok, folder)


def tiny_gptneo(folder: str | Path) -> Path:
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(0)
    tok = tiny_tokenizer(with_pad=False)
    cfg = GPTNeoConfig(
        vocab_size=len(tok), max_position_embeddings=256, hidden_size=32, num_layers=2, num_heads=2,
        attention_types=[[["global", "local"], 1]], window_size=32, bos_token_id=3, eos_token_id=1,
    )
    return _save(GPTNeoForCausalLM(cfg), tok, folder)


def tiny_llama(folder: str | Path, chat: bool = True) -> Path:
    """LLaMA-style decoder with a chat template (also usable as a tiny local teacher)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = tiny_tokenizer(with_pad=True, chat=chat)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=3, eos_token_id=1, pad_token_id=0)
    return _save(LlamaForCausalLM(cfg), tok, folder)


def tiny_t5(folder: str | Path) -> Path:
    """T5 / Flan-T5 family (encoder-decoder)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tok = tiny_tokenizer(with_pad=True)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return _save(T5ForConditionalGeneration(cfg), tok, folder)
