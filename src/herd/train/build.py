"""The model each student starts from: a pretrained base, a smaller decoder cut from a teacher's layers, or random
weights from a config (tiny demo students). Reads model folders, Hub ids and GGUF files; writes nothing.

`init_from_teacher_layers("embedded", 4)` keeps 4 evenly spaced transformer blocks of the teacher (first and last
included) with its embeddings, final norm and head: a decoder that starts far from random (the DistilBERT idea).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.config import StudentConfig
from herd.errors import UserError
from herd.students import (
    CAUSAL,
    Student,
    family_of_config,
    family_spec,
    load_config_of,
    load_student,
    set_pad_token,
    set_special_ids,
    source_args,
)

_INIT = re.compile(r"^(pretrained|scratch|teacher-layers:(\d+))$")


def parse_init(init: str, where: str) -> tuple[str, int]:
    """('pretrained' | 'scratch' | 'teacher-layers', N)."""
    found = _INIT.match(init.strip())
    if not found:
        raise UserError(f"{where}.init = {init!r}: expected pretrained, scratch or teacher-layers:N")
    if found.group(2) is not None:
        layers = int(found.group(2))
        if layers < 1:
            raise UserError(f"{where}.init = {init!r}: N must be at least 1")
        return "teacher-layers", layers
    return found.group(1), 0


def student_config(sc: StudentConfig, where: str) -> Any:
    """The model config the student will have (config only, no weights): this is how bad bases fail early."""
    if not sc.base:
        raise UserError(f"{where}.base: no base model given")
    kind, layers = parse_init(sc.init, where)
    if kind == "scratch" and not Path(sc.base).exists() and "/" not in sc.base and sc.base != "embedded":
        from transformers import AutoConfig

        try:
            config = AutoConfig.for_model(sc.base)
        except ValueError:
            raise UserError(f"{where}.base = {sc.base!r}: not a model type (t5, gpt2, llama, ...)") from None
    else:
        config = load_config_of(sc.base)
    family_of_config(config, sc.base)
    if kind == "teacher-layers":
        total = int(config.num_hidden_layers)
        if layers > total:
            raise UserError(f"{where}.init = {sc.init!r}: {sc.base} has only {total} layers")
    for key, value in sc.config_overrides.items():
        if not hasattr(config, key):
            raise UserError(f"{where}.config_overrides: {key!r} is not a {config.model_type} config key")
        setattr(config, key, value)
    return config


def default_name(sc: StudentConfig) -> str:
    if sc.name:
        return sc.name
    stem = Path(sc.base.rstrip("/")).name.removesuffix(".gguf").lower()
    kind, layers = parse_init(sc.init, "student")
    suffix = {"teacher-layers": f"-l{layers}", "scratch": "-scratch"}.get(kind, "")
    return f"lamini-{stem}{suffix}"


def build_student(sc: StudentConfig, config: Any, model_kwargs: dict[str, Any], where: str) -> Student:
    """Load or make the student's model and tokenizer (on CPU, fp32 unless model_kwargs say otherwise)."""
    kind, layers = parse_init(sc.init, where)
    if kind == "teacher-layers":
        student = init_from_teacher_layers(sc.base, layers)
    elif kind == "scratch":
        student = _scratch(sc, config, model_kwargs, where)
    else:
        extra = {"config": config} if sc.config_overrides else {}
        student = load_student(sc.base, device="cpu", dtype="float32", **extra, **model_kwargs)
    if sc.tokenizer and kind != "scratch":
        student.tokenizer = load_tokenizer(sc.tokenizer)
    student.meta = {"base_model": sc.base, "init": sc.init}
    return student


def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    src, extra = source_args(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(src, **extra)
    except (OSError, ValueError) as exc:
        raise UserError(f"{name_or_path}: cannot load a tokenizer ({str(exc).splitlines()[0][:160]})") from None


def _scratch(sc: StudentConfig, config: Any, model_kwargs: dict[str, Any], where: str) -> Student:
    """Random weights from the config; the tokenizer decides vocabulary size and special ids."""
    if not sc.tokenizer and not Path(sc.base).exists() and "/" not in sc.base:
        raise UserError(f"{where}.tokenizer: init = 'scratch' from a model type needs a tokenizer")
    tokenizer = load_tokenizer(sc.tokenizer or sc.base)
    family = family_of_config(config, sc.base)
    set_pad_token(tokenizer)  # the one pad rule (students.padding): EOS pads where the tokenizer has no pad token
    set_special_ids(config, tokenizer, family)
    kwargs = {k: v for k, v in model_kwargs.items() if k != "device_map"}
    model = family_spec(family).model_class().from_config(config, **kwargs)
    return Student(model, tokenizer, family, None, sc.base)


def spread(total: int, n: int) -> list[int]:
    """n layer indices out of total, evenly spaced, first and last included."""
    if n >= total:
        return list(range(total))
    if n == 1:
        return [0]
    return sorted({round(i * (total - 1) / (n - 1)) for i in range(n)})


def layer_stack(model: Any) -> tuple[str, Any]:
    """(state-dict prefix, ModuleList) of the transformer blocks: the one ModuleList with num_hidden_layers items."""
    import torch

    total = int(model.config.num_hidden_layers)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == total and name:
            return name, module
    raise UserError(f"{type(model).__name__}: cannot find its {total} transformer blocks")


def init_from_teacher_layers(teacher: str, layers: int | Sequence[int]) -> Student:
    """A smaller decoder made of some of a teacher's blocks (int: that many, evenly spaced; list: those indices).

    Works for GGUF teachers ('embedded', *.gguf): the weights arrive dequantized and the copy carries no quantizer,
    so `save_student` writes an ordinary fp32 checkpoint.
    """
    source = load_student(teacher, device="cpu", dtype="float32")
    if source.spec.separate_decoder:  # its blocks must be one decoder stack with a head
        raise UserError(f"{teacher}: teacher-layers needs a decoder-only teacher")
    prefix, stack = layer_stack(source.model)
    keep = spread(len(stack), layers) if isinstance(layers, int) else sorted(set(layers))
    if not keep or keep[0] < 0 or keep[-1] >= len(stack):
        raise UserError(f"{teacher}: layer indices {list(keep)} outside 0..{len(stack) - 1}")
    config = copy.deepcopy(source.model.config)
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None):  # per-layer attention kinds (sliding / full) follow their layers
        config.layer_types = [config.layer_types[i] for i in keep]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = CAUSAL.model_class().from_config(config)
    renumber = {old: new for new, old in enumerate(keep)}
    state = {}
    for key, value in source.model.state_dict().items():
        if key.startswith(prefix + "."):
            index, rest = key[len(prefix) + 1:].split(".", 1)
            if int(index) not in renumber:
                continue
            key = f"{prefix}.{renumber[int(index)]}.{rest}"
        state[key] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if [m for m in missing if m not in tied] or unexpected:
        raise UserError(f"{teacher}: layer copy left {len(missing)} missing and {len(unexpected)} unexpected weights")
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    return Student(model, source.tokenizer, CAUSAL.name, None, teacher, {"init": f"teacher-layers:{keep}"})
