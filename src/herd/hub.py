"""Is the Hugging Face Hub reachable? Asked once per process, in well under a second, before a Hub id is loaded.

Without this, a Hub id with no network (`herd generate --model org/name`, `herd train --student gpt2`) waits about
30 s while huggingface_hub retries. `unreachable()` says why the Hub cannot be used (offline mode, or one short HTTP
request to `HF_ENDPOINT` that fails); `from_pretrained_args(name)` then asks transformers for the local cache only,
so a cached model still loads at once and an uncached one fails at once, with `not_found(name, why)` as its message.
Honours HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, HF_ENDPOINT and the usual proxy variables (through httpx).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

PROBE_TIMEOUT_S = 3.0


def is_hub_id(name: str) -> bool:
    """Whether `name` can only mean a Hub id: not a local path, not 'embedded', not a .gguf file."""
    if not name or name == "embedded" or name.endswith(".gguf") or name.startswith(("/", ".", "~")):
        return False
    return not Path(name).exists()


@functools.lru_cache(maxsize=1)
def unreachable() -> str | None:
    """None when the Hub answers; otherwise why not (offline mode, or the probe's error), in a few words."""
    import httpx
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE)"
    endpoint = constants.ENDPOINT
    try:
        httpx.head(endpoint, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return f"{endpoint} cannot be reached: {type(exc).__name__}{': ' + str(exc) if str(exc) else ''}"[:200]
    return None


def from_pretrained_args(name: str) -> dict[str, Any]:
    """Extra `from_pretrained` kwargs for `name`: the local cache only when it is a Hub id and the Hub is out of
    reach (so nothing waits on retries)."""
    return {"local_files_only": True} if is_hub_id(name) and unreachable() else {}


def not_found(name: str, why: str) -> str:
    """The one-line error for a Hub id that is neither cached nor downloadable now."""
    return (f"{name}: not a local folder and not in the Hugging Face cache, and the Hub cannot be used ({why}); "
            "pass a model folder, or download the model first where there is a network")
