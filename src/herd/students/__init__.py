"""Students: the ONE package that knows an encoder-decoder from a decoder-only model.

`families` describes each family as data (a frozen `FamilySpec`: classes, prompt wrapping, packing, label layout,
padding side, the context-budget rule) that every other module asks. Around it: `loading` (a model folder, Hub id,
GGUF file or 'embedded' becomes a `Student`), `prompting` (how an instruction becomes a prompt: bare for seq2seq,
the wrapper or the model's own chat template for causal), `padding` (the one pad-token rule), `training` (a pair
becomes `input_ids`/`labels`; the packing check and attention kernel), `saving` (the wrapper as the tokenizer's chat
template and in `herd.json`; what a model card says per family) and `pipe` (`herd.pipeline`). Reads model folders,
Hub ids and GGUF files; writes nothing itself.

This module only gathers their names; each submodule imports its siblings, never this package, so there is no cycle.
"""

from __future__ import annotations

from herd.students.families import (
    CAUSAL,
    FAMILIES,
    SEQ2SEQ,
    Family,
    FamilySpec,
    context_length,
    family_of_config,
    family_spec,
    spec_of_model,
)
from herd.students.loading import (
    META_FILE,
    Student,
    family_of,
    forget_quantizer,
    load_config_of,
    load_student,
    pick_device,
    read_meta,
    source_args,
    torch_dtype,
)
from herd.students.padding import ensure_pad_token, pad_id, pad_token, set_pad_token
from herd.students.pipe import StudentPipeline, generate_answers
from herd.students.prompting import (
    DEFAULT_WRAPPER,
    PLACEHOLDER,
    check_wrapper,
    default_wrapper,
    fill,
    format_prompt,
    prompt_for,
    uses_chat_template,
)
from herd.students.saving import card_facts, chat_template_for, portable_tokenizer_config, save_student
from herd.students.training import IGNORE, attention_kernel, encode_pairs, packing_is_exact, set_special_ids

__all__ = [
    "CAUSAL", "DEFAULT_WRAPPER", "FAMILIES", "IGNORE", "META_FILE", "PLACEHOLDER", "SEQ2SEQ", "Family", "FamilySpec",
    "Student", "StudentPipeline", "attention_kernel", "card_facts", "chat_template_for", "check_wrapper",
    "context_length", "default_wrapper", "encode_pairs", "ensure_pad_token", "family_of", "family_of_config",
    "family_spec", "fill", "forget_quantizer", "format_prompt", "generate_answers", "load_config_of", "load_student",
    "packing_is_exact", "pad_id", "pad_token", "pick_device", "portable_tokenizer_config", "prompt_for", "read_meta",
    "save_student", "set_pad_token", "set_special_ids", "source_args", "spec_of_model", "torch_dtype",
    "uses_chat_template",
]
