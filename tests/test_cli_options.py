"""The CLI's options become config keys one way (`herd.cli.command.options`, read back by the one `--set` parser): each
command's flags land on the keys they always did, values arrive as typed (a Windows path keeps its backslashes),
and a bad `--set` is one line naming the key, exit 2. No command runs its stage here: the config is caught as it
is loaded."""

from __future__ import annotations

import pytest

from herd.config import load_config, override


class Loaded(Exception):  # noqa: N818 - not an error: how the test stops a command once its config is loaded
    def __init__(self, cfg: object) -> None:
        self.cfg = cfg


@pytest.fixture
def loaded_config(monkeypatch):
    """Run `herd ARGS` up to the point where its config is loaded; return that config."""
    import herd.config
    from herd.cli import app

    real = herd.config.load_config

    def catch(path=None, overrides=()):  # noqa: ANN001, ANN202
        raise Loaded(real(path, overrides))

    monkeypatch.setattr(herd.config, "load_config", catch)

    def run(*args: str) -> object:
        with pytest.raises(Loaded) as caught:
            app(args=list(args), prog_name="herd", standalone_mode=False)
        return caught.value.cfg

    return run


def value_at(cfg: object, dotted: str) -> object:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


WINDOWS = r"C:\data\pairs.jsonl"

CASES = {
    "train": (["train", "--student", "gpt2", "--data", WINDOWS, "--output", r"D:\out"],
              {"train.student": "gpt2", "train.data": WINDOWS, "train.output": r"D:\out"}),
    "bench": (["bench", "--model", "a,b", "--model", "c", "--tasks", "boolq, piqa", "--include-path", "tasks/",
               "--suite", "mine.toml", "--limit", "0.5", "--wrapper", "on", "--out", "o", "--bootstrap-iters", "7"],
              {"bench.models": ["a", "b", "c"], "bench.tasks": ["boolq", "piqa"], "bench.include_path": ["tasks/"],
               "bench.suite": "mine.toml", "bench.limit": 0.5, "bench.wrapper": "on", "bench.out": "o",
               "bench.bootstrap_iters": 7}),
    "generate": (["generate", "-m", "m", "-i", WINDOWS, "-o", "o", "--max-new-tokens", "9", "--temperature", "0.3",
                  "--top-p", "0.8", "--repetition-penalty", "1.5", "--stop", "END", "--stop", "\n\n", "--seed", "4",
                  "--batch-tokens", "99", "--max-batch", "3", "--name", "n", "--device", "cpu", "--dtype", "float32",
                  "--shard", "1/4"],
                 {"generate.model": "m", "generate.input": WINDOWS, "generate.out": "o", "generate.max_new_tokens": 9,
                  "generate.temperature": 0.3, "generate.top_p": 0.8, "generate.repetition_penalty": 1.5,
                  "generate.stop": ["END", "\n\n"], "generate.seed": 4, "generate.batch_tokens": 99,
                  "generate.max_batch": 3, "generate.name": "n", "generate.device": "cpu",
                  "generate.dtype": "float32", "run.shard": "1/4"}),
    "chat": (["chat", "-m", WINDOWS, "--max-new-tokens", "9", "--temperature", "0", "--top-p", "0.5",
              "--repetition-penalty", "1.5", "--system", 'say "hi" 😀', "--device", "cpu", "--dtype", "bfloat16"],
             {"chat.model": WINDOWS, "chat.max_new_tokens": 9, "chat.temperature": 0.0, "chat.top_p": 0.5,
              "chat.repetition_penalty": 1.5, "chat.system": 'say "hi" 😀', "chat.device": "cpu",
              "chat.dtype": "bfloat16"}),
    "serve": (["serve", "-m", "a", "-m", "b=c", "--host", "0.0.0.0", "--port", "9", "--api-key-env", "K",
               "--max-batch", "2", "--batch-wait-ms", "1.5", "--max-queue", "3", "--max-tokens-limit", "4",
               "--device", "cpu", "--dtype", "float16"],
              {"serve.models": ["a", "b=c"], "serve.host": "0.0.0.0", "serve.port": 9, "serve.api_key_env": "K",
               "serve.max_batch": 2, "serve.batch_wait_ms": 1.5, "serve.max_queue": 3, "serve.max_tokens_limit": 4,
               "serve.device": "cpu", "serve.dtype": "float16"}),
    "mix": (["mix", "-i", "a", "-i", WINDOWS, "--preset", "lamini", "--total", "5"],
            {"mix.inputs": ["a", WINDOWS], "mix.preset": "lamini", "mix.total": 5}),
    "responses": (["responses", "-i", WINDOWS, "--source", "alpaca", "--shard", "0/2"],
                  {"responses.input": WINDOWS, "responses.source": "alpaca", "run.shard": "0/2"}),
    "dedup": (["dedup", "-i", "x.jsonl", "--threshold", "0.6"], {"dedup.input": "x.jsonl", "dedup.threshold": 0.6}),
    "stats": (["stats", "-i", "x.jsonl", "--embedder", "tfidf"], {"stats.input": "x.jsonl", "stats.embedder": "tfidf"}),
    "instructions": (["instructions", "--seeds", "s.jsonl", "--style", "p3", "--mode", "topic", "--calls", "3",
                      "--topics", "t.txt"],
                     {"instructions.seeds": "s.jsonl", "instructions.style": "p3", "instructions.mode": "topic",
                      "instructions.calls": 3, "instructions.topics": "t.txt"}),
    "export": (["export", "-i", "x.jsonl", "-o", "o"], {"export.input": "x.jsonl", "export.out": "o"}),
    "answers": (["answers", "-m", "teacher", "-i", "e.jsonl"],
                {"answers.models": ["teacher"], "answers.instructions": "e.jsonl"}),
    "judge": (["judge", "-a", "a.jsonl", "--human", "h.jsonl", "--method", "text"],
              {"judge.answers": "a.jsonl", "judge.human": "h.jsonl", "judge.method": "text"}),
}


