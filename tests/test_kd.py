"""Token-level distillation: the teacher's stored top-K (local and openai endpoints), the KD loss and collator, a KD
student trained through `herd train`, resume after kill -9, and the vocabulary check."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from herd.config import load_config
from herd.teacher.topk import read_sidecar
from tests.mock_endpoint import write_instructions, write_run_file

torch.set_num_threads(1)


def write_rows(path: Path, n: int) -> Path:
    words = ["dog", "cat", "sun", "moon", "tree", "book", "city", "water"]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"r{i}", "instruction": f"write a short story about the {words[i % 8]}"}) + "\n")
    return path


def local_cfg(tmp_path: Path, teacher: Path, rows: Path, *extra: str):  # noqa: ANN201
    return load_config(None, [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=r", f"teacher.model={str(teacher)!r}",
                              "teacher.device='cpu'", "teacher.dtype='float32'", f"responses.input={str(rows)!r}",
                              "responses.top_logprobs=4", "responses.max_tokens=10", "responses.temperature=0.8",
                              "run.quiet=true", *extra])


def test_stored_topk_equals_a_forward_pass_of_the_teacher(tmp_path, tiny_models):
    from herd import responses
    from herd.students import load_student
    from herd.teacher.base import Request
    from herd.teacher.local import chat_prompt
    from herd.textgen import encode_prompt

    rows = write_rows(tmp_path / "in.jsonl", 5)
    out = responses.run(local_cfg(tmp_path, tiny_models["llama"], rows, "teacher.batch_size=3"))
    manifest = json.loads((out / "manifest.json").read_text())["topk"]
    meta, stored = read_sidecar(out / "topk.parquet")
    assert manifest["rows"] == 5 and meta["k"] == 4 and manifest["bytes_per_token"] > 0
    assert meta["distribution"].startswith("raw model log-softmax")
    student = load_student(str(tiny_models["llama"]), device="cpu", dtype="float32")
    model, tok = student.model.eval(), student.tokenizer
    from herd.prompts import read_prompt

    system = read_prompt("response_system.txt").strip()
    for line in (out / "data.jsonl").read_text().splitlines():
        row = json.loads(line)
        tokens, ids, lps = stored[row["id"]]
        prompt = encode_prompt(tok, chat_prompt(tok, Request.chat(row["instruction"], system)), model)
        with torch.no_grad():
            logits = model(torch.tensor([prompt + tokens.tolist()])).logits[0, len(prompt) - 1:-1]
        direct = torch.log_softmax(logits.float(), -1)
        assert len(tokens) == row["usage"]["completion_tokens"]
        values, best = direct.topk(4, -1)
        # float16 storage: values agree to ~1e-3; the ids are the direct top-4 (checked through their log-probs,
        # which is robust to near-ties swapping places)
        assert torch.allclose(torch.from_numpy(lps), values, atol=5e-3)
        assert torch.allclose(direct.gather(1, torch.from_numpy(ids)), values, atol=5e-3)


def test_kd_loss_against_one_hot_top1_equals_cross_entropy():
    from herd.train.kd import distill_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 7, 11)
    labels = torch.randint(0, 11, (2, 7))
    labels[0, :2] = -100
    k = 3
    ids = torch.zeros(2, 7, k, dtype=torch.long)
    ids[..., 0] = labels.clamp_min(0)
    ids[..., 1], ids[..., 2] = (ids[..., 0] + 1) % 11, (ids[..., 0] + 2) % 11
    lps = torch.full((2, 7, k), float("-inf"))
    lps[..., 0] = 0.0
    targets = {"kd_ids": ids, "kd_lps": lps, "kd_mask": torch.ones(2, 7, dtype=torch.bool)}
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    for weight in (1.0, 0.3):
        loss, parts = distill_loss(logits, labels, targets, weight, shift=True)
        assert torch.allclose(loss, ce, atol=1e-5), (weight, loss, ce)
    # a full-vocabulary teacher equal to the student: KL is zero
    full = torch.log_softmax(logits, -1).topk(11, -1)
    same = {"kd_ids": full.indices, "kd_lps": full.values, "kd_mask": torch.ones(2, 7, dtype=torch.bool)}
    _, parts = distill_loss(logits, labels, same, 1.0, shift=False)
    assert abs(float(parts["kl_sum"])) < 1e-4


def test_kd_targets_follow_examples_into_packed_and_bucketed_batches(tiny_models):
    """The targets follow the examples whether the batch is packed into rows or padded to a bucket: same loss."""
    from herd.students import load_student
    from herd.students.training import packing_is_exact
    from herd.train.collate import BucketCollator, PackedCollator
    from herd.train.kd import distill_loss

    student = load_student(str(tiny_models["llama"]), device="cpu", dtype="float32")
    model, tok = student.model.eval(), student.tokenizer
    assert packing_is_exact(model, "causal")
    torch.manual_seed(1)
    feats = []
    for n in (6, 9, 4, 7):
        ids = torch.randint(4, 150, (n,)).tolist()
        pos = list(range(2, n))
        feats.append({"input_ids": ids, "labels": [-100, -100, *ids[2:]], "kd_pos": pos,
                      "kd_ids": torch.randint(0, 150, (len(pos) * 2,)).tolist(),
                      "kd_lps": torch.log_softmax(torch.randn(len(pos), 3), -1)[:, :2].reshape(-1).tolist()})
    losses = []
    for collate in (BucketCollator("causal", tok.pad_token_id, None, []), PackedCollator(tok.pad_token_id, 16, 4)):
        batch = collate([dict(f) for f in feats])
        targets = {k: batch.pop(k) for k in ("kd_ids", "kd_lps", "kd_mask")}
        labels = batch.pop("labels")
        assert targets["kd_ids"].shape[:2] == labels.shape and targets["kd_ids"].shape[2] == 2
        inputs = {k: v for k, v in batch.items() if not k.startswith("herd_")}
        with torch.no_grad():
            logits = model(**inputs).logits
        losses.append(distill_loss(logits, labels, targets, 0.7, shift=True))
    (bucketed, p1), (packed, p2) = losses
    assert int(p1["taught"]) == int(p2["taught"]) == sum(len(f["kd_pos"]) for f in feats)
    assert torch.allclose(bucketed, packed, rtol=1e-3)  # packing is exact to ~1e-4 per logit (packing_is_exact)
    assert torch.allclose(p1["kl_sum"], p2["kl_sum"], rtol=1e-3)


def test_kd_moves_the_student_toward_the_teacher(tmp_path, tiny_models):
    """One example, a few steps: KD lowers the student's KL to the teacher's top-K far more than SFT does."""
    from herd.students import load_student
    from herd.train.kd import distill_loss

    teacher = load_student(str(tiny_models["llama"]), device="cpu", dtype="float32").model.eval()
    torch.manual_seed(0)
    ids = torch.randint(4, 150, (1, 12))
    with torch.no_grad():
        top = torch.log_softmax(teacher(ids).logits, -1).topk(8, -1)
    # targets at label position t + 1 come from logits position t (the causal shift)
    kd_ids = torch.zeros(1, 12, 8, dtype=torch.long)
    kd_lps = torch.full((1, 12, 8), float("-inf"))
    kd_ids[:, 1:], kd_lps[:, 1:] = top.indices[:, :-1], top.values[:, :-1]
    targets = {"kd_ids": kd_ids, "kd_lps": kd_lps, "kd_mask": torch.ones(1, 12, dtype=torch.bool)}
    labels = ids.clone()

    def kl_after(weight: float) -> tuple[float, float]:
        student = load_student(str(tiny_models["gpt2"]), device="cpu", dtype="float32").model
        opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
        before = float(distill_loss(student(ids).logits, labels, targets, 1.0, shift=True)[0])
        for _ in range(15):
            loss = distill_loss(student(ids).logits, labels, targets, weight, shift=True)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return before, float(distill_loss(student(ids).logits, labels, targets, 1.0, shift=True)[0])

    before, kd = kl_after(1.0)
    _, sft = kl_after(0.0)
    assert kd < 0.5 * before, (before, kd)
    assert kd < sft, (kd, sft)


def test_herd_train_kd_student_both_families_and_recorded(tmp_path, tiny_models):
    from herd import responses, train

    rows = write_rows(tmp_path / "in.jsonl", 6)
    out = responses.run(local_cfg(tmp_path, tiny_models["llama"], rows))
    sets = [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=r", "run.quiet=true", "train.objective='kd'",
            "train.kd_weight=0.8", "train.batch_size=2", "train.micro_batch_size=2", "train.max_steps=2",
            "train.max_length=64", "train.report_to=[]", "train.wrapper=''", f"train.data={str(out)!r}"]
    run_file = tmp_path / "train.toml"
    run_file.write_text(
        f'[[train.students]]\nname = "dec"\nbase = {json.dumps(str(tiny_models["gpt2"]))}\n\n'
        f'[[train.students]]\nname = "t5"\nbase = {json.dumps(str(tiny_models["t5"]))}\nlr = 0.001\n',
        encoding="utf-8")
    folder = train.run(load_config(run_file, sets))
    for name in ("dec", "t5"):
        meta = json.loads((folder / name / "herd.json").read_text())
        obj = meta["objective"]
        assert obj["objective"] == "kd" and obj["kd_weight"] == 0.8 and obj["top_k"] == 4
        assert obj["teacher"].startswith("local:llama:") and obj["coverage"]["taught_tokens"] > 0
        card = (folder / name / "README.md").read_text()
        assert "objective: kd" in card and "top-4" in card


def test_vocabulary_mismatch_exits_2_before_training(tmp_path, tiny_models):
    from herd import responses
    from tests.tiny import tiny_gpt2

    rows = write_rows(tmp_path / "in.jsonl", 3)
    out = responses.run(local_cfg(tmp_path, tiny_models["llama"], rows))
    other = tiny_gpt2(tmp_path / "other")
    vocab = json.loads((other / "tokenizer.json").read_text())
    words = vocab["model"]["vocab"]
    names = sorted(words, key=words.get)
    names[10], names[11] = names[11], names[10]  # same size and names, two ids swapped: a different vocabulary
    vocab["model"]["vocab"] = {w: i for i, w in enumerate(names)}
    (other / "tokenizer.json").write_text(json.dumps(vocab))
    proc = subprocess.run(
        [sys.executable, "-m", "herd", "train", "-q", "--set", f"run.dir={str(tmp_path / 'runs')!r}",
         "--set", "run.name='r'", "--set", f"train.student={str(other)!r}", "--set", "train.objective='kd'",
         "--set", f"train.data={str(out)!r}", "--set", "train.batch_size=1", "--set", "train.micro_batch_size=1"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "vocabulary" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "r" / "train").exists()


def test_openai_endpoint_top_logprobs_mapped_to_ids(tmp_path):
    from herd import responses
    from herd.teacher.mockserver import MockServer
    from tests.tiny import tiny_tokenizer

    tok = tiny_tokenizer(tmp_path / "tok")
    write_instructions(tmp_path / "in.jsonl", 4)
    with MockServer(latency_s=0.0) as url:
        sets = [f"teacher.base_urls=[{url!r}]", "teacher.backend='openai'", "teacher.model='mock'",
                f"run.dir={str(tmp_path / 'runs')!r}", "run.name=t", "run.quiet=true",
                f"responses.input={str(tmp_path / 'in.jsonl')!r}", "responses.top_logprobs=3",
                f"responses.topk_tokenizer={str(tmp_path / 'tok')!r}"]
        out = responses.run(load_config(None, sets))
        too_many = subprocess.run([sys.executable, "-m", "herd", "responses", "-q", *sum(
            (["--set", s] for s in [*sets[:-2], "responses.top_logprobs=21"]), [])],
            capture_output=True, text=True, timeout=120)
    assert too_many.returncode == 2 and "at most 20" in too_many.stderr
    meta, stored = read_sidecar(out / "topk.parquet")
    assert meta["k"] == 3 and len(stored) == 4 and meta["vocab_size"] == len(tok)
    for line in (out / "data.jsonl").read_text().splitlines():
        row = json.loads(line)
        tokens, ids, lps = stored[row["id"]]
        words = row["response"].split()
        assert len(tokens) == len(words)
        for word, first, top in zip(words, ids[:, 0], lps[:, 0], strict=True):
            known = word in tok.get_vocab()
            assert (int(first) == tok.convert_tokens_to_ids(word)) if known else top == float("-inf")
        assert (lps[:, 0] <= 0).all()


def calls_and_topk(journal: Path) -> tuple[int, int]:
    if not journal.exists():
        return 0, 0
    db = sqlite3.connect(journal, timeout=30)
    try:
        calls = db.execute("SELECT COUNT(*) FROM calls WHERE status = 'ok'").fetchone()[0]
        topk = db.execute("SELECT COUNT(*) FROM topk").fetchone()[0]
    except sqlite3.OperationalError:
        return 0, 0
    finally:
        db.close()
    return calls, topk


def test_kill9_keeps_sidecar_and_journal_consistent(tmp_path):
    from herd.teacher.journal import Journal
    from herd.teacher.mockserver import fetch_ledger, spawn
    from tests.tiny import tiny_tokenizer

    tiny_tokenizer(tmp_path / "tok")
    ids = write_instructions(tmp_path / "in.jsonl", 30)
    run_dir = tmp_path / "runs"
    journal, stage = run_dir / "t" / "journal.sqlite", run_dir / "t" / "responses"
    with spawn("--latency", "0.1", "--concurrency", "2") as url:
        run_file = write_run_file(tmp_path / "run.toml", run_dir, tmp_path / "in.jsonl", url, concurrency=2)
        with run_file.open("a", encoding="utf-8") as fh:
            fh.write(f"top_logprobs = 5\ntopk_tokenizer = {json.dumps(str(tmp_path / 'tok'))}\n")
        kills = 0
        for _ in range(3):
            proc = subprocess.Popen([sys.executable, "-m", "herd", "responses", "-c", str(run_file), "-q"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            start = calls_and_topk(journal)[0]
            deadline = time.monotonic() + 60
            while proc.poll() is None and calls_and_topk(journal)[0] < start + 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            calls, topk = calls_and_topk(journal)
            assert calls == topk  # every finished call has its top-K, written in the same transaction
        final = subprocess.run([sys.executable, "-m", "herd", "responses", "-c", str(run_file), "-q"],
                               capture_output=True, text=True, timeout=300)
        ledger = fetch_ledger(url)
    assert final.returncode == 0, final.stderr
    assert kills >= 2
    kept = [json.loads(line) for line in (stage / "data.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in kept) == ids
    _, stored = read_sidecar(stage / "topk.parquet")
    assert set(stored) == set(ids)
    store = Journal(journal)
    found = store.topk(r["call"] for r in kept)
    store.close()
    for row in kept:
        assert len(stored[row["id"]][0]) == len(found[row["call"]].sampled) == len(row["response"].split())
    # at most the calls in flight at each kill were answered twice (answered, not yet journaled)
    assert sum(c["answers"] > 1 for c in ledger["calls"].values()) <= 2 * kills
    assert calls_and_topk(journal) == (30, 30)


@pytest.mark.parametrize("k", [0])
def test_top_logprobs_off_keeps_old_journal_keys(k):
    from herd.teacher.base import Request

    plain = Request.chat("hi", max_tokens=5)
    assert Request.chat("hi", max_tokens=5, top_logprobs=k).key("m") == plain.key("m")
    assert Request.chat("hi", max_tokens=5, top_logprobs=3).key("m") != plain.key("m")


def kd_run_file(tmp_path: Path, teacher: Path, student: Path, rows: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f"""[run]
dir = {json.dumps(str(tmp_path / "runs"))}
name = "kd"
stages = ["responses", "train"]
quiet = true

