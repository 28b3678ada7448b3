"""Token-level distillation against plain SFT: same pairs, same student start, same steps.

The embedded teacher (SmolLM2-135M-Instruct) answers instructions (herd's seed tasks plus templated topic questions)
through `herd responses` with `responses.top_logprobs = K`, which also stores its top-K next-token log-probs.
The responses are split by id into training pairs and held-out pairs. Two students start from the same weights (the
demo's decoder: N evenly spaced layers cut from the teacher, so it shares the teacher's vocabulary) and are trained by
`herd train` for the same optimizer steps with the same recipe, one with `objective = "sft"`, one with `"kd"`.

Figures, on held-out teacher responses the students never saw: the loss (cross-entropy per response token of the
teacher's sampled text), the KL to the teacher's top-K, and top-1 agreement (share of response positions where the
student's most likely next token is the teacher's); from training: time per optimizer step (median over steps after
the first) and non-padding tokens/s of each; from the sidecar: bytes stored per response token. Goal: KD's
held-out loss <= 0.95 x SFT's at <= 1.3 x SFT's time per step.

    nice .venv/bin/python benchmarks/kd.py [--pairs 128 --heldout 32 --steps 40 --k 20 --layers 6] [--json]

Teacher calls are journaled under --work (default ~/.cache/herd/bench-kd), so a second run trains only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

TEMPLATES = ("Explain {t} to a beginner in three sentences.", "Give two interesting facts about {t}.",
             "Write a short paragraph about {t}.", "What is {t} and why does it matter?")


def write_instructions(path: Path, n: int) -> None:
    from importlib import resources

    assets = resources.files("herd.assets")
    seeds = [json.loads(line) for line in assets.joinpath("seed_tasks.jsonl").read_text().splitlines() if line]
    topics = [t for t in assets.joinpath("topics.txt").read_text().splitlines() if t.strip()]
    rows = [{"id": s["id"], "instruction": s["instruction"]} for s in seeds]
    for i, topic in enumerate(topics[:: max(1, len(topics) // n)]):
        rows.append({"id": f"topic_{i:04d}", "instruction": TEMPLATES[i % len(TEMPLATES)].format(t=topic)})
    with path.open("w", encoding="utf-8") as fh:
        for row in rows[:n]:
            fh.write(json.dumps(row) + "\n")


def teacher_responses(work: Path, args: argparse.Namespace) -> Path:
    from herd import responses
    from herd.config import load_config

    write_instructions(work / "instructions.jsonl", args.pairs)
    cfg = load_config(None, [f"run.dir={str(work)!r}", "run.name='kd'", "run.quiet=true", "teacher.batch_size=16",
                             f"responses.input={str(work / 'instructions.jsonl')!r}",
                             f"responses.top_logprobs={args.k}",
                             f"responses.max_tokens={args.max_tokens}", "responses.temperature=0.7"])
    return responses.run(cfg)


def split(stage: Path, heldout: int, work: Path) -> tuple[Path, list[dict[str, Any]]]:
    import hashlib

    rows = [json.loads(line) for line in (stage / "data.jsonl").read_text().splitlines() if line]
    rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    held, train = rows[:heldout], rows[heldout:]
    path = work / "train_pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    return path, held


def step_timer() -> Any:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.times: list[float] = []
            self.last = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.last = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.times.append(time.perf_counter() - self.last)

    return Timer()


def train_student(objective: str, pairs: Path, stage: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from herd import train
    from herd.config import load_config
    from herd.teacher.embedded import embedded_model_path

    run_file = out.parent / f"{objective}.toml"
    base = json.dumps(embedded_model_path())  # the converted copy of the embedded teacher: no GGUF parse per student
    run_file.write_text(f'[[train.students]]\nname = "{objective}"\nbase = {base}\n'
                        f'init = "teacher-layers:{args.layers}"\nlr = {args.lr}\n', encoding="utf-8")
    cfg = load_config(run_file, [
        f"run.dir={str(out.parent)!r}", "run.name='kd-train'", "run.quiet=true", f"train.data={str(pairs)!r}",
        f"train.objective={objective!r}", f"train.kd_weight={args.kd_weight}", f"train.kd_topk={str(stage)!r}",
        f"train.output={str(out)!r}", f"train.max_steps={args.steps}", f"train.batch_size={args.batch}",
        f"train.micro_batch_size={args.batch}", "train.max_length=192", "train.report_to=[]",
        "train.overwrite=true", "train.save_steps=100000", "train.logging_steps=5", "train.epochs=100"])
    timer = step_timer()
    train.run(cfg, callbacks=[timer])
    meta = json.loads((out / objective / "herd.json").read_text())
    return {"step_s": statistics.median(timer.times[1:] or timer.times), "tokens_per_s": meta["stats"].get(
        "tokens_per_s"), "path": out / objective, "objective": meta["objective"]}


def heldout_scores(model_dir: Path, held: list[dict[str, Any]], stage: Path) -> dict[str, float]:
    """Mean CE per response token, KL to the teacher's top-K, and top-1 agreement, on held-out teacher responses."""
    import torch

    from herd.prompts import read_prompt
    from herd.students import load_student
    from herd.students.training import encode_pairs
    from herd.teacher.topk import read_sidecar
    from herd.train.kd import distill_loss
    from herd.train.kd_data import example_targets

    student = load_student(str(model_dir), device="cpu", dtype="float32")
    model, tok = student.model.eval(), student.tokenizer
    meta, stored = read_sidecar(stage / "topk.parquet")
    k = int(meta["k"])
    wrapper = read_prompt("decoder_wrapper.txt")
    enc = encode_pairs("causal", tok, wrapper, ([r["instruction"] for r in held], [r["response"] for r in held]),
                       max_length=192)
    ce = kl = agree = taught = tokens = 0.0
    for i, row in enumerate(held):
        ids, labels = enc["input_ids"][i], enc["labels"][i]
        if not ids:
            continue
        found = example_targets(labels, enc["prompt_tokens"][i], stored.get(row["id"]), k)
        lab = torch.tensor([labels])
        t_ids = torch.zeros(1, len(ids), k, dtype=torch.long)
        t_lps = torch.full((1, len(ids), k), float("-inf"))
        mask = torch.zeros(1, len(ids), dtype=torch.bool)
        pos = torch.tensor(found["kd_pos"], dtype=torch.long)
        if len(pos):
            t_ids[0, pos] = torch.tensor(found["kd_ids"]).view(-1, k)
            t_lps[0, pos] = torch.tensor(found["kd_lps"]).view(-1, k)
            mask[0, pos] = True
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits
            _, parts = distill_loss(logits, lab, {"kd_ids": t_ids, "kd_lps": t_lps, "kd_mask": mask}, 1.0, True)
            if len(pos):
                guess = logits[0, pos - 1].argmax(-1)
                agree += float((guess == t_ids[0, pos, 0]).sum())
        ce += float(parts["ce_sum"])
        kl += float(parts["kl_sum"])
        tokens += float(parts["tokens"])
        taught += float(parts["taught"])
    return {"loss": ce / tokens, "kl": kl / max(taught, 1), "top1": agree / max(taught, 1), "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--heldout", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--kd-weight", type=float, default=0.5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "herd" / "bench-kd"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stage = teacher_responses(work, args)
    topk = json.loads((stage / "manifest.json").read_text())["topk"]
    pairs, held = split(stage, args.heldout, work)
    runs = {obj: train_student(obj, pairs, stage, work / "students", args) for obj in ("sft", "kd")}
    scores = {obj: heldout_scores(r["path"], held, stage) for obj, r in runs.items()}
    result = {
        "heldout_loss_sft": round(scores["sft"]["loss"], 4), "heldout_loss_kd": round(scores["kd"]["loss"], 4),
        "heldout_loss_ratio": round(scores["kd"]["loss"] / scores["sft"]["loss"], 4),
        "heldout_kl_sft": round(scores["sft"]["kl"], 4), "heldout_kl_kd": round(scores["kd"]["kl"], 4),
        "top1_agreement_sft": round(scores["sft"]["top1"], 4), "top1_agreement_kd": round(scores["kd"]["top1"], 4),
        "step_time_ratio": round(runs["kd"]["step_s"] / runs["sft"]["step_s"], 3),
        "step_s_sft": round(runs["sft"]["step_s"], 3), "step_s_kd": round(runs["kd"]["step_s"], 3),
        "tokens_per_s_sft": runs["sft"]["tokens_per_s"], "tokens_per_s_kd": runs["kd"]["tokens_per_s"],
        "bytes_per_token": topk["bytes_per_token"], "k": topk["k"], "train_pairs": args.pairs - args.heldout,
        "heldout_pairs": len(held), "heldout_tokens": int(scores["kd"]["tokens"]), "steps": args.steps,
        "kd_weight": args.kd_weight, "coverage": runs["kd"]["objective"]["coverage"]["coverage"],
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"held-out loss: SFT {result['heldout_loss_sft']}  KD {result['heldout_loss_kd']}  "
          f"ratio {result['heldout_loss_ratio']} (goal <= 0.95)", file=sys.stderr)
    print(f"top-1 agreement with the teacher: SFT {result['top1_agreement_sft']}  KD {result['top1_agreement_kd']}",
          file=sys.stderr)
    print(f"time per step: SFT {result['step_s_sft']} s  KD {result['step_s_kd']} s  ratio "
          f"{result['step_time_ratio']} (goal <= 1.3); bytes per token (K={topk['k']}): {topk['bytes_per_token']}",
          file=sys.stderr)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
