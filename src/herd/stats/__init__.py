"""herd stats: what the dataset holds, beside the LaMini paper's Table 1.

Reads the output of the nearest of dedup, mix and responses in the run's chain (`herd.run.feeders`; or
`stats.input`): rows with
`instruction` and, usually, `response` and `instruction_source`. Writes `stats/` under the run:

- `stats.json`: per source and overall: rows and share, token-length summaries of instructions and responses,
  MATTR (window 50, x100), leading-verb counts; the paper's figures where a source matches.
- `stats.md`: the same as tables, compared with the paper, and the figures.
- `composition.png`, `lengths.png`, `verbs.png`, `map.png` (a t-SNE of instruction embeddings, sampled per source).
- `manifest.json`: resolved config, versions, input, timings.

Nothing is written until every row has been read and checked; the folder is swapped in whole at the end.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from herd.config import Config, StatsConfig
from herd.errors import UserError
from herd.records import numbered_rows
from herd.rundir import publish, redact, run_path, versions, write_json
from herd.stats.measures import PAPER_TABLE1, leading_verb, mattr, summary, word_counter, words

STAGE = "stats"
NO_SOURCE = "(none)"
_BATCH = 2048


def run(cfg: Config) -> Path:
    """Describe the dataset; returns the stats folder."""
    sc = cfg.stats
    started = time.time()
    source = input_path(cfg)
    if sc.mattr_window < 1 or sc.top_verbs < 1 or sc.map_points < 0:
        raise UserError("stats.mattr_window and stats.top_verbs must be >= 1, stats.map_points >= 0")
    count = word_counter(sc.tokenizer)
    table = collect(source, count, sc.map_points, cfg.run.seed)
    numbers = describe(table, sc, source)
    final = run_path(cfg) / STAGE
    tmp = final.with_name(STAGE + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from herd.stats.report import draw, markdown

    numbers["plots"] = draw(tmp, table, numbers, sc, cfg.run.seed)
    write_json(tmp / "stats.json", numbers)
    (tmp / "stats.md").write_text(markdown(numbers), encoding="utf-8")
    write_json(tmp / "manifest.json", {
        "stage": STAGE, "config": redact(cfg.as_dict()), "versions": versions(), "input": str(source),
        "counts": {"rows": numbers["rows"]},
        "timings": {"started": started, "finished": time.time(), "seconds": time.time() - started},
    })
    return publish(tmp, final)


def input_path(cfg: Config) -> Path:
    from herd.run import stage_input

    path = Path(cfg.stats.input) if cfg.stats.input else stage_input(cfg, STAGE)
    if not path.is_file():
        raise UserError(f"{path}: input not found (run `herd responses` or `herd dedup` first, or set stats.input)")
    return path


@dataclass
class Source:
    """What is kept of one source's rows: lengths, word ids for MATTR, leading verbs and a sample for the map."""

    rows: int = 0
    instr_len: list[int] = field(default_factory=list)
    resp_len: list[int] = field(default_factory=list)
    instr_ids: array = field(default_factory=lambda: array("i"))
    resp_ids: array = field(default_factory=lambda: array("i"))
    verbs: Counter[str] = field(default_factory=Counter)
    sample: list[str] = field(default_factory=list)


@dataclass
class Table:
    sources: dict[str, Source] = field(default_factory=dict)
    vocab: dict[str, int] = field(default_factory=dict)

    def order(self) -> list[str]:
        """The paper's sources in Table 1 order, then any others by name."""
        known = [s for s in PAPER_TABLE1 if s in self.sources]
        return known + sorted(s for s in self.sources if s not in PAPER_TABLE1)

    def ids(self, text: str) -> list[int]:
        vocab = self.vocab
        return [vocab.setdefault(w, len(vocab)) for w in words(text)]


