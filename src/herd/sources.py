"""A run's data sources (`[[sources]]`): the seven subsets of LaMini's 2.58M pairs as one run (LaMini §1, Table 1).

Each source is example-guided (the teacher writes instructions from seed examples), topic-guided (seed examples and
topics) or `answer` (the teacher answers an existing prompt set: Alpaca's instructions, original P3 and FLAN
prompts). Its stages are copies of the chain's own (`herd.run.expand`): `instructions:NAME` (or `prompts:NAME`,
which draws the prompts to answer), then `responses:NAME`, writing `runs/RUN/sources/NAME/<step>/` and sharing the
run's journal. This module says what each copy's config is (`generator_config`, `responses_config`, `mix_config`),
checks the recipe before anything is spent (`check`, `preflight`) and runs the `prompts` step.

Counts are the pairs a source puts into the mix; `run.scale` multiplies every count (the same shares, a smaller
run). A source asks for `overgenerate` times its count, because parsing, failed calls and empty answers drop some.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import shutil
from pathlib import Path

from herd.config import Config, SourceConfig
from herd.errors import UserError

# (kind, style) -> the paper's instruction_source label
LABELS = {
    ("example", "self_instruct"): "self_instruct_without_topic",
    ("topic", "self_instruct"): "self_instruct_with_topic",
    ("example", "p3"): "generated_p3",
    ("example", "flan"): "generated_flan",
    ("answer", "p3"): "original_p3",
    ("answer", "flan"): "original_flan",
}
SUBSET_FIELD = "_subset"  # rows read from several Hub configurations carry the configuration's name here
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def label_of(src: SourceConfig) -> str:
    return src.label or LABELS.get((src.kind, src.style), "")


def name_of(src: SourceConfig) -> str:
    return src.name or label_of(src)


def find(cfg: Config, name: str) -> SourceConfig:
    return next(s for s in cfg.sources if name_of(s) == name)


def scaled(cfg: Config, count: int) -> int:
    return int(count * cfg.run.scale + 0.5)


def per_call(cfg: Config, src: SourceConfig) -> int:
    return src.per_call or cfg.instructions.per_call or (20 if src.style == "self_instruct" else 10)


def calls(cfg: Config, src: SourceConfig) -> int:
    """Teacher calls of the source's generator: instruction calls, or (answer) prompts drawn to be answered."""
    wanted = scaled(cfg, src.count) * src.overgenerate
    return math.ceil(wanted) if src.kind == "answer" else math.ceil(wanted / per_call(cfg, src))


def check(cfg: Config) -> None:
    """The recipe makes sense: one line naming the key, before anything is spent."""
    if cfg.run.scale <= 0:
        raise UserError(f"run.scale = {cfg.run.scale}: must be > 0")
    names: set[str] = set()
    total = 0
    for i, src in enumerate(cfg.sources):
        key = f"sources[{i}]"
        if src.kind == "topic" and src.style != "self_instruct":
            raise UserError(f"{key}.kind = 'topic': topic-guided generation uses self_instruct seeds (LaMini §1)")
        if src.kind == "answer" and not src.data:
            raise UserError(f"{key}.data: an answer source needs a prompt set (a file or a Hub dataset id)")
        if not label_of(src):
            raise UserError(f"{key}.label: name the instruction_source of this source (e.g. 'alpaca')")
        name = name_of(src)
        if not _NAME.match(name):
            raise UserError(f"{key}.name = {name!r}: use letters, digits, '_', '.' and '-'")
        if name in names:
            raise UserError(f"{key}: a second source named {name!r} (set sources.name)")
        names.add(name)
        if src.count <= 0:
            raise UserError(f"{key}.count = {src.count}: must be > 0")
        if src.overgenerate < 1:
            raise UserError(f"{key}.overgenerate = {src.overgenerate}: must be >= 1")
        if scaled(cfg, src.count) == 0:
            raise UserError(f"run.scale = {cfg.run.scale} rounds {key} ({name}, {src.count} pairs) to 0 pairs; "
                            "raise run.scale")
        total += src.count
    if cfg.mix.total and total != cfg.mix.total:
        raise UserError(f"sources: the counts add up to {total:,} pairs, not mix.total = {cfg.mix.total:,}")


