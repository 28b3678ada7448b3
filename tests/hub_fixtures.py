"""Small copies of Hub datasets in the offline `datasets` cache, as `datasets.load_dataset` leaves a prepared one.

With `HF_DATASETS_OFFLINE=1`, `load_dataset("org/name", config, split=...)` (datasets 5) finds a dataset it cannot
reach in `HF_DATASETS_CACHE/org___name/<config>/<version>/<hash>/` (the name in snake case): the newest such folder
whose `dataset_info.json` names the config, read through datasets' `cache` builder. The folder holds one Arrow file
per split, `<name>-<split>.arrow`, and that `dataset_info.json`. `write_cached` writes exactly that, so a test reads
the same code path a user's machine takes after a first online load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_cached(cache: Path, repo_id: str, rows: list[dict[str, Any]], config: str = "default",
                 split: str = "train") -> Path:
    """Write `rows` as the prepared split of `repo_id` (configuration `config`) under `cache`; returns the folder."""
    import datasets
    from datasets.arrow_writer import ArrowWriter
    from datasets.naming import camelcase_to_snakecase

    namespace, name = repo_id.split("/")
    snake = camelcase_to_snakecase(name)
    folder = cache / f"{namespace}___{snake}" / config / "0.0.0" / "0123456789abcdef"
    folder.mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_list(rows)
    writer = ArrowWriter(features=table.features, path=str(folder / f"{snake}-{split}.arrow"))
    writer.write_table(table.data.table)
    examples, size = writer.finalize()
    splits = datasets.SplitDict(dataset_name=snake)
    splits.add(datasets.SplitInfo(name=split, num_bytes=size, num_examples=examples, dataset_name=snake))
    info = datasets.DatasetInfo(features=table.features, config_name=config, dataset_name=snake, splits=splits)
    info.write_to_directory(str(folder))
    return folder


def alpaca_rows(n: int) -> list[dict[str, str]]:
    """Rows shaped like tatsu-lab/alpaca: instruction, input, output, text."""
    rows = []
    for i in range(n):
        task = f"Give {i + 2} tips for keeping a small garden alive in a dry summer."
        extra = f"The garden is {i + 1} square meters." if i % 3 == 0 else ""
        rows.append({"instruction": task, "input": extra, "output": "Water early.", "text": task})
    return rows


def p3_rows(task: str, n: int) -> list[dict[str, Any]]:
    """Rows shaped like a bigscience/P3 configuration: token ids and the pretokenized text."""
    rows = []
    for i in range(n):
        text = f"{task.replace('_', ' ')} question {i}: which of the options best answers item {i * 7 + 3}?"
        rows.append({"inputs": [1, 2, 3], "inputs_pretokenized": text, "targets": [4],
                     "targets_pretokenized": "the first one"})
    return rows


def flan_rows(n: int, tasks: tuple[str, ...] = ("cosmos_qa", "anli_r1", "trec")) -> list[dict[str, str]]:
    """Rows shaped like a FLAN collection on the Hub: inputs, targets and the task's name."""
    return [{"inputs": f"Premise {i} for the {tasks[i % len(tasks)]} task: does sentence {i * 5 + 1} follow?",
             "targets": "yes", "task": tasks[i % len(tasks)]} for i in range(n)]
