"""herd bench on tiny models and local lm-eval tasks: the wrapper reaches the harness's requests exactly, outputs
(results.json, scores.csv, table.md, both figures) are complete, the cache re-runs only what is new, the shipped paper
numbers equal the reference data, and bad input is one line with nothing written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from herd.config import Config, load_config
from herd.errors import UserError

QUESTION = "Question: {{question}}\nAnswer:"
COLOURS = ["red", "blue", "green", "yellow"]


def write_task(folder: Path, name: str, doc_to_text: str = QUESTION, n: int = 6,
               dataset: str | None = None) -> Path:
    """A multiple-choice task in the format of lm-eval's own (sciq/arc style), with its data as a local JSON file."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"question": f"what is the {COLOURS[i % 4]} one", "choices": COLOURS,
                                 "label": (i * 3) % 4}) + "\n")
    source = (f"dataset_path: {dataset}\n" if dataset else
              f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n")
    yaml = folder / f"{name}.yaml"
    yaml.write_text(
        f"task: {name}\n{source}test_split: test\noutput_type: multiple_choice\n"
        f"doc_to_text: {json.dumps(doc_to_text)}\ndoc_to_target: label\ndoc_to_choice: \"{{{{choices}}}}\"\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n",
        encoding="utf-8")
    return yaml


@pytest.fixture(scope="module")
def student(tiny_models, tmp_path_factory) -> Path:
    """A decoder-only student trained by `herd train` on the tiny GPT-2 (so its herd.json holds the wrapper)."""
    from herd.train import run

    tmp = tmp_path_factory.mktemp("bench_student")
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"p{i}", "instruction": f"name the {c} one", "response": f"the {c} one"})
                             + "\n" for i, c in enumerate(COLOURS * 2)))
    (tmp / "run.toml").write_text(
        f"[run]\ndir = {json.dumps(str(tmp / 'runs'))}\nquiet = true\n[train]\n"
        f"student = {json.dumps(str(tiny_models['gpt2']))}\ndata = {json.dumps(str(pairs))}\nepochs = 1.0\n"
        "batch_size = 4\nmicro_batch_size = 4\nreport_to = []\nsave_steps = 1000\n", encoding="utf-8")
    out = run(load_config(tmp / "run.toml"))
    folder = next(p for p in out.iterdir() if (p / "herd.json").is_file())
    assert json.loads((folder / "herd.json").read_text())["wrapper"]
    return folder


def bench_config(tmp_path: Path, models: list[Path | str], tasks: list[Path | str], **keys: object) -> Config:
    sets = [f"bench.models={json.dumps([str(m) for m in models])}",
            f"bench.tasks={json.dumps([str(t) for t in tasks])}",
            f"bench.out={json.dumps(str(tmp_path / 'out'))}",
            f"bench.cache_dir={json.dumps(str(tmp_path / 'cache'))}", "run.quiet=true"]
    # a fixed batch: `auto` probes with five full-size forward passes, which only one test needs to pay for
    sets += [f"bench.{k}={json.dumps(v)}" for k, v in {"batch_size": "8", **keys}.items()]
    return load_config(None, sets)


def run_bench(cfg: Config) -> Path:
    from herd import bench

    return bench.run(cfg)


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# ------------------------------------------------------------------------------------------------ the paper's numbers
def test_shipped_paper_numbers_equal_the_reference(shared_data):
    from herd.bench.report import paper_table
    from herd.bench.tasks import PAPER_TASKS

    ours = {r["model"]: r for r in paper_table()}
    with (shared_data / "lamini_paper_nlp_results.csv").open(encoding="utf-8") as fh:
        reference = list(csv.DictReader(fh))
    assert len(ours) == len(reference) == 35
    for row in reference:
        mine = ours[row["model"]]
        assert mine["kind"] == row["kind"]
        assert [mine[t] for t in (*PAPER_TASKS, "average")] == [float(row[t]) for t in (*PAPER_TASKS, "average")]
        assert abs(sum(mine[t] for t in PAPER_TASKS) / 15 - mine["average"]) < 0.06  # the plain mean, rounded
    assert ours["LaMini-GPT-1.5B"]["base"] == "GPT-2 xl (1.5B)" and ours["GPT-2 xl (1.5B)"]["hub_id"] == "gpt2-xl"


