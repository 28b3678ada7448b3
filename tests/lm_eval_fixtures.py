"""Small offline copies of the datasets that lm-eval's own task configs read, where `datasets` looks when offline.

`write_fixtures(cache_dir, tasks)` looks each task up in lm-eval's task index (its `dataset_path`, `dataset_name` and
the splits it names) and writes that dataset with the real dataset's columns and feature types, all of its splits,
`n` rows each. The rows are written by `datasets`' own builder machinery, so the folder is what a real download
leaves behind: `<cache_dir>/<org>___<name>/<config or "default">/0.0.0/<hash>/<name>-<split>.arrow` plus
`dataset_info.json`. With HF_DATASETS_OFFLINE=1 (and HF_DATASETS_CACHE = cache_dir), `load_dataset(path, name)` finds
it through datasets' packaged `cache` module, exactly as it finds a dataset downloaded once before.

How datasets 5.2 resolves that offline call (datasets/load.py, packaged_modules/cache/cache.py): the Hub is not
asked; `CachedDatasetModuleFactory` looks for `<cache_dir>/<org>___<snake_case(name)>/*/*/*` folders, and the `cache`
builder then picks the folder of config `name` (without a name: the only config there, `default` for datasets that
have none), whose `dataset_info.json` must carry the same `config_name`, takes the newest version/hash folder by
mtime, and reads each split listed in `dataset_info.json` from `<snake_case(name)>-<split>.arrow` (Arrow stream
files). Anything else in the folder is ignored.

The texts use the tiny test tokenizer's words, so a tiny model gives the choices different scores; ReCoRD's entities
share words, so its token F1 differs from exact match. The schemas follow the Hub datasets of lm-eval 0.4.13's
configs; a task whose config names a dataset or split not described here fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.tiny import WORDS

FIXTURE_HASH = "0000000000000000000000000000000000f1x7e5"  # stands in for the Hub commit a download is stored under
Row = dict[str, Any]


def phrase(i: int, n: int = 3, offset: int = 0) -> str:
    """`n` words of the tiny vocabulary, different for each `i` (and each `offset`)."""
    return " ".join(WORDS[(7 * i + 3 * k + 11 * offset) % len(WORDS)] for k in range(n))


# ---------------------------------------------------------------------------------------------------- the schemas
def features(kind: str) -> Any:
    from datasets import ClassLabel, Features, Sequence, Value

    s, i32 = Value("string"), Value("int32")
    table = {
        "openbookqa": {"id": s, "question_stem": s, "choices": {"text": Sequence(s), "label": Sequence(s)},
                       "answerKey": s},
        "arc": {"id": s, "question": s, "choices": {"text": Sequence(s), "label": Sequence(s)}, "answerKey": s},
        "sciq": {"question": s, "distractor3": s, "distractor1": s, "distractor2": s, "correct_answer": s,
                 "support": s},
        "race": {"article": s, "problems": s},
        "piqa": {"goal": s, "sol1": s, "sol2": s, "label": ClassLabel(names=["0", "1"])},
        "record": {"passage": s, "query": s, "entities": Sequence(s),
                   "entity_spans": Sequence({"text": s, "start": i32, "end": i32}), "answers": Sequence(s),
                   "idx": {"passage": i32, "query": i32}},
        "sst2": {"sentence": s, "label": ClassLabel(names=["negative", "positive"]), "idx": i32},
        "mrpc": {"sentence1": s, "sentence2": s, "label": ClassLabel(names=["not_equivalent", "equivalent"]),
                 "idx": i32},
        "rte": {"sentence1": s, "sentence2": s, "label": ClassLabel(names=["entailment", "not_entailment"]),
                "idx": i32},
        "mnli": {"premise": s, "hypothesis": s,
                 "label": ClassLabel(names=["entailment", "neutral", "contradiction"]), "idx": i32},
        "wsc273": {"text": s, "pronoun": s, "pronoun_loc": i32, "quote": s, "quote_loc": i32, "options": Sequence(s),
                   "label": ClassLabel(names=["0", "1"]), "source": s},
        "winogrande": {"sentence": s, "option1": s, "option2": s, "answer": s},
        "wic": {"word": s, "sentence1": s, "sentence2": s, "start1": i32, "start2": i32, "end1": i32, "end2": i32,
                "idx": i32, "label": ClassLabel(names=["False", "True"])},
        "hellaswag": {"ind": i32, "activity_label": s, "ctx_a": s, "ctx_b": s, "ctx": s, "endings": Sequence(s),
                      "source_id": s, "split": s, "split_type": s, "label": s},
    }
    return Features(table[kind])


def choices_row(i: int, split: str, stem_key: str, numeric_labels: bool = False) -> Row:
    labels = ["1", "2", "3", "4"] if numeric_labels else ["A", "B", "C", "D"]
    return {"id": f"{split}-{i}", stem_key: phrase(i, 5),
            "choices": {"text": [phrase(i, 2, k + 1) for k in range(4)], "label": labels},
            "answerKey": labels[i % 4]}


def sciq_row(i: int, split: str) -> Row:
    return {"question": phrase(i, 5) + "?", "distractor1": phrase(i, 2, 1), "distractor2": phrase(i, 2, 2),
            "distractor3": phrase(i, 2, 3), "correct_answer": phrase(i, 2, 4),
            "support": "" if i % 3 == 0 else " " + phrase(i, 8, 5) + "."}


def race_row(i: int, split: str) -> Row:
    problems = [{"answer": "ABCD"[(i + k) % 4], "options": [phrase(i, 2, k + j) for j in range(4)],
                 "question": phrase(i, 4, k) + ("  _  ." if k == 0 else "?")} for k in range(2)]
    return {"article": phrase(i, 12, 9) + ".", "problems": str(problems)}  # a Python literal, as in the real data


def piqa_row(i: int, split: str) -> Row:
    return {"goal": phrase(i, 5), "sol1": phrase(i, 4, 1), "sol2": phrase(i, 4, 2), "label": i % 2}


def record_row(i: int, split: str) -> Row:
    """A passage with @highlight lines and entities that share words, so F1 and exact match differ."""
    colours, animals = ["red", "blue", "green", "yellow"], ["cat", "dog", "animal"]
    c1, c2, a1, a2 = colours[i % 4], colours[(i + 1) % 4], animals[i % 3], animals[(i + 1) % 3]
    entities = [f"{c1} {a1}", f"{c1} {a2}", f"{c2} {a1}", "the moon"]
    passage = (f"the {entities[0]} and the {entities[1]} went to the city .\n@highlight\n"
               f"{entities[2]} is here\n@highlight\nthe moon is big")
    starts = [passage.find(e) for e in entities]  # a Sequence of a dict is stored as a dict of lists
    spans = {"text": entities, "start": starts, "end": [s + len(e) - 1 for s, e in zip(starts, entities, strict=True)]}
    answers = [] if split == "test" else [entities[i % 4], entities[i % 4]]  # the real data repeats answers too
    return {"passage": passage, "query": f"the @placeholder was {phrase(i, 2)}", "entities": entities,
            "entity_spans": spans, "answers": answers, "idx": {"passage": i, "query": i}}


def glue_row(kind: str) -> Callable[[int, str], Row]:
    def row(i: int, split: str) -> Row:
        hidden = split.startswith("test")  # GLUE's test labels are hidden: -1
        if kind == "sst2":
            return {"sentence": phrase(i, 6), "label": -1 if hidden else i % 2, "idx": i}
        if kind == "mnli":
            return {"premise": phrase(i, 6) + ".", "hypothesis": phrase(i, 4, 1) + ("." if i % 2 else ""),
                    "label": -1 if hidden else i % 3, "idx": i}
        return {"sentence1": phrase(i, 6), "sentence2": phrase(i, 6, 1), "label": -1 if hidden else i % 2, "idx": i}
    return row


def wsc273_row(i: int, split: str) -> Row:
    a, b = WORDS[40 + i % 20], WORDS[60 + i % 20]
    pronoun = ["it", "his", "they"][i % 3]
    text = f"The {a} could not lift the {b} because {pronoun} was too  {WORDS[80 + i % 20]}."
    loc = text.index(f" {pronoun} was") + 1
    quote = text[loc:-1]
    return {"text": text, "pronoun": pronoun, "pronoun_loc": loc, "quote": quote, "quote_loc": loc,
            "options": [f"The {a}", f"the {b}"], "label": i % 2, "source": "herd fixture"}


def winogrande_row(i: int, split: str) -> Row:
    return {"sentence": f"{phrase(i, 4)} _ {phrase(i, 4, 1)}.", "option1": phrase(i, 1, 2),
            "option2": phrase(i, 1, 3), "answer": "" if split == "test" else "12"[i % 2]}


def wic_row(i: int, split: str) -> Row:
    word = WORDS[30 + i % 30]
    s1, s2 = f"{phrase(i, 2)} {word} {phrase(i, 2, 1)}", f"{word} {phrase(i, 3, 2)}"
    start1 = s1.index(f" {word} ") + 1
    return {"word": word, "sentence1": s1, "sentence2": s2, "start1": start1, "end1": start1 + len(word),
            "start2": 0, "end2": len(word), "idx": i, "label": -1 if split == "test" else i % 2}


def hellaswag_row(i: int, split: str) -> Row:
    ctx_a, ctx_b = phrase(i, 6) + " [title] " + phrase(i, 2, 1), phrase(i, 3, 2)
    return {"ind": i, "activity_label": phrase(i, 2, 3), "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}",
            "endings": [phrase(i, 4, k + 4) + (" [step]" if k == 1 else "") for k in range(4)],
            "source_id": f"fixture~{i}", "split": split, "split_type": "indomain",
            "label": "" if split == "test" else str(i % 4)}


TVT = ("train", "validation", "test")
# (dataset_path, dataset_name) -> (schema, the real dataset's splits, row maker)
DATASETS: dict[tuple[str, str | None], tuple[str, tuple[str, ...], Callable[[int, str], Row]]] = {
    ("allenai/openbookqa", "main"): ("openbookqa", TVT, lambda i, s: choices_row(i, s, "question_stem")),
    ("allenai/sciq", None): ("sciq", TVT, sciq_row),
    ("EleutherAI/race", "high"): ("race", ("test",), race_row),
    ("allenai/ai2_arc", "ARC-Challenge"): ("arc", TVT, lambda i, s: choices_row(i, s, "question", i % 5 == 4)),
    ("baber/piqa", None): ("piqa", TVT, piqa_row),
    ("aps/super_glue", "record"): ("record", TVT, record_row),
    ("nyu-mll/glue", "sst2"): ("sst2", TVT, glue_row("sst2")),
    ("nyu-mll/glue", "mrpc"): ("mrpc", TVT, glue_row("mrpc")),
    ("nyu-mll/glue", "rte"): ("rte", TVT, glue_row("rte")),
    ("nyu-mll/glue", "mnli"): ("mnli", ("train", "validation_matched", "validation_mismatched", "test_matched",
                                        "test_mismatched"), glue_row("mnli")),
    ("lighteval/winograd_wsc", "wsc273"): ("wsc273", ("test",), wsc273_row),
    ("allenai/winogrande", "winogrande_xl"): ("winogrande", TVT, winogrande_row),
    ("aps/super_glue", "wic"): ("wic", TVT, wic_row),
    ("Rowan/hellaswag", None): ("hellaswag", TVT, hellaswag_row),
}


# ---------------------------------------------------------------------------------------------------- writing them
def write_dataset(cache_dir: Path, path: str, name: str | None, n: int = 6) -> Path:
    """One dataset's fixture in the prepared-dataset cache layout; returns its folder."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    kind, splits, make = DATASETS[(path, name)]
    rows = {split: [make(i, split) for i in range(n)] for split in splits}

    class FixtureBuilder(datasets.GeneratorBasedBuilder):  # the documented way to produce a prepared dataset
        def _info(self) -> datasets.DatasetInfo:
            return datasets.DatasetInfo(features=features(kind), description="herd test fixture")

        def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
            return [datasets.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in splits]

        def _generate_examples(self, split: str) -> Iterable[tuple[int, Row]]:
            yield from enumerate(rows[split])

    builder = FixtureBuilder(cache_dir=str(cache_dir), dataset_name=camelcase_to_snakecase(path.split("/")[-1]),
                             repo_id=path, config_name=name or "default", hash=FIXTURE_HASH)
    builder.download_and_prepare()
    return Path(builder.cache_dir)