def generator_config(cfg: Config, src: SourceConfig, out: Path) -> Config:
    """The config `herd instructions` (or the prompts step) sees for this source; shared keys from [instructions]."""
    ic = dataclasses.replace(
        cfg.instructions, seeds=src.data, style=src.style, mode="topic" if src.kind == "topic" else "example",
        calls=calls(cfg, src), per_call=per_call(cfg, src), source=label_of(src), out=str(out),
        seeds_split=src.split, seeds_subset=",".join(src.subsets), id_field=src.id_field,
        instruction_field=src.instruction_field, input_field=src.input_field,
        group_field=src.group_field or (SUBSET_FIELD if src.subsets else ""),
    )
    return dataclasses.replace(cfg, instructions=ic)


def responses_config(cfg: Config, src: SourceConfig, source: Path, out: Path) -> Config:
    rc = dataclasses.replace(cfg.responses, input=str(source), source=label_of(src), out=str(out))
    return dataclasses.replace(cfg, responses=rc)


def mix_config(cfg: Config, folders: list[Path]) -> Config:
    """The mix of a run with sources: every source's responses, with the (scaled) counts per label."""
    counts: dict[str, int] = {}
    for src in cfg.sources:
        counts[label_of(src)] = counts.get(label_of(src), 0) + scaled(cfg, src.count)
    mc = dataclasses.replace(cfg.mix, inputs=[str(f) for f in folders], counts=counts, total=0, proportions={},
                             preset="")
    return dataclasses.replace(cfg, mix=mc)


def load(cfg: Config) -> list[dict[str, str]]:
    """The prompt set of an answer source (from its generator config), every row checked and mapped."""
    from herd.instructions.seeds import FieldMap, load_pool

    ic = cfg.instructions
    pool = load_pool(ic.seeds, FieldMap(ic.id_field, ic.instruction_field, ic.input_field, ic.group_field),
                     ic.seeds_split, ic.seeds_subset)
    prefix = Path(ic.out).parent.name  # the source's name: ids stay apart from other sources' ids
    return [{"id": f"{prefix}:{s.id}", "instruction": s.instruction, "input": s.input, "group": s.group,
             "instruction_source": ic.source} for s in pool.seeds]


def run_prompts(cfg: Config) -> Path:
    """The prompts step of an answer source: a seeded sample of its prompt set, written to prompts/data.jsonl."""
    from herd.rundir import StageDir, publish

    ic = cfg.instructions
    rows = load(cfg)
    rng = random.Random(f"herd-prompts:{cfg.run.seed}:{ic.source}")
    picks = sorted(rng.sample(range(len(rows)), min(ic.calls, len(rows))))
    final = Path(ic.out)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    stage = StageDir(tmp, "prompts")
    for i in picks:
        stage.keep(rows[i])
    stage.finish(cfg, {"input": ic.seeds, "split": ic.seeds_split, "subsets": ic.seeds_subset,
                       "available": len(rows), "wanted": ic.calls})
    return publish(tmp, final)


def preflight(cfg: Config, stages: list[tuple[str, Config]]) -> None:
    """Read every seed pool and prompt set the run will use (a missing field names the field and the dataset),
    before the first teacher call. `stages`: (kind, the config as that per-source stage sees it) for each."""
    from herd.instructions.stage import settings
    from herd.teacher.engine import api_key

    if stages and cfg.teacher.backend == "openai":
        api_key(cfg.teacher)  # a missing key stops here, before any dataset is downloaded
    for kind, seen in stages:
        if kind == "prompts":
            load(seen)
            continue
        from herd.instructions.seeds import FieldMap, load_pool

        ic = seen.instructions
        settings(ic)
        load_pool(ic.seeds, FieldMap(ic.id_field, ic.instruction_field, ic.input_field, ic.group_field),
                  ic.seeds_split, ic.seeds_subset)
