"""The record of one student's run: which student, trained on what, how. The three things written about a run are
derived from it, so they cannot disagree: the train plan (`<name>.partial/herd-train.json`, which a resumed run
must match), `herd.json` beside the weights, and the model card.

Reads nothing; writes nothing (herd.train.loop writes the plan, herd.train.finish the checkpoint and its card).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from herd import __version__
from herd.config import StudentConfig
from herd.students import Family
from herd.train.recipe import Recipe

DATA_FACTS = ("source", "sha256", "rows")  # what herd.json and the plan keep of the data manifest


@dataclass(frozen=True)
class Encoding:
    """How a student's pairs become token ids: for training, its eval split and the held-out loss alike."""

    max_length: int
    mask_prompt: bool
    response_prefix: str

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of herd.students.training.encode_pairs."""
        return asdict(self)


@dataclass(frozen=True)
class Lora:
    """LoRA settings of a run (all off for full fine-tuning)."""

    enabled: bool
    quantized: bool  # QLoRA: the base in 4 bits
    r: int
    alpha: int


@dataclass(frozen=True)
class StudentRun:
    """One student's run, fixed once its data is tokenised and its batches planned (before the first step)."""

    name: str
    family: Family
    table: StudentConfig  # base, init, tokenizer, config overrides
    recipe: Recipe  # as trained: accumulation and micro-batch size come from the batch plan
    encoding: Encoding
    wrapper: str | None  # the prompt wrapper the student reads its instructions in; None for seq2seq (bare)
    lora: Lora
    precision: str  # bf16 | fp16 | fp32, as resolved on this machine
    gradient_checkpointing: bool
    packing: bool
    data: dict[str, Any]  # the data manifest (herd.train.data.load_pairs)
    composition: dict[str, dict[str, float]]  # per instruction_source: pairs and average token lengths
    train_rows: int
    eval_rows: int
    dropped: int  # pairs whose prompt left no room for a response
    layout: dict[str, Any]  # the batch layout and accumulation: what a resumed run must share
    batching: dict[str, Any]  # the whole batch plan, with why gradient checkpointing is on or off
    objective: dict[str, Any]  # {"objective": "sft"}, or kd with its teacher, K, weight and tokenizer
    coverage: dict[str, Any] | None  # kd: response tokens with a teacher distribution; None for sft
    hyperparameters: tuple[tuple[str, Any, str], ...]  # (name, value, source) rows of the model card
    output: Path  # the train folder: the student appears as output/name

    @property
    def folder(self) -> Path:
        return self.output / self.name

    @property
    def work(self) -> Path:
        """Where the student's checkpoints live while it trains."""
        return self.output / f"{self.name}.partial"

    @property
    def kd(self) -> bool:
        return self.objective.get("objective") == "kd"

    @property
    def kd_weight(self) -> float:
        return float(self.objective.get("kd_weight", 0.0))

    def data_facts(self) -> dict[str, Any]:
        return {k: self.data.get(k) for k in DATA_FACTS}

    def plan(self) -> dict[str, Any]:
        """herd-train.json: the settings a resumed run must share with the one that wrote its checkpoints."""
        t, lora = self.table, self.lora
        return {"base": t.base, "init": t.init, "tokenizer": t.tokenizer, "config_overrides": t.config_overrides,
                "recipe": self.recipe.as_dict(), "packing": self.packing, "data": self.data_facts(),
                "wrapper": self.wrapper, "response_prefix": self.encoding.response_prefix,
                "lora": [lora.enabled, lora.quantized, lora.r, lora.alpha], "batching": self.layout,
                **({"kd": self.objective} if self.kd else {})}

    def herd_json(self, stats: dict[str, Any], trained_at: str) -> dict[str, Any]:
        """herd.json (herd.students.saving.save_student adds the family): the run and its outcome, `stats`."""
        t, e = self.table, self.encoding
        return {
            "wrapper": self.wrapper, "base_model": t.base, "herd_version": __version__, "init": t.init,
            "response_prefix": e.response_prefix, "mask_prompt": e.mask_prompt, "max_length": e.max_length,
            "recipe": self.recipe.as_dict(), "packing": self.packing, "lora": self.lora.enabled,
            "data": self.data_facts(), "stats": stats, "trained_at": trained_at,
            "objective": {**self.objective, **({"coverage": self.coverage} if self.kd else {})},
            "precision": self.precision, "gradient_checkpointing": self.gradient_checkpointing,
            "batching": self.batching,
        }

    def card(self, stats: dict[str, Any], trained_at: str, versions: dict[str, str]) -> dict[str, Any]:
        """What the model card (herd.train.model_card.write_card) says: herd.json plus the data in full."""
        from herd.students.saving import card_facts

        return {**self.herd_json(stats, trained_at), "name": self.name, "family": self.family,
                "composition": self.composition, "train_rows": self.train_rows, "dropped": self.dropped,
                "eval_rows": self.eval_rows, "data": self.data, "hyperparameters": list(self.hyperparameters),
                "facts": card_facts(self.name, self.family, self.wrapper), "versions": versions}

    def entry(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The student's line in the train manifest."""
        return {"name": self.name, "path": str(self.folder), "family": self.family, "base_model": self.table.base,
                **stats}
