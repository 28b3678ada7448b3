"""herd train on the tiny models: loss falls, checkpoints are complete and load as the LaMini README shows, bad input
is one line with nothing written, a kill -9 resumes at the same step with the same batches, two gloo processes work,
and the recipe, presets and shipped configs say what the paper says."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from herd.config import Config, StudentConfig, TrainConfig, load_config
from herd.errors import UserError

REPO = Path(__file__).resolve().parents[1]
WORDS = "the a sun moon dog cat tree book music game water red blue green one two three is are good bad".split()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: one torch thread is several times faster than two that spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_pairs(path: Path, n: int = 8, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            response = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9))) + " ."
            row = {"id": f"p{i}", "instruction": f"write a short poem about the {rng.choice(WORDS)}",
                   "response": response, "instruction_source": "alpaca" if i % 2 else "self_instruct_with_topic"}
            fh.write(json.dumps(row) + "\n")
    return path


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def make_config(tmp_path: Path, students: list[dict[str, object]], **train: object) -> Config:
    """A run file in tmp_path: fast defaults for the tiny models, then the test's own keys."""
    keys = {"batch_size": 4, "micro_batch_size": 4, "epochs": 1, "save_steps": 1000, "logging_steps": 1,
            "report_to": [], **train}
    lines = ["[run]", f"dir = {json.dumps(str(tmp_path / 'runs'))}", 'name = "t"', "quiet = true", "", "[train]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    for student in students:
        lines += ["", "[[train.students]]"] + [f"{k} = {toml_value(v)}" for k, v in student.items()]
    path = tmp_path / "run.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path)


class Recorder:
    """A TrainerCallback that keeps every log row (built lazily: transformers is heavy)."""

    def __new__(cls):  # noqa: ANN204
        from transformers import TrainerCallback

        class _Recorder(TrainerCallback):
            def __init__(self) -> None:
                self.logs: list[dict[str, float]] = []

            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
                self.logs.append({"step": state.global_step, **(logs or {})})

        return _Recorder()


class PlanReader:
    """A TrainerCallback that keeps each student's train plan (herd-train.json, gone once the student is finished)
    as training begins."""

    def __new__(cls):  # noqa: ANN204
        from transformers import TrainerCallback

        class _PlanReader(TrainerCallback):
            def __init__(self) -> None:
                self.plans: dict[str, dict[str, object]] = {}

            def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                work = Path(args.output_dir)
                self.plans[work.name.removesuffix(".partial")] = json.loads((work / "herd-train.json").read_text())

        return _PlanReader()


def losses(recorder) -> list[float]:  # noqa: ANN001
    return [row["loss"] for row in recorder.logs if "loss" in row]


def build_gpt2_long(folder: Path) -> Path:
    """tiny GPT-2 with 1024 positions: the LaMini snippets ask for max_length=512 (transformers 4: 256 new tokens)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.tiny import tiny_tokenizer

    torch.manual_seed(0)
    tok = tiny_tokenizer(folder)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=3, eos_token_id=1)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_long(tmp_path_factory) -> Path:
    return build_gpt2_long(tmp_path_factory.mktemp("gpt2-long"))


@pytest.fixture(scope="module")
def trained(tiny_models, gpt2_long, tmp_path_factory):
    """One run that trains an encoder-decoder and a decoder-only student to overfit 8 pairs."""
    from herd.train import run

    tmp = tmp_path_factory.mktemp("trained")
    data = write_pairs(tmp / "pairs.jsonl", n=9)
    cfg = make_config(tmp, [{"base": str(tiny_models["t5"]), "name": "t5", "lr": 1e-2},
                            {"base": str(gpt2_long), "name": "gpt2", "lr": 1e-2}],
                      data=str(data), epochs=20, eval_fraction=0.12, save_steps=10, report_to=["tensorboard"],
                      packing="on")
    recorder, plans = Recorder(), PlanReader()
    out = run(cfg, callbacks=[recorder, plans])
    return {"out": out, "recorder": recorder, "cfg": cfg, "plans": plans.plans}


def test_loss_falls_for_both_families(trained):
    logs = trained["recorder"].logs
    split = next(i for i in range(1, len(logs)) if logs[i]["step"] < logs[i - 1]["step"])  # second student starts
    for part in (logs[:split], logs[split:]):
        values = [row["loss"] for row in part if "loss" in row]
        assert len(values) == 40 and values[-1] < 0.6 * values[0], values  # T5: about 5.7 -> 3.1


@pytest.mark.parametrize("name", ["gptneo", "llama"])
def test_loss_falls_for_other_decoders(tiny_models, tmp_path, name):
    from herd.train import run

    data = write_pairs(tmp_path / "pairs.jsonl")
    recorder = Recorder()
    run(make_config(tmp_path, [{"base": str(tiny_models[name]), "lr": 1e-2}], data=str(data), epochs=15),
        callbacks=[recorder])
    values = losses(recorder)
    assert len(values) == 30 and values[-1] < 0.5 * values[0], values
    meta = json.loads((tmp_path / "runs" / "t" / "train" / f"lamini-{name}" / "herd.json").read_text())
    assert meta["packing"] is False and meta["batching"]["kind"] == "buckets"  # auto without flash-attention


def test_checkpoints_are_complete(trained):
    out = trained["out"]
    assert sorted(p.name for p in out.iterdir()) == ["gpt2", "manifest.json", "t5"]  # no .partial left behind
    for name, family in (("t5", "seq2seq"), ("gpt2", "causal")):
        folder = out / name
        for required in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "herd.json",
                         "README.md", "loss.png"):
            assert (folder / required).is_file(), (name, required)
        assert list((folder / "runs").rglob("events.out.tfevents.*")), "TensorBoard logs travel with the model"
        assert (folder / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        meta = json.loads((folder / "herd.json").read_text())
        assert meta["family"] == family and meta["recipe"]["epochs"] == 20
        assert meta["stats"]["eval_loss"] > 0 and meta["data"]["rows"] == 9
        assert meta["packing"] is (family == "causal")  # packing = on: decoders only, after the exactness check
        assert (meta["wrapper"] is None) is (family == "seq2seq")
    assert (out / "gpt2" / "chat_template.jinja").is_file() and not (out / "t5" / "chat_template.jinja").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["students"]] == ["t5", "gpt2"] and manifest["data"]["rows"] == 9


def test_model_card_describes_the_run(trained, gpt2_long):
    card = (trained["out"] / "gpt2" / "README.md").read_text()
    assert f"`{gpt2_long}`" in card and "pipeline_tag: text-generation" in card
    assert "| alpaca | 4 |" in card and "| self_instruct_with_topic | 4 |" in card  # 8 trained + 1 held out
    assert "| epochs | `20.0` | changed (LaMini: 5.0) |" in card
    assert "| scheduler | `'cosine'` | open (herd default) |" in card
    assert "herd.pipeline(" in card and "![loss curve](loss.png)" in card
    assert "text2text-generation" in (trained["out"] / "t5" / "README.md").read_text()


def test_herd_json_card_and_plan_agree_on_the_students_facts(trained):
    """All three are derived from one record of the student's run (herd.train.record.StudentRun)."""
    for name in ("t5", "gpt2"):
        folder = trained["out"] / name
        meta = json.loads((folder / "herd.json").read_text())
        card = (folder / "README.md").read_text()
        plan = trained["plans"][name]
        same = {"base": "base_model", "init": "init", "recipe": "recipe", "packing": "packing", "data": "data",
                "wrapper": "wrapper", "response_prefix": "response_prefix"}
        assert {key: plan[key] for key in same} == {key: meta[other] for key, other in same.items()}
        assert plan["lora"][0] is meta["lora"] is False
        assert plan["batching"] == {k: meta["batching"][k] for k in plan["batching"]}
        recipe, stats, data = meta["recipe"], meta["stats"], meta["data"]
        assert f"`{meta['base_model']}` (init: {meta['init']})" in card
        assert f"- source: `{data['source']}`" in card and f"- sha256: `{data['sha256']}`" in card
        assert f"- pairs read: {data['rows']}; trained on: " in card
        assert f"| epochs | `{recipe['epochs']!r}` |" in card and f"| batch_size | `{recipe['batch_size']!r}` |" in card
        assert f"| gradient_accumulation | `{recipe['accumulation']!r}` |" in card
        assert f"- packing: {meta['packing']}; precision: {meta['precision']}; LoRA: {meta['lora']}" in card
        assert f"- optimizer steps: {stats['steps']}; final train loss: {stats['train_loss']}; " in card
        assert f"eval loss: {stats['eval_loss']};" in card
        assert "- objective: sft" in card and meta["objective"] == {"objective": "sft"} and "kd" not in plan
    manifest = json.loads((trained["out"] / "manifest.json").read_text())
    for entry in manifest["students"]:
        meta = json.loads((Path(entry["path"]) / "herd.json").read_text())
        assert (entry["family"], entry["base_model"], entry["steps"]) == (meta["family"], meta["base_model"],
                                                                         meta["stats"]["steps"])


def snippets(folder: Path) -> list[str]:
    """The README's python blocks, pointed at this folder."""
    card = (folder / "README.md").read_text()
    return [block.replace('"MODEL"', json.dumps(str(folder)))
            for block in re.findall(r"```python\n(.*?)```", card, flags=re.S)]


def test_readme_snippets_run_on_transformers_5(trained):
    """Decoder: herd.pipeline and the LaMini text-generation snippet; encoder-decoder: herd.pipeline and plain
    generate (its text2text-generation snippet needs transformers 4: tests/test_compat_tf4.py)."""
    import contextlib
    import io

    for name, skip in (("gpt2", None), ("t5", "text2text-generation")):
        blocks = [b for b in snippets(trained["out"] / name) if skip is None or skip not in b]
        assert len(blocks) == 2
        for block in blocks:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(block, f"README.md of {name}", "exec"), {})  # noqa: S102 - the card's own code
            assert printed.getvalue().strip()