def test_lamini15_is_the_papers_suite_and_lm_eval_reports_every_metric():
    from herd.bench.tasks import PAPER_TASKS, load_suite, resolve

    suite = load_suite("lamini15")
    _, specs = resolve(suite, [], [])  # checks each metric against lm-eval's own task configs (no download)
    assert tuple(s.name for s in specs) == PAPER_TASKS
    metrics = {s.name: s.metric for s in specs}
    assert {t for t, m in metrics.items() if m == "acc_norm"} == {"openbookqa", "sciq", "arc_challenge", "piqa",
                                                                  "hellaswag"}
    assert metrics["record"] == "f1"
    assert {t for t, m in metrics.items() if m == "acc"} == set(PAPER_TASKS) - {
        "openbookqa", "sciq", "arc_challenge", "piqa", "hellaswag", "record"}


def test_paper_rows_follow_the_base_model():
    from herd.bench.report import paper_rows_for, paper_table

    paper = paper_table()
    assert [r["model"] for r in paper_rows_for("openai-community/gpt2", paper)] == ["GPT-2 (124M)", "LaMini-GPT-124M"]
    assert [r["model"] for r in paper_rows_for("MBZUAI/LaMini-Flan-T5-783M", paper)] == [
        "Flan-T5-large (783M)", "LaMini-Flan-T5-783M"]
    assert paper_rows_for("/some/local/model", paper) == []


# ------------------------------------------------------------------------------------------------ the wrapper rule
def test_the_harness_scores_exactly_the_wrapped_context(tiny_models, tmp_path):
    """Wrapped model on the plain task == plain model on a task whose text is already wrapped, request by request."""
    from lm_eval.api.instance import Instance

    from herd.bench.harness import evaluate, load_lm
    from herd.bench.tasks import build_tasks, resolve
    from herd.students import default_wrapper, fill

    wrapper = default_wrapper()
    plain = write_task(tmp_path / "tasks", "plain_mc")
    wrapped = write_task(tmp_path / "tasks", "wrapped_mc", doc_to_text=fill(wrapper, QUESTION))
    manager, specs = resolve(None, [str(plain), str(wrapped)], [])
    built, failed = build_tasks(manager, specs)
    assert failed == {}
    model = str(tiny_models["gpt2"])

    def per_request(lm, task: str) -> list:
        out = evaluate(lm, [built[task]], manager, num_fewshot=0, limit=None, log_samples=True)
        return [s["resps"] for s in out["samples"][task]]

    with_wrapper = per_request(load_lm(model, "causal", wrapper, device="cpu", batch_size=8), "plain_mc")
    no_wrapper = load_lm(model, "causal", None, device="cpu", batch_size=8)
    assert with_wrapper == per_request(no_wrapper, "wrapped_mc")
    assert with_wrapper != per_request(no_wrapper, "plain_mc")

    lm = load_lm(model, "causal", wrapper, device="cpu", batch_size=1)
    request = Instance("generate_until", {}, ("what is the red one", {"until": ["\n"], "max_gen_toks": 4}), 0)
    by_hand = Instance("generate_until", {}, (fill(wrapper, "what is the red one"), request.args[1]), 0)
    assert lm.generate_until([request]) == no_wrapper.generate_until([by_hand])
    assert request.args[0] == "what is the red one"  # the task's own request is left as it was