def collect(path: Path, count: Any, sample: int, seed: int) -> Table:
    """One pass over the rows; a row without a string instruction stops the stage (file:line)."""
    table = Table()
    rng = random.Random(seed)
    batch: list[tuple[str, str, str | None]] = []
    for number, row in numbered_rows(path, required=["instruction"]):
        instruction, response = row["instruction"], row.get("response")
        if not isinstance(instruction, str):
            raise UserError(f"{path}:{number}: field 'instruction' must be a string")
        if response is not None and not isinstance(response, str):
            raise UserError(f"{path}:{number}: field 'response' must be a string")
        batch.append((str(row.get("instruction_source") or NO_SOURCE), instruction, response))
        if len(batch) == _BATCH:
            _add(table, batch, count, sample, rng)
            batch = []
    _add(table, batch, count, sample, rng)
    if not table.sources:
        raise UserError(f"{path}: no rows")
    return table


def _add(table: Table, batch: list[tuple[str, str, str | None]], count: Any, sample: int, rng: random.Random) -> None:
    if not batch:
        return
    instr_counts = count([b[1] for b in batch])
    answered = [b[2] for b in batch if b[2] is not None]
    resp_counts = iter(count(answered)) if answered else iter(())
    for (name, instruction, response), n_instr in zip(batch, instr_counts, strict=True):
        src = table.sources.setdefault(name, Source())
        src.rows += 1
        src.instr_len.append(n_instr)
        src.instr_ids.extend(table.ids(instruction))
        verb = leading_verb(instruction)
        if verb:
            src.verbs[verb] += 1
        if response is not None:
            src.resp_len.append(next(resp_counts))
            src.resp_ids.extend(table.ids(response))
        # reservoir sampling: every row of the source has the same chance to be in the map
        if len(src.sample) < sample:
            src.sample.append(instruction)
        elif sample and (at := rng.randrange(src.rows)) < sample:
            src.sample[at] = instruction


def _numbers(rows: int, total: int, instr: list[int], resp: list[int], instr_ids: np.ndarray, resp_ids: np.ndarray,
             verbs: Counter[str], window: int) -> dict[str, Any]:
    return {
        "rows": rows,
        "share": round(rows / total, 4),
        "instruction_tokens": summary(instr),
        "response_tokens": summary(resp),
        "mattr_instruction": _round(mattr(instr_ids, window)),
        "mattr_response": _round(mattr(resp_ids, window)) if len(resp_ids) else None,
        "leading_verb_share": round(sum(verbs.values()) / rows, 4),
    }


def _view(ids: array) -> np.ndarray:
    return np.frombuffer(ids, dtype=np.int32) if len(ids) else np.zeros(0, dtype=np.int32)


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 2)


def describe(table: Table, sc: StatsConfig, path: Path) -> dict[str, Any]:
    """Every number of stats.json."""
    order = table.order()
    total = sum(s.rows for s in table.sources.values())
    per: dict[str, Any] = {}
    for name in order:
        s = table.sources[name]
        per[name] = _numbers(s.rows, total, s.instr_len, s.resp_len, _view(s.instr_ids), _view(s.resp_ids),
                             s.verbs, sc.mattr_window)
        per[name]["top_verbs"] = s.verbs.most_common(10)
        if name in PAPER_TABLE1:
            pairs, instr, resp = PAPER_TABLE1[name]
            per[name]["paper"] = {"pairs": pairs, "share": round(pairs / sum(p[0] for p in PAPER_TABLE1.values()), 4),
                                  "avg_instruction_tokens": instr, "avg_response_tokens": resp}
    srcs = [table.sources[n] for n in order]
    verbs: Counter[str] = sum((s.verbs for s in srcs), Counter())
    overall = _numbers(total, total, [v for s in srcs for v in s.instr_len], [v for s in srcs for v in s.resp_len],
                       np.concatenate([_view(s.instr_ids) for s in srcs]),
                       np.concatenate([_view(s.resp_ids) for s in srcs]), verbs, sc.mattr_window)
    return {"input": str(path), "rows": total, "tokenizer": sc.tokenizer, "mattr_window": sc.mattr_window,
            "sources": per, "all": overall, "leading_verbs": verbs.most_common(sc.top_verbs)}
