"""The model card (README.md) and loss curve (loss.png) of a finished student.

Reads what the run knows (recipe with provenance, data manifest and composition, the Trainer's log history);
writes README.md and loss.png into the checkpoint folder. What differs per family (usage snippets, pipeline tag,
prompt format) comes from herd.students.saving.card_facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def loss_plot(history: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Training (and eval) loss per optimizer step as a PNG; False when nothing was logged."""
    train = [(row["step"], row["loss"]) for row in history if "loss" in row and "step" in row]
    evals = [(row["step"], row["eval_loss"]) for row in history if "eval_loss" in row and "step" in row]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="#1f77b4")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o--", label="eval loss", color="#d62728")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def front_matter(info: dict[str, Any]) -> str:
    lines = ["---", "library_name: transformers",
             f"pipeline_tag: {info['facts']['pipeline_tag']}",
             "tags: [herd, lamini, distillation, instruction-following]"]
    base = str(info["base_model"])
    if info["init"] == "pretrained" and base != "embedded" and not Path(base).exists():
        lines.append(f"base_model: {base}")
    return "\n".join([*lines, "---", ""])


def data_section(info: dict[str, Any]) -> str:
    data = info["data"]
    stage = data.get("stage", {})
    lines = ["## Training data", "", f"- source: `{data.get('source')}`"]
    if data.get("sha256"):
        lines.append(f"- sha256: `{data['sha256']}`")
    lines.append(f"- pairs read: {data.get('rows')}; trained on: {info['train_rows']}; held out for eval: "
                 f"{info['eval_rows']}; dropped (prompt longer than max_length): {info['dropped']}")
    if stage:
        teacher = stage.get("teacher") or stage.get("usage", {}).get("model") or "see the stage manifest"
        lines.append(f"- made by herd stage `{stage.get('stage', '?')}`, teacher: {teacher}")
    lines += ["", "| instruction_source | pairs | avg prompt tokens | avg response tokens |", "|---|---|---|---|"]
    for source, row in info["composition"].items():
        lines.append(f"| {source} | {row['pairs']} | {row['avg_prompt_tokens']} | {row['avg_response_tokens']} |")
    return "\n".join(lines) + "\n"


def training_section(info: dict[str, Any], has_plot: bool) -> str:
    lines = ["## Training", "", "| hyperparameter | value | source |", "|---|---|---|"]
    lines += [f"| {key} | `{value!r}` | {source} |" for key, value, source in info["hyperparameters"]]
    stats = info["stats"]
    lines += ["", f"- packing: {info['packing']}; precision: {info['precision']}; LoRA: {info['lora']}",
              f"- optimizer steps: {stats.get('steps')}; final train loss: {stats.get('train_loss')}; "
              f"eval loss: {stats.get('eval_loss', 'none')}; runtime: {stats.get('runtime_s')} s; "
              f"non-padding tokens/s: {stats.get('tokens_per_s')}"]
    lines += objective_lines(info.get("objective", {"objective": "sft"}))
    if has_plot:
        lines += ["", "![loss curve](loss.png)"]
    return "\n".join(lines) + "\n"


def objective_lines(obj: dict[str, Any]) -> list[str]:
    if obj.get("objective") != "kd":
        return ["- objective: sft (cross-entropy on the teacher's responses)"]
    cover = obj.get("coverage", {})
    return [f"- objective: kd (token-level distillation): loss = (1 - {obj['kd_weight']}) x CE + {obj['kd_weight']} "
            f"x KL to the teacher's top-{obj['top_k']} next-token distribution (rest of the mass as one bucket); "
            f"teacher: {obj.get('teacher') or 'see the responses manifest'}; teacher tokenizer: "
            f"`{obj['teacher_tokenizer']}`; response tokens with a teacher distribution: "
            f"{cover.get('taught_tokens', '?')} of {cover.get('response_tokens', '?')}"]


def write_card(folder: Path, info: dict[str, Any], history: list[dict[str, Any]]) -> Path:
    """README.md (+ loss.png) for the checkpoint in `folder`."""
    has_plot = loss_plot(history, folder / "loss.png", f"{info['name']}: loss")
    facts = info["facts"]
    parts = [
        front_matter(info),
        f"# {info['name']}\n",
        f"{facts['kind']} instruction-following model distilled with herd the LaMini way: "
        f"`{info['base_model']}` (init: {info['init']}) fine-tuned on instruction-response pairs written by a "
        f"teacher LLM. {facts['prompt']}\n",
        "## Usage\n",
        facts["usage"],
        data_section(info),
        training_section(info, has_plot),
        "## Framework versions\n\n" + "\n".join(f"- {k}: {v}" for k, v in info["versions"].items()) + "\n",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