def task_datasets(tasks: Iterable[str]) -> dict[str, tuple[str, str | None, list[str]]]:
    """task -> (dataset_path, dataset_name, splits its config names), from lm-eval's own task index."""
    from herd.bench.tasks import task_manager

    index = task_manager((), True).task_index
    found = {}
    for task in tasks:
        cfg = index[task].cfg or {}
        named = [cfg.get(k) for k in ("training_split", "validation_split", "test_split", "fewshot_split")]
        found[task] = (str(cfg["dataset_path"]), cfg.get("dataset_name"), [s for s in named if s])
    return found


def write_fixtures(cache_dir: Path, tasks: Iterable[str], n: int = 6) -> dict[str, Path]:
    """Every dataset the tasks' lm-eval configs read, written once each; task -> its dataset folder."""
    written: dict[tuple[str, str | None], Path] = {}
    out = {}
    for task, (path, name, splits) in task_datasets(tasks).items():
        if (path, name) not in DATASETS:
            raise KeyError(f"task {task}: lm-eval reads dataset {path} ({name}), which has no fixture schema here")
        missing = set(splits) - set(DATASETS[(path, name)][1])
        if missing:
            raise KeyError(f"task {task}: lm-eval reads split(s) {sorted(missing)} of {path}, not in the fixture")
        if (path, name) not in written:
            written[(path, name)] = write_dataset(cache_dir, path, name, n)
        out[task] = written[(path, name)]
    return out
