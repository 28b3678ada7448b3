"""herd run / herd plan over the fake teacher: skipping, re-running on a changed key, limits, bad stage names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from herd.config import load_config
from herd.run import run_chain, select, stage_keys


def write_config(tmp_path: Path, extra: str = "") -> Path:
    ins = tmp_path / "ins.jsonl"
    ins.write_text("".join(json.dumps({"id": f"i{n}", "instruction": f"Name color number {n}."}) + "\n"
                           for n in range(5)))
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[run]\nname = "t"\ndir = "{tmp_path / "runs"}"\nstages = ["responses", "report"]\n'
        f'[teacher]\nbackend = "fake"\n[responses]\ninput = "{ins}"\n{extra}'
    )
    return cfg


def herd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herd", *args], capture_output=True, text=True, timeout=120)


def test_rerun_skips_and_changed_key_reruns_only_affected(tmp_path):
    cfg = load_config(write_config(tmp_path))
    stages = select(cfg)
    lines: list[str] = []
    assert run_chain(cfg, stages, echo=lines.append) == {"responses": "ran", "report": "ran"}
    assert run_chain(cfg, stages, echo=lines.append) == {"responses": "skipped", "report": "ran"}
    changed = load_config(write_config(tmp_path), ["responses.max_tokens=99"])
    assert stage_keys(changed)["responses"] != stage_keys(cfg)["responses"]
    assert stage_keys(changed)["instructions"] == stage_keys(cfg)["instructions"]
    assert run_chain(changed, select(changed), echo=lines.append)["responses"] == "ran"
    run_dir = tmp_path / "runs" / "t"
    assert len(list((run_dir / ".herd" / "stale").iterdir())) == 1
    rows = [json.loads(x) for x in (run_dir / "responses" / "data.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"i{n}" for n in range(5)]
    # the re-run paid for no call twice: the journal holds one row per distinct request
    from herd.teacher.journal import Journal

    usage = Journal(run_dir / "journal.sqlite").usage()
    assert sum(u["calls"] for u in usage) == 10  # 5 requests x 2 distinct max_tokens values
    assert (run_dir / "report.html").exists() and (run_dir / "report.md").exists()


def test_from_until_only(tmp_path):
    cfg = load_config(write_config(tmp_path), ['run.stages=["instructions","responses","dedup","report"]'])
    assert [s.name for s in select(cfg, start="responses")] == ["responses", "dedup", "report"]
    assert [s.name for s in select(cfg, until="responses")] == ["instructions", "responses"]
    assert [s.name for s in select(cfg, only="dedup")] == ["dedup"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", 'run.stages=["responses","nope"]'], "run.stages: unknown stage 'nope'"),
        (["--only", "dedupe"], "unknown stage 'dedupe' (did you mean 'dedup'?)"),
        (["--set", "teacher.price_input_per_mtok=1000000", "--set", "run.max_cost_usd=1"],
         "run.max_cost_usd: estimated cost"),
        (["--set", "teacher.price_input_per_mtok=1000000"], "pass --yes"),
    ],
)
def test_bad_run_is_one_line_exit_2_and_spends_nothing(tmp_path, args, message):
    out = herd("run", str(write_config(tmp_path)), "-q", *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs" / "t" / "journal.sqlite").exists()


def test_plan_counts_calls_and_cost(tmp_path):
    out = herd("plan", str(write_config(tmp_path)), "--set", "teacher.price_input_per_mtok=1",
               "--set", "teacher.price_output_per_mtok=2")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("responses"))
    calls, prompt_tokens, completion_tokens, cost = row.split()[2:6]
    assert int(calls) == 5
    assert float(cost) == pytest.approx((int(prompt_tokens) * 1 + int(completion_tokens) * 2) / 1e6, abs=1e-4)



@pytest.mark.parametrize(("method", "backend", "asks"), [("probabilities", "fake", 1), ("text", "fake", 3),
                                                         ("auto", "local", 1), ("auto", "openai", 3)])
def test_plan_budgets_one_call_per_answer_when_the_judge_reads_probabilities(tmp_path, method, backend, asks):
    """Probability grading is one forward pass per answer; the text judge (and `auto` against an endpoint, which
    may fall back to it) is budgeted with every re-ask."""
    from herd.plan import eval_tokens
    from herd.run import select

    cfg = load_config(None, [f"run.dir={json.dumps(str(tmp_path))}", "run.stages=['answers', 'judge']",
                             "answers.limit=10", "answers.models=['teacher']", f"judge.method={method!r}",
                             "judge.retries=2", "judge.same_as_teacher=false",
                             f"judge.teacher.backend={backend!r}", "judge.teacher.model='m'"])
    tokens = eval_tokens(cfg, next(s for s in select(cfg) if s.name == "judge"))
    assert (tokens.calls, tokens.expected_calls) == (10 * asks, 10)
    assert tokens.completion == (10 * 8 if asks == 1 else 10 * 3 * cfg.judge.max_tokens)

# --- hand-over: one rule for which folder feeds a stage (herd.run.feeders) --------------------------------------

DATA_LINE = ["instructions", "responses", "mix", "dedup"]  # the stages that write rows, in chain order
CHANGES = {"instructions": "instructions.calls=3", "responses": "responses.max_tokens=7", "mix": "mix.shuffle=false",
           "dedup": "dedup.threshold=0.5", "stats": "stats.top_verbs=5", "train": "train.epochs=1"}
OPTIONAL = ["mix", "dedup", "stats", "train"]
SUBSETS = [[s for i, s in enumerate(OPTIONAL) if mask >> i & 1] for mask in range(1 << len(OPTIONAL))]


def parent(stage: str, stages: list[str]) -> str | None:
    """What a stage should read, written out independently of herd.run: the last row-writing stage before it."""
    before = DATA_LINE[: DATA_LINE.index(stage)] if stage in DATA_LINE else DATA_LINE
    found = [s for s in before if s in stages]
    return found[-1] if found else None


def downstream(stage: str, stages: list[str]) -> set[str]:
    out = {stage}
    for other in stages:  # chain order: a parent is always seen before its children
        if parent(other, stages) in out:
            out.add(other)
    return out


@pytest.mark.parametrize("optional", SUBSETS, ids=lambda s: "+".join(s) or "none")
def test_changing_a_section_reruns_exactly_what_is_downstream(tmp_path, optional):
    stages = ["instructions", "responses", *optional]
    base = [f"run.dir={json.dumps(str(tmp_path))}", f"run.stages={json.dumps(stages)}"]
    keys = stage_keys(load_config(None, base))
    for section in stages:
        changed = stage_keys(load_config(None, [*base, CHANGES[section]]))
        differ = {s for s in stages if changed[s] != keys[s]}
        assert differ == downstream(section, stages), (section, stages)


@pytest.mark.parametrize("optional", SUBSETS, ids=lambda s: "+".join(s) or "none")
def test_each_stage_reads_the_folder_the_plan_says(tmp_path, optional):
    from herd import dedup, export, stats
    from herd.plan import make_plan
    from herd.run import stage_input
    from herd.train.data import default_source

    stages = ["instructions", "responses", *optional]
    cfg = load_config(None, [f"run.dir={json.dumps(str(tmp_path))}", f"run.stages={json.dumps(stages)}"])
    run_dir = tmp_path / "default"
    for stage in ("instructions", "responses", "mix", "dedup"):  # every folder exists: only the rule decides
        (run_dir / stage).mkdir(parents=True)
        (run_dir / stage / "data.jsonl").write_text(json.dumps({"id": stage, "instruction": "x", "response": "y"}))
    said = {e.stage: e.reads for e in make_plan(cfg, select(cfg))}
    readers = {"responses": lambda: stage_input(cfg, "responses"), "dedup": lambda: dedup.input_path(cfg),
               "stats": lambda: stats.input_path(cfg), "train": lambda: default_source(cfg)}
    for stage in stages[1:]:
        expected = parent(stage, stages)
        assert said[stage] == expected, (stage, said)
        if stage in readers:
            assert readers[stage]() == run_dir / expected / "data.jsonl", stage
    assert export.input_path(cfg) == run_dir / str(parent("train", stages)) / "data.jsonl"


def test_a_changed_mix_reruns_mix_and_dedup_not_responses(tmp_path):
    cfg_path = write_config(tmp_path)
    sets = ['run.stages=["responses","mix","dedup"]', "responses.source=alpaca"]
    cfg = load_config(cfg_path, sets)
    assert run_chain(cfg, select(cfg), echo=lambda _: None) == {"responses": "ran", "mix": "ran", "dedup": "ran"}
    changed = load_config(cfg_path, [*sets, "mix.shuffle=false"])
    assert run_chain(changed, select(changed), echo=lambda _: None) == {
        "responses": "skipped", "mix": "ran", "dedup": "ran"}
    again = load_config(cfg_path, [*sets, "mix.shuffle=false", "dedup.threshold=0.5"])
    assert run_chain(again, select(again), echo=lambda _: None) == {
        "responses": "skipped", "mix": "skipped", "dedup": "ran"}


# --- money: the plan is an upper bound on what a run spends -------------------------------------------------------

def spent(run_dir: Path) -> dict[str, tuple[int, float]]:
    from herd.teacher.journal import Journal

    journal = Journal(run_dir / "journal.sqlite")
    try:
        out: dict[str, tuple[int, float]] = {}
        for row in journal.usage():
            calls, dollars = out.get(row["stage"], (0, 0.0))
            out[row["stage"]] = (calls + row["calls"], dollars + row["cost"])
        return out
    finally:
        journal.close()


@pytest.mark.parametrize("judge", ["same_as_teacher", "own_teacher_that_never_grades"])
def test_a_run_never_spends_more_than_its_plan(tmp_path, judge):
    from herd.plan import make_plan, total_cost
    from herd.teacher.mockserver import MockServer

    with MockServer(latency_s=0.0) as url:
        judge_table = ("" if judge == "same_as_teacher" else
                       '[judge]\nsame_as_teacher = false\nmethod = "text"\n[judge.teacher]\nbackend = "fake"\n'
                       'model = "fake-unparseable"\nprice_input_per_mtok = 3.0\nprice_output_per_mtok = 5.0\n')
        path = tmp_path / "run.toml"
        path.write_text(
            f'[run]\nname = "m"\ndir = "{tmp_path / "runs"}"\nquiet = true\n'
            'stages = ["instructions", "responses", "answers", "judge"]\n'
            f'[teacher]\nbackend = "openai"\nmodel = "mock"\nbase_urls = ["{url}"]\nbackoff_base_s = 0.01\n'
            'price_input_per_mtok = 1.0\nprice_output_per_mtok = 2.0\n'
            '[instructions]\ncalls = 3\nper_call = 5\nmax_tokens = 400\n[responses]\nmax_tokens = 40\n'
            '[answers]\nmodels = ["teacher"]\nlimit = 4\nteacher_max_tokens = 40\n' + judge_table)
        cfg = load_config(path)
        plan = {e.stage: e for e in make_plan(cfg, select(cfg))}
        bound = total_cost(list(plan.values()))
        run_chain(cfg, select(cfg), echo=lambda _: None)
    used = spent(tmp_path / "runs" / "m")
    assert 0 < sum(d for _, d in used.values()) <= bound
    for stage, (calls, dollars) in used.items():
        assert calls <= plan[stage].calls and dollars <= plan[stage].cost, (stage, used, plan[stage])
    # the judge is priced with the teacher it calls, and its re-asks are counted at their maximum
    assert plan["judge"].cost > 0
    if judge != "same_as_teacher":
        assert used["judge"][0] == plan["judge"].calls == 4 * 3  # 4 answers, each asked 1 + judge.retries times