# ------------------------------------------------------------------------------------------------ end to end
def test_bench_student_and_t5_writes_table_figures_and_caches(student, tiny_models, tmp_path):
    task = write_task(tmp_path / "tasks", "colours_mc")
    out = run_bench(bench_config(tmp_path, [student, tiny_models["t5"]], [task], batch_size="auto"))
    results = json.loads((out / "results.json").read_text())
    models = {m["label"]: m for m in results["models"]}
    assert models[student.name]["wrapper"] and models[student.name]["family"] == "causal"
    assert models["t5"]["wrapper"] is None and models["t5"]["family"] == "seq2seq"
    for m in models.values():
        raw = m["harness_output"]["results"]["colours_mc"]
        assert m["scores"]["colours_mc"] == pytest.approx(100 * raw["acc_norm,none"])
        assert raw["sample_len"] == 6 and m["params"] > 0
    rows = list(csv.DictReader((out / "scores.csv").open(encoding="utf-8")))
    assert [(r["model"], r["wrapped"]) for r in rows] == [(student.name, "true"), ("t5", "false")]
    assert float(rows[0]["colours_mc"]) == pytest.approx(models[student.name]["scores"]["colours_mc"], abs=0.01)
    table = (out / "table.md").read_text()
    assert "| colours_mc (acc_norm) |" in table and f"| {student.name} | herd, wrapped |" in table
    for png in ("per_task.png", "size_vs_score.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 10_000
    assert manifest(out)["ran"] == {student.name: ["colours_mc"], "t5": ["colours_mc"]}

    # the same comparison plus one model: only that model runs; the others come from the cache unchanged
    again = run_bench(bench_config(tmp_path, [student, tiny_models["t5"], tiny_models["llama"]], [task]))
    assert manifest(again)["ran"] == {student.name: [], "t5": [], "llama": ["colours_mc"]}
    scores = {m["label"]: m["scores"] for m in json.loads((again / "results.json").read_text())["models"]}
    assert scores[student.name] == models[student.name]["scores"] and scores["t5"] == models["t5"]["scores"]

    # the wrapper switched off is another measurement, so it runs again
    off = run_bench(bench_config(tmp_path, [student], [task], wrapper="off"))
    assert manifest(off)["ran"] == {student.name: ["colours_mc"]}
    assert "Wrapped in the instruction wrapper: none." in (off / "table.md").read_text()


def test_a_student_of_gpt2_is_shown_beside_the_papers_gpt2_rows(student, tmp_path):
    import shutil

    copy = tmp_path / "lamini-style-gpt2"
    shutil.copytree(student, copy)
    meta = json.loads((copy / "herd.json").read_text())
    (copy / "herd.json").write_text(json.dumps({**meta, "base_model": "gpt2"}))
    tasks = [write_task(tmp_path / "tasks", name) for name in ("sciq", "piqa")]  # local tasks named like the paper's
    out = run_bench(bench_config(tmp_path, [copy], [tmp_path / "tasks"], limit=4))
    lines = (out / "table.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert header.startswith("| model | source | sciq (acc_norm) | piqa (acc_norm) |")  # the paper's column order
    # the paper's numbers for the two tasks shown, and their mean (not the 15-task average)
    assert f"| GPT-2 (124M) | paper (base) | 66.1 | 61.2 | {(66.1 + 61.2) / 2:.1f} |" in lines
    assert f"| LaMini-GPT-124M | paper (lamini) | 64.4 | 62.4 | {(64.4 + 62.4) / 2:.1f} |" in lines
    assert any(line.startswith("| lamini-style-gpt2 | herd, wrapped |") for line in lines)
    assert "limit = 4" in lines[0] + lines[1] + lines[2]
    assert len(tasks) == 2 and json.loads((out / "results.json").read_text())["limit"] == 4


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_task_names_the_closest(tmp_path, tiny_models):
    with pytest.raises(UserError, match=r"unknown lm-eval task 'hellaswg' \(did you mean 'hellaswag'"):
        run_bench(bench_config(tmp_path, [tiny_models["gpt2"]], ["hellaswg"]))
    assert not (tmp_path / "out").exists()


def test_a_suite_metric_the_task_does_not_report(tmp_path, tiny_models):
    suite = tmp_path / "mine.toml"
    suite.write_text('[metrics]\nsciq = "acc_norm"\nhellaswag = "f1"\n')
    cfg = bench_config(tmp_path, [tiny_models["gpt2"]], [], suite=str(suite))
    with pytest.raises(UserError, match=r"mine.toml: task 'hellaswag' does not report metric 'f1' "
                                        r"\(it reports acc, acc_norm\)"):
        run_bench(cfg)
    assert not (tmp_path / "out").exists()


def test_a_dataset_that_cannot_be_fetched_says_how_to_get_it(tmp_path, tiny_models):
    task = write_task(tmp_path / "tasks", "offline_mc", dataset="herd-tests/no-such-dataset")
    with pytest.raises(UserError) as err:
        run_bench(bench_config(tmp_path, [tiny_models["gpt2"]], [task]))
    message = str(err.value)
    assert "\n" not in message and "dataset herd-tests/no-such-dataset" in message
    assert "load_dataset('herd-tests/no-such-dataset')" in message and "HF_DATASETS_OFFLINE=1" in message
    assert not (tmp_path / "out").exists()


def test_cli_a_folder_that_is_not_a_model_is_one_line_exit_2(tmp_path):
    task = write_task(tmp_path / "tasks", "colours_mc")
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-m", "herd", "bench", "--model", str(empty), "--tasks", str(task),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"herd: error: {empty}: not a model folder"), out.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("value", "expected"), [(0, None), (0.25, 0.25), (5, 5)])
def test_limit_values(value, expected):
    from herd.bench import parse_limit

    assert parse_limit(value) == expected


# ------------------------------------------------------------------------------------------------ failed tasks
def test_a_task_that_cannot_be_built_or_run_is_one_line_and_the_others_run(tiny_models, tmp_path, capsys):
    good = write_task(tmp_path / "tasks" / "good", "good_mc")
    missing = write_task(tmp_path / "tasks" / "missing", "missing_mc", dataset="herd-tests/no-such-dataset")
    broken = write_task(tmp_path / "tasks" / "broken", "broken_mc")
    (broken.parent / "boom.py").write_text("def process_results(doc, results):\n    raise ValueError('boom')\n")
    broken.write_text(broken.read_text() + "process_results: !function boom.process_results\n")
    cfg = bench_config(tmp_path, [tiny_models["gpt2"]], [good, missing, broken])
    out = run_bench(cfg)
    lines = [line for line in capsys.readouterr().err.splitlines() if "missing_mc" in line or "broken_mc" in line]
    assert len([line for line in lines if line.startswith("[bench] task missing_mc: dataset herd-tests/no-such-"
                                                            "dataset cannot be loaded")]) == 1, lines
    assert "[bench] task broken_mc: failed on gpt2 (ValueError: boom)" in lines

    results = json.loads((out / "results.json").read_text())
    model = results["models"][0]
    assert set(model["scores"]) == {"good_mc"} and set(model["failed"]) == {"missing_mc", "broken_mc"}
    assert model["average"] == pytest.approx(model["scores"]["good_mc"])
    table = (out / "table.md").read_text()
    assert "| average (1 of 3: failed tasks left out) |" in table
    assert f"| gpt2 | herd | {model['scores']['good_mc']:.1f} | **failed** | **failed** |" in table
    assert "- gpt2: task broken_mc: failed on gpt2 (ValueError: boom)" in table
    row = next(csv.DictReader((out / "scores.csv").open(encoding="utf-8")))
    assert row["missing_mc"] == row["broken_mc"] == "" and row["failed"] == "missing_mc broken_mc"
    assert (out / "per_task.png").stat().st_size > 10_000
    assert manifest(out)["ran"] == {"gpt2": ["good_mc"]}

    again = run_bench(cfg)  # a failure is not cached: the next run tries again; the score that was made is kept
    assert manifest(again)["ran"] == {"gpt2": []}
    assert set(manifest(again)["failed"]["gpt2"]) == {"missing_mc", "broken_mc"}

    with pytest.raises(RuntimeError, match=r"no task produced a score \(the first failure: task broken_mc: failed"):
        run_bench(bench_config(tmp_path, [tiny_models["gpt2"]], [broken], out=str(tmp_path / "none")))
    assert not (tmp_path / "none").exists()


def test_only_the_reported_metric_gets_a_stderr(monkeypatch):
    from lm_eval.api.metrics import f1_score, mean, mean_stderr

    from herd.bench.harness import add_stderr

    monkeypatch.setenv("DISABLE_MULTIPROC", "1")  # lm-eval's bootstrap without a process pool
    samples = [{"filter": "none", "acc": float(i % 2), "f1": (i % 2, (i // 3) % 2)} for i in range(12)]
    fresh = {"acc,none": 0.5, "acc_stderr,none": "N/A", "f1,none": 0.4, "f1_stderr,none": "N/A"}
    results = dict(fresh)
    add_stderr(results, samples, "acc", mean, 1000)
    assert results["acc_stderr,none"] == pytest.approx(mean_stderr([s["acc"] for s in samples]))  # closed form
    assert results["f1_stderr,none"] == "N/A"
    results = dict(fresh)
    add_stderr(results, samples, "f1", f1_score, 40)
    assert isinstance(results["f1_stderr,none"], float) and results["f1_stderr,none"] > 0
    assert results["acc_stderr,none"] == "N/A"
    results = dict(fresh)
    add_stderr(results, samples, "acc", mean, 0)  # 0: no stderr, as in lm-eval
    assert results == fresh


def test_bootstrap_iters_default_and_bad_value(tmp_path, tiny_models):
    assert load_config(None, []).bench.bootstrap_iters == 1000
    with pytest.raises(UserError, match=r"bench.bootstrap_iters = -1: must be 0"):
        run_bench(bench_config(tmp_path, [tiny_models["gpt2"]], [write_task(tmp_path / "t", "x_mc")],
                               bootstrap_iters=-1))
    assert not (tmp_path / "out").exists()
