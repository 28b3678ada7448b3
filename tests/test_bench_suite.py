"""The paper's 15 tasks as lm-evaluation-harness itself defines them, on offline copies of their datasets.

Small fixtures of the 14 datasets the 15 configs read are written (tests/lm_eval_fixtures.py) where `datasets` looks
when offline; `herd bench --suite lamini15` then runs in a fresh process, as on a default install (ReCoRD included on
transformers 5), and each task's reported metric must be the paper's and equal lm_eval.simple_evaluate's for the same
model, task and documents. Also: herd's SQuAD F1/EM against their definition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lm_eval_fixtures import DATASETS, FIXTURE_HASH, features, task_datasets, write_fixtures

PAPER_METRICS = {"openbookqa": "acc_norm", "sciq": "acc_norm", "race": "acc", "arc_challenge": "acc_norm",
                 "piqa": "acc_norm", "record": "f1", "sst2": "acc", "mrpc": "acc", "rte": "acc", "mnli": "acc",
                 "mnli_mismatch": "acc", "wsc273": "acc", "winogrande": "acc", "wic": "acc", "hellaswag": "acc_norm"}
LIMIT = 4  # of the fixtures' 6 rows per split


# ------------------------------------------------------------------------------------------------ SQuAD F1 / EM
@pytest.mark.parametrize(("gold", "pred", "exact", "f1"), [
    ("The Cat!", "cat", 1, 1.0),  # case, punctuation and articles do not count
    ("red cat", "red dog", 0, 0.5),
    ("the big red dog", "red dog dog", 0, 2 / 3),  # tokens count with multiplicity: one "dog" is shared
    ("theatre an apple", "theatre apple", 1, 1.0),  # "the" inside a word stays
    ("", "", 1, 1.0),  # no answer is right against no answer ...
    ("the", "", 1, 1.0),  # ... and an answer of articles alone is no answer
    ("cat", "", 0, 0.0),
    ("well-known", "wellknown", 1, 1.0),  # hyphens are punctuation: dropped, not split on
])
def test_squad_exact_and_f1(gold, pred, exact, f1):
    from herd.bench import squad

    assert squad.compute_exact(gold, pred) == exact
    assert squad.compute_f1(gold, pred) == pytest.approx(f1)
    assert squad.compute_f1(pred, gold) == pytest.approx(f1)  # lm-eval passes the prediction first


def test_squad_f1_agrees_with_lm_evals_mlqa_script_on_english():
    """An independent implementation shipped in lm-eval (MLQA's, SQuAD's v1 rule) on non-empty ASCII answers."""
    from lm_eval.tasks.mlqa.utils import exact_match_score, f1_score

    from herd.bench import squad

    words = ["the", "Red", "cat,", "an", "old", "dog", "red", "A", "city!", "cat"]
    pairs = [(" ".join(words[i:i + n]), " ".join(words[j:j + m])) for i in range(8) for j in range(8)
             for n in (1, 2, 3) for m in (2, 4)]
    pairs = [(g, p) for g, p in pairs if squad.get_tokens(g) and squad.get_tokens(p)]
    assert len(pairs) > 100
    for gold, pred in pairs:
        assert squad.compute_f1(gold, pred) == pytest.approx(f1_score(pred, gold, "en")), (gold, pred)
        assert squad.compute_exact(gold, pred) == int(exact_match_score(pred, gold, "en"))


def test_the_stand_in_is_registered_only_where_transformers_lacks_the_module(monkeypatch):
    import importlib
    import types

    from herd.bench import squad

    own = types.ModuleType(squad.TRANSFORMERS_MODULE)
    monkeypatch.setitem(sys.modules, squad.TRANSFORMERS_MODULE, own)
    assert squad.install() is False and sys.modules[squad.TRANSFORMERS_MODULE] is own  # a transformers 4 keeps its own
    monkeypatch.delitem(sys.modules, squad.TRANSFORMERS_MODULE)
    monkeypatch.delitem(sys.modules, "transformers.data.metrics", raising=False)
    try:
        importlib.import_module(squad.TRANSFORMERS_MODULE)
        pytest.skip("this transformers still ships squad_metrics")
    except ImportError:
        pass
    assert squad.install() is True
    import transformers.data.metrics.squad_metrics as shim  # the line in lm-eval's super_glue/record/util.py

    assert shim.compute_f1("red cat", "red dog") == 0.5 and shim is sys.modules[squad.__name__]


# ------------------------------------------------------------------------------------------------ the fixtures
@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("hf_datasets")
    return root, write_fixtures(root, PAPER_METRICS, n=6)


def test_fixtures_load_offline_from_the_prepared_dataset_cache(hf_cache, monkeypatch):
    import datasets

    root, folders = hf_cache
    assert datasets.config.HF_DATASETS_OFFLINE  # what herd bench sees without network
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(root))
    for task, (path, name, splits) in task_datasets(PAPER_METRICS).items():
        org, _, dataset = path.partition("/")
        assert folders[task].relative_to(root).parts == (f"{org}___{dataset}", name or "default", "0.0.0",
                                                         FIXTURE_HASH)
        loaded = datasets.load_dataset(path, name)  # the call lm-eval's ConfigurableTask.download makes
        kind, all_splits, _ = DATASETS[(path, name)]
        assert set(loaded) == set(all_splits) and set(splits) <= set(loaded), task
        assert all(loaded[s].features == features(kind) and len(loaded[s]) == 6 for s in splits), task
    assert len({folder for folder in folders.values()}) == 14  # mnli and mnli_mismatch share glue/mnli


# ------------------------------------------------------------------------------------------------ the suite
def test_lamini15_on_lm_evals_own_configs_equals_simple_evaluate(hf_cache, tiny_models, tmp_path, monkeypatch):
    root, _ = hf_cache
    model = tiny_models["gpt2"]
    env = {**os.environ, "HF_DATASETS_CACHE": str(root), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "herd", "bench", "-m", str(model), "--suite", "lamini15", "--limit", str(LIMIT),
           "--bootstrap-iters", "50", "--out", str(tmp_path / "out"), "--set", 'bench.batch_size="8"',
           "--set", f"bench.cache_dir={json.dumps(str(tmp_path / 'cache'))}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == f"bench: {tmp_path / 'out'}/table.md (1 model(s))"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["ran"] == {"gpt2": list(PAPER_METRICS)} and manifest["failed"] == {"gpt2": {}}
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {t["name"]: t["metric"] for t in results["tasks"]} == PAPER_METRICS  # the paper's metric per task
    assert results["bootstrap_iters"] == 50
    herd = results["models"][0]
    assert set(herd["scores"]) == set(PAPER_METRICS) and herd["failed"] == {}
    table = (tmp_path / "out" / "table.md").read_text()
    assert "record (f1)" in table and "average (15)" in table and "**failed**" not in table

    import datasets
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from herd.bench import squad
    from herd.bench.tasks import task_manager

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(root))
    squad.install()  # lm-eval alone cannot load ReCoRD on transformers 5
    manager = task_manager((), True)
    lm = HFLM(pretrained=str(model), batch_size=8, device="cpu")  # lm-eval's own `--model hf`, loaded once
    for task, metric in PAPER_METRICS.items():
        theirs = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, num_fewshot=0, limit=LIMIT,
                                         bootstrap_iters=50)["results"][task]
        ours = herd["harness_output"]["results"][task]
        assert ours["sample_len"] == theirs["sample_len"] == LIMIT, task
        assert ours[f"{metric},none"] == theirs[f"{metric},none"], task
        assert herd["scores"][task] == pytest.approx(100 * theirs[f"{metric},none"]), task
        assert ours[f"{metric}_stderr,none"] == pytest.approx(theirs[f"{metric}_stderr,none"]), task
    mrpc = herd["harness_output"]["results"]["mrpc"]  # F1 is not reported: not bootstrapped either
    assert isinstance(mrpc["f1,none"], float) and mrpc["f1_stderr,none"] == "N/A"
    record = herd["harness_output"]["results"]["record"]
    assert 0.0 <= record["em,none"] <= record["f1,none"] <= 1.0
