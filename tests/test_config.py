from __future__ import annotations

import pytest

from herd.config import Config, explain, load_config, to_toml
from herd.errors import UserError


def write(tmp_path, text):
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    p = write(tmp_path, '[run]\nname = "x"\n[teacher]\nbackend = "fake"\nconcurrency = 4\n')
    cfg = load_config(p, ["teacher.rpm=120", "teacher.model=gpt-4o-mini", "teacher.timeout_s=5"])
    assert cfg.run.name == "x"
    assert cfg.teacher.backend == "fake"
    assert cfg.teacher.concurrency == 4
    assert cfg.teacher.rpm == 120
    assert cfg.teacher.model == "gpt-4o-mini"
    assert cfg.teacher.timeout_s == 5.0 and isinstance(cfg.teacher.timeout_s, float)
    assert load_config(None).teacher.model == "embedded"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[run]\nname = "a"\n\n[teacher]\nbakend = "x"\n',
            "run.toml:5: unknown key 'teacher.bakend' (did you mean 'backend'?)",
        ),
        ('[teacher]\nconcurrency = "many"\n', "run.toml:2: teacher.concurrency must be int, got string"),
        ('[teacher]\nbackend = "gpt"\n', "run.toml:2: teacher.backend = 'gpt' is not one of"),
        ('[nope]\nx = 1\n', "run.toml:1: unknown key 'nope'"),
        ('[teacher]\nbase_urls = "http://x"\n', "run.toml:2: teacher.base_urls must be a list"),
        ('[teacher\n', "not valid TOML"),
        ('[teacher]\nrpm = true\n', "teacher.rpm must be int, got bool"),
    ],
)
def test_bad_config_names_key_file_and_line(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_config(p)
    assert message in str(err.value)
    assert str(p) in str(err.value)


def test_bad_override_says_set():
    with pytest.raises(UserError, match=r"--set: unknown key 'teacher.nope'"):
        load_config(None, ["teacher.nope=1"])
    with pytest.raises(UserError, match="expected section.key=value"):
        load_config(None, ["teacher.rpm"])


def test_every_key_is_documented():
    rows = explain(Config)
    assert len(rows) > 20
    undocumented = [key for key, _, _, doc in rows if not doc]
    assert undocumented == []


def test_to_toml_round_trips(tmp_path):
    cfg = load_config(None, ["teacher.base_urls=['http://127.0.0.1:1/v1']", "run.name=rt"])
    p = write(tmp_path, to_toml(cfg))
    assert load_config(p) == cfg