def test_a_finished_student_is_skipped(trained, capsys):
    from herd.train import run

    before = (trained["out"] / "gpt2" / "model.safetensors").stat().st_mtime_ns
    run(trained["cfg"])
    assert "already trained" in capsys.readouterr().err
    assert (trained["out"] / "gpt2" / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("case", ["missing_column", "empty", "not_a_language_model", "batch_too_large"])
def test_bad_input_is_one_line_and_writes_nothing(tiny_models, tmp_path, case):
    from transformers import DistilBertConfig

    from herd.train import run

    data = write_pairs(tmp_path / "pairs.jsonl")
    base = str(tiny_models["gpt2"])
    keys: dict[str, object] = {"data": str(data)}
    if case == "missing_column":
        keys["response_column"] = "answer"
    elif case == "empty":
        data.write_text("")
    elif case == "not_a_language_model":
        DistilBertConfig(vocab_size=10, dim=8, n_layers=1, n_heads=1, hidden_dim=8).save_pretrained(tmp_path / "enc")
        base = str(tmp_path / "enc")
    else:
        keys["batch_size"] = 64
    expected = {"missing_column": "pairs.jsonl:1: missing field 'answer'", "empty": "no training pairs",
                "not_a_language_model": "neither a seq2seq nor a causal", "batch_too_large": "effective batch 64"}
    with pytest.raises(UserError, match=re.escape(expected[case])) as err:
        run(make_config(tmp_path, [{"base": base}], **keys))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_cli_bad_input_exits_2(tiny_models, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    out = subprocess.run([sys.executable, "-m", "herd", "train", "--student", str(tiny_models["gpt2"]), "--data",
                          str(data), "-s", f"run.dir={json.dumps(str(tmp_path / 'runs'))}",
                          "-s", "train.instruction_column=prompt"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"herd: error: {data}:1: missing field 'prompt'"]
    assert not (tmp_path / "runs").exists()


KILLER = """
import os, signal, sys
from transformers import TrainerCallback
from herd.config import load_config
from herd.train import run

class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9, right after a checkpoint is complete

run(load_config(sys.argv[1]), callbacks=[KillAfterSave()])
"""


@pytest.mark.slow
@pytest.mark.parametrize("packing", ["off", "on"])
def test_resume_after_kill_continues_at_the_same_step_with_the_same_batches(tiny_models, tmp_path, packing):
    """16 pairs, 4 per step, 3 epochs = 12 steps; killed after the checkpoint of step 6 (inside epoch 2)."""
    import torch
    from safetensors.torch import load_file

    from herd.train import run

    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    students = [{"base": str(tiny_models["llama"]), "lr": 1e-3}]
    reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
    reference_dir.mkdir()
    resumed_dir.mkdir()
    reference = Recorder()
    run(make_config(reference_dir, students, data=str(data), epochs=3, save_steps=3, packing=packing),
        callbacks=[reference])
    config = make_config(resumed_dir, students, data=str(data), epochs=3, save_steps=3, packing=packing)
    killed = subprocess.run([sys.executable, "-c", KILLER, str(resumed_dir / "run.toml"), "6"], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    work = resumed_dir / "runs" / "t" / "train" / "lamini-llama.partial"
    assert (work / "checkpoint-6" / "trainer_state.json").is_file()
    assert not (resumed_dir / "runs" / "t" / "train" / "lamini-llama").exists()  # nothing half-written
    resumed = Recorder()
    run(config, callbacks=[resumed])
    steps = [row["step"] for row in resumed.logs if "loss" in row]
    assert steps == list(range(7, 13))
    expected = {row["step"]: row["loss"] for row in reference.logs if "loss" in row}
    assert [round(row["loss"], 4) for row in resumed.logs if "loss" in row] == [
        round(expected[s], 4) for s in steps]
    final = {name: load_file(d / "runs" / "t" / "train" / "lamini-llama" / "model.safetensors")
             for name, d in (("reference", reference_dir), ("resumed", resumed_dir))}
    for key, value in final["reference"].items():
        assert torch.allclose(value, final["resumed"][key], atol=1e-5), key
    assert not work.exists()


@pytest.mark.slow
def test_two_processes_with_gloo(tiny_models, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    config = make_config(tmp_path, [{"base": str(tiny_models["gpt2"]), "lr": 1e-3}], data=str(data),
                         batch_size=8, micro_batch_size=2, epochs=2)
    accelerate = Path(sys.executable).with_name("accelerate")
    out = subprocess.run([str(accelerate), "launch", "--config_file", str(REPO / "configs/accelerate/ddp.yaml"),
                          "--num_processes", "2", "-m", "herd", "train", "-c", str(tmp_path / "run.toml")],
                         capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # two processes on a shared machine
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("train: ") == 1  # one summary line, from the main process
    folder = Path(config.run.dir) / "t" / "train" / "lamini-gpt2"
    meta = json.loads((folder / "herd.json").read_text())
    # 8 examples a step over 2 processes: each micro-batch holds a device's 4, so no accumulation
    assert meta["recipe"]["world_size"] == 2 and meta["batching"]["accumulation"] == 1
    assert meta["stats"]["steps"] == 4  # 16 pairs / 8 per step * 2 epochs, steps counted once over both processes


def test_student_from_teacher_layers(tiny_models, tmp_path):
    from safetensors.torch import load_file

    from herd.train import run

    data = write_pairs(tmp_path / "pairs.jsonl")
    out = run(make_config(tmp_path, [{"base": str(tiny_models["llama"]), "init": "teacher-layers:1", "lr": 1e-9}],
                          data=str(data), epochs=1))
    folder = out / "lamini-llama-l1"
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 1
    student, teacher = load_file(folder / "model.safetensors"), load_file(tiny_models["llama"] / "model.safetensors")
    key = "model.layers.0.mlp.up_proj.weight"
    assert "model.layers.1.mlp.up_proj.weight" not in student
    assert (student[key] - teacher[key]).abs().max() < 1e-6  # starts from the teacher's layer 0 (lr ~ 0)


def test_tiny_t5_from_scratch(tiny_models, tmp_path):
    from herd.train import run

    data = write_pairs(tmp_path / "pairs.jsonl")
    overrides = {"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2}
    out = run(make_config(tmp_path, [{"base": "t5", "init": "scratch", "tokenizer": str(tiny_models["t5"]),
                                      "config_overrides": overrides, "name": "tiny-t5"}], data=str(data)))
    config = json.loads((out / "tiny-t5" / "config.json").read_text())
    assert config["d_model"] == 16 and config["num_layers"] == 1 and config["decoder_start_token_id"] == 0
    assert json.loads((out / "tiny-t5" / "herd.json").read_text())["family"] == "seq2seq"


def test_lora_saves_merged_full_weights(tiny_models, tmp_path):
    from safetensors.torch import load_file

    from herd.train import run

    data = write_pairs(tmp_path / "pairs.jsonl")
    out = run(make_config(tmp_path, [{"base": str(tiny_models["llama"]), "lr": 1e-2}], data=str(data), lora=True,
                          lora_r=4, epochs=2))
    folder = out / "lamini-llama"
    assert not (folder / "adapter_config.json").exists()
    trained, base = load_file(folder / "model.safetensors"), load_file(tiny_models["llama"] / "model.safetensors")
    assert set(trained) == set(base)  # a plain checkpoint: no lora_A / lora_B left
    key = "model.layers.0.self_attn.q_proj.weight"
    assert (trained[key] - base[key]).abs().max() > 0


def test_recipe_defaults_are_the_papers():
    from herd.train.recipe import LAMINI, resolve

    defaults = TrainConfig()
    for key, (value, _) in LAMINI.items():
        assert getattr(defaults, key) == value, key
    seq2seq = resolve(defaults, StudentConfig(base="t5-small"), "seq2seq")
    assert (seq2seq.batch_size, seq2seq.micro_batch_size, seq2seq.accumulation, seq2seq.lr) == (1024, 8, 128, 5e-4)
    causal = resolve(defaults, StudentConfig(base="x", epochs=2.5), "causal", world_size=8)
    assert (causal.batch_size, causal.accumulation, causal.lr, causal.epochs) == (1024, 16, 2e-5, 2.5)


PAPER_BASES = {
    "t5-small", "t5-base", "t5-large", "google/flan-t5-small", "google/flan-t5-base", "google/flan-t5-large",
    "gpt2", "gpt2-large", "gpt2-xl", "EleutherAI/gpt-neo-125M", "EleutherAI/gpt-neo-1.3B",
    "cerebras/Cerebras-GPT-111M", "cerebras/Cerebras-GPT-256M", "cerebras/Cerebras-GPT-590M",
    "cerebras/Cerebras-GPT-1.3B", "EleutherAI/gpt-j-6b", "huggyllama/llama-7b",
}


def test_lamini_configs_cover_the_papers_table(shared_data):
    import csv

    files = sorted((REPO / "configs" / "lamini").glob("lamini-*.toml"))  # paper.toml: every student, in test_sources
    bases, names = set(), set()
    for path in files:
        cfg = load_config(path)
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and f"herd train -c configs/lamini/{path.name}" in first
        (student,) = cfg.train.students
        bases.add(student.base)
        names.add(student.name)
        large = student.base in ("EleutherAI/gpt-j-6b", "huggyllama/llama-7b")
        assert cfg.train.epochs == (2.5 if large else 5.0) and cfg.train.batch_size == 1024
    assert bases == PAPER_BASES
    with (shared_data / "lamini_paper_nlp_results.csv").open() as fh:
        assert names == {row["model"] for row in csv.DictReader(fh) if row["kind"] == "lamini"}


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for name in ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        config = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
        kinds[name] = config.distributed_type.value
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}


def test_other_data_sources(tiny_models, tmp_path):
    import datasets

    from herd.train.data import load_pairs

    rows = [json.loads(line) for line in write_pairs(tmp_path / "pairs.jsonl").read_text().splitlines()]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "pairs.parquet"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    for source in ("pairs.parquet", "saved"):
        pairs = load_pairs(str(tmp_path / source), tmp_path, ("instruction", "response"))
        assert pairs.manifest["rows"] == 8 and pairs.dataset[0]["response"] == rows[0]["response"]
    with pytest.raises(UserError, match="evaluation set"):
        load_pairs("self_instruct_user_oriented_instructions.jsonl", tmp_path, ("instruction", "response"))
    (tmp_path / "runs" / "responses").mkdir(parents=True)
    (tmp_path / "runs" / "responses" / "data.jsonl").write_text((tmp_path / "pairs.jsonl").read_text())
    sets = [f"run.dir={json.dumps(str(tmp_path))}", "run.name=runs", 'run.stages=["responses","train"]']
    cfg = load_config(None, sets)
    pairs = load_pairs("", cfg, ("instruction", "response"))
    assert pairs.source.endswith("responses/data.jsonl") and pairs.dataset[0]["id"] == rows[0]["id"]