[teacher]
model = {json.dumps(str(teacher))}
device = "cpu"
dtype = "float32"

[responses]
input = {json.dumps(str(rows))}
top_logprobs = 4
max_tokens = 10

[train]
objective = "kd"
batch_size = 4
micro_batch_size = 2
max_steps = 2
max_length = 64
report_to = []
wrapper = ""

[[train.students]]
name = "kd-student"
base = {json.dumps(str(student))}
lr = 0.001
""", encoding="utf-8")
    return path


def test_herd_run_makes_a_kd_student_from_a_config(tmp_path, tiny_models):
    run_file = kd_run_file(tmp_path, tiny_models["llama"], tiny_models["gpt2"], write_rows(tmp_path / "in.jsonl", 8))
    proc = subprocess.run([sys.executable, "-m", "herd", "run", str(run_file), "-q", "--yes"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((tmp_path / "runs" / "kd" / "train" / "kd-student" / "herd.json").read_text())
    assert meta["objective"]["objective"] == "kd" and meta["objective"]["coverage"]["rows_with_topk"] == 8


@pytest.mark.slow
def test_kd_under_accelerate_with_two_processes(tmp_path, tiny_models):
    from herd import responses

    rows = write_rows(tmp_path / "in.jsonl", 16)
    run_file = kd_run_file(tmp_path, tiny_models["llama"], tiny_models["gpt2"], rows)
    responses.run(load_config(run_file))
    accelerate = Path(sys.executable).with_name("accelerate")
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([str(accelerate), "launch", "--config_file", str(repo / "configs/accelerate/ddp.yaml"),
                          "--num_processes", "2", "-m", "herd", "train", "-c", str(run_file)],
                         capture_output=True, text=True, timeout=300, cwd=repo,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    meta = json.loads((tmp_path / "runs" / "kd" / "train" / "kd-student" / "herd.json").read_text())
    assert meta["recipe"]["world_size"] == 2 and meta["objective"]["objective"] == "kd"
    assert meta["stats"]["steps"] == 2 and meta["stats"]["train_loss"] == meta["stats"]["train_loss"]  # not NaN


def test_kd_loss_same_with_the_head_only_at_scored_positions(tiny_models):
    from herd.students import load_student
    from herd.train.collate import PackedCollator
    from herd.train.loss import student_loss

    model = load_student(str(tiny_models["llama"]), device="cpu", dtype="float32").model.eval()
    torch.manual_seed(2)
    feats = []
    for n in (6, 9, 5):
        ids = torch.randint(4, 150, (n,)).tolist()
        pos = list(range(2, n))
        feats.append({"input_ids": ids, "labels": [-100, -100, *ids[2:]], "kd_pos": pos,
                      "kd_ids": torch.randint(0, 150, (len(pos) * 2,)).tolist(),
                      "kd_lps": torch.log_softmax(torch.randn(len(pos), 3), -1)[:, :2].reshape(-1).tolist()})
    batch = PackedCollator(0, 16, 4)(feats)
    with torch.no_grad():
        full = student_loss(model, dict(batch), "causal", None, 1.0, False, 0.7)[0]
        scored = student_loss(model, dict(batch), "causal", None, 1.0, True, 0.7)[0]
        plain = student_loss(model, dict(batch), "causal", None, 1.0, True, 0.0)[0]
    assert torch.allclose(full, scored, atol=1e-5) and not torch.allclose(full, plain, atol=1e-3)
