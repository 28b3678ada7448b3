"""The two student families as data: one frozen `FamilySpec` per family, which every module asks instead of testing
the family's name (or a model's `config.is_encoder_decoder`) itself.

What differs between an encoder-decoder (T5, Flan-T5) and a decoder-only model (GPT-2, LLaMA, SmolLM2) is written
here once: the classes that load and train it, how its prompts are built, whether its examples pack, how its labels
line up with its inputs, where a generation batch is padded, and how its prompt and answer share the context
(`over_context`: the one context-budget rule of generate, chat and serve). herd.train's collators and batch layouts
ask `separate_decoder` and `packs`, its loss `shifts_labels`. Also which family a config is, and how long a context
a model declares. Reads model configs; writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from herd.errors import UserError

Family = Literal["seq2seq", "causal"]
_HUGE = 1_000_000  # tokenizers with no known limit report ~1e30
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


@dataclass(frozen=True)
class FamilySpec:
    """Everything herd does differently for one family (see SEQ2SEQ and CAUSAL for the values)."""

    name: Family  # what herd.json, manifests and tables say
    label: str  # what people read: "encoder-decoder" | "decoder-only"
    auto_model: str  # the transformers Auto class that loads it
    trainer: str  # the transformers Trainer class that trains it ...
    training_arguments: str  # ... and that Trainer's arguments class
    peft_task: str  # peft's task type for LoRA
    pipeline_tag: str  # the Hub's pipeline tag on its model card
    wraps_prompts: bool  # the instruction goes inside a wrapper (or the model's chat template), else it is bare
    packs: bool  # examples can be packed into one row (a decoder-only example is one sequence)
    shifts_labels: bool  # the logits at position t predict the label at t+1 (labels align with input_ids)
    separate_decoder: bool  # the answer is the decoder's own sequence: labels pad on their own, an example costs
    # input + label tokens, decoder inputs are made from the labels (or a start token), the prompt is not predicted
    answer_shares_context: bool  # prompt + answer must fit the context together (else the prompt alone)
    padding_side: Literal["left", "right"]  # where a generation batch pads (a decoder continues its last token)
    decoder_starts_from_pad: bool  # a config built from scratch starts decoding from the pad token (T5's way)

    def model_class(self) -> Any:
        import transformers

        return getattr(transformers, self.auto_model)

    def trainer_classes(self) -> tuple[Any, Any]:
        """(Trainer class, TrainingArguments class)."""
        import transformers

        return getattr(transformers, self.trainer), getattr(transformers, self.training_arguments)

    def answer_room(self, prompt_tokens: int, context: int) -> int | None:
        """Tokens the context leaves for an answer after this prompt; None when the answer has its own (the
        encoder-decoder's decoder), so the context does not bound it."""
        return context - prompt_tokens if self.answer_shares_context else None

    def over_context(self, prompt_tokens: int, max_new_tokens: int, context: int | None) -> str:
        """The context-budget rule: '' when a prompt and an answer of up to max_new_tokens fit the context (None: the
        model declares none), else why not, as 'prompt N tokens [+ max_new_tokens M] > context C'."""
        if context is None:
            return ""
        room = self.answer_room(prompt_tokens, context)
        if prompt_tokens <= context and (room is None or max_new_tokens <= room):
            return ""
        extra = f" + max_new_tokens {max_new_tokens}" if self.answer_shares_context else ""
        return f"prompt {prompt_tokens} tokens{extra} > context {context}"

    def answer_start(self, prompt_width: int) -> int:
        """Where the new tokens begin in a row that `model.generate` returns: after the (padded) prompt for a decoder,
        after the decoder start token for an encoder-decoder."""
        return 1 if self.separate_decoder else prompt_width

    def adds_special_tokens(self, prompt: str, bos: str | None) -> bool:
        """Whether to add special tokens when encoding a formatted prompt: an encoder (T5) needs its EOS; a decoder
        prompt that already starts with BOS (a chat template wrote it) would get it twice."""
        return not self.wraps_prompts or not (bos and prompt.startswith(bos))


SEQ2SEQ = FamilySpec(
    name="seq2seq", label="encoder-decoder", auto_model="AutoModelForSeq2SeqLM", trainer="Seq2SeqTrainer",
    training_arguments="Seq2SeqTrainingArguments", peft_task="SEQ_2_SEQ_LM", pipeline_tag="text2text-generation",
    wraps_prompts=False, packs=False, shifts_labels=False, separate_decoder=True, answer_shares_context=False,
    padding_side="right", decoder_starts_from_pad=True,
)
CAUSAL = FamilySpec(
    name="causal", label="decoder-only", auto_model="AutoModelForCausalLM", trainer="Trainer",
    training_arguments="TrainingArguments", peft_task="CAUSAL_LM", pipeline_tag="text-generation",
    wraps_prompts=True, packs=True, shifts_labels=True, separate_decoder=False, answer_shares_context=True,
    padding_side="left", decoder_starts_from_pad=False,
)
FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (SEQ2SEQ, CAUSAL)}


def family_spec(family: str) -> FamilySpec:
    """The description of a family by its name ('seq2seq' or 'causal')."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown student family {family!r} (expected one of {sorted(FAMILIES)})") from None


def spec_of_model(model: Any) -> FamilySpec:
    """The description of an already loaded language model (its config says `is_encoder_decoder`)."""
    return SEQ2SEQ if getattr(model.config, "is_encoder_decoder", False) else CAUSAL


def family_of_config(config: Any, name: str = "model") -> Family:
    """'seq2seq' or 'causal' for a model config; UserError (one line) when it is neither kind of language model."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", "?")
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    if kind in (MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES if seq2seq else MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return "seq2seq" if seq2seq else "causal"
    raise UserError(f"{name}: model_type {kind!r} is neither a seq2seq nor a causal language model")


def context_length(model: Any, tokenizer: Any = None) -> int | None:
    """The longest input a model takes, from its config, else its tokenizer; None when neither knows (T5's relative
    positions declare no length)."""
    for attr in _CONTEXT_KEYS:
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and 0 < value < _HUGE:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _HUGE else None
