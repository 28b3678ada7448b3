"""herd instructions: the paper's prompts byte for byte, seed pools, parsing and rejects, resume, shards, teachers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd.cli import main
from herd.config import load_config
from herd.errors import UserError
from herd.instructions import run
from herd.instructions.parse import banned_pattern, judge, split_blocks
from herd.instructions.render import Call, plan_calls, render
from herd.instructions.seeds import FieldMap, Seed, load_pool
from herd.instructions.topics import load_topics, own_topics_path, propose
from herd.prompts import read_prompt
from herd.teacher import Engine, Result
from herd.teacher.journal import Journal

PAPER_FORMAT = '{stem}: "{input}"'


def cfg_for(tmp_path: Path, *sets: str):
    return load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", "teacher.backend=fake", *sets])


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def paper_seeds(shared_data: Path, *numbers: int) -> tuple[Seed, ...]:
    pool = {s.id: s for s in load_pool(str(shared_data / "self_instruct_seed_tasks.jsonl"), FieldMap()).seeds}
    return tuple(pool[f"seed_task_{n}"] for n in numbers)


# ------------------------------------------------------------------------------------------------ the paper's prompts
def test_example_guided_prompt_is_the_papers_figure_byte_for_byte(shared_data):
    call = Call(0, "example", paper_seeds(shared_data, 127, 118, 139))
    rendered = render(read_prompt("example_guided.txt"), call, 20, PAPER_FORMAT)
    assert rendered.encode() == (shared_data / "lamini_paper_example_guided_prompt.txt").read_bytes()


def test_topic_guided_prompt_renders_the_papers_example(shared_data):
    call = Call(1, "topic", paper_seeds(shared_data, 116, 133, 120), ("Design bureaus", "Conidae", "Infantry"))
    paper = (shared_data / "lamini_paper_topic_guided_prompt.txt").read_text()
    # herd's default leaves out the figure's stray closing `".` (see docs/instructions.md); the verbatim file keeps it
    assert paper.endswith('"</example>".".\n')
    assert render(read_prompt("topic_guided.txt"), call, 20, PAPER_FORMAT) == paper[: -len('".\n')] + "\n"
    assert render(read_prompt("topic_guided_verbatim.txt"), call, 20, PAPER_FORMAT) == paper
    # the SSN seed has an input: the figure shows it as instruction:input
    assert '<example>Return the SSN number for the person: "Yann LeCun"</example>' in paper


def test_seed_with_input_is_shown_as_instruction_colon_input():
    seed = Seed("s", "Translate the sentence into French.", "Good morning")
    assert seed.shown(PAPER_FORMAT) == 'Translate the sentence into French: "Good morning"'
    assert seed.shown("{instruction}:{input}") == "Translate the sentence into French.:Good morning"
    assert Seed("t", "Name a colour.", "  ").shown(PAPER_FORMAT) == "Name a colour."


# ------------------------------------------------------------------------------------------------ seed pools
def test_seed_pools_in_every_layout(tmp_path, shared_data):
    si = load_pool(str(shared_data / "self_instruct_seed_tasks.jsonl"), FieldMap())
    assert len(si.seeds) == 175 and si.seeds[0].id == "seed_task_0"
    ssn = next(s for s in si.seeds if s.id == "seed_task_120")
    assert (ssn.instruction, ssn.input) == ("Return the SSN number for the person.", "Yann LeCun")

    alpaca = tmp_path / "alpaca.csv"
    alpaca.write_text('instruction,input,output\nAdd the numbers.,"2, 3",5\nName a fruit.,,apple\n')
    seeds = load_pool(str(alpaca), FieldMap()).seeds
    assert [(s.instruction, s.input) for s in seeds] == [("Add the numbers.", "2, 3"), ("Name a fruit.", "")]
    assert seeds[0].id == load_pool(str(alpaca), FieldMap()).seeds[0].id  # made from the text: stable

    import pyarrow as pa
    import pyarrow.parquet as pq

    p3 = tmp_path / "p3.parquet"
    pq.write_table(pa.table({"inputs": ["Q: 2+2?", "Q: capital of France?", "Review: great. Sentiment?"],
                             "targets": ["4", "Paris", "positive"], "task": ["math", "geo", "sentiment"]}), p3)
    seeds = load_pool(str(p3), FieldMap(group="task")).seeds
    assert [(s.instruction, s.group) for s in seeds][1] == ("Q: capital of France?", "geo")

    nested = tmp_path / "nested.jsonl"
    nested.write_text(json.dumps({"key": 7, "task": {"text": "Sort the list."}, "data": [{"x": "3, 1, 2"}]}) + "\n")
    (seed,) = load_pool(str(nested), FieldMap(id="key", instruction="task.text", input="data.0.x")).seeds
    assert (seed.id, seed.instruction, seed.input) == ("7", "Sort the list.", "3, 1, 2")


def test_herds_own_seeds_and_topics_ship_with_the_package():
    seeds = load_pool("", FieldMap()).seeds
    assert 60 <= len(seeds) <= 100 and len({s.instruction for s in seeds}) == len(seeds)
    assert sum(bool(s.input) for s in seeds) >= 20  # plenty of instruction:input seeds
    topics, path = load_topics("")
    assert path == own_topics_path() and len(topics) >= 2000
    assert all(1 <= len(t.split()) <= 3 and "," not in t for t in topics)


def test_a_dataset_folder_loads_through_datasets(tmp_path):
    folder = tmp_path / "my_seeds"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"instruction": f"Task {i}.", "input": ""}) + "\n"
                                                for i in range(4)))
    pool = load_pool(str(folder), FieldMap())  # not a file: the Hugging Face datasets path, offline
    assert [s.instruction for s in pool.seeds] == [f"Task {i}." for i in range(4)]
    assert pool.path is None and pool.origin == str(folder)
    with pytest.raises(UserError, match=r"^dataset 'no-such/dataset-xyz', split 'train': cannot load"):
        load_pool("no-such/dataset-xyz", FieldMap())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id": 1, "instruction": "Fine."}\n{"id": 2, "instruction": \n', "seeds.jsonl:2: not valid JSON"),
        ('{"id": 1, "instruction": "Fine."}\n\n{"id": 2, "text": "x"}\n', "seeds.jsonl:3: missing field 'instruction'"),
        ('{"id": 1, "instruction": "  "}\n', "seeds.jsonl:1: field 'instruction' must be a non-empty string"),
        ('{"id": 1, "instruction": "A."}\n{"id": 1, "instruction": "B."}\n', "seeds.jsonl:2: duplicate seed id '1'"),
        ("\n", "seeds.jsonl: the seed pool is empty"),
    ],
)
def test_bad_seed_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, text, message):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        main(["instructions", "--seeds", str(seeds), "--set", "teacher.backend=fake",
              "--set", f"run.dir={json.dumps(str(tmp_path / 'runs'))}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(seeds) in err[0]
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------------ parsing
def test_parsing_is_tolerant_and_every_dropped_piece_has_a_reason():
    seeds = {"write a poem about the sea"}
    text = (
        "Sure! Here are some examples:\n"
        "<example>1. Describe how a bicycle gear works.</example>\n"
        "Example 2: <example>Write a poem about the sea.</example>\n"
        "<example>Hi</example> some stray chatter\n"
        "<example>Explain how to read a bar chart in this image.</example>\n"
        "<example>Describe how a bicycle gear works</example>\n"
        f"<example>{'word ' * 200}</example>\n"
        "<example>Example 7: \"List three uses of vinegar at home.\"</example>\n"
        "<example>Suggest a name for a cat.\n\nI hope these help!"
    )
    pieces = judge(text, seeds=seeds, words=(3, 150), banned=banned_pattern(["image", "file"]))
    got = [(p.text[:40].strip(), p.reason) for p in pieces]
    assert got == [
        ("Describe how a bicycle gear works.", ""),
        ("Write a poem about the sea.", "copies_seed"),
        ("Hi", "too_short"),
        ("Explain how to read a bar chart in this", "mentions_image_or_file"),
        ("Describe how a bicycle gear works", "duplicate_in_call"),
        ("word word word word word word word word", "too_long"),
        ("List three uses of vinegar at home.", ""),
        ("Suggest a name for a cat.", ""),  # no closing tag: ends at the blank line
    ]
    cut = judge("<example>Name three rivers.</example>\n<example>Describe the", seeds=set(), words=(3, 150),
                banned=None, truncated=True)
    assert [p.reason for p in cut] == ["", "truncated"]


def test_untagged_lists_are_read_and_nonsense_is_unparseable():
    pieces, unclosed = split_blocks("Here you go:\n1. Name a planet.\n2) Give a synonym for happy.\n- Count to five.")
    assert pieces == ["Name a planet.", "Give a synonym for happy.", "Count to five."] and not unclosed
    (piece,) = judge("I cannot help with that.", seeds=set(), words=(3, 150), banned=None)
    assert (piece.text, piece.reason) == ("I cannot help with that.", "unparseable")


# ------------------------------------------------------------------------------------------------ planning
def test_the_plan_is_a_function_of_seed_and_call_index():
    pool = [Seed(f"s{i}", f"Task {i}.", group="ab"[i % 2]) for i in range(40)]
    topics = [f"Topic {i}" for i in range(30)]
    a = plan_calls(pool, topics, 10, ("example", "topic"), seed=1)
    assert a == plan_calls(pool, topics, 10, ("example", "topic"), seed=1)
    assert a[:4] == plan_calls(pool, topics, 4, ("example", "topic"), seed=1)  # more calls: same first calls
    assert a != plan_calls(pool, topics, 10, ("example", "topic"), seed=2)
    assert [c.mode for c in a[:4]] == ["example", "topic", "example", "topic"]
    assert all(len(c.seeds) == 3 and len(set(c.seeds)) == 3 for c in a)
    assert all(len({s.group for s in c.seeds}) == 1 for c in a)  # one P3/FLAN task per call
    assert [len(c.topics) for c in a[:2]] == [0, 3]


# ------------------------------------------------------------------------------------------------ the stage
def test_stage_writes_labelled_rows_and_resumes_without_repeating(tmp_path):
    cfg = cfg_for(tmp_path, "instructions.calls=6")
    out = run(cfg)
    kept, rejected = rows(out / "data.jsonl"), rows(out / "rejects.jsonl")
    assert len(kept) + len(rejected) == 6 * 20  # the fake answers N blocks per call; N = 20 for self_instruct seeds
    assert {r["instruction_source"] for r in kept} == {"self_instruct_without_topic", "self_instruct_with_topic"}
    assert len({r["id"] for r in kept + rejected}) == len(kept) + len(rejected)
    first = kept[0]
    assert len(first["seed_ids"]) == 3 and first["seed_ids"][0].startswith("herd_seed_") and len(first["call"]) == 64
    topical = [r for r in kept if r["instruction_source"] == "self_instruct_with_topic"]
    assert all(len(r["topics"]) == 3 for r in topical)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["prompts"]) == {"example_guided", "topic_guided"} and manifest["per_call"] == 20

    # a kill mid-write: the last rows lost and a torn line; the rerun repeats no call and restores every row
    lines = (out / "data.jsonl").read_text().splitlines(keepends=True)
    (out / "data.jsonl").write_text("".join(lines[:50]) + lines[50][:20])
    run(cfg)
    again = rows(out / "data.jsonl")
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in kept)
    usage = json.loads((out / "manifest.json").read_text())["usage"]
    assert usage["calls"] == 0 and usage["cached"] == 6


def test_shards_split_the_calls_and_together_make_the_whole(tmp_path):
    whole = {r["id"] for r in rows(run(cfg_for(tmp_path, "instructions.calls=8")) / "data.jsonl")}
    parts = [{r["id"] for r in rows(run(cfg_for(tmp_path / "s", "instructions.calls=8", f"run.shard='{i}/3'"))
                                    / "data.jsonl")} for i in range(3)]
    assert (tmp_path / "s/runs/default/instructions/shard-2-of-3/data.jsonl").is_file()
    assert set().union(*parts) == whole and sum(map(len, parts)) == len(whole)


def test_p3_style_asks_for_10_from_one_task_and_labels_generated_p3(tmp_path):
    seeds = tmp_path / "p3.jsonl"
    seeds.write_text("".join(json.dumps({"inputs": f"Question {i}: what is {i} plus {i}?", "targets": str(2 * i),
                                         "task": f"t{i % 2}"}) + "\n" for i in range(8)))
    cfg = cfg_for(tmp_path, f"instructions.seeds={json.dumps(str(seeds))}", "instructions.style=p3",
                  "instructions.group_field=task", "instructions.calls=2")
    out = run(cfg)
    kept = rows(out / "data.jsonl")
    assert len(kept) + len(rows(out / "rejects.jsonl")) == 20
    assert {r["instruction_source"] for r in kept} == {"generated_p3"}
    assert all(r["topics"] == [] for r in kept)
    with pytest.raises(UserError, match="topic-guided generation uses self_instruct seeds"):
        run(cfg_for(tmp_path, "instructions.style=flan", "instructions.mode=topic"))


def test_a_users_topics_and_label_override(tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("# mine\nBeekeeping\nTide pools\n\nBread baking\n")
    cfg = cfg_for(tmp_path, "instructions.mode=topic", f"instructions.topics={json.dumps(str(topics))}",
                  "instructions.calls=2", "instructions.source=my_label")
    kept = rows(run(cfg) / "data.jsonl")
    assert {r["instruction_source"] for r in kept} == {"my_label"}
    assert all(sorted(r["topics"]) == ["Beekeeping", "Bread baking", "Tide pools"] for r in kept)
    topics.write_text("Good\nBad, with comma\n")
    with pytest.raises(UserError, match=r"topics.txt:2: a topic may not contain"):
        run(cfg)


class ScriptedTeacher:
    """A Teacher that answers topic proposals with a fixed text (the fake teacher only writes instructions)."""

    model_id = "scripted"

    def __init__(self, text: str) -> None:
        self.text, self.calls, self.prompts = text, 0, []

    def run(self, requests, emit) -> None:
        for request in requests:
            self.calls += 1
            self.prompts.append(request.messages[-1][1])
            emit(Result(request=request, ok=True, text=self.text, finish_reason="stop"))

    def close(self) -> None:
        return None


def test_teacher_proposed_topics_are_filtered_and_journaled(tmp_path):
    answer = ("<topic>Knitting</topic><topic>1. Sea glass</topic><topic>The history of the Roman Empire in "
              "Gaul</topic><topic>knitting</topic><topic>Tea ceremonies</topic><topic>Beekeeping</topic>")
    teacher = ScriptedTeacher(answer)
    engine = Engine(teacher, Journal(tmp_path / "journal.sqlite"))
    template = read_prompt("propose_topics.txt")
    found, rejects = propose(engine, template, ["Beekeeping", "Volcanoes"], 3, {"max_tokens": 64}, seed=0)
    assert found == ["Knitting", "Sea glass", "Tea ceremonies"]
    assert rejects == {"too_long": 1, "duplicate": 2}
    again = propose(engine, template, ["Beekeeping", "Volcanoes"], 3, {"max_tokens": 64}, seed=0)
    assert again[0] == found and teacher.calls == 1  # the second time the journal answers
    (prompt,) = teacher.prompts
    assert "<topic>Volcanoes</topic>" in prompt and "Generate 3 more topics" in prompt


def test_the_stage_asks_for_topics_first_and_records_that_prompt(tmp_path):
    out = run(cfg_for(tmp_path, "instructions.calls=2", "instructions.propose_topics=60"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert "propose_topics" in manifest["prompts"] and manifest["topics"]["count"] >= 2000
    assert manifest["usage"]["calls"] == 2 + 2  # 60 topics = two proposal calls of up to 50, then the two calls
    # the fake teacher writes no <topic> tags: nothing proposed, and generation goes on with herd's list
    assert manifest["topics"]["proposed"] == 0 and not (out / "proposed_topics.txt").exists()


# ------------------------------------------------------------------------------------------------ a real endpoint
def test_instructions_and_responses_over_http_against_the_mock_server(tmp_path, capsys):
    from herd.teacher.mockserver import MockServer

    with MockServer(latency_s=0.0, faults={"500": 0.2}, seed=3) as url:
        common = ["--set", "teacher.backend=openai", "--set", "teacher.model=mock",
                  "--set", f"teacher.base_urls=[{json.dumps(url)}]", "--set", "teacher.max_attempts=1",
                  "--set", "teacher.backoff_base_s=0.01", "--set", f"run.dir={json.dumps(str(tmp_path / 'runs'))}",
                  "-q"]
        for argv in (["instructions", "--calls", "10", *common], ["responses", *common]):
            with pytest.raises(SystemExit) as exit_:
                main(argv)
            assert exit_.value.code == 0, capsys.readouterr().err
    folder = tmp_path / "runs" / "default"
    kept, rejected = rows(folder / "instructions/data.jsonl"), rows(folder / "instructions/rejects.jsonl")
    failed = [r for r in rejected if r["reason"].startswith("teacher_failed")]
    assert failed and len(kept) + len(rejected) == 20 * (10 - len(failed)) + len(failed)  # a 500 is a reject
    answers = rows(folder / "responses/data.jsonl") + rows(folder / "responses/rejects.jsonl")
    assert sorted(r["id"] for r in answers) == sorted(r["id"] for r in kept)


# ------------------------------------------------------------------------------------------------ the embedded teacher
KNOWN_REASONS = {"unparseable", "too_short", "too_long", "truncated", "mentions_image_or_file", "copies_seed",
                 "duplicate_in_call"}


@pytest.mark.slow
def test_the_embedded_teacher_writes_instructions_in_one_short_call(tmp_path):
    pytest.importorskip("herd.teacher.local")
    cfg = load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", "teacher.backend=local",
                             "teacher.model=embedded", "instructions.calls=1", "instructions.mode=example",
                             "instructions.max_tokens=48", "instructions.temperature=0.0"])
    out = run(cfg)
    kept, rejected = rows(out / "data.jsonl"), rows(out / "rejects.jsonl")
    assert kept or rejected  # a 135M model may break the format: then the whole answer is an unparseable reject
    assert all(r["reason"] in KNOWN_REASONS for r in rejected)
    assert all(r["instruction"].strip() and r["instruction_source"] == "self_instruct_without_topic" for r in kept)
    assert json.loads((out / "manifest.json").read_text())["usage"]["calls"] == 1
    run(cfg)  # the journal answers the call again: nothing new
    assert rows(out / "data.jsonl") == kept
