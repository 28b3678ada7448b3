"""[[sources]]: the paper's seven sources as one run, offline. Hub prompt sets come from small copies in the offline
`datasets` cache (tests/hub_fixtures.py), the teacher is the mock OpenAI server; the whole recipe of
configs/lamini/paper.toml runs at run.scale, is killed with SIGKILL, resumes without asking a finished call again,
and a second run does nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from herd.config import load_config
from herd.errors import UserError
from herd.mix import LAMINI_TABLE1
from herd.plan import make_plan
from herd.run import select, stage_config
from herd.teacher.mockserver import fetch_ledger, spawn
from tests.hub_fixtures import alpaca_rows, flan_rows, p3_rows, write_cached
from tests.test_kill_resume import finished_calls

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "lamini" / "paper.toml"
SCALE = 0.0002  # 516 pairs of the paper's 2.58M, the same shares


def paper_subsets() -> list[str]:
    return list(load_config(PAPER).sources[2].subsets)


def hub_cache(root: Path) -> Path:
    """The Hub datasets paper.toml names, as small prepared copies in an offline datasets cache."""
    cache = root / "hf-datasets"
    write_cached(cache, "tatsu-lab/alpaca", alpaca_rows(14))
    for task in paper_subsets():
        write_cached(cache, "bigscience/P3", p3_rows(task, 30), config=task)
    write_cached(cache, "Muennighoff/flan", flan_rows(240))
    return cache


def recipe(tmp_path: Path, url: str, extra: str = "") -> Path:
    """paper.toml itself (included, not copied) with the mock as teacher and a small scale."""
    cfg = tmp_path / "trial.toml"
    cfg.write_text(f"""include = {json.dumps(str(PAPER))}
