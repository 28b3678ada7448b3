"""What `herd bench` costs on top of lm-evaluation-harness itself: wall time against lm-eval's own CLI.

Both sides score the same model on the same local multiple-choice task, zero-shot, batch size auto, on the CPU, each
as a fresh process (imports, model loading and dataset loading included):

    baseline: lm_eval --model hf --model_args pretrained=M,dtype=auto --tasks bench_mc --include_path D
              --batch_size auto --device cpu --num_fewshot 0 --output_path O
    herd (a): herd bench --model M --tasks bench_mc --include-path D --out O2   (a name: lm-eval's full task index
              is built, as the CLI does)
    herd (b): herd bench --model M --tasks D/bench_mc.yaml --out O3             (a YAML file: only its folder is
              indexed)

herd's side also hashes the model, writes results.json, scores.csv, table.md and both figures; every herd run gets a
fresh score cache, so nothing is read back. Runs alternate, one round at a time. Printed: the median wall and CPU
seconds (user + system) of each side; herd's overhead over the CLI in % (goal: wall <= +5%) as the median over the
--repeats rounds of each round's ratio, since on a shared machine the load moves more between rounds than within
one; and whether both sides report the same acc and acc_norm.

Model: SmolLM2-135M-Instruct, the embedded teacher (a trained causal model with its real 49K-token tokenizer), saved
once as an ordinary checkpoint without a wrapper, so both sides score exactly the same requests. Task: --docs
questions with four answers each, made up here from a small vocabulary.

    .venv/bin/python benchmarks/lm_eval_overhead.py [--docs 150] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
WORDS = ("river mountain city music garden winter bridge market doctor teacher engine planet ocean forest letter "
         "science history kitchen window summer travel language computer animal coffee museum school energy").split()


def build_model(folder: Path) -> Path:
    """The embedded teacher SmolLM2-135M-Instruct (a real trained model), dequantized once into a plain folder."""
    from herd.students import load_student, save_student

    smol = load_student("embedded", device="cpu", dtype="float32")
    # no wrapper in herd.json: both sides must score exactly the same requests
    return save_student(smol.model, smol.tokenizer, "causal", folder,
                        {"wrapper": None, "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"})


def build_task(folder: Path, docs: int) -> Path:
    """A sciq-style multiple-choice task with its data as local JSON, in lm-eval's own YAML format."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "bench_mc.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for _ in range(docs):
            question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
            choices = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(4)]
            fh.write(json.dumps({"question": question, "choices": choices, "label": rng.randrange(4)}) + "\n")
    yaml = folder / "bench_mc.yaml"
    yaml.write_text(
        "task: bench_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {json.dumps(str(data))}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_target: label\ndoc_to_choice: \"{{choices}}\"\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\nmetadata:\n  version: 1.0\n", encoding="utf-8")
    return yaml


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one command run as its own process, offline like the tests."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def lm_eval_scores(out: Path) -> dict[str, float]:
    found = sorted(out.rglob("results*.json"))[-1]
    raw = json.loads(found.read_text())["results"]["bench_mc"]
    return {"acc": raw["acc,none"], "acc_norm": raw["acc_norm,none"]}


def herd_scores(out: Path) -> dict[str, float]:
    raw = json.loads((out / "results.json").read_text())["models"][0]["harness_output"]["results"]["bench_mc"]
    return {"acc": raw["acc,none"], "acc_norm": raw["acc_norm,none"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="(the last line is always the JSON summary)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="herd-bench-overhead-"))
    model, yaml = build_model(work / "model"), build_task(work / "tasks", args.docs)
    baseline = [str(BIN / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model},dtype=auto",
                "--tasks", "bench_mc", "--include_path", str(yaml.parent), "--batch_size", "auto",
                "--device", "cpu", "--num_fewshot", "0"]
    herd = [str(BIN / "herd"), "bench", "--model", str(model)]
    sides = {
        "lm_eval CLI": lambda i: baseline + ["--output_path", str(work / f"lm_eval-{i}")],
        "herd (task name + include path)": lambda i: herd + [
            "--tasks", "bench_mc", "--include-path", str(yaml.parent), "--out", str(work / f"herd-a-{i}"),
            "--set", f"bench.cache_dir={json.dumps(str(work / f'cache-a-{i}'))}"],
        "herd (task YAML file)": lambda i: herd + [
            "--tasks", str(yaml), "--out", str(work / f"herd-b-{i}"),
            "--set", f"bench.cache_dir={json.dumps(str(work / f'cache-b-{i}'))}"],
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for i in range(args.repeats):
        for name, command in sides.items():
            times[name].append(timed(command(i)))
    print(f"model: SmolLM2-135M-Instruct (fp32, CPU); task: {args.docs} docs x 4 choices; median of {args.repeats}")
    print(f"baseline: {' '.join(baseline)}")
    base = times["lm_eval CLI"]
    summary: dict[str, object] = {"docs": args.docs, "repeats": args.repeats}
    for name, values in times.items():
        side = "lm_eval" if name == "lm_eval CLI" else "herd_name" if "name" in name else "herd_yaml"
        wall, cpu = statistics.median(w for w, _ in values), statistics.median(c for _, c in values)
        runs = ", ".join(f"{w:.1f}" for w, _ in values)
        print(f"{name:32s} wall {wall:6.1f} s  CPU {cpu:6.1f} s  (wall per run: {runs})")
        if name != "lm_eval CLI":
            # per round: each herd run against the CLI run just before it, which saw the same machine load
            walls = statistics.median(h[0] / b[0] for h, b in zip(values, base, strict=True))
            cpus = statistics.median(h[1] / b[1] for h, b in zip(values, base, strict=True))
            print(f"{'':32s} overhead: wall {100 * (walls - 1):+.1f}% (goal <= +5%), CPU {100 * (cpus - 1):+.1f}% "
                  "(median of per-round ratios)")
            summary[f"overhead_wall_pct_{side.removeprefix('herd_')}"] = round(100 * (walls - 1), 1)
            summary[f"overhead_cpu_pct_{side.removeprefix('herd_')}"] = round(100 * (cpus - 1), 1)
        summary[f"wall_s_{side}"] = round(wall, 2)
    same = lm_eval_scores(work / "lm_eval-0") == herd_scores(work / "herd-a-0") == herd_scores(work / "herd-b-0")
    print(f"same acc and acc_norm on both sides: {same} {lm_eval_scores(work / 'lm_eval-0')}")
    summary["same_scores"] = same
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