@pytest.mark.parametrize("command", sorted(CASES))
def test_each_commands_flags_land_on_their_config_keys(loaded_config, command):
    args, expected = CASES[command]
    cfg = loaded_config(*args)
    assert {key: value_at(cfg, key) for key in expected} == expected


def test_quiet_is_run_quiet(loaded_config):
    assert loaded_config("dedup", "-q").run.quiet is True
    assert loaded_config("dedup").run.quiet is False


def test_set_comes_first_and_an_option_wins_over_it(loaded_config):
    cfg = loaded_config("train", "--set", "train.data=other", "--set", "train.max_steps=3", "--data", WINDOWS)
    assert cfg.train.data == WINDOWS and cfg.train.max_steps == 3


@pytest.mark.parametrize("text", [WINDOWS, "\\\\server\\share\\", 'a "quoted" \'word\'', "tab\tnew\nline",
                                  "DEL\x7f and \x01", "emoji 😀 and é", "", "[not a list]", "x = 1"])
def test_override_reads_back_as_the_same_string(text):
    assert load_config(None, [override("train.data", text)]).train.data == text


def test_override_of_typed_values():
    cfg = load_config(None, [override("train.epochs", 2.5), override("train.max_steps", 7),
                             override("train.lora", True), override("generate.stop", ("a\\b", "c"))])
    assert (cfg.train.epochs, cfg.train.max_steps, cfg.train.lora) == (2.5, 7, True)
    assert cfg.generate.stop == ["a\\b", "c"]


def test_a_bare_set_value_is_a_string():
    assert load_config(None, [r"train.data=C:\data"]).train.data == r"C:\data"
    assert load_config(None, ["train.data='C:\\data'"]).train.data == r"C:\data"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chat", "--set", "chat.nope=1"], "herd: error: --set: unknown key 'chat.nope'"),
        (["train", "--set", "train.max_steps=x"], "herd: error: --set: train.max_steps must be int, got string 'x'"),
        (["config", "--set", "train.epochs"], "herd: error: --set 'train.epochs': expected section.key=value"),
        (["config", "--set", 'train.data="C:\\data"'],
         "herd: error: --set train.data: \"C:\\data\" is not a TOML string (Unescaped '\\' in a string); a path with "
         "backslashes goes in single quotes or bare"),
        (["chat"], "herd: error: chat.model: no model to talk to (give --model, or set chat.model in the run file)"),
    ],
)
def test_bad_set_is_one_line_naming_the_key_exit_2(capsys, args, message):
    from herd.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines() == [message]


def recorded_chat(monkeypatch) -> dict[str, object]:  # noqa: ANN001
    """What `herd chat` hands to the chat loop (which is not started)."""
    import herd.chat

    seen: dict[str, object] = {}
    monkeypatch.setattr(herd.chat, "run_chat", lambda model, params, **kw: seen.update(model=model, params=params,
                                                                                        **kw))
    return seen


def test_chat_takes_its_section_from_the_run_file_and_set(monkeypatch, tmp_path):
    """`herd chat -c RUN --set chat.KEY=V`: the [chat] keys, then --set, then the options, reach the chat loop."""
    from herd.cli import app

    seen = recorded_chat(monkeypatch)
    run = tmp_path / "run.toml"
    run.write_text('[chat]\nmodel = "runs/demo/train/demo-t5"\ntemperature = 0.0\nsystem = "Be brief."\n',
                   encoding="utf-8")
    app(args=["chat", "-c", str(run), "--set", "chat.max_new_tokens=32", "--top-p", "0.5"], prog_name="herd",
        standalone_mode=False)
    params = seen.pop("params")
    assert seen == {"model": "runs/demo/train/demo-t5", "system": "Be brief.", "device": "auto", "dtype": "auto"}
    assert (params.max_new_tokens, params.temperature, params.top_p, params.repetition_penalty) == (32, 0.0, 0.5, 1.0)


def test_chat_defaults_are_the_options_old_defaults(monkeypatch):
    from herd.cli import app

    seen = recorded_chat(monkeypatch)
    app(args=["chat", "-m", "embedded"], prog_name="herd", standalone_mode=False)
    params = seen.pop("params")
    assert seen == {"model": "embedded", "system": "", "device": "auto", "dtype": "auto"}
    assert (params.max_new_tokens, params.temperature, params.top_p, params.repetition_penalty) == (256, 0.7, 0.9, 1.0)