[run]
dir = {json.dumps(str(tmp_path / 'runs'))}
scale = {SCALE}
stages = ["instructions", "responses", "mix", "dedup"]
[teacher]
base_urls = [{json.dumps(url)}]
model = "mock"
api_key_env = ""
concurrency = 4
backoff_base_s = 0.01
backoff_max_s = 0.05
[responses]
max_tokens = 64
{extra}""")
    return cfg


def herd(cfg: Path, cache: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "herd", "run", str(cfg), "-q", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def test_paper_recipe_at_small_scale_offline_killed_resumed_and_idle_on_a_second_run(tmp_path):
    cache = hub_cache(tmp_path)
    run_dir = tmp_path / "runs" / "lamini"
    journal = run_dir / "journal.sqlite"
    with spawn("--latency", "0.01", "--concurrency", "8") as url:
        cfg = recipe(tmp_path, url)
        first = herd(cfg, cache)
        deadline = time.monotonic() + 120
        while len(finished_calls(journal)) < 120 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[0]  # still running: the kill falls mid-run
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        second = herd(cfg, cache)
        out, _ = second.communicate(timeout=300)
        assert second.returncode == 0, out
        ledger = fetch_ledger(url)
        third = herd(cfg, cache)
        again, _ = third.communicate(timeout=120)
        assert third.returncode == 0, again
        after = fetch_ledger(url)
    # The endpoint saw no attempt at a call after herd had recorded it as finished.
    calls = {c["prompt"]: c for c in ledger["calls"].values()}
    finished = finished_calls(journal)
    for prompt, when in finished.items():
        assert all(t < when for t, _ in calls[prompt]["events"]), prompt
    # A second run does nothing: every stage is up to date and the endpoint is not asked again.
    assert after["requests"] == ledger["requests"]
    assert again.count("up to date, skipped") == 16, again  # 7 sources x 2 stages, mix, dedup
    # Each source gave its scaled count, under its own label, and the mix holds the paper's shares.
    sources = load_config(cfg).sources
    wanted = {s.label or stage_label(s): round(s.count * SCALE) for s in sources}
    mixed = [json.loads(line) for line in (run_dir / "mix" / "data.jsonl").read_text().splitlines()]
    assert Counter(r["instruction_source"] for r in mixed) == wanted
    total = sum(wanted.values())
    assert total == 516
    for label, share in LAMINI_TABLE1.items():
        assert abs(wanted[label] - share / sum(LAMINI_TABLE1.values()) * total) <= 1
    assert len({r["id"] for r in mixed}) == len(mixed)
    alpaca = [r for r in mixed if r["instruction_source"] == "alpaca"]
    assert all(r["id"].startswith("alpaca:") and r["response"] for r in alpaca)
    p3 = [r for r in mixed if r["instruction_source"] == "original_p3"]
    assert all(" question " in r["instruction"] for r in p3)  # the mapped field, inputs_pretokenized
    assert (run_dir / "dedup" / "data.jsonl").is_file()


def stage_label(src) -> str:  # type: ignore[no-untyped-def]
    from herd.sources import label_of

    return label_of(src)


def test_hub_prompt_sets_load_offline_with_field_mapping(tmp_path, monkeypatch):
    import datasets

    from herd import sources
    from herd.run import expand

    cache = hub_cache(tmp_path)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    cfg = load_config(PAPER, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", f"run.scale={SCALE}"])
    specs = {s.name: s for s in expand(cfg)}
    alpaca = sources.load(stage_config(cfg, specs["prompts:alpaca"]))
    assert len(alpaca) == 14 and alpaca[0]["input"] == "The garden is 1 square meters."
    assert {r["instruction_source"] for r in alpaca} == {"alpaca"}
    p3 = sources.load(stage_config(cfg, specs["prompts:original_p3"]))
    assert len(p3) == 30 * len(paper_subsets()) and {r["group"] for r in p3} == set(paper_subsets())
    # the paper's P3/FLAN rule: a call's three examples come from one task
    from herd.instructions.render import plan_calls
    from herd.instructions.seeds import FieldMap, load_pool

    ic = stage_config(cfg, specs["instructions:generated_p3"]).instructions
    pool = load_pool(ic.seeds, FieldMap(ic.id_field, ic.instruction_field, ic.input_field, ic.group_field),
                     ic.seeds_split, ic.seeds_subset)
    for call in plan_calls(pool.seeds, [], ic.calls, ("example",), 0, (3, 3)):
        assert len({s.group for s in call.seeds}) == 1
    # a mapped field the dataset lacks: one line naming the field and the dataset
    broken = load_config(PAPER, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}"])
    bad = stage_config(broken, specs["prompts:alpaca"])
    bad = bad.__class__(**{**bad.__dict__, "instructions": bad.instructions.__class__(
        **{**bad.instructions.__dict__, "instruction_field": "prompt"})})
    with pytest.raises(UserError, match=r"^tatsu-lab/alpaca\[train\]:1: missing field 'prompt'$"):
        sources.load(bad)
    # a local JSONL prompt set works the same way
    local = tmp_path / "mine.jsonl"
    local.write_text("".join(json.dumps({"id": f"m{i}", "instruction": f"Name {i} rivers."}) + "\n" for i in range(3)))
    own = load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", "sources=[{kind='answer', label='mine', "
                             f"data={json.dumps(str(local))}, count=3}}]"])
    rows = sources.load(stage_config(own, expand(own)[0]))
    assert [r["id"] for r in rows] == ["mine:m0", "mine:m1", "mine:m2"]


def test_every_lamini_config_plans_the_papers_run_offline():
    paper = load_config(PAPER)
    for path in sorted((REPO / "configs" / "lamini").glob("*.toml")):
        cfg = load_config(path)
        assert cfg.sources == paper.sources and cfg.mix == paper.mix and cfg.teacher == paper.teacher, path
        assert len(cfg.train.students) == (17 if path == PAPER else 1)
        plan = make_plan(cfg, select(cfg))
        assert sum(e.pairs for e in plan) == 2_580_000
        trial = load_config(path, ["run.scale=0.001"])
        assert sum(e.pairs for e in make_plan(trial, select(trial))) == 2_580
    labels = {stage_label(s) for s in paper.sources}
    assert labels == set(LAMINI_TABLE1)
    assert {stage_label(s): s.count for s in paper.sources} == {k: round(v * 1e6) for k, v in LAMINI_TABLE1.items()}


def test_plan_prices_the_paper_with_gpt_35_and_needs_no_network():
    out = subprocess.run([sys.executable, "-m", "herd", "plan", str(PAPER)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "teacher: openai:gpt-3.5-turbo" in lines[0]
    for label in LAMINI_TABLE1:
        row = next(line for line in lines if line.startswith(f"responses:{label} "))
        assert float(row.split()[5]) > 0  # dollars at gpt-3.5-turbo's price
    assert "2,580,000 pairs to the mix" in lines[-1]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (['sources=[{kind="bogus", count=1}]'], "sources[0].kind = 'bogus' is not one of"),
        (["mix.total=2000000"], "sources: the counts add up to 2,580,000 pairs, not mix.total = 2,000,000"),
        (["run.scale=0.000009"], "run.scale = 9e-06 rounds sources[4] (alpaca, 50000 pairs) to 0 pairs"),
        (['sources=[{kind="answer", count=5}]'], "sources[0].data: an answer source needs a prompt set"),
    ],
)
def test_bad_recipe_is_one_line_exit_2_and_spends_nothing(tmp_path, sets, message):
    args = [a for s in sets for a in ("--set", s)]
    out = subprocess.run([sys.executable, "-m", "herd", "run", str(PAPER), "--yes", "-q", "--set",
                          f"run.dir={json.dumps(str(tmp_path / 'runs'))}", *args], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert not (tmp_path / "runs").exists()


def test_a_hub_prompt_set_without_the_mapped_field_stops_before_any_call(tmp_path):
    cache = hub_cache(tmp_path)
    with spawn("--latency", "0.01") as url:
        cfg = recipe(tmp_path, url, extra='[[sources]]\nkind = "example"\ncount = 200000\n[[sources]]\n'
                     'kind = "answer"\nlabel = "alpaca2"\ndata = "tatsu-lab/alpaca"\ninstruction_field = "prompt"\n'
                     'count = 50000\n[mix]\ntotal = 0\n')
        proc = herd(cfg, cache)
        out, _ = proc.communicate(timeout=120)
        ledger = fetch_ledger(url)
    assert proc.returncode == 2, out
    assert out.strip().splitlines()[-1].endswith("tatsu-lab/alpaca[train]:1: missing field 'prompt'"), out
    assert ledger["requests"] == 0


def test_include_merges_tables_replaces_lists_and_names_the_file_of_a_mistake(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('[run]\nname = "shared"\nseed = 3\n[train]\nepochs = 5\n[[train.students]]\nbase = "a"\n'
                    '[[train.students]]\nbase = "b"\n')
    child = tmp_path / "sub" / "child.toml"
    child.parent.mkdir()
    child.write_text('include = "../base.toml"\n[run]\nseed = 4\n[[train.students]]\nbase = "c"\n')
    cfg = load_config(child)
    assert (cfg.run.name, cfg.run.seed, cfg.train.epochs) == ("shared", 4, 5.0)
    assert [s.base for s in cfg.train.students] == ["c"]
    base.write_text('[run]\nname = "shared"\n[train]\nepochs = "five"\n')
    with pytest.raises(UserError, match=r"base.toml:4: train.epochs must be float"):
        load_config(child)
    base.write_text('include = "sub/child.toml"\n')
    with pytest.raises(UserError, match=r"base.toml:1: include = 'sub/child.toml' includes itself"):
        load_config(child)
    child.write_text('include = "nope.toml"\n')
    with pytest.raises(UserError, match=r"child.toml:1: include = 'nope.toml': .*nope.toml not found"):
        load_config(child)
    with pytest.raises(UserError, match=r"paper.toml:\d+: sources\[1\].kind = 'bogus' is not one of"):
        bad = tmp_path / "bad.toml"
        bad.write_text(PAPER.read_text().replace('kind = "topic"', 'kind = "bogus"'))
        load_config(bad.rename(tmp_path / "paper.toml"))


def test_config_show_round_trips_the_papers_recipe(tmp_path):
    from herd.config import to_toml

    cfg = load_config(REPO / "configs" / "lamini" / "lamini-t5-61m.toml")
    shown = tmp_path / "shown.toml"
    shown.write_text(to_toml(cfg))
    assert load_config(shown) == cfg


def test_one_sources_change_reruns_that_source_and_what_follows_only(tmp_path):
    from herd.run import stage_keys

    keys = stage_keys(load_config(PAPER))
    # one source's own settings: that source's stages, the mix and everything after it
    text = PAPER.read_text().replace("count = 50_000  # [paper] 0.05M", "count = 50_000\nsplit = \"all\"")
    (tmp_path / "paper.toml").write_text(text)
    other = stage_keys(load_config(tmp_path / "paper.toml"))
    differ = {k for k in keys if keys[k] != other[k]}
    # (answers and bench read train, which is in the chain; judge reads answers, which is not)
    assert differ == {"prompts:alpaca", "responses:alpaca", "mix", "dedup", "stats", "train", "answers", "bench",
                      "report"}
    # a shared [responses] key re-runs every source's responses, not the instruction or prompt steps
    shared = stage_keys(load_config(PAPER, ["responses.max_tokens=100"]))
    assert {k for k in keys if keys[k] != shared[k]} >= {f"responses:{label}" for label in LAMINI_TABLE1}
    assert all(shared[k] == keys[k] for k in keys if k.startswith(("instructions:", "prompts:")))


def test_source_stages_are_selected_by_name_or_step():
    cfg = load_config(PAPER)
    assert [s.name for s in select(cfg, only="responses")] == [f"responses:{x}" for x in (
        "self_instruct_without_topic", "self_instruct_with_topic", "generated_p3", "generated_flan", "alpaca",
        "original_p3", "original_flan")]
    assert [s.name for s in select(cfg, only="responses:alpaca")] == ["responses:alpaca"]
    assert [s.name for s in select(cfg, start="mix")] == ["mix", "dedup", "stats", "train"]
    assert [s.name for s in select(cfg, until="prompts:alpaca")][-2:] == ["responses:generated_flan", "prompts:alpaca"]
    with pytest.raises(UserError, match="unknown stage 'responses:alpacca' \\(did you mean 'responses:alpaca'\\?\\)"):
        select(cfg, only="responses:alpacca")


def test_a_missing_api_key_stops_before_any_dataset_is_read(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    out = subprocess.run([sys.executable, "-m", "herd", "run", str(PAPER), "--yes", "-q", "--set", "run.scale=0.001",
                          "--set", f"run.dir={json.dumps(str(tmp_path / 'runs'))}"], capture_output=True, text=True,
                         timeout=120, env={**env, "HF_DATASETS_CACHE": str(tmp_path / "empty-cache")})
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == "herd: error: teacher.api_key_env: environment variable OPENAI_API_KEY is not set"
    assert not (tmp_path / "empty-cache").exists() and not (tmp_path / "runs" / "lamini" / "journal.sqlite").exists()
