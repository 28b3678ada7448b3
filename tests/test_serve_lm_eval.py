"""lm-eval's own `local-completions` model against a real `herd serve` process gives what `lm_eval --model hf` gives
in-process on the same checkpoint: the same per-document log-likelihoods and scores on a multiple-choice task
(token-id prompts, echo, logprobs) and the same generated texts on a generate_until task (stop strings)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_serve import _free_port, _wait_for

COLOURS = ["red", "blue", "green", "yellow"]

pytest.importorskip("tenacity", reason="lm-eval's API models need lm-eval[api] (tenacity)")


def write_tasks(folder: Path) -> Path:
    """A multiple-choice task and a generate_until task, with their data as local JSON files."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "docs.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for i in range(6):
            fh.write(json.dumps({"question": f"what is the {COLOURS[i % 4]} one of {i + 1} colour", "choices": COLOURS,
                                 "label": (i * 3) % 4, "answer": COLOURS[i % 4]}) + "\n")
    source = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
              "test_split: test\n")
    (folder / "serve_mc.yaml").write_text(
        f"task: serve_mc\n{source}output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: label\ndoc_to_choice: "{{choices}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\nmetadata:\n  version: 1.0\n", encoding="utf-8")
    (folder / "serve_gen.yaml").write_text(
        f"task: serve_gen\n{source}output_type: generate_until\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: answer\n'
        "generation_kwargs:\n  until: [\".\", \"?\"]\n  max_gen_toks: 12\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\nmetadata:\n  version: 1.0\n", encoding="utf-8")
    return folder


def lm_eval(args: list[str], out: Path) -> dict:
    """Run lm-eval's CLI; return {task: (metrics, samples)} from its output folder."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([sys.executable, "-m", "lm_eval", *args, "--output_path", str(out), "--log_samples"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    found = {}
    for task in ("serve_mc", "serve_gen"):
        lines = next(out.rglob(f"samples_{task}_*.jsonl")).read_text().splitlines()
        samples = sorted((json.loads(line) for line in lines), key=lambda s: s["doc_id"])
        found[task] = (results["results"][task], samples)
    return found


def test_lm_eval_local_completions_equals_hf(tiny_models, tmp_path):
    model = tiny_models["gpt2"]
    tasks = write_tasks(tmp_path / "tasks")
    common = ["--tasks", "serve_mc,serve_gen", "--include_path", str(tasks), "--batch_size", "1"]
    direct = lm_eval(["--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu", *common],
                     tmp_path / "hf")
    port = _free_port()
    log = (tmp_path / "serve.txt").open("w")
    server = subprocess.Popen([sys.executable, "-m", "herd", "serve", "--model", f"tiny={model}", "--port", str(port),
                               "-q"], stdout=log, stderr=log)
    try:
        _wait_for(f"http://127.0.0.1:{port}/health")
        args = (f"base_url=http://127.0.0.1:{port}/v1/completions,model=tiny,tokenizer_backend=huggingface,"
                f"tokenizer={model},num_concurrent=4,max_retries=1")
        served = lm_eval(["--model", "local-completions", "--model_args", args, *common], tmp_path / "api")
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    metrics_hf, samples_hf = direct["serve_mc"]
    metrics_api, samples_api = served["serve_mc"]
    for key in ("acc,none", "acc_norm,none"):
        assert metrics_api[key] == metrics_hf[key], key
    for a, b in zip(samples_api, samples_hf, strict=True):  # every choice's log-likelihood, not only the scores
        got = [float(r[0][0]) for r in a["resps"]]
        want = [float(r[0][0]) for r in b["resps"]]
        assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(got, want, strict=True)), (got, want)
        assert [r[0][1] for r in a["resps"]] == [r[0][1] for r in b["resps"]]  # is_greedy too
    gen_hf, gen_api = direct["serve_gen"], served["serve_gen"]
    assert [s["resps"] for s in gen_api[1]] == [s["resps"] for s in gen_hf[1]]
    assert any(s["resps"][0][0] for s in gen_hf[1])  # the model said something, so the comparison means something
    assert gen_api[0]["exact_match,none"] == gen_hf[0]["exact_match,none"]
